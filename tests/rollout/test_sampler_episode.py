"""Search episodes through the *real* jitted sampler and KV cache on a tiny model whose
next-token choice is wired by hand, so that every path runs on device code: stop strings,
searches with BM25-like observations appended in place, an EOS stripped before an
invalid-action observation, and the final no-search turn.

The model is a context-free successor table (embedding slot -> lm_head column) plus small
random attention/MLP contributions; the reference is a teacher-forced uncached forward of the
same model over each finished row: sampled tokens must be its greedy choices with the
sampler's log-probs, which only holds if the live cache held exactly prompt + response.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax.models import ModelConfig, Transformer
from searchr1_jax.rollout import EpisodeSettings, collect_rollouts
from searchr1_jax.rollout.cached_generator import CachedGenerator
from searchr1_jax.rollout.observations import (EMPTY_INFORMATION_OBS, INVALID_ACTION_OBS,
                                               information_obs)
from searchr1_jax.sampling import StopTable
from tests.rollout.fakes import EOS, FakeTokenizer, ListRetriever

TOK = FakeTokenizer()
VOCAB, HIDDEN = 1280, 16
S_OPEN, Q, S_CLOSE, Z, Y = (TOK.encode(t)[0] for t in ("<search>", "q", "</search>", "z", "y"))
# slot of a token's embedding -> the token that slot predicts next
SUCCESSOR = {S_OPEN: Q, Q: S_CLOSE, S_CLOSE: S_OPEN, Z: Y, Y: EOS}
OTHER_SLOT, OTHER_NEXT = len(SUCCESSOR), S_OPEN


def successor_model(seed=0, mix=0.6):
    cfg = ModelConfig(family="llama", vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=32,
                      num_layers=2, num_heads=2, num_kv_heads=1, head_dim=8,
                      tie_word_embeddings=False)
    model = nnx.jit(lambda: Transformer(cfg, rngs=nnx.Rngs(seed)))()
    # Slots 0..len(SUCCESSOR) carry the table; the other dims are random per token so that
    # attention over the context (and so the cache's contents) moves every log-prob.
    emb = np.zeros((VOCAB, HIDDEN), np.float32)
    emb[:, OTHER_SLOT + 1:] = np.random.default_rng(seed).normal(
        0, 0.5, (VOCAB, HIDDEN - OTHER_SLOT - 1))
    head = np.zeros((HIDDEN, VOCAB), np.float32)
    emb[:, OTHER_SLOT] = 1.0
    head[OTHER_SLOT, OTHER_NEXT] = 1.0
    for slot, (tok, nxt) in enumerate(SUCCESSOR.items()):
        emb[tok, :OTHER_SLOT + 1] = 0.0
        emb[tok, slot] = 1.0
        head[slot, nxt] = 1.0
    model.embed.embedding.value = jnp.asarray(emb)
    # After RMSNorm the successor's logit is about 2, every other logit about 0: greedy follows
    # the table while each log-prob (about -5) still depends on the context.
    model.lm_head_proj.kernel.value = jnp.asarray(head)
    for layer in model.layers:   # keep the context in play, below the successor margin
        layer.attn.o_proj.kernel.value = layer.attn.o_proj.kernel.value * mix
        layer.mlp.down_proj.kernel.value = layer.mlp.down_proj.kernel.value * mix
    return model


@nnx.jit
def _forward(model, tokens, positions, mask):
    return model(tokens, positions, mask)[0]


def test_search_episode_on_device():
    model = successor_model()
    table = StopTable.from_token_bytes(
        ("</search>", "</answer>"),
        [TOK.decode([i], skip_special_tokens=True).encode() for i in range(VOCAB)])
    ep = EpisodeSettings(max_turns=2, max_obs_length=64, max_prompt_length=512)
    gen = CachedGenerator(model, cache_len=None, episode=ep, max_new_tokens=8, eos_ids=[EOS],
                          temperature=0.0, stop_table=table, pad_id=0)
    prompts = [TOK.encode("Question A?"), TOK.encode("Question Bz")]
    retriever = ListRetriever()
    batch, info = collect_rollouts(gen, TOK, retriever, prompts, ep)

    assert retriever.calls == [["q"], ["q", "q"]]   # turn 1: row 0 only; turn 2: both rows
    def cut(text):   # every observation is cut to max_obs_length tokens, as in Search-R1
        return TOK.decode(TOK.encode(text)[:ep.max_obs_length])

    info_q = cut(information_obs(retriever.search(["q"], 3)[0]))
    assert info.response_text[0] == ("<search>q</search>" + info_q) * 2 + \
        "<search>q</search>" + EMPTY_INFORMATION_OBS
    assert info.response_text[1] == "y" + cut(INVALID_ACTION_OBS) + "<search>q</search>" + \
        info_q + "<search>q</search>" + EMPTY_INFORMATION_OBS
    assert info.num_searches.tolist() == [3, 2] and info.num_turns.tolist() == [3, 3]
    resp = np.asarray(batch.response_tokens)
    assert EOS not in resp[1][np.asarray(batch.response_mask[1]) > 0]   # stripped, continued

    tokens = jnp.concatenate([batch.prompt_tokens, batch.response_tokens], axis=1)
    mask = jnp.concatenate([batch.prompt_mask, batch.response_mask > 0], axis=1)
    positions = jnp.concatenate(batch.positions(), axis=1)
    logp = np.asarray(jax.nn.log_softmax(_forward(model, tokens, positions, mask), axis=-1))
    p, loss = batch.prompt_tokens.shape[1], np.asarray(batch.loss_mask)
    for i in range(2):
        cols = np.flatnonzero(loss[i])
        pred = logp[i, p + cols - 1]
        assert (pred.argmax(-1) == resp[i, cols]).all()
        np.testing.assert_allclose(pred[np.arange(cols.size), resp[i, cols]],
                                   np.asarray(batch.sample_logprobs)[i, cols], atol=1e-5)
