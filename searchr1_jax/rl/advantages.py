"""Advantage estimators and PPO token rewards.

Shapes: ``B`` responses, ``T`` response tokens; masks are float ``[B, T]``.

The public functions keep their own signatures (``gae_advantages(rewards, values, mask, ..)``,
``grpo_advantages(scores, group_ids, mask)``, ...). ``ADVANTAGE_ESTIMATORS`` maps each name to
an adapter with one signature, so the trainer calls any of them the same way::

    adv, returns = ADVANTAGE_ESTIMATORS.get(name)(token_rewards, mask, values=..,
                                                  group_ids=.., gamma=.., lam=.., whiten_mask=..)

``returns`` is what a critic regresses on (GAE) and equals ``adv`` for critic-free estimators
(veRL returns ``(scores, scores)`` there too). Names: ``gae``, ``grpo``, ``drgrpo``, ``rloo``,
``reinforce_pp``.
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


def gae_advantages(rewards: Array, values: Array, mask: Array, gamma: float = 1.0,
                   lam: float = 1.0, whiten: bool = True, whiten_mask: Array | None = None
                   ) -> tuple[Array, Array]:
    """Generalised advantage estimation by a reverse ``lax.scan`` over time.

    For real tokens (mask 1), scanning t = T-1 .. 0 with ``V_next`` = value of the next real
    token (0 past the end) and ``A_next`` its advantage::

        delta_t = r_t + gamma * V_next - V_t
        A_t     = delta_t + gamma * lam * A_next
        R_t     = A_t + V_t          (returns use the raw, unwhitened advantages)

    Masked tokens are skipped (they carry ``V_next``/``A_next`` through unchanged) and get
    ``A = R = 0``. Finally (``whiten``) ``A = masked_whiten(A, whiten_mask)`` over the whole
    batch (``whiten_mask`` defaults to ``mask``; Search-R1's shifted critic mask recurses one
    position further than it whitens: ``rl.shifted_critic_mask``).

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
        stats = mask if whiten_mask is None else whiten_mask
        advantages = jnp.where(live, masked_whiten(advantages, stats), 0.0)
    return advantages, returns


def grpo_advantages(scores: Array, group_ids: Array, mask: Array, eps: float = 1e-6) -> Array:
    """Outcome advantage standardised within each prompt's group, broadcast over tokens.

    ``A_b = (s_b - mean_g) / (std_g + eps)`` for ``b`` in group ``g``, where ``std_g`` is the
    unbiased (Bessel) standard deviation; a group of one uses mean 0 and std 1 (veRL). The
    result is ``A_b * mask[b, t]``. ``scores``: ``[B]`` (or ``[B, T]`` token rewards, summed
    over time); ``group_ids``: any int ``[B]`` (rows with equal ids form a group). Ids are
    mapped to ``[0, B)`` with ``jnp.unique(size=B)`` so ``segment_sum`` has the static
    ``num_segments = B`` under jit.
    """
    scores = _outcome(scores)
    count, mean, std = _group_stats(scores, group_ids)
    several = count > 1
    row_mean = jnp.where(several, mean, 0.0)
    row_std = jnp.where(several, std, 1.0)
    return _broadcast((scores - row_mean) / (row_std + eps), mask)


def drgrpo_advantages(scores: Array, group_ids: Array, mask: Array) -> Array:
    """Dr. GRPO's group advantage ``A_b = s_b - mean_g``: no division by the group's std.

    Liu et al. 2025 ("Understanding R1-Zero-like training"): dividing by ``std_g`` weights
    questions that are nearly always right or wrong up. A group of one uses mean 0 (as
    ``grpo_advantages``; veRL's ``norm_adv_by_std_in_grpo=False``). Pair it with
    ``rl.loss_agg = "seq_mean_token_sum"`` for Dr. GRPO's length-unbiased aggregation.
    """
    scores = _outcome(scores)
    count, mean, _ = _group_stats(scores, group_ids)
    return _broadcast(scores - jnp.where(count > 1, mean, 0.0), mask)


def rloo_advantages(scores: Array, group_ids: Array, mask: Array) -> Array:
    """REINFORCE leave-one-out: ``A_b = s_b - mean_{j in g, j != b} s_j``.

    With ``n`` rows in the group that is ``n / (n - 1) * (s_b - mean_g)`` (veRL
    ``compute_rloo_outcome_advantage``, tunix ``compute_rloo_advantages``); a group of one
    keeps ``A_b = s_b`` (veRL: the baseline of a lone row is 0).
    """
    scores = _outcome(scores)
    count, mean, _ = _group_stats(scores, group_ids)
    loo = safe_divide(count, count - 1) * (scores - mean)
    return _broadcast(jnp.where(count > 1, loo, scores), mask)


def reinforce_pp_advantages(token_rewards: Array, mask: Array, gamma: float = 1.0
                            ) -> tuple[Array, Array]:
    """REINFORCE++ (Hu 2025): discounted token returns whitened over the whole batch.

    ``G_t = r_t + gamma * G_{t+1}`` over each row's real tokens (0 past the end), then
    ``A = masked_whiten(G, mask)`` (mean and unbiased variance over every masked token of the
    batch) and ``A = 0`` off the mask. veRL ``compute_reinforce_plus_plus_outcome_advantage``
    (the KL penalty, when in the reward, is already inside ``r_t``). Returns ``(A, G)``.
    """
    live = mask != 0
    r = jnp.where(live, token_rewards, 0.0).astype(jnp.float32)

    def step(next_return, xs):
        r_t, live_t = xs
        g_t = r_t + gamma * next_return
        return jnp.where(live_t, g_t, 0.0), jnp.where(live_t, g_t, 0.0)

    init = jnp.zeros((r.shape[0],), jnp.float32)
    _, g_rev = jax.lax.scan(step, init, (r.T, live.T), reverse=True)
    returns = g_rev.T
    return jnp.where(live, masked_whiten(returns, mask), 0.0), returns


def _outcome(scores: Array) -> Array:
    """``[B]`` float32 scores; ``[B, T]`` token rewards are summed over time (veRL)."""
    if scores.ndim == 2:
        scores = jnp.sum(scores, axis=-1)
    return scores.astype(jnp.float32)


def _broadcast(row_values: Array, mask: Array) -> Array:
    """``row_values[b] * mask[b, t]``, exactly 0 off the mask."""
    return jnp.where(mask != 0, row_values[:, None] * mask, 0.0)


def _group_stats(scores: Array, group_ids: Array) -> tuple[Array, Array, Array]:
    """Per row: its group's size, mean and unbiased (Bessel) std.

    Ids are mapped to ``[0, B)`` with ``jnp.unique(size=B)`` so ``segment_sum`` has the static
    ``num_segments = B`` under jit; any int ids work (rows with equal ids form a group).
    """
    b = scores.shape[0]
    _, seg = jnp.unique(jnp.asarray(group_ids), size=b, return_inverse=True)
    seg = seg.reshape(b)
    count = jax.ops.segment_sum(jnp.ones_like(scores), seg, num_segments=b)
    mean = safe_divide(jax.ops.segment_sum(scores, seg, num_segments=b), count)
    sq_dev = jax.ops.segment_sum(jnp.square(scores - mean[seg]), seg, num_segments=b)
    std = jnp.sqrt(safe_divide(sq_dev, count - 1))
    return count[seg], mean[seg], std[seg]


# ------------------------------------------------------------------ the registry's adapters
# One signature for every estimator: (token_rewards [B,T], mask [B,T], *, values, group_ids,
# gamma, lam, whiten_mask) -> (advantages, returns). Unused arguments are ignored.
@ADVANTAGE_ESTIMATORS.register("gae")
def _gae(token_rewards, mask, *, values=None, group_ids=None, gamma=1.0, lam=1.0,
         whiten_mask=None):
    """``gae_advantages`` with the critic's ``values`` (needed)."""
    if values is None:
        raise ValueError("advantage estimator 'gae' needs the critic's values")
    return gae_advantages(token_rewards, values, mask, gamma, lam, whiten_mask=whiten_mask)


def _group_adapter(fn):
    def adapter(token_rewards, mask, *, values=None, group_ids=None, gamma=1.0, lam=1.0,
                whiten_mask=None):
        if group_ids is None:
            raise ValueError(f"{fn.__name__} needs group_ids (one id per prompt)")
        adv = fn(token_rewards, group_ids, mask)
        return adv, adv
    adapter.__doc__ = f"``{fn.__name__}`` of the rows' summed token rewards; returns = A."
    return adapter


ADVANTAGE_ESTIMATORS.register("grpo")(_group_adapter(grpo_advantages))
ADVANTAGE_ESTIMATORS.register("drgrpo")(_group_adapter(drgrpo_advantages))
ADVANTAGE_ESTIMATORS.register("rloo")(_group_adapter(rloo_advantages))


@ADVANTAGE_ESTIMATORS.register("reinforce_pp")
def _reinforce_pp(token_rewards, mask, *, values=None, group_ids=None, gamma=1.0, lam=1.0,
                  whiten_mask=None):
    """``reinforce_pp_advantages`` with the config's ``gamma``."""
    return reinforce_pp_advantages(token_rewards, mask, gamma)
