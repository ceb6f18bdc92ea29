"""Incremental prefill on the live KV cache == a full forward over the concatenated tokens.

Reference: the same tiny random Transformer run *without* a cache over each row's whole
context (prompt + sampled turns + observations, minus dropped tokens); the next-token logits
must agree with those read from the live cache after every append.
"""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from searchr1_jax.models import ModelConfig, Transformer, with_weight_dtype
from searchr1_jax.rollout.cached_generator import CachedGenerator, bucket

CFG = ModelConfig(family="qwen2", vocab_size=97, hidden_size=32, intermediate_size=64,
                  num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, attention_bias=True,
                  rope_theta=10000.0)


@pytest.fixture(scope="module")
def model():
    return nnx.jit(lambda: Transformer(CFG, rngs=nnx.Rngs(3)))()  # one compile, not op by op


@nnx.jit
def _forward(model, tokens, positions, mask):
    return model(tokens, positions, mask)[0]


def full_forward_last_logits(model, contexts, width=128):
    """Logits at each row's last token from one uncached, right-padded forward pass."""
    assert max(len(c) for c in contexts) <= width
    tokens = np.zeros((len(contexts), width), np.int32)
    mask = np.zeros_like(tokens, bool)
    for i, c in enumerate(contexts):
        tokens[i, :len(c)], mask[i, :len(c)] = c, True
    positions = np.broadcast_to(np.arange(width), tokens.shape)
    logits = _forward(model, jnp.asarray(tokens), jnp.asarray(positions, jnp.int32),
                      jnp.asarray(mask))
    return np.stack([np.asarray(logits[i, len(c) - 1]) for i, c in enumerate(contexts)])


def simulate_turn(gen, state, sampled):
    """What the sampler leaves behind: [last_token] + sampled[:-1] fed, last = sampled[-1]."""
    state = gen._feed(state, sampled, np.zeros(len(sampled), np.int64), first=False)
    state.turn_len = np.array([len(s) for s in sampled])
    return state


def test_bucket():
    assert [bucket(n) for n in (0, 1, 8, 9, 300, 512, 513)] == [8, 8, 8, 16, 512, 512, 1024]


def test_appended_observations_match_full_forward(model):
    rng = np.random.default_rng(0)
    tok = lambda n: rng.integers(2, CFG.vocab_size, n).tolist()  # noqa: E731
    prompts = [tok(5), tok(11), tok(1)]
    gen = CachedGenerator(model, cache_len=160, max_new_tokens=16, eos_ids=[1],
                          stop_sequences=())
    state = gen.start(prompts, seed=0)
    contexts = [list(p) for p in prompts]
    np.testing.assert_allclose(gen.next_token_logits(state),
                               full_forward_last_logits(model, contexts), atol=2e-5)
    # Turns of sampled tokens, then observations, with trailing tokens dropped (text after
    # the tag, a stripped EOS), rows that finished (empty chunks) and a whole-turn drop.
    plan = [
        ([tok(4), tok(7), tok(2)], [tok(9), tok(3), tok(20)], [0, 2, 1]),
        ([tok(1), tok(5), tok(6)], [tok(2), [], tok(1)], [1, 0, 6]),
        ([tok(3), [], tok(2)], [tok(30), [], tok(4)], [0, 0, 0]),
    ]
    for sampled, chunks, drop in plan:
        active = [bool(s) for s in sampled]
        state = simulate_turn(gen, state, sampled)
        for i, s in enumerate(sampled):
            contexts[i] += s
        np.testing.assert_allclose(
            np.asarray(gen.next_token_logits(state))[active],
            full_forward_last_logits(model, contexts)[active], atol=2e-5)
        state = gen.extend(state, chunks, np.array(drop))
        for i, (c, d) in enumerate(zip(chunks, drop)):
            if c:
                contexts[i] = contexts[i][:len(contexts[i]) - d] + c
        assert state.context_len.tolist() == [len(c) for c in contexts]
        np.testing.assert_allclose(gen.next_token_logits(state),
                                   full_forward_last_logits(model, contexts), atol=2e-5)


def test_bf16_serving_weights_follow_the_live_model(model):
    """``weights_dtype``: the cached path equals a full forward of the bf16-weight copy, the
    fp32 model is untouched, and the copy is re-made at ``start`` after a weight update."""
    gen = CachedGenerator(model, cache_len=64, max_new_tokens=4, eos_ids=[1],
                          stop_sequences=(), weights_dtype="bfloat16")
    prompts = [[5, 6, 7, 8], [9, 10]]
    state = gen.start(prompts, seed=0)
    assert model.layers[0].mlp.up_proj.kernel[...].dtype == jnp.float32
    served = with_weight_dtype(model, "bfloat16")
    np.testing.assert_allclose(gen.next_token_logits(state),
                               full_forward_last_logits(served, prompts), atol=2e-5)
    state = gen.extend(simulate_turn(gen, state, [[11, 12], [13]]), [[14, 15, 16], [17]],
                       np.array([0, 0]))
    contexts = [[5, 6, 7, 8, 11, 12, 14, 15, 16], [9, 10, 13, 17]]
    np.testing.assert_allclose(gen.next_token_logits(state),
                               full_forward_last_logits(served, contexts), atol=2e-5)
    before = np.asarray(gen.next_token_logits(gen.start(prompts, seed=0)))
    kernel = model.layers[0].mlp.up_proj.kernel
    old = kernel[...]
    try:
        kernel[...] = old * 2.0                    # an optimizer step, in place
        after = np.asarray(gen.next_token_logits(gen.start(prompts, seed=0)))
    finally:
        kernel[...] = old
    assert np.abs(after - before).max() > 1e-3


def test_bad_drop_and_overflow_are_clear(model):
    gen = CachedGenerator(model, cache_len=16, max_new_tokens=4, eos_ids=[1],
                          stop_sequences=())
    state = gen.start([[5, 6, 7]], seed=0)
    with pytest.raises(ValueError, match="row 0 drops 1 tokens but its last turn sampled 0"):
        gen.extend(state, [[3]], np.array([1]))
    with pytest.raises(ValueError, match="row 0: context of 23 tokens exceeds cache_len = 16"):
        gen.extend(state, [list(range(2, 22))], np.array([0]))
    with pytest.raises(ValueError, match="prompt lengths"):
        gen.start([[]], seed=0)


def test_cache_sizing_from_episode_budgets():
    from searchr1_jax.config import load_config_file
    from searchr1_jax.rollout import EpisodeSettings
    cfg = load_config_file("configs/base.py")
    ep = EpisodeSettings.from_config(cfg)
    assert (ep.max_turns, ep.max_obs_length, ep.max_prompt_length, ep.topk) == (4, 500, 4096, 3)
    assert ep.retrieval_timeout_s == 30.0 * 4 + 1.0          # covers the client's 3 retries
    gen = CachedGenerator(None, cache_len=None, episode=ep, max_new_tokens=500, eos_ids=[],
                          stop_sequences=())
    # 200 + 4 * (500 + 500) = 4200 > 4096: the context cap binds; + one turn of 500.
    assert gen.cache_len_for(200) == 4096 + 500
    short = EpisodeSettings(max_turns=2, max_obs_length=100, max_prompt_length=4096)
    gen = CachedGenerator(None, cache_len=None, episode=short, max_new_tokens=50, eos_ids=[],
                          stop_sequences=())
    assert gen.cache_len_for(100) == bucket(100 + 2 * 150 + 50, 64) == 512
    with pytest.raises(ValueError, match="stop_sequences need tokenizer"):
        CachedGenerator(None, cache_len=8, max_new_tokens=4, eos_ids=[])
