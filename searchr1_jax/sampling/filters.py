"""Next-token choice from logits: greedy, temperature, top-k, top-p (nucleus). Pure jnp.

All functions take ``logits float32[B, V]``. Filtered-out tokens get ``-inf`` so
``jax.random.categorical`` never draws them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def top_k_mask(logits: jax.Array, k: int) -> jax.Array:
    """Keeps logits ``>= the k-th largest`` of each row (ties at the k-th value are kept)."""
    kth = jax.lax.top_k(logits, k)[0][:, -1:]
    return jnp.where(logits >= kth, logits, NEG_INF)


def top_p_mask(logits: jax.Array, top_p: jax.Array) -> jax.Array:
    """Nucleus: keeps the smallest set of most likely tokens whose probability mass >= top_p.

    With probabilities sorted descending ``p_(1) >= p_(2) >= ...`` and ``c_j = sum_{i<j} p_(i)``
    (mass strictly before ``j``), token ``j`` is kept iff ``c_j < top_p``; the most likely token
    is always kept. Ties with the last kept probability are kept too.
    """
    probs = jax.nn.softmax(logits, axis=-1)
    sorted_probs = -jnp.sort(-probs, axis=-1)
    mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    keep_sorted = mass_before < top_p
    keep_sorted = keep_sorted.at[:, 0].set(True)
    # smallest kept probability per row: everything at or above it stays.
    threshold = jnp.min(jnp.where(keep_sorted, sorted_probs, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(probs >= threshold, logits, NEG_INF)


def sample_tokens(logits: jax.Array, key: jax.Array, *, greedy: bool, temperature: jax.Array,
                  top_k: int, top_p: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Next tokens ``int32[B]`` and their log-probs ``float32[B]``.

    The log-prob is ``log_softmax(logits / T)[token]``: under the temperature-scaled, unfiltered
    distribution (greedy: ``T = 1``), the value Search-R1's vLLM rollouts report when
    ``top_p = 1, top_k = 0`` (their setting). ``top_k = 0`` / ``top_p = None``: no filter.
    """
    logits = logits.astype(jnp.float32)
    if greedy:
        return greedy_tokens(logits)
    scaled = logits / temperature
    filtered = scaled
    if top_k > 0:
        filtered = top_k_mask(filtered, top_k)
    if top_p is not None:
        filtered = top_p_mask(filtered, top_p)
    tokens = jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)
    chosen = jnp.take_along_axis(scaled, tokens[:, None], axis=-1)[:, 0]
    return tokens, chosen - jax.nn.logsumexp(scaled, axis=-1)


def greedy_tokens(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``argmax`` (first index on ties) and its log-prob ``-log(sum(exp(logits - max)))``.

    Written as three plain reductions (max, masked min of the index, sum of exp): XLA:CPU
    runs ``argmax``'s variadic (value, index) reduce and a full ``log_softmax`` + gather over
    a 49k vocabulary 3.5x slower, about 2 ms of a 35 ms decode step at batch 16.
    """
    top = jnp.max(logits, axis=-1, keepdims=True)
    index = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
    tokens = jnp.min(jnp.where(logits == top, index, logits.shape[-1]), axis=-1)
    return tokens, -jnp.log(jnp.sum(jnp.exp(logits - top), axis=-1))
