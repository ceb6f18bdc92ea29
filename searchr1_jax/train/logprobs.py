"""Sequence layout and memory-aware per-token log-probs, entropies and values.

A training row is ``[prompt (left-padded, width P) | response (right-padded, width R)]``.
The hidden state at sequence index ``P - 1 + t`` predicts response token ``t``, so every
per-token quantity (log-prob, entropy, value) is read from ``hidden[:, P-1 : P+R-1]``.

The vocabulary is large (151k for Qwen2.5), so ``[B, R, V]`` fp32 logits are never
materialised for the whole response: the lm-head, log-softmax and entropy run over chunks of
``chunk`` time steps inside ``lax.map`` under ``jax.checkpoint``, so the backward pass also
re-creates one ``[B, chunk, V]`` block at a time.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from searchr1_jax import rl


def sequence_layout(prompt_tokens: jax.Array, prompt_mask: jax.Array,
                    response_tokens: jax.Array, response_mask: jax.Array
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Concatenates prompt and response into ``(tokens, positions, token_mask)`` of ``[B, P+R]``.

    positions: prompt ``cumsum(prompt_mask) - 1`` (clamped at 0 on left padding), response
    ``prompt_len + arange(R)``; token_mask is ``prompt_mask | response_mask > 0``.
    """
    prompt_mask = prompt_mask.astype(bool)
    prompt_len = prompt_mask.sum(-1).astype(jnp.int32)
    prompt_pos = jnp.maximum(jnp.cumsum(prompt_mask, -1) - 1, 0).astype(jnp.int32)
    r = response_tokens.shape[1]
    response_pos = prompt_len[:, None] + jnp.arange(r, dtype=jnp.int32)[None, :]
    tokens = jnp.concatenate([prompt_tokens, response_tokens], axis=1).astype(jnp.int32)
    positions = jnp.concatenate([prompt_pos, response_pos], axis=1)
    token_mask = jnp.concatenate([prompt_mask, response_mask > 0], axis=1)
    return tokens, positions, token_mask


def response_hidden(backbone: Callable, prompt_tokens, prompt_mask, response_tokens,
                    response_mask) -> jax.Array:
    """Runs ``backbone(tokens, positions, token_mask)`` and returns ``[B, R, H]`` hidden states.

    Row ``t`` of the result is the state that predicts response token ``t``.
    """
    tokens, positions, token_mask = sequence_layout(prompt_tokens, prompt_mask,
                                                    response_tokens, response_mask)
    hidden, _ = backbone(tokens, positions, token_mask=token_mask)
    p, r = prompt_tokens.shape[1], response_tokens.shape[1]
    return jax.lax.dynamic_slice_in_dim(hidden, p - 1, r, axis=1)


def _chunked(x: jax.Array, chunk: int) -> tuple[jax.Array, int]:
    """``[B, R, ...] -> [n, B, chunk, ...]`` (zero-padded in time); returns the pad."""
    r = x.shape[1]
    n = -(-r // chunk)
    pad = n * chunk - r
    if pad:
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape(x.shape[0], n, chunk, *x.shape[2:])
    return jnp.swapaxes(x, 0, 1), pad


def _unchunked(x: jax.Array, pad: int) -> jax.Array:
    """Inverse of ``_chunked`` for ``[n, B, chunk]`` arrays."""
    x = jnp.swapaxes(x, 0, 1)
    x = x.reshape(x.shape[0], -1)
    return x[:, : x.shape[1] - pad] if pad else x


def token_logprobs(lm_head: Callable, hidden: jax.Array, targets: jax.Array, *,
                   chunk: int = 128, with_entropy: bool = True, temperature: float = 1.0
                   ) -> tuple[jax.Array, jax.Array]:
    """Per-token ``log softmax(z)[target]`` and entropy of ``z = lm_head(h) / temperature``.

    logp_t = z_t[y_t] - logsumexp(z_t);  entropy_t = -sum_v p_tv log p_tv  (rl.token_logprobs,
    rl.entropy_from_logits), computed ``chunk`` time steps at a time. Returns fp32
    ``(logp, entropy)`` of shape ``[B, R]`` (entropy is zeros when not asked for).
    """
    chunk = max(1, min(int(chunk), hidden.shape[1]))
    h_chunks, pad = _chunked(hidden, chunk)
    t_chunks, _ = _chunked(targets.astype(jnp.int32), chunk)

    @jax.checkpoint  # backward re-creates the [B, chunk, V] logits instead of storing them
    def one_chunk(args):
        h, t = args
        logits = lm_head(h)
        logp = rl.token_logprobs(logits, t, temperature)
        ent = (rl.entropy_from_logits(logits, temperature) if with_entropy
               else jnp.zeros_like(logp))
        return logp, ent

    logp, ent = jax.lax.map(one_chunk, (h_chunks, t_chunks))
    return _unchunked(logp, pad), _unchunked(ent, pad)


def policy_logprobs(model, prompt_tokens, prompt_mask, response_tokens, response_mask, *,
                    chunk: int = 128, with_entropy: bool = True, temperature: float = 1.0
                    ) -> tuple[jax.Array, jax.Array]:
    """``(logp, entropy)`` ``[B, R]`` of the response tokens under ``model`` (a Transformer)."""
    hidden = response_hidden(model.backbone, prompt_tokens, prompt_mask, response_tokens,
                             response_mask)
    return token_logprobs(model.lm_head, hidden, response_tokens, chunk=chunk,
                          with_entropy=with_entropy, temperature=temperature)
