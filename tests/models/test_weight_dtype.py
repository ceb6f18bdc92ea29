"""bf16 serving weights under fp32 compute (``with_weight_dtype`` + ``matmul_dtype``)."""
import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from searchr1_jax.models import load_hf_checkpoint, with_weight_dtype
from searchr1_jax.models.transformer import matmul_dtype
from tests.models.hf_tiny import hf_logits, save_case


def test_matmul_dtype_takes_the_narrower():
    assert matmul_dtype(jnp.float32, jnp.bfloat16) == jnp.bfloat16
    assert matmul_dtype(jnp.bfloat16, jnp.float32) == jnp.bfloat16
    assert matmul_dtype(jnp.float32, jnp.float32) == jnp.float32


def test_only_weight_matrices_change_dtype(tmp_path):
    _, path = save_case(tmp_path, "llama_bias_untied")
    model, _ = load_hf_checkpoint(path)
    served = with_weight_dtype(model, "bfloat16")
    assert with_weight_dtype(model, None) is model
    assert with_weight_dtype(served, jnp.bfloat16) is served
    dtypes = {jax.tree_util.keystr(p): a.dtype
              for p, a in jax.tree_util.tree_leaves_with_path(nnx.state(served))}
    assert dtypes["['layers'][0]['mlp']['up_proj']['kernel'].value"] == jnp.bfloat16
    assert dtypes["['embed']['embedding'].value"] == jnp.bfloat16
    assert dtypes["['layers'][0]['input_norm']['scale'].value"] == jnp.float32  # rank 1
    assert dtypes["['layers'][0]['attn']['q_proj']['bias'].value"] == jnp.float32
    # The source model is not modified (the trainer keeps its fp32 master weights).
    assert model.layers[0].mlp.up_proj.kernel[...].dtype == jnp.float32


def test_bf16_weight_logits_track_a_bf16_rounded_reference(tmp_path):
    """Reference: transformers fp32 with every weight matrix rounded to bf16. Ours also rounds
    the matmul inputs (activations) to bf16, so the two agree to bf16 precision, and the
    compiled forward really runs bf16 x bf16 dots accumulating in fp32."""
    hf, path = save_case(tmp_path, "qwen2_gqa2_tied")
    model, cfg = load_hf_checkpoint(path)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.ndim >= 2:
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    tokens = np.random.RandomState(0).randint(0, cfg.vocab_size, (2, 16)).astype(np.int32)
    positions = np.tile(np.arange(16, dtype=np.int32), (2, 1))
    ref = hf_logits(hf, tokens, positions)
    served = with_weight_dtype(model, "bfloat16")
    fwd = lambda m, t, p: m(t, p)[0]
    ours = np.asarray(nnx.jit(fwd)(served, jnp.asarray(tokens), jnp.asarray(positions)))
    full = np.asarray(model(jnp.asarray(tokens), jnp.asarray(positions))[0])
    scale = np.abs(ref).max()
    err, shift = np.abs(ours - ref).max() / scale, np.abs(full - ref).max() / scale
    print(f"bf16 weights: max |ours - ref| / max|ref| = {err:.2e}; fp32 model vs ref {shift:.2e}")
    assert ours.dtype == np.float32 and np.isfinite(ours).all()
    assert err < 2e-2
    assert not np.array_equal(ours, full)          # it did not silently run in fp32
    hlo = jax.jit(lambda t, p: fwd(served, t, p)).lower(jnp.asarray(tokens),
                                                        jnp.asarray(positions)).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert any("bf16" in d and "-> tensor<" in d and "xf32>" in d.split("->")[-1] for d in dots)
