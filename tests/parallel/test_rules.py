"""Partition rules: regex matching, stacked-layer padding and divisibility fitting."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from searchr1_jax import parallel
from searchr1_jax.parallel import DECODER_RULES


def test_first_matching_rule_wins():
    rules = ((r"attn/q_proj/kernel", P("fsdp", "tensor", None)), (r".*", P()))
    assert parallel.spec_for("layers/0/attn/q_proj/kernel", (64, 8, 16), rules) == P(
        "fsdp", "tensor", None)
    assert parallel.spec_for("layers/0/mlp/up/kernel", (64, 8), rules) == P(None, None)


def test_stacked_leading_axis_is_unsharded():
    rules = ((r"mlp/up_proj/kernel", P("fsdp", "tensor")),)
    assert parallel.spec_for("layers/mlp/up_proj/kernel", (4, 64, 128), rules) == P(
        None, "fsdp", "tensor")


def test_indivisible_axis_falls_back_to_replication():
    mesh = parallel.make_mesh(1, 4, 2)
    # 3 KV heads cannot be split over tensor=2; 64 rows split over fsdp=4 is fine.
    spec = parallel.spec_for("layers/0/attn/k_proj/kernel", (64, 3, 16), DECODER_RULES, mesh)
    assert spec == P("fsdp", None, None)


def test_tree_shardings_places_arrays():
    mesh = parallel.make_mesh(1, 4, 2)
    tree = {"layers": {"0": {"mlp": {"gate_proj": {"kernel": jnp.ones((64, 32))}}}},
            "final_norm": {"scale": jnp.ones((64,))}}
    shardings = parallel.tree_shardings(tree, mesh, DECODER_RULES)
    placed = jax.tree_util.tree_map(jax.device_put, tree, shardings)
    kernel = placed["layers"]["0"]["mlp"]["gate_proj"]["kernel"]
    assert {s.data.shape for s in kernel.addressable_shards} == {(16, 16)}
    assert placed["final_norm"]["scale"].sharding.is_fully_replicated
    np.testing.assert_array_equal(np.asarray(kernel), np.ones((64, 32)))
