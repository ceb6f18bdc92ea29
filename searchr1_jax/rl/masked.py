"""Masked statistics over ``[batch, time]`` arrays and the loss aggregations built on them.

Masks are float arrays (1 = the token counts, 0 = it does not). Positions with mask 0 never
influence a result: their values are replaced by 0 *before* any arithmetic, so NaN/inf there
cannot leak into sums or gradients. Empty masks give 0 instead of NaN (a padded micro-batch
must not poison a step); Search-R1/veRL would raise or return NaN there.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from searchr1_jax.rl.registry import Registry

Array = jax.Array

LOSS_AGGREGATIONS: Registry = Registry("loss aggregation")


def _masked_values(values: Array, mask: Array) -> Array:
    """``values * mask`` with masked-out entries forced to exactly 0 (NaN-safe)."""
    return jnp.where(mask != 0, values, 0.0) * mask


def safe_divide(num: Array, den: Array) -> Array:
    """``num / den`` where ``den != 0``, else 0; the gradient is finite everywhere."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def masked_sum(values: Array, mask: Array, axis: int | tuple[int, ...] | None = None) -> Array:
    """``sum(values * mask, axis)``."""
    return jnp.sum(_masked_values(values, mask), axis=axis)


def masked_mean(values: Array, mask: Array, axis: int | tuple[int, ...] | None = None) -> Array:
    """``sum(values * mask, axis) / sum(mask, axis)`` (0 where the mask is empty)."""
    return safe_divide(masked_sum(values, mask, axis), jnp.sum(mask, axis=axis))


def masked_var(values: Array, mask: Array, unbiased: bool = True) -> Array:
    """Variance over all masked entries: ``mean_m((v - mean_m(v))^2) * n / (n - 1)``.

    ``n = sum(mask)``; the Bessel factor ``n / (n - 1)`` applies when ``unbiased`` and
    ``n > 1`` (veRL raises for ``n <= 1``; here the biased value, 0 for one entry, is returned).
    """
    mean = masked_mean(values, mask)
    var = masked_mean(jnp.square(values - mean), mask)
    if unbiased:
        n = jnp.sum(mask)
        var = jnp.where(n > 1, var * safe_divide(n, n - 1), var)
    return var


def masked_whiten(values: Array, mask: Array, shift_mean: bool = True) -> Array:
    """``(v - mean_m(v)) / sqrt(var_m(v) + 1e-8)`` with the unbiased masked variance.

    With ``shift_mean=False`` the mean is added back: ``(v - mean) / sqrt(var + 1e-8) + mean``.
    Statistics run over every masked entry of the whole array (Search-R1 whitens over the
    batch). Entries with mask 0 are transformed too but never enter the statistics.
    """
    mean = masked_mean(values, mask)
    var = masked_var(values, mask)
    whitened = (values - mean) * jax.lax.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


@LOSS_AGGREGATIONS.register("token_mean")
def token_mean(loss: Array, mask: Array) -> Array:
    """``sum(loss * mask) / sum(mask)`` over the whole batch (Search-R1 / veRL default)."""
    return masked_mean(loss, mask)


@LOSS_AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(loss: Array, mask: Array) -> Array:
    """Mean over non-empty rows of each row's token mean: ``mean_b(sum_t l m / sum_t m)``."""
    per_row = masked_mean(loss, mask, axis=-1)
    has_tokens = (jnp.sum(mask, axis=-1) > 0).astype(per_row.dtype)
    return masked_mean(per_row, has_tokens)


@LOSS_AGGREGATIONS.register("seq_mean_token_sum")
def seq_mean_token_sum(loss: Array, mask: Array) -> Array:
    """Mean over rows of each row's token sum (Dr. GRPO style): ``mean_b(sum_t l m)``."""
    return jnp.mean(masked_sum(loss, mask, axis=-1))


def aggregate_loss(loss: Array, mask: Array, loss_agg: str = "token_mean") -> Array:
    """Reduces a ``[B, T]`` per-token loss to a scalar with the named aggregation."""
    return LOSS_AGGREGATIONS.get(loss_agg)(loss, mask)
