"""Decoder logits vs transformers (PyTorch, fp32) on tiny random Qwen2/Llama checkpoints."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from searchr1_jax.models import ModelConfig, Transformer, load_hf_checkpoint
from searchr1_jax.models.transformer import attention_mask, rope_inv_freq
from searchr1_jax.sampling import left_pad as left_padded
from tests.models.hf_tiny import CASES, hf_logits, save_case

TOL = 1e-4


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(case, tmp_path):
    hf, path = save_case(tmp_path, case)
    model, cfg = load_hf_checkpoint(path)
    rng = np.random.RandomState(1)
    tokens = rng.randint(0, cfg.vocab_size, (2, 24)).astype(np.int32)
    # Positions past original_max_position_embeddings exercise the llama3 scaling bands.
    positions = (np.arange(24)[None, :] + np.array([[0], [90]])).astype(np.int32)
    ours, cache = model(jnp.asarray(tokens), jnp.asarray(positions))
    ref = hf_logits(hf, tokens, positions)
    diff = float(np.abs(np.asarray(ours) - ref).max())
    print(f"[{case}] max |logits - HF| = {diff:.2e} (|logits| max {np.abs(ref).max():.2f})")
    assert cache is None and ours.dtype == jnp.float32
    assert diff <= TOL, diff


@pytest.mark.parametrize("case", ["qwen2_gqa2_tied", "llama3_scaled_tied"])
def test_left_padded_batch_matches_unpadded_rows(case, tmp_path):
    hf, path = save_case(tmp_path, case)
    model, cfg = load_hf_checkpoint(path)
    rng = np.random.RandomState(2)
    rows = [rng.randint(3, cfg.vocab_size, n) for n in (13, 7, 2)]
    tokens, mask, positions = left_padded(rows)
    ours, _ = model(jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    ours = np.asarray(ours)
    assert np.isfinite(ours).all()  # pad queries see no key: still no NaN
    worst = 0.0
    for i, r in enumerate(rows):
        ref = hf_logits(hf, r[None])[0]
        worst = max(worst, float(np.abs(ours[i, -len(r):] - ref).max()))
    # The same batch through HF with attention_mask + position_ids (real tokens only).
    ref_batch = hf_logits(hf, tokens, positions, mask.astype(np.int64))
    batch_diff = float(np.abs(ours[mask] - ref_batch[mask]).max())
    print(f"[{case} left-padded] max diff vs unpadded rows {worst:.2e}, "
          f"vs HF padded batch {batch_diff:.2e}")
    assert worst <= TOL and batch_diff <= TOL


def test_right_padded_batch_ignores_pad_tokens(tmp_path):
    hf, path = save_case(tmp_path, "qwen2_gqa4_untied")
    model, cfg = load_hf_checkpoint(path)
    rng = np.random.RandomState(3)
    tokens = rng.randint(0, cfg.vocab_size, (2, 10)).astype(np.int32)
    mask = np.ones((2, 10), bool)
    mask[1, 6:] = False
    tokens_changed = tokens.copy()
    tokens_changed[1, 6:] = (tokens[1, 6:] + 5) % cfg.vocab_size  # pad contents must not matter
    positions = np.tile(np.arange(10, dtype=np.int32), (2, 1))
    a, _ = model(jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    b, _ = model(jnp.asarray(tokens_changed), jnp.asarray(positions), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(a)[1, :6], np.asarray(b)[1, :6])
    tokens_changed[1, 6:] = -1  # out-of-range pad ids are harmless too (no NaN leaks)
    c, _ = model(jnp.asarray(tokens_changed), jnp.asarray(positions), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(c)[1, :6], np.asarray(a)[1, :6], atol=1e-6)
    assert np.isfinite(np.asarray(c)).all()
    ref = hf_logits(hf, tokens[1:, :6])[0]
    assert np.abs(np.asarray(a)[1, :6] - ref).max() <= TOL


def test_attention_mask_rule():
    q_pos = jnp.array([[0, 1, 2]])
    k_pos = jnp.array([[0, 1, 2, 1]])
    k_valid = jnp.array([[True, False, True, True]])
    expected = np.array([[[1, 0, 0, 0], [1, 0, 0, 1], [1, 0, 1, 1]]], bool)
    np.testing.assert_array_equal(np.asarray(attention_mask(q_pos, k_pos, k_valid)), expected)


def test_llama3_inv_freq_matches_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from tests.models.hf_tiny import LLAMA3_SCALING
    hf_cfg = LlamaConfig(hidden_size=256, num_attention_heads=2, rope_theta=500000.0,
                         rope_scaling=dict(LLAMA3_SCALING), max_position_embeddings=512)
    ref, scale = ROPE_INIT_FUNCTIONS["llama3"](hf_cfg, "cpu")
    cfg = ModelConfig.from_hf_config({**hf_cfg.to_dict(), "architectures": ["LlamaForCausalLM"]})
    ours = rope_inv_freq(cfg)
    plain = rope_inv_freq(cfg.replace(rope_scaling=None))
    assert scale == 1.0
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-6)
    # All three bands present: kept, divided by the factor, and smoothed in between.
    ratio = plain / ours
    assert np.isclose(ratio, 1.0).any() and np.isclose(ratio, 8.0).any()
    assert ((ratio > 1.01) & (ratio < 7.99)).any()


def _tiny_cfg(**kw) -> ModelConfig:
    base = dict(family="qwen2", vocab_size=97, hidden_size=32, intermediate_size=48,
                num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, attention_bias=True)
    base.update(kw)
    return ModelConfig(**base)


def test_bf16_compute_close_to_fp32_and_logits_fp32():
    cfg = _tiny_cfg()
    m32 = Transformer(cfg, rngs=nnx.Rngs(0))
    m16 = Transformer(cfg.replace(dtype="bfloat16", param_dtype="bfloat16"), rngs=nnx.Rngs(0))
    nnx.update(m16, jax.tree.map(lambda x: x.astype(jnp.bfloat16), nnx.state(m32, nnx.Param)))
    assert m16.layers[0].attn.q_proj.kernel[...].dtype == jnp.bfloat16
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, 97, (2, 9)))
    positions = jnp.tile(jnp.arange(9), (2, 1))
    forward = nnx.jit(lambda m, t, p: m(t, p)[0])
    l32, l16 = forward(m32, tokens, positions), forward(m16, tokens, positions)
    assert l16.dtype == jnp.float32
    rel = float(jnp.abs(l16 - l32).max()) / float(jnp.abs(l32).max())
    assert 0 < rel < 0.03, rel  # bf16 rounding is visible but small


def test_remat_same_logits_and_grads():
    cfg = _tiny_cfg()
    plain, remat = Transformer(cfg, rngs=nnx.Rngs(0)), Transformer(cfg, rngs=nnx.Rngs(0))
    remat.cfg = cfg.replace(remat=True)  # how train/build.py switches it on after loading
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, 97, (2, 7)))
    positions = jnp.tile(jnp.arange(7), (2, 1))

    def loss(m):
        return jnp.mean(m(tokens, positions)[0] ** 2)

    g_plain = nnx.jit(nnx.grad(loss))(plain)
    g_remat = nnx.jit(nnx.grad(loss))(remat)
    diffs = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), g_plain, g_remat)
    assert max(jax.tree.leaves(diffs)) < 1e-5
    graphdef, state = nnx.split(remat)
    jaxpr = str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(tokens, positions)[0])(state))
    assert "checkpoint" in jaxpr or "remat" in jaxpr


def test_jit_forward_matches_eager():
    cfg = _tiny_cfg(tie_word_embeddings=True)
    model = Transformer(cfg, rngs=nnx.Rngs(1))
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, 97, (3, 5)))
    positions = jnp.tile(jnp.arange(5), (3, 1))
    eager, _ = model(tokens, positions)
    jitted, _ = nnx.jit(lambda m, t, p: m(t, p))(model, tokens, positions)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), atol=1e-5)


def test_query_chunked_attention_matches_hf_and_unchunked_grads(tmp_path):
    hf, path = save_case(tmp_path, "llama3_scaled_tied")
    chunked, cfg = load_hf_checkpoint(path, attention_query_chunk=5)  # 24 = 4 blocks + 4 padded
    whole, _ = load_hf_checkpoint(path, attention_query_chunk=0)
    rng = np.random.RandomState(8)
    tokens = jnp.asarray(rng.randint(0, cfg.vocab_size, (2, 24)), jnp.int32)
    positions = jnp.tile(jnp.arange(24, dtype=jnp.int32), (2, 1)) + 60
    mask = jnp.ones((2, 24), bool).at[1, :3].set(False)

    def loss(m):
        logits = m(tokens, positions, mask)[0]
        return jnp.mean(jax.nn.log_softmax(logits)[..., 7])

    out = np.asarray(nnx.jit(lambda m: m(tokens, positions, mask)[0])(chunked))
    ref = hf_logits(hf, np.asarray(tokens), np.asarray(positions), np.asarray(mask, np.int64))
    real = np.asarray(mask)
    diff = float(np.abs(out[real] - ref[real]).max())
    print(f"[query-chunked attention] max |logits - HF| = {diff:.2e}")
    assert diff <= TOL
    g_chunked = nnx.jit(nnx.grad(loss))(chunked)
    g_whole = nnx.jit(nnx.grad(loss))(whole)
    gdiff = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                                             g_chunked, g_whole)))
    assert gdiff < 1e-6, gdiff
    graphdef, state = nnx.split(chunked)
    jaxpr = str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(tokens, positions)[0])(state))
    assert "scan" in jaxpr  # the blocked path really ran
