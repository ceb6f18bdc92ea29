"""Actor and critic losses with exact micro-batch weighting.

A mini-batch of ``M`` rows is split into micro-batches for gradient accumulation. To make the
sum of micro-batch gradients equal the gradient of the whole mini-batch loss (not a mean of
means), every masked mean is computed with per-token weights ``w`` and rescaled:

  token_mean:            w_bt = m_bt                  D = sum_{mini-batch} m
  seq_mean_token_mean:   w_bt = m_bt / sum_t m_bt     D = #rows of the mini-batch with tokens
  seq_mean_token_sum:    w_bt = m_bt                  D = #rows of the mini-batch (Dr. GRPO)

  contribution(micro) = masked_mean(x, w_micro) * sum(w_micro) / D
                      = sum(x * w_micro) / D,   and   sum_micro contribution = mini-batch loss.

``masked_mean`` and the loss terms are ``searchr1_jax.rl``'s; this module only assembles them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from searchr1_jax import rl

LOSS_AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum")


def agg_weights(mask: jax.Array, loss_agg: str) -> jax.Array:
    """Per-token weights ``w`` whose weighted mean realises ``loss_agg`` (see module doc)."""
    mask = mask.astype(jnp.float32)
    if loss_agg in ("token_mean", "seq_mean_token_sum"):
        return mask
    if loss_agg == "seq_mean_token_mean":
        n = mask.sum(-1, keepdims=True)
        return mask / jnp.maximum(n, 1.0)
    raise ValueError(f"rl.loss_agg = {loss_agg!r}: must be one of {list(LOSS_AGGS)}")


def agg_total(mask: jax.Array, loss_agg: str) -> jax.Array:
    """The mini-batch denominator ``D`` of ``loss_agg`` (module doc): the summed weights, or
    the number of rows for ``seq_mean_token_sum`` (``rl.seq_mean_token_sum``: a mean over
    every row of each row's token sum; Dr. GRPO also divides by a constant generation budget,
    which only rescales the loss)."""
    if loss_agg == "seq_mean_token_sum":
        return jnp.asarray(mask.shape[0], jnp.float32)
    return agg_weights(mask, loss_agg).sum()


def micro_scale(w: jax.Array, total: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(safe_w, scale)``: ``scale = sum(w) / total``; an all-zero ``w`` is swapped for ones.

    The swap keeps ``masked_mean`` finite (and its gradient zero after scaling by 0) for a
    micro-batch with no masked tokens, e.g. all rows answered without generating anything.
    """
    w_sum = w.sum()
    safe_w = jnp.where(w_sum > 0, w, jnp.ones_like(w))
    scale = jnp.where(w_sum > 0, w_sum / jnp.maximum(total, 1e-12), 0.0)
    return safe_w, scale


def actor_loss(logp: jax.Array, entropy: jax.Array, old_logp: jax.Array,
               ref_logp: jax.Array | None, advantages: jax.Array, w: jax.Array,
               total: jax.Array, *, clip_ratio: float, entropy_coef: float,
               kl_coef: float, kl_kind: str, use_kl_loss: bool,
               clip_ratio_high: float | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Micro-batch contribution to the actor loss and its (already scaled) metrics.

    loss = ppo_policy_loss(logp, old_logp, A, clip 1 - clip_ratio .. 1 + clip_ratio_high)
           - entropy_coef * mean(entropy)
           [+ kl_coef * mean(kl_penalty(logp, ref_logp, kl_kind)) when use_kl_loss]
    (``clip_ratio_high`` None: symmetric clipping; DAPO's clip-higher sets it above
    ``clip_ratio``.) The KL loss uses the policy weights ``w``, as veRL averages it over the
    policy-loss mask.
    with every mean weighted by ``w`` and scaled by ``sum(w) / total`` (module doc).
    Metrics are scaled the same way, so summing them over micro-batches gives the mini-batch
    value of each weighted mean.
    """
    safe_w, scale = micro_scale(w, total)
    pg_loss, pg_metrics = rl.ppo_policy_loss(logp, old_logp, advantages, safe_w, clip_ratio,
                                             clip_ratio_high=clip_ratio_high)
    ent = rl.entropy_loss(entropy, safe_w)
    loss = pg_loss - entropy_coef * ent
    metrics = {f"actor/{k}": v for k, v in dict(pg_metrics).items()}
    metrics["actor/pg_loss"] = pg_loss
    metrics["actor/entropy"] = ent
    if use_kl_loss and ref_logp is not None:
        kl = rl.kl_loss(logp, ref_logp, safe_w, kl_kind)
        loss = loss + kl_coef * kl
        metrics["actor/kl_loss"] = kl
    metrics["actor/loss"] = loss
    return loss * scale, {k: jnp.asarray(v, jnp.float32) * scale for k, v in metrics.items()}


def critic_loss(values: jax.Array, old_values: jax.Array, returns: jax.Array, w: jax.Array,
                total: jax.Array, *, value_clip: float
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Micro-batch contribution to ``value_loss`` (0.5 * clipped squared error, rl.value_loss)."""
    safe_w, scale = micro_scale(w, total)
    vf_loss, vf_metrics = rl.value_loss(values, old_values, returns, safe_w, value_clip)
    metrics = {f"critic/{k}": v for k, v in dict(vf_metrics).items()}
    metrics["critic/vf_loss"] = vf_loss
    return vf_loss * scale, {k: jnp.asarray(v, jnp.float32) * scale for k, v in metrics.items()}
