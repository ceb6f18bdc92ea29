"""The PPO critic: values at response positions, exact accumulated value loss; bf16 compute
with fp32 master weights."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax.train import step as step_lib
from searchr1_jax.train.critic import make_critic
from searchr1_jax.train.state import TrainState, make_optimizer
from tests.train._tiny import base_config, random_batch, split_params, tiny_model, tree_max_abs_diff
from tests.train.test_logprobs import reference_positions


def reference_value_loss(critic, b, pos, clip):
    """0.5 * token-mean of max((v-R)^2, (clip(v, v_old +- c) - R)^2) over response_mask."""
    p = b.prompt_tokens.shape[1]
    tokens = jnp.concatenate([b.prompt_tokens, b.response_tokens], 1)
    mask = jnp.concatenate([b.prompt_mask, b.response_mask > 0], 1)
    hidden, _ = critic.model.backbone(tokens, pos, token_mask=mask)
    h = hidden[:, p - 1:p - 1 + b.response_tokens.shape[1]]
    v = (h @ critic.value_head.kernel[...] + critic.value_head.bias[...])[..., 0]
    vc = jnp.clip(v, b.old_values - clip, b.old_values + clip)
    err = jnp.maximum((v - b.returns) ** 2, (vc - b.returns) ** 2)
    m = b.response_mask
    return 0.5 * jnp.sum(jnp.where(m > 0, err, 0.0)) / jnp.sum(m)


def test_critic_loss_accumulation_is_exact():
    rl = base_config().rl
    actor = tiny_model(7, num_layers=1)
    critic = make_critic(actor, actor.cfg.hidden_size, seed=1)
    assert critic.model.lm_head_proj is None  # the critic keeps no [H, V] head
    graphdef, params, rest = split_params(critic)
    b = random_batch(7, rows=8)
    pos = reference_positions(b)
    acc = jax.jit(lambda p: step_lib.accumulate_grads(
        step_lib.critic_loss_fn(graphdef, rest, rl), step_lib.critic_total_fn(rl), p, b, 4))
    g, loss, metrics = acc(params)
    ref_l, ref_g = jax.jit(jax.value_and_grad(lambda p: reference_value_loss(
        nnx.merge(graphdef, p, rest), b, pos, rl.value_clip)))(params)
    assert abs(float(loss) - float(ref_l)) < 1e-6
    assert tree_max_abs_diff(g, ref_g) < 1e-6
    assert 0.0 <= float(metrics["critic/vf_clipfrac"]) <= 1.0
    # The critic starts from the actor's backbone but owns its buffers.
    a_emb = nnx.state(actor, nnx.Param)["embed"]["embedding"][...]
    c_emb = params["model"]["embed"]["embedding"][...]
    np.testing.assert_array_equal(np.asarray(a_emb), np.asarray(c_emb))
    assert a_emb.unsafe_buffer_pointer() != c_emb.unsafe_buffer_pointer()


def test_bf16_compute_keeps_fp32_master_weights():
    rl = base_config().rl
    model = tiny_model(8, num_layers=1, dtype="bfloat16", param_dtype="float32")
    graphdef, params, rest = split_params(model)
    tx = make_optimizer(1e-3)
    update = step_lib.make_update_fn(step_lib.actor_loss_fn(graphdef, rest, rl),
                                     step_lib.actor_total_fn(rl), tx, 2)
    state = TrainState.create(jax.tree.map(jnp.copy, params), tx)  # the update donates it
    state, m = update(state, random_batch(8, rows=8))
    assert float(m["update_skipped"]) == 0.0 and np.isfinite(float(m["loss"]))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert tree_max_abs_diff(state.params, params) > 0
