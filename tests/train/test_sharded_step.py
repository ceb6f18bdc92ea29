"""The update step on a fake 8-device mesh (fsdp 4 x tensor 2) equals the single-device step."""
import jax
import numpy as np

from searchr1_jax.parallel import DECODER_RULES, make_mesh
from searchr1_jax.train import step as step_lib
from searchr1_jax.train.state import TrainState, make_optimizer
from tests.train._tiny import (assert_adam_params_close, base_config, random_batch,
                               split_params, tiny_model)


def test_sharded_update_matches_single_device():
    assert len(jax.devices()) == 8, "tests/conftest.py sets 8 fake CPU devices"
    rl = base_config().rl
    rl.entropy_coef, rl.kl_coef = 0.01, 0.1
    graphdef, params, rest = split_params(tiny_model(6))
    batch = random_batch(6, rows=16)
    tx = make_optimizer(1e-3)
    loss_fn, total_fn = step_lib.actor_loss_fn(graphdef, rest, rl, chunk=4), step_lib.actor_total_fn(rl)

    single = step_lib.make_update_fn(loss_fn, total_fn, tx, 2)
    s1 = TrainState.create(jax.tree.map(lambda x: x.copy(), params), tx)
    logs1 = []
    for _ in range(2):
        s1, m = single(s1, batch)
        logs1.append(m)

    mesh = make_mesh(data=1, fsdp=4, tensor=2)
    state = TrainState.create(jax.tree.map(lambda x: x.copy(), params), tx)
    shardings = step_lib.state_shardings(state, mesh, DECODER_RULES)
    s8 = jax.device_put(state, shardings)
    q = s8.params["layers"][0]["attn"]["q_proj"]["kernel"][...]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (8, 2, 8)
    sharded = step_lib.make_update_fn(loss_fn, total_fn, tx, 2, mesh=mesh,
                                      state_shardings=shardings)
    b8 = jax.device_put(batch, step_lib.batch_shardings(batch, mesh))
    logs8 = []
    for _ in range(2):
        s8, m = sharded(s8, b8)
        logs8.append(m)
    q = s8.params["layers"][0]["attn"]["q_proj"]["kernel"][...]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)  # stays sharded
    for a, b in zip(logs1, logs8):
        for k in ("loss", "grad_norm", "actor/entropy", "actor/kl_loss", "actor/clipfrac"):
            np.testing.assert_allclose(float(b[k]), float(a[k]), rtol=1e-5, atol=1e-6, err_msg=k)
    assert_adam_params_close(jax.device_get(s8.params), s1.params, lr=1e-3)

    fwd1 = step_lib.make_forward_fn(graphdef, rest, 2, kind="logprobs")
    fwd8 = step_lib.make_forward_fn(graphdef, rest, 2, kind="logprobs", mesh=mesh)
    rows = (batch.prompt_tokens, batch.prompt_mask, batch.response_tokens, batch.response_mask)
    rows8 = (b8.prompt_tokens, b8.prompt_mask, b8.response_tokens, b8.response_mask)
    np.testing.assert_allclose(np.asarray(fwd8(s8.params, *rows8)),
                               np.asarray(fwd1(s1.params, *rows)), atol=2e-5)


def test_rows_that_do_not_split_over_the_mesh_are_replicated():
    """6 rows on fsdp=4: the batch falls back to replication (warned) and the step still
    equals the single-device step."""
    import pytest
    rl = base_config().rl
    graphdef, params, rest = split_params(tiny_model(6))
    batch = random_batch(6, rows=6)
    tx = make_optimizer(1e-3)
    loss_fn, total_fn = step_lib.actor_loss_fn(graphdef, rest, rl, chunk=4), step_lib.actor_total_fn(rl)
    s1, m1 = step_lib.make_update_fn(loss_fn, total_fn, tx, 3)(
        TrainState.create(jax.tree.map(lambda x: x.copy(), params), tx), batch)
    mesh = make_mesh(data=1, fsdp=4, tensor=2)
    state = TrainState.create(jax.tree.map(lambda x: x.copy(), params), tx)
    shardings = step_lib.state_shardings(state, mesh, DECODER_RULES)
    with pytest.warns(UserWarning, match="6 rows does not split over 4"):
        b8 = jax.device_put(batch, step_lib.batch_shardings(batch, mesh))
    assert b8.response_tokens.sharding.is_fully_replicated
    s8, m8 = step_lib.make_update_fn(loss_fn, total_fn, tx, 3, mesh=mesh,
                                     state_shardings=shardings)(jax.device_put(state, shardings), b8)
    np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-5, atol=1e-6)
    assert_adam_params_close(jax.device_get(s8.params), s1.params, lr=1e-3)
