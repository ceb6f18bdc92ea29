"""Jitted, sharded mini-batch update with exact gradient accumulation and a NaN guard.

One call of the update consumes a mini-batch of ``M`` rows (sharded over the mesh's
``(data, fsdp)`` axes) and applies one optimizer update:

  1. ``total = sum(agg_weights(mask))`` over the whole mini-batch (losses.py);
  2. rows are dealt into ``n_micro`` strided micro-batches (row ``i`` -> micro ``i % n_micro``,
     which keeps each device's rows on that device) and ``lax.scan`` sums the gradients of the
     micro-batch contributions ``sum(x * w_micro) / total`` -- exactly the mini-batch gradient;
  3. ``clip_by_global_norm`` + AdamW (state.py);
  4. if the loss or the gradient norm is not finite the update is dropped (params and optimizer
     state are kept) and ``TrainState.skipped`` is incremented.
"""
from __future__ import annotations

import warnings

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from searchr1_jax.parallel import BATCH_AXES, tree_shardings
from searchr1_jax.train import algorithms, losses
from searchr1_jax.train.logprobs import policy_logprobs, response_hidden
from searchr1_jax.train.metrics import keep_if_finite
from searchr1_jax.train.state import TrainBatch, TrainState

LossFn = Callable[[Any, TrainBatch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def split_micro(x: jax.Array, n_micro: int) -> jax.Array:
    """``[M, ...] -> [n_micro, M // n_micro, ...]`` with row ``i`` in micro-batch ``i % n_micro``."""
    if x.shape[0] % n_micro:
        raise ValueError(f"mini-batch of {x.shape[0]} rows does not split into {n_micro} "
                         "micro-batches (train.micro_batch_size must divide it)")
    return jnp.swapaxes(x.reshape(x.shape[0] // n_micro, n_micro, *x.shape[1:]), 0, 1)


def _constrain_rows(tree: Any, mesh: Mesh | None) -> Any:
    """Keeps a micro-batch's rows sharded over (data, fsdp) when they divide evenly."""
    if mesh is None:
        return tree
    n = mesh.shape["data"] * mesh.shape["fsdp"]

    def one(x):
        if x.ndim == 0 or x.shape[0] % n:
            return x
        return jax.lax.with_sharding_constraint(
            x, NamedSharding(mesh, P(BATCH_AXES, *([None] * (x.ndim - 1)))))
    return jax.tree.map(one, tree)


def accumulate_grads(loss_fn: LossFn, total_fn: Callable[[TrainBatch], jax.Array], params: Any,
                     batch: TrainBatch, n_micro: int, mesh: Mesh | None = None
                     ) -> tuple[Any, jax.Array, dict[str, jax.Array]]:
    """``(grads, loss, metrics)`` of the whole mini-batch, summed over ``n_micro`` micro-batches.

    ``loss_fn(params, micro_batch, total) -> (contribution, scaled metrics)`` with
    ``total = total_fn(batch)``; gradients accumulate in fp32 and are cast to the params' dtype.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    total = total_fn(batch)
    micro = jax.tree.map(lambda x: split_micro(x, n_micro), batch)
    first = jax.tree.map(lambda x: x[0], micro)
    (_, metric_shapes), _ = jax.eval_shape(grad_fn, params, first, total)
    init = (jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
            jnp.zeros((), jnp.float32),
            jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), metric_shapes))

    def body(acc, mb):
        g_acc, l_acc, m_acc = acc
        mb = _constrain_rows(mb, mesh)
        (loss, metrics), grads = grad_fn(params, mb, total)
        g_acc = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), g_acc, grads)
        m_acc = jax.tree.map(lambda a, m: a + m, m_acc, metrics)
        return (g_acc, l_acc + loss, m_acc), None

    (grads, loss, metrics), _ = jax.lax.scan(body, init, micro)
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    return grads, loss, metrics


def apply_update(state: TrainState, grads: Any, loss: jax.Array,
                 tx: optax.GradientTransformation) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update, dropped (state kept, ``skipped += 1``) on a non-finite loss/grad."""
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new_state = TrainState(
        step=state.step + 1,
        params=keep_if_finite(finite, params, state.params),
        opt_state=keep_if_finite(finite, opt_state, state.opt_state),
        skipped=state.skipped + (~finite).astype(jnp.int32))
    return new_state, {"grad_norm": grad_norm, "update_skipped": (~finite).astype(jnp.float32)}


def make_update_fn(loss_fn: LossFn, total_fn: Callable[[TrainBatch], jax.Array],
                   tx: optax.GradientTransformation, n_micro: int, *,
                   mesh: Mesh | None = None, state_shardings: Any = None, jit: bool = True
                   ) -> Callable[[TrainState, TrainBatch], tuple[TrainState, dict]]:
    """Builds ``update(state, batch) -> (state, metrics)`` (see module doc).

    Metrics: the loss function's (summed over micro-batches), ``loss``, ``grad_norm`` (before
    clipping) and ``update_skipped`` (1.0 if the update was dropped).
    """

    def update(state: TrainState, batch: TrainBatch):
        grads, loss, metrics = accumulate_grads(loss_fn, total_fn, state.params, batch, n_micro,
                                                mesh)
        state, upd_metrics = apply_update(state, grads, loss, tx)
        return state, dict(metrics, loss=loss, **upd_metrics)

    if not jit:
        return update
    if state_shardings is not None:
        return jax.jit(update, donate_argnums=0, out_shardings=(state_shardings, None))
    return jax.jit(update, donate_argnums=0)


def state_shardings(state: TrainState, mesh: Mesh, rules) -> Any:
    """NamedShardings for a whole ``TrainState`` (params and Adam moments follow ``rules``)."""
    return tree_shardings(state, mesh, rules)


def batch_shardings(batch: TrainBatch, mesh: Mesh) -> Any:
    """Every ``[B, ...]`` field sharded over (data, fsdp) on its row axis.

    A row count that the (data x fsdp) devices do not divide is replicated instead (with a
    warning): correct, only slower, like the partition rules' fallback for odd dimensions.
    """
    n = mesh.shape["data"] * mesh.shape["fsdp"]

    def one(x):
        if x.ndim and x.shape[0] % n == 0:
            return NamedSharding(mesh, P(BATCH_AXES, *([None] * (x.ndim - 1))))
        if x.ndim:
            warnings.warn(f"batch of {x.shape[0]} rows does not split over {n} (data x fsdp) "
                          "devices: replicated; make the rows per step a multiple of it")
        return NamedSharding(mesh, P())
    return jax.tree.map(one, batch)


# ---------------------------------------------------------------- actor / critic loss functions
# The masks come resolved in the batch (``policy_mask``, ``critic_mask``: prepare.train_batch);
# the loss functions only choose the aggregation and the KL term's place.
def actor_loss_fn(graphdef: nnx.GraphDef, rest: Any, rl_cfg, *, chunk: int = 128,
                  temperature: float = 1.0, on_policy: bool = False) -> LossFn:
    """``loss_fn`` for ``make_update_fn``: the actor's PPO-clip + entropy (+ KL loss) objective.

    ``on_policy``: the step makes a single update, so the "old" policy is the current one and
    ``old_logp = stop_gradient(logp)`` (ratio 1) replaces ``batch.old_logprobs``; this saves
    the separate old-log-prob forward pass and is the same objective value and gradient.
    ``rl.clip_ratio_high > 0`` clips the ratio at ``1 + clip_ratio_high`` above (DAPO).
    """
    kl_in_loss = algorithms.resolve(rl_cfg).kl == "loss"
    high = float(rl_cfg.clip_ratio_high) or None

    def loss_fn(params, mb: TrainBatch, total):
        model = nnx.merge(graphdef, params, rest)
        logp, entropy = policy_logprobs(model, mb.prompt_tokens, mb.prompt_mask,
                                        mb.response_tokens, mb.response_mask, chunk=chunk,
                                        with_entropy=True, temperature=temperature)
        old_logp = jax.lax.stop_gradient(logp) if on_policy else mb.old_logprobs
        w = losses.agg_weights(mb.policy_mask, rl_cfg.loss_agg)
        return losses.actor_loss(
            logp, entropy, old_logp, mb.ref_logprobs, mb.advantages, w, total,
            clip_ratio=rl_cfg.clip_ratio, clip_ratio_high=high,
            entropy_coef=rl_cfg.entropy_coef, kl_coef=rl_cfg.kl_coef, kl_kind=rl_cfg.kl_kind,
            use_kl_loss=kl_in_loss)
    return loss_fn


def actor_total_fn(rl_cfg) -> Callable[[TrainBatch], jax.Array]:
    def total_fn(batch: TrainBatch):
        return losses.agg_total(batch.policy_mask, rl_cfg.loss_agg)
    return total_fn


def critic_loss_fn(graphdef: nnx.GraphDef, rest: Any, rl_cfg) -> LossFn:
    """``loss_fn`` for the PPO critic's clipped value loss over ``batch.critic_mask``."""

    def loss_fn(params, mb: TrainBatch, total):
        critic = nnx.merge(graphdef, params, rest)
        values = critic.values(mb.prompt_tokens, mb.prompt_mask, mb.response_tokens,
                               mb.response_mask)
        w = losses.agg_weights(mb.critic_mask, rl_cfg.loss_agg)
        return losses.critic_loss(values, mb.old_values, mb.returns, w, total,
                                  value_clip=rl_cfg.value_clip)
    return loss_fn


def critic_total_fn(rl_cfg) -> Callable[[TrainBatch], jax.Array]:
    def total_fn(batch: TrainBatch):
        return losses.agg_total(batch.critic_mask, rl_cfg.loss_agg)
    return total_fn


# ---------------------------------------------------------------- forward-only passes
def make_forward_fn(graphdef: nnx.GraphDef, rest: Any, n_micro: int, *, kind: str,
                    chunk: int = 128, temperature: float = 1.0, mesh: Mesh | None = None,
                    jit: bool = True):
    """``fn(params, prompt_tokens, prompt_mask, response_tokens, response_mask) -> [B, R]``.

    kind ``"logprobs"`` (a Transformer's response log-probs) or ``"values"`` (a Critic's
    values). Runs ``n_micro`` micro-batches one after another (``lax.scan``) to bound memory;
    parameters are frozen (``stop_gradient``), as for the reference model and old log-probs.
    """
    if kind not in ("logprobs", "values"):
        raise ValueError(f"kind = {kind!r}: must be 'logprobs' or 'values'")

    def fn(params, prompt_tokens, prompt_mask, response_tokens, response_mask):
        params = jax.lax.stop_gradient(params)
        rows = (prompt_tokens, prompt_mask, response_tokens, response_mask)
        micro = jax.tree.map(lambda x: split_micro(x, n_micro), rows)

        def one(carried, mb):
            # The params ride in the scan carry and the module is merged inside the body:
            # nnx transforms inside the model (remat) refuse variables of an outer trace.
            module = nnx.merge(graphdef, carried, rest)
            mb = _constrain_rows(mb, mesh)
            if kind == "values":
                return carried, module.values(*mb)
            return carried, policy_logprobs(module, *mb, chunk=chunk, with_entropy=False,
                                            temperature=temperature)[0]
        _, out = jax.lax.scan(one, params, micro)  # [n_micro, M/n_micro, R]
        return jnp.swapaxes(out, 0, 1).reshape(prompt_tokens.shape[0], -1)
    return jax.jit(fn) if jit else fn


__all__ = ["split_micro", "accumulate_grads", "apply_update", "make_update_fn", "state_shardings", "batch_shardings",
           "actor_loss_fn", "actor_total_fn", "critic_loss_fn", "critic_total_fn",
           "make_forward_fn", "response_hidden"]
