"""Advantage estimators (GAE for PPO, group-normalised scores for GRPO) and PPO token rewards.

Shapes: ``B`` responses, ``T`` response tokens; masks are float ``[B, T]``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from searchr1_jax.rl.kl import kl_penalty
from searchr1_jax.rl.masked import masked_mean, masked_whiten, safe_divide
from searchr1_jax.rl.registry import Registry

Array = jax.Array

ADVANTAGE_ESTIMATORS: Registry = Registry("advantage estimator")


def last_token_index(mask: Array) -> Array:
    """``int32[B]``: index of the last position with ``mask != 0`` per row (0 for empty rows)."""
    t = mask.shape[-1]
    positions = jnp.arange(t, dtype=jnp.int32)
    return jnp.max(jnp.where(mask != 0, positions, 0), axis=-1)


def scores_at_last_token(scores: Array, mask: Array) -> Array:
    """``[B, T]`` zeros with ``scores[b]`` on row ``b``'s last real token (outcome reward).

    Search-R1 puts the score at ``response_mask.sum() - 1``; with a right-padded response mask
    (generated + retrieved tokens) that is the last real token, as here. Empty rows get nothing.
    """
    t = mask.shape[-1]
    onehot = jax.nn.one_hot(last_token_index(mask), t, dtype=jnp.float32)
    has_tokens = (jnp.sum(mask, axis=-1) > 0).astype(jnp.float32)
    return onehot * (scores.astype(jnp.float32) * has_tokens)[:, None]


def ppo_token_rewards(scores: Array, old_logp: Array, ref_logp: Array, response_mask: Array,
                      kl_mask: Array, kl_coef: float, kl_kind: str = "kl"
                      ) -> tuple[Array, dict[str, Array]]:
    """Search-R1's PPO reward ``r_t = score [t = last] - kl_coef kl(old_t, ref_t) kl_mask_t``.

    ``kl`` is ``kl_penalty(old_logp, ref_logp, kl_kind)`` (k1 ``old - ref`` by default). The
    score sits on the last token of ``response_mask``; the KL term uses ``kl_mask`` (the loss
    mask: Search-R1 applies it with its ``info_mask``, i.e. generated tokens only). Metrics:
    ``kl`` = mean over rows of each row's masked mean KL (veRL's ``critic/kl``).
    """
    kld = jnp.where(kl_mask != 0, kl_penalty(old_logp, ref_logp, kl_kind) * kl_mask, 0.0)
    rewards = scores_at_last_token(scores, response_mask) - kl_coef * kld
    metrics = {"kl": jnp.mean(masked_mean(kld, kl_mask, axis=-1)),
               "kl_coef": jnp.asarray(kl_coef, jnp.float32)}
    return rewards, metrics


@ADVANTAGE_ESTIMATORS.register("gae")
def gae_advantages(rewards: Array, values: Array, mask: Array, gamma: float = 1.0,
                   lam: float = 1.0, whiten: bool = True) -> tuple[Array, Array]:
    """Generalised advantage estimation by a reverse ``lax.scan`` over time.

    For real tokens (mask 1), scanning t = T-1 .. 0 with ``V_next`` = value of the next real
    token (0 past the end) and ``A_next`` its advantage::

        delta_t = r_t + gamma * V_next - V_t
        A_t     = delta_t + gamma * lam * A_next
        R_t     = A_t + V_t          (returns use the raw, unwhitened advantages)

    Masked tokens are skipped (they carry ``V_next``/``A_next`` through unchanged) and get
    ``A = R = 0``. Finally (``whiten``) ``A = masked_whiten(A, mask)`` over the whole batch.

    Search-R1 (veRL ``compute_gae_advantage_return``) runs the recursion over every position
    and uses the mask only for whitening; its critic zeroes values on padding, so for a
    right-padded mask (its response mask) both give the same numbers. A mask with holes
    (``rl.mask_retrieved_in_critic``) skips observation tokens, like later veRL multi-turn GAE.
    """
    live = mask != 0
    r = jnp.where(live, rewards, 0.0).astype(jnp.float32)
    v = jnp.where(live, values, 0.0).astype(jnp.float32)

    def step(carry, xs):
        next_value, next_adv = carry
        r_t, v_t, live_t = xs
        adv_t = r_t + gamma * next_value - v_t + gamma * lam * next_adv
        carry = (jnp.where(live_t, v_t, next_value), jnp.where(live_t, adv_t, next_adv))
        return carry, jnp.where(live_t, adv_t, 0.0)

    b = rewards.shape[0]
    init = (jnp.zeros((b,), jnp.float32), jnp.zeros((b,), jnp.float32))
    _, adv_rev = jax.lax.scan(step, init, (r.T, v.T, live.T), reverse=True)
    advantages = adv_rev.T
    returns = jnp.where(live, advantages + v, 0.0)
    if whiten:
        advantages = jnp.where(live, masked_whiten(advantages, mask), 0.0)
    return advantages, returns


@ADVANTAGE_ESTIMATORS.register("grpo")
def grpo_advantages(scores: Array, group_ids: Array, mask: Array, eps: float = 1e-6) -> Array:
    """Outcome advantage standardised within each prompt's group, broadcast over tokens.

    ``A_b = (s_b - mean_g) / (std_g + eps)`` for ``b`` in group ``g``, where ``std_g`` is the
    unbiased (Bessel) standard deviation; a group of one uses mean 0 and std 1 (veRL). The
    result is ``A_b * mask[b, t]``. ``scores``: ``[B]`` (or ``[B, T]`` token rewards, summed
    over time); ``group_ids``: any int ``[B]`` (rows with equal ids form a group). Ids are
    mapped to ``[0, B)`` with ``jnp.unique(size=B)`` so ``segment_sum`` has the static
    ``num_segments = B`` under jit.
    """
    if scores.ndim == 2:
        scores = jnp.sum(scores, axis=-1)
    scores = scores.astype(jnp.float32)
    b = scores.shape[0]
    _, seg = jnp.unique(jnp.asarray(group_ids), size=b, return_inverse=True)
    seg = seg.reshape(b)
    count = jax.ops.segment_sum(jnp.ones_like(scores), seg, num_segments=b)
    mean = safe_divide(jax.ops.segment_sum(scores, seg, num_segments=b), count)
    sq_dev = jax.ops.segment_sum(jnp.square(scores - mean[seg]), seg, num_segments=b)
    std = jnp.sqrt(safe_divide(sq_dev, count - 1))
    several = count[seg] > 1
    row_mean = jnp.where(several, mean[seg], 0.0)
    row_std = jnp.where(several, std[seg], 1.0)
    advantages = (scores - row_mean) / (row_std + eps)
    return jnp.where(mask != 0, advantages[:, None] * mask, 0.0)
