"""Per-token quantities from logits ``[B, T, V]``: chosen-token log-probs and entropy.

Both compute in float32 whatever the logits dtype (bf16 log-softmax drifts; veRL asserts fp32).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _log_softmax(logits: Array, temperature: float) -> Array:
    """``(z - max z) - log sum exp(z - max z)`` in float32, ``z = logits / temperature``.

    Shifting first keeps full float32 precision when logits are large (``z - logsumexp(z)``
    would cancel two numbers of size ``max z``).
    """
    z = logits.astype(jnp.float32) / temperature
    shifted = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def token_logprobs(logits: Array, tokens: Array, temperature: float = 1.0) -> Array:
    """``log softmax(logits / temperature)[tokens]`` = ``z[y] - logsumexp(z)``; ``[B, T]``.

    ``logits[b, t]`` must be the distribution that produced ``tokens[b, t]`` (the caller
    shifts by one). ``temperature`` matches the sampler's (veRL divides logits by it too).
    """
    logp = _log_softmax(logits, temperature)
    return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy_from_logits(logits: Array, temperature: float = 1.0) -> Array:
    """``H = -sum_v p_v log p_v`` with ``p = softmax(logits / temperature)``; ``[B, T]``.

    Uses the max-shifted log-softmax (stable for large logits); vocabulary entries with
    probability 0 (``-inf`` logits) contribute 0 rather than NaN.
    """
    logp = _log_softmax(logits, temperature)
    p = jnp.exp(logp)
    return -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
