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
    # Gumbel-max: argmax(logits + Gumbel noise) ~ softmax(logits), what jax.random.categorical
    # computes, with first_argmax instead of argmax (4x faster on XLA:CPU at [16, 49k]).
    tokens = first_argmax(filtered + jax.random.gumbel(key, filtered.shape, filtered.dtype))
    chosen = jnp.take_along_axis(scaled, tokens[:, None], axis=-1)[:, 0]
    return tokens, chosen - jax.nn.logsumexp(scaled, axis=-1)


def first_argmax(x: jax.Array) -> jax.Array:
    """``argmax`` over the last axis (first index on ties) as two plain reductions.

    ``min(where(x == max(x), index, n))``: XLA:CPU runs ``argmax``'s variadic (value, index)
    reduce several times slower over a 49k vocabulary, ~2 ms of a ~33 ms decode step at batch 16.
    A row with a NaN matches nowhere and gets the last index, still a valid token id.
    """
    top = jnp.max(x, axis=-1, keepdims=True)
    index = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    last = x.shape[-1] - 1
    return jnp.min(jnp.where(x == top, index, last), axis=-1)


def greedy_tokens(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``first_argmax`` and its log-prob, ``log_softmax(logits)[argmax] = -log(sum(exp(logits
    - max)))``: no full ``log_softmax`` and gather."""
    top = jnp.max(logits, axis=-1, keepdims=True)
    return first_argmax(logits), -jnp.log(jnp.sum(jnp.exp(logits - top), axis=-1))
