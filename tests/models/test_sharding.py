"""Sharded import and forward on a fake 8-device CPU mesh (fsdp 4 x tensor 2) == unsharded."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from searchr1_jax.models import KVCache, load_hf_checkpoint
from searchr1_jax.parallel import DECODER_RULES, batch_sharding, make_mesh
from tests.models.hf_tiny import save_case


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    assert len(jax.devices()) == 8, "tests/conftest.py must give 8 fake CPU devices"
    tmp = tmp_path_factory.mktemp("sharding")
    _, path = save_case(tmp, "qwen2_gqa4_untied")
    mesh = make_mesh(1, 4, 2)
    plain, cfg = load_hf_checkpoint(path)
    sharded, _ = load_hf_checkpoint(path, mesh=mesh, rules=DECODER_RULES)
    return cfg, mesh, plain, sharded


def _spec(x) -> tuple:
    spec = tuple(x.sharding.spec)
    return spec + (None,) * (x.ndim - len(spec))


def test_params_are_really_sharded(loaded):
    cfg, mesh, plain, sharded = loaded
    q = sharded.layers[0].attn.q_proj.kernel[...]           # [H, N, D]
    assert _spec(q) == ("fsdp", "tensor", None)
    assert q.addressable_shards[0].data.shape == (cfg.hidden_size // 4, cfg.num_heads // 2,
                                                  cfg.head_dim)
    assert _spec(sharded.layers[1].attn.o_proj.kernel[...]) == ("tensor", None, "fsdp")
    assert _spec(sharded.layers[0].mlp.down_proj.kernel[...]) == ("tensor", "fsdp")
    assert _spec(sharded.layers[0].mlp.gate_proj.kernel[...]) == ("fsdp", "tensor")
    assert _spec(sharded.embed.embedding[...]) == ("tensor", "fsdp")
    assert _spec(sharded.lm_head_proj.kernel[...]) == ("fsdp", "tensor")
    assert _spec(sharded.final_norm.scale[...]) == (None,)
    for p_plain, p_sharded in zip(jax.tree.leaves(nnx.state(plain, nnx.Param)),
                                  jax.tree.leaves(nnx.state(sharded, nnx.Param))):
        np.testing.assert_array_equal(np.asarray(p_plain), np.asarray(p_sharded))


def test_sharded_forward_equals_unsharded(loaded):
    cfg, mesh, plain, sharded = loaded
    rng = np.random.RandomState(6)
    tokens = rng.randint(0, cfg.vocab_size, (4, 12)).astype(np.int32)
    positions = np.tile(np.arange(12, dtype=np.int32), (4, 1))
    mask = np.ones((4, 12), bool)
    mask[1, :5] = False  # a left-padded row
    forward = nnx.jit(lambda m, t, p, k: m(t, p, k)[0])
    ref = np.asarray(forward(plain, jnp.asarray(tokens), jnp.asarray(positions),
                             jnp.asarray(mask)))
    shard = batch_sharding(mesh)
    out = forward(sharded, *(jax.device_put(x, shard) for x in (tokens, positions, mask)))
    diff = float(np.abs(np.asarray(out) - ref).max())
    print(f"[sharded fsdp4 x tensor2] max |sharded - unsharded| = {diff:.2e}")
    assert diff <= 1e-5


def test_sharded_cached_decode_equals_unsharded(loaded):
    cfg, mesh, plain, sharded = loaded
    tokens = jnp.asarray(np.random.RandomState(7).randint(0, cfg.vocab_size, (4, 6)))
    positions = jnp.tile(jnp.arange(6, dtype=jnp.int32), (4, 1))
    step = nnx.jit(lambda m, t, p, c: m(t, p, cache=c))

    def run(model, cache):
        outs = []
        for s in (slice(0, 3), slice(3, 4), slice(4, 5), slice(5, 6)):
            logits, cache = step(model, tokens[:, s], positions[:, s], cache)
            outs.append(np.asarray(logits))
        return np.concatenate(outs, axis=1), cache

    ref, _ = run(plain, KVCache.init(cfg, 4, 8))
    specs = KVCache.partition_specs(cfg.num_layers)
    cache = jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)),
                         KVCache.init(cfg, 4, 8), specs, is_leaf=lambda x: isinstance(x, P))
    assert cache.k[0].addressable_shards[0].data.shape == (1, 1, 8, cfg.head_dim)
    out, cache = run(sharded, cache)
    assert float(np.abs(out - ref).max()) <= 1e-5
