"""GRPO batch preparation: group-standardised outcome advantages (no critic).

  A_b = (s_b - mean_{g(b)}) / (std_{g(b)} + 1e-6)  broadcast over row b's response tokens
  (rl.grpo_advantages). With ``rl.use_kl_loss`` (the paper's GRPO) the KL to the reference is
  a loss term (step.py); otherwise, as in veRL, ``s_b`` is the row's summed token reward
  ``score - kl_coef * kl(old, ref)`` (rl.ppo_token_rewards).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from searchr1_jax import rl
from searchr1_jax.train.state import TrainBatch


def dense_group_ids(group_ids) -> np.ndarray:
    """Maps arbitrary prompt uids to ``0..G-1`` (rl.grpo_advantages needs ids < B)."""
    _, dense = np.unique(np.asarray(group_ids), return_inverse=True)
    return dense.astype(np.int32)


def grpo_advantages(scores: jax.Array, group_ids: jax.Array, old_logp: jax.Array,
                    ref_logp: jax.Array, response_mask: jax.Array, loss_mask: jax.Array, *,
                    use_kl_loss: bool, kl_coef: float, kl_kind: str, mask_retrieved: bool
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``[B, R]`` advantages (module doc) and metrics."""
    metrics = {}
    rewards = scores.astype(jnp.float32)
    if not use_kl_loss and kl_coef > 0:
        kl_mask = loss_mask if mask_retrieved else response_mask
        rewards, kl_metrics = rl.ppo_token_rewards(scores, old_logp, ref_logp, response_mask,
                                                   kl_mask, kl_coef, kl_kind)
        metrics.update({f"actor/reward_{k}": v for k, v in kl_metrics.items()})
    adv = rl.grpo_advantages(rewards, group_ids, response_mask)
    return adv, metrics


def prepare_grpo_batch(base: TrainBatch, scores: jax.Array, group_ids: jax.Array, rl_cfg
                       ) -> tuple[TrainBatch, dict[str, jax.Array]]:
    """Fills ``advantages`` of a batch that already holds old / reference log-probs."""
    adv, metrics = grpo_advantages(
        scores, group_ids, base.old_logprobs, base.ref_logprobs, base.response_mask,
        base.loss_mask, use_kl_loss=bool(rl_cfg.use_kl_loss), kl_coef=float(rl_cfg.kl_coef),
        kl_kind=rl_cfg.kl_kind, mask_retrieved=bool(rl_cfg.mask_retrieved_tokens))
    return base.replace(advantages=adv), metrics
