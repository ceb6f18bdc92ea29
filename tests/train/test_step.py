"""The sharded update step: exact micro-batch accumulation, masking, NaN guard, optimizer."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from searchr1_jax.train import step as step_lib
from searchr1_jax.train.state import TrainState, make_optimizer, warmup_schedule
from tests.train._tiny import (base_config, random_batch, split_params, tiny_model,
                               tree_max_abs_diff)
from tests.train.test_logprobs import direct_logprobs, reference_positions


def reference_actor_loss(model, b, rl, pos):
    """Search-R1's actor objective over the whole batch, written out by hand (DESIGN.md)."""
    logp, ent = direct_logprobs(model, b, pos=pos)
    gen = b.kl_mask  # random_batch: the generated-token mask
    mask = gen if rl.mask_retrieved_tokens else b.response_mask
    if rl.loss_agg == "token_mean":
        mean = lambda x: jnp.sum(jnp.where(mask > 0, x, 0.0)) / jnp.sum(mask)  # noqa: E731
    elif rl.loss_agg == "seq_mean_token_sum":  # Dr. GRPO: mean over all rows of token sums
        mean = lambda x: jnp.sum(jnp.where(mask > 0, x, 0.0)) / mask.shape[0]  # noqa: E731
    else:
        def mean(x):
            n = mask.sum(-1)
            rows = jnp.sum(jnp.where(mask > 0, x, 0.0), -1) / jnp.maximum(n, 1)
            return jnp.sum(jnp.where(n > 0, rows, 0.0)) / jnp.sum(n > 0)
    ratio = jnp.exp(logp - b.old_logprobs)
    a = b.advantages
    high = rl.clip_ratio_high or rl.clip_ratio  # DAPO clip-higher: 1 + eps_high above
    pg = jnp.maximum(-a * ratio, -a * jnp.clip(ratio, 1 - rl.clip_ratio, 1 + high))
    d = b.ref_logprobs - logp
    kl = jnp.clip(jnp.exp(d) - d - 1, -10, 10)
    return mean(pg) - rl.entropy_coef * mean(ent) + rl.kl_coef * mean(kl)


def _rl(loss_agg="token_mean", mask_retrieved=True, clip_high=0.0):
    rl = base_config().rl
    rl.loss_agg, rl.mask_retrieved_tokens = loss_agg, mask_retrieved
    rl.clip_ratio_high = clip_high
    rl.entropy_coef, rl.kl_coef = 0.01, 0.1  # large enough that every term shows in the grads
    return rl


@pytest.mark.parametrize("loss_agg,mask_retrieved,clip_high", [
    ("token_mean", True, 0.0), ("seq_mean_token_mean", True, 0.0),
    ("seq_mean_token_sum", True, 0.28),  # Dr. GRPO aggregation with DAPO's clip-higher
    pytest.param("token_mean", False, 0.0, marks=pytest.mark.slow)])
def test_micro_batch_accumulation_is_exact(loss_agg, mask_retrieved, clip_high):
    rl = _rl(loss_agg, mask_retrieved, clip_high)
    model = tiny_model(3, num_layers=1)
    graphdef, params, rest = split_params(model)
    b = random_batch(3, rows=16, mask_retrieved=mask_retrieved)
    loss_fn = step_lib.actor_loss_fn(graphdef, rest, rl, chunk=4)
    total_fn = step_lib.actor_total_fn(rl)
    acc = jax.jit(lambda p, b, n: step_lib.accumulate_grads(loss_fn, total_fn, p, b, n),
                  static_argnums=2)
    g4, l4, m4 = acc(params, b, 4)
    g1, l1, m1 = acc(params, b, 1)
    pos = reference_positions(b)
    ref_l, ref_g = jax.jit(jax.value_and_grad(
        lambda p: reference_actor_loss(nnx.merge(graphdef, p, rest), b, rl, pos)))(params)
    assert abs(float(l4) - float(ref_l)) < 1e-6 and abs(float(l1) - float(ref_l)) < 1e-6
    assert tree_max_abs_diff(g4, ref_g) < 1e-6
    assert tree_max_abs_diff(g4, g1) < 1e-6
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(ref_g)) > 1e-3
    for k in m1:  # metrics are exact mini-batch means too
        np.testing.assert_allclose(float(m4[k]), float(m1[k]), atol=1e-6, err_msg=k)


def test_masked_tokens_do_not_touch_the_update():
    """Garbage (even NaN) in old/ref log-probs and advantages on loss_mask=0 tokens changes
    nothing: the full train step gives bit-identical parameters."""
    rl = _rl()
    model = tiny_model(4)
    graphdef, params, rest = split_params(model)
    b = random_batch(4, rows=8)
    masked = (b.policy_mask == 0)
    assert bool(jnp.any(masked & (b.response_mask > 0)))  # there are retrieved tokens
    poisoned = b.replace(old_logprobs=jnp.where(masked, jnp.nan, b.old_logprobs),
                         ref_logprobs=jnp.where(masked, 1e4, b.ref_logprobs),
                         advantages=jnp.where(masked, -1e6, b.advantages))
    tx = make_optimizer(1e-3)
    update = step_lib.make_update_fn(step_lib.actor_loss_fn(graphdef, rest, rl, chunk=4),
                                     step_lib.actor_total_fn(rl), tx, 2, jit=False)
    update = jax.jit(update)
    s1, m1 = update(TrainState.create(params, tx), b)
    s2, m2 = update(TrainState.create(params, tx), poisoned)
    assert float(m1["update_skipped"]) == 0.0 and float(m2["update_skipped"]) == 0.0
    assert tree_max_abs_diff(s1.params, s2.params) == 0.0
    assert tree_max_abs_diff(s1.params, params) > 0.0


def test_nan_update_is_skipped_and_counted():
    rl = _rl()
    model = tiny_model(5)
    graphdef, params, rest = split_params(model)
    b = random_batch(5, rows=8)
    bad = b.replace(advantages=b.advantages.at[0, 0].set(jnp.nan))  # on a live token
    tx = make_optimizer(1e-3)
    update = jax.jit(step_lib.make_update_fn(step_lib.actor_loss_fn(graphdef, rest, rl),
                                             step_lib.actor_total_fn(rl), tx, 2, jit=False))
    state = TrainState.create(params, tx)
    state, m = update(state, bad)
    assert float(m["update_skipped"]) == 1.0 and int(state.skipped) == 1
    assert tree_max_abs_diff(state.params, params) == 0.0
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state.opt_state))
    state, m = update(state, b)  # a good batch afterwards still trains
    assert float(m["update_skipped"]) == 0.0 and int(state.skipped) == 1
    assert tree_max_abs_diff(state.params, params) > 0.0


def test_warmup_schedule_counts_rl_steps():
    sched = warmup_schedule(1e-6, num_warmup_steps=4, updates_per_step=2)
    lrs = [float(sched(jnp.asarray(u))) for u in range(12)]
    want = [0, 0, .25e-6, .25e-6, .5e-6, .5e-6, .75e-6, .75e-6, 1e-6, 1e-6, 1e-6, 1e-6]
    np.testing.assert_allclose(lrs, want, rtol=1e-6, atol=1e-13)
    assert float(warmup_schedule(1e-5, 0, 3)(jnp.asarray(0))) == pytest.approx(1e-5)


def test_optimizer_is_clipped_adamw():
    """One update equals a hand-written clip + AdamW step (bias-corrected first step)."""
    params = {"w": jnp.asarray([3.0, -4.0]), "b": jnp.asarray([0.5])}
    grads = {"w": jnp.asarray([30.0, 40.0]), "b": jnp.asarray([0.0])}  # norm 50 -> clipped
    tx = make_optimizer(0.1, weight_decay=0.01, grad_clip=1.0)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    g = np.array([30.0, 40.0]) / 50.0
    m, v = 0.1 * g, 0.001 * g ** 2
    step = (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
    want_w = np.array([3.0, -4.0]) - 0.1 * (step + 0.01 * np.array([3.0, -4.0]))
    np.testing.assert_allclose(np.asarray(new["w"]), want_w, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new["b"]), [0.5 - 0.1 * 0.01 * 0.5], rtol=1e-6)


def test_on_policy_shortcut_equals_recomputed_old_logprobs():
    """A single-update step may use stop_gradient(logp) as old log-probs: same loss and grads
    as feeding the separately computed old log-probs (veRL's recompute)."""
    rl = _rl()
    graphdef, params, rest = split_params(tiny_model(9, num_layers=1))
    b = random_batch(9, rows=8)
    fwd = step_lib.make_forward_fn(graphdef, rest, 2, kind="logprobs")
    b = b.replace(old_logprobs=fwd(params, b.prompt_tokens, b.prompt_mask, b.response_tokens,
                                   b.response_mask))
    total_fn = step_lib.actor_total_fn(rl)
    run = lambda on: jax.jit(lambda p: step_lib.accumulate_grads(  # noqa: E731
        step_lib.actor_loss_fn(graphdef, rest, rl, on_policy=on), total_fn, p, b, 2))(params)
    (g_on, l_on, m_on), (g_off, l_off, m_off) = run(True), run(False)
    assert abs(float(l_on) - float(l_off)) < 1e-6
    assert tree_max_abs_diff(g_on, g_off) < 1e-6
    assert abs(float(m_off["actor/approx_kl"])) < 1e-6 and float(m_on["actor/clipfrac"]) == 0.0
