"""PPO clipped policy loss and clipped value loss (Search-R1 / veRL conventions).

Inputs at mask-0 positions are replaced by neutral values before any arithmetic, so neither
the losses nor their gradients depend on them (retrieved tokens, padding).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from searchr1_jax.rl.masked import aggregate_loss, masked_mean

Array = jax.Array


def ppo_policy_loss(logp: Array, old_logp: Array, advantages: Array, mask: Array,
                    clip_ratio: float = 0.2, *, clip_ratio_high: float | None = None,
                    loss_agg: str = "token_mean") -> tuple[Array, dict[str, Array]]:
    """Clipped surrogate ``agg_m(max(-A r, -A clip(r, 1 - eps_lo, 1 + eps_hi)))``.

    ``r = exp(logp - old_logp)``; ``eps_lo = clip_ratio``, ``eps_hi = clip_ratio_high`` or
    ``clip_ratio``. Metrics (masked token means): ``clipfrac`` = fraction of tokens where the
    clipped term is the larger (``-A clip(r) > -A r``), ``approx_kl`` = ``mean(old_logp - logp)``
    (veRL ``ppo_kl``), ``pg_loss`` = the loss.
    """
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    live = mask != 0
    log_ratio = jnp.where(live, logp - old_logp, 0.0)
    adv = jnp.where(live, advantages, 0.0)
    ratio = jnp.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * jnp.clip(ratio, 1.0 - clip_ratio, 1.0 + high)
    loss = aggregate_loss(jnp.maximum(unclipped, clipped), mask, loss_agg)
    metrics = {
        "pg_loss": loss,
        "clipfrac": masked_mean((clipped > unclipped).astype(jnp.float32), mask),
        "approx_kl": masked_mean(-log_ratio, mask),
    }
    return loss, metrics


def value_loss(values: Array, old_values: Array, returns: Array, mask: Array,
               clip_range: float = 0.5, *, loss_agg: str = "token_mean"
               ) -> tuple[Array, dict[str, Array]]:
    """Clipped value loss ``0.5 * agg_m(max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2))``.

    Metrics: ``vf_loss``, ``vf_clipfrac`` = masked fraction where the clipped error is larger,
    ``vpred_mean`` = masked mean of ``v``.
    """
    live = mask != 0
    v = jnp.where(live, values, 0.0)
    v_old = jnp.where(live, old_values, 0.0)
    ret = jnp.where(live, returns, 0.0)
    v_clipped = jnp.clip(v, v_old - clip_range, v_old + clip_range)
    err_unclipped = jnp.square(v - ret)
    err_clipped = jnp.square(v_clipped - ret)
    loss = 0.5 * aggregate_loss(jnp.maximum(err_unclipped, err_clipped), mask, loss_agg)
    metrics = {
        "vf_loss": loss,
        "vf_clipfrac": masked_mean((err_clipped > err_unclipped).astype(jnp.float32), mask),
        "vpred_mean": masked_mean(v, mask),
    }
    return loss, metrics


def entropy_loss(entropy: Array, mask: Array, loss_agg: str = "token_mean") -> Array:
    """``agg_m(H_t)``: the entropy term the actor subtracts (times ``entropy_coef``)."""
    return aggregate_loss(jnp.where(mask != 0, entropy, 0.0), mask, loss_agg)
