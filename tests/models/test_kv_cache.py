"""KV cache: incremental decoding and per-row chunk appends equal full forwards (and HF)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from searchr1_jax.models import KVCache, ModelConfig, Transformer, load_hf_checkpoint
from tests.models.hf_tiny import hf_logits, save_case

TOL = 1e-4


@nnx.jit(donate_argnums=(4,))
def cached_step(model, tokens, positions, mask, cache, advance):
    return model(tokens, positions, mask, cache=cache, advance=advance)


@nnx.jit
def full_forward(model, tokens, positions):
    return model(tokens, positions)[0]


@pytest.fixture(scope="module")
def tiny():
    cfg = ModelConfig(family="llama", vocab_size=101, hidden_size=32, intermediate_size=48,
                      num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                      rope_scaling={"rope_type": "linear", "factor": 2.0})
    return cfg, Transformer(cfg, rngs=nnx.Rngs(0))


def test_step_by_step_decode_equals_full_forward(tiny):
    cfg, model = tiny
    b, t, prefix = 2, 11, 4
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, cfg.vocab_size, (b, t)))
    positions = jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1))
    full = np.asarray(full_forward(model, tokens, positions))
    cache = KVCache.init(cfg, b, 16)
    ones = jnp.ones((b, prefix), bool)
    logits, cache = cached_step(model, tokens[:, :prefix], positions[:, :prefix], ones, cache,
                                None)
    outs = [np.asarray(logits)]
    for i in range(prefix, t):
        logits, cache = cached_step(model, tokens[:, i:i + 1], positions[:, i:i + 1],
                                    jnp.ones((b, 1), bool), cache, None)
        outs.append(np.asarray(logits))
    diff = np.abs(np.concatenate(outs, axis=1) - full).max()
    print(f"[decode] max |cached - full| = {diff:.2e}")
    assert diff <= TOL
    np.testing.assert_array_equal(np.asarray(cache.end), [t, t])
    np.testing.assert_array_equal(np.asarray(cache.valid), np.arange(16)[None].repeat(2, 0) < t)


def test_per_row_offset_chunk_matches_hf_on_concatenation(tmp_path):
    """Left-padded prompt prefill, a right-padded chunk appended with ``advance``, then decode:
    every row's logits equal HF on that row's unpadded concatenation."""
    hf, path = save_case(tmp_path, "qwen2_gqa2_tied")
    model, cfg = load_hf_checkpoint(path)
    rng = np.random.RandomState(4)
    prompt_lens, chunk_lens, decode_len = [6, 3, 1], [2, 5, 0], 2
    b, p_width, c_width = 3, max(prompt_lens), max(chunk_lens)
    prompts = [rng.randint(3, cfg.vocab_size, n) for n in prompt_lens]
    chunks = [rng.randint(3, cfg.vocab_size, n) for n in chunk_lens]
    decodes = rng.randint(3, cfg.vocab_size, (b, decode_len))

    # Prompt: left-padded, positions cumsum(mask) - 1.
    p_tok = np.zeros((b, p_width), np.int32)
    p_mask = np.zeros((b, p_width), bool)
    for i, p in enumerate(prompts):
        p_tok[i, p_width - len(p):], p_mask[i, p_width - len(p):] = p, True
    p_pos = np.maximum(np.cumsum(p_mask, 1) - 1, 0).astype(np.int32)
    cache = KVCache.init(cfg, b, 24)
    p_logits, cache = cached_step(model, jnp.asarray(p_tok), jnp.asarray(p_pos),
                                  jnp.asarray(p_mask), cache, None)
    # Chunk: right-padded, continues each row's positions; end advances by the real length.
    c_tok = np.zeros((b, c_width), np.int32)
    c_mask = np.zeros((b, c_width), bool)
    for i, c in enumerate(chunks):
        c_tok[i, :len(c)], c_mask[i, :len(c)] = c, True
    c_pos = (np.array(prompt_lens)[:, None] + np.arange(c_width)[None]).astype(np.int32)
    c_logits, cache = cached_step(model, jnp.asarray(c_tok), jnp.asarray(c_pos),
                                  jnp.asarray(c_mask), cache,
                                  jnp.asarray(chunk_lens, jnp.int32))
    np.testing.assert_array_equal(np.asarray(cache.end), p_width + np.array(chunk_lens))
    # Decode steps: the pad slots of the chunk get overwritten.
    d_logits = []
    for s in range(decode_len):
        pos = (np.array(prompt_lens) + np.array(chunk_lens) + s)[:, None].astype(np.int32)
        lg, cache = cached_step(model, jnp.asarray(decodes[:, s:s + 1]), jnp.asarray(pos),
                                jnp.ones((b, 1), bool), cache, None)
        d_logits.append(np.asarray(lg)[:, 0])
    worst = 0.0
    for i in range(b):
        seq = np.concatenate([prompts[i], chunks[i], decodes[i]])
        ref = hf_logits(hf, seq[None])[0]
        n_p, n_c = prompt_lens[i], chunk_lens[i]
        ours = np.concatenate([np.asarray(p_logits)[i, p_width - n_p:],
                               np.asarray(c_logits)[i, :n_c],
                               np.stack([d[i] for d in d_logits])])
        worst = max(worst, float(np.abs(ours - ref).max()))
    print(f"[per-row offsets] max |cached - HF(concatenation)| = {worst:.2e}")
    assert worst <= TOL


def test_inactive_row_leaves_cache_untouched(tiny):
    """token_mask False + advance 0: the row's valid slots, keys and end do not change."""
    cfg, model = tiny
    cache = KVCache.init(cfg, 2, 8)
    toks = jnp.asarray([[5, 6, 7], [8, 9, 10]])
    pos = jnp.tile(jnp.arange(3, dtype=jnp.int32), (2, 1))
    _, cache = cached_step(model, toks, pos, jnp.ones((2, 3), bool), cache, None)
    before = cache
    _, after = cached_step(model, jnp.asarray([[1], [2]]), jnp.asarray([[3], [3]]),
                           jnp.asarray([[True], [False]]), jax.tree.map(jnp.copy, before),
                           jnp.asarray([1, 0], jnp.int32))
    np.testing.assert_array_equal(np.asarray(after.end), [4, 3])
    np.testing.assert_array_equal(np.asarray(after.valid[1]), np.asarray(before.valid[1]))
    for k_after, k_before in zip(after.k, before.k):   # per layer [B, K, S, D]
        np.testing.assert_array_equal(np.asarray(k_after[1, :, :3]), np.asarray(k_before[1, :, :3]))
    assert bool(after.valid[0, 3]) and not bool(after.valid[1, 3])


def test_writes_past_capacity_are_dropped_not_clamped(tiny):
    cfg, model = tiny
    cache = KVCache.init(cfg, 1, 5)
    toks = jnp.asarray([[1, 2, 3, 4]])
    _, cache = cached_step(model, toks, jnp.asarray([[0, 1, 2, 3]]), jnp.ones((1, 4), bool),
                           cache, None)
    k_before = np.stack([np.asarray(k[0, :, :4]) for k in cache.k])
    _, cache = cached_step(model, toks, jnp.asarray([[4, 5, 6, 7]]), jnp.ones((1, 4), bool),
                           cache, None)
    np.testing.assert_array_equal(np.stack([np.asarray(k[0, :, :4]) for k in cache.k]), k_before)
    np.testing.assert_array_equal(np.asarray(cache.pos[0]), [0, 1, 2, 3, 4])
    assert int(cache.end[0]) == 8


def test_bf16_cache_and_specs(tiny):
    cfg, model = tiny
    cache = KVCache.init(cfg, 2, 6, jnp.bfloat16)
    assert len(cache.k) == cfg.num_layers == 2
    assert cache.k[0].shape == (2, 2, 6, 8) and cache.k[0].dtype == jnp.bfloat16
    toks = jnp.asarray([[1, 2], [3, 4]])
    pos = jnp.tile(jnp.arange(2, dtype=jnp.int32), (2, 1))
    logits, cache = cached_step(model, toks, pos, jnp.ones((2, 2), bool), cache, None)
    full = full_forward(model, toks, pos)
    assert all(k.dtype == jnp.bfloat16 for k in cache.k + cache.v)
    assert float(jnp.abs(logits - full).max()) < 0.05 * float(jnp.abs(full).max())
    specs = KVCache.partition_specs(cfg.num_layers)
    assert len(specs.k) == cfg.num_layers
    assert tuple(specs.k[0]) == (("data", "fsdp"), "tensor", None, None)


def test_query_chunked_prefill_into_cache(tiny):
    cfg, model = tiny
    chunked = Transformer(cfg.replace(attention_query_chunk=3), rngs=nnx.Rngs(0))
    tokens = jnp.asarray(np.random.RandomState(9).randint(0, cfg.vocab_size, (2, 8)))
    positions = jnp.tile(jnp.arange(8, dtype=jnp.int32), (2, 1))
    full = np.asarray(full_forward(model, tokens, positions))
    logits, _ = cached_step(chunked, tokens, positions, jnp.ones((2, 8), bool),
                            KVCache.init(cfg, 2, 12), None)
    assert np.abs(np.asarray(logits) - full).max() <= TOL


def test_attention_window_changes_nothing_but_the_slots_read(tiny):
    """A cached call that attends to the first W slots only (rows end below W) gives the same
    logits and the same cache as one that reads all S slots; slots past W are never read."""
    from searchr1_jax.sampling import attention_window
    cfg, model = tiny
    step = nnx.jit(lambda m, t, p, msk, c, w: m(t, p, msk, cache=c, window=w),
                   static_argnums=5)
    rng = np.random.RandomState(4)
    prompt = jnp.asarray(rng.randint(0, cfg.vocab_size, (2, 5)))
    pos = jnp.tile(jnp.arange(5, dtype=jnp.int32), (2, 1))
    mask = jnp.asarray([[True] * 5, [False, False, True, True, True]])
    outs = []
    for window in (None, 8, 6):   # 6 cuts the new tokens' slots 6..7: must differ
        _, cache = step(model, prompt, pos, mask, KVCache.init(cfg, 2, 64), None)
        # Garbage past the window must not matter: it is never valid, so never attended.
        cache = cache.replace(k=tuple(k.at[:, :, 40:].set(1e4) for k in cache.k))
        logits, cache = step(model, jnp.asarray([[7, 8], [9, 10]]), pos[:, :2] + 5,
                             jnp.ones((2, 2), bool), cache, window)
        outs.append((np.asarray(logits), cache))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert np.abs(outs[2][0] - outs[0][0]).max() > 1e-3
    for a, b in zip(jax.tree.leaves(outs[0][1]), jax.tree.leaves(outs[1][1])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert attention_window(64, 7) == 16 and attention_window(64, 17) == 24
    assert attention_window(64, 60) is None and attention_window(48, 40) is None
