"""KL estimators between the policy and the reference policy, per token.

With ``d = logp - ref_logp`` (log-probs of the sampled tokens):
  * ``kl``:  k1 = d
  * ``abs``: |d|
  * ``mse``: k2 = 0.5 d^2
  * ``low_var_kl``: k3 = exp(-d) - (-d) - 1 = exp(ref - logp) - (ref - logp) - 1, clamped to
    [-10, 10] (Schulman's unbiased low-variance estimator; veRL's GRPO KL loss).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from searchr1_jax.rl.masked import aggregate_loss
from searchr1_jax.rl.registry import Registry

Array = jax.Array

KL_ESTIMATORS: Registry = Registry("KL estimator")


@KL_ESTIMATORS.register("kl")
def kl_k1(logp: Array, ref_logp: Array) -> Array:
    """``logp - ref_logp``."""
    return logp - ref_logp


@KL_ESTIMATORS.register("abs")
def kl_abs(logp: Array, ref_logp: Array) -> Array:
    """``|logp - ref_logp|``."""
    return jnp.abs(logp - ref_logp)


@KL_ESTIMATORS.register("mse")
def kl_mse(logp: Array, ref_logp: Array) -> Array:
    """``0.5 * (logp - ref_logp)^2``."""
    return 0.5 * jnp.square(logp - ref_logp)


@KL_ESTIMATORS.register("low_var_kl")
def kl_low_var(logp: Array, ref_logp: Array) -> Array:
    """``clip(exp(ref - logp) - (ref - logp) - 1, -10, 10)``."""
    diff = ref_logp - logp
    return jnp.clip(jnp.exp(diff) - diff - 1.0, -10.0, 10.0)


def kl_penalty(logp: Array, ref_logp: Array, kind: str = "low_var_kl") -> Array:
    """Per-token KL estimate of the named ``kind`` (see the module docstring)."""
    return KL_ESTIMATORS.get(kind)(logp, ref_logp)


def kl_loss(logp: Array, ref_logp: Array, mask: Array, kind: str = "low_var_kl",
            loss_agg: str = "token_mean") -> Array:
    """GRPO's KL loss term ``agg_m(kl_penalty(logp, ref_logp, kind))`` (scaled by the caller).

    Masked entries are zeroed before the estimator so garbage there cannot overflow ``exp``.
    """
    live = mask != 0
    kld = kl_penalty(jnp.where(live, logp, 0.0), jnp.where(live, ref_logp, 0.0), kind)
    return aggregate_loss(kld, mask, loss_agg)
