"""PPO batch preparation (Search-R1 conventions): KL-in-reward, GAE, whitening.

  r_t = score * [t = last response token] - kl_coef * kl(old_t, ref_t) * kl_mask_t
        (rl.ppo_token_rewards; no KL in the reward when ``rl.use_kl_loss``)
  A, R = GAE(r, V, critic_mask, gamma, lam); A whitened over the whole batch (rl.gae_advantages)

``kl_mask`` is the loss mask when ``rl.mask_retrieved_tokens`` (generated tokens only), the
critic mask is all response tokens unless ``rl.mask_retrieved_in_critic``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from searchr1_jax import rl
from searchr1_jax.train.state import TrainBatch


def prepare_ppo_batch(base: TrainBatch, scores: jax.Array, values: jax.Array, rl_cfg
                      ) -> tuple[TrainBatch, dict[str, jax.Array]]:
    """Fills ``advantages``, ``returns`` and ``old_values`` (module doc)."""
    resp, loss = base.response_mask, base.loss_mask
    kl_mask = loss if rl_cfg.mask_retrieved_tokens else resp
    critic_mask = loss if rl_cfg.mask_retrieved_in_critic else resp
    metrics = {}
    if rl_cfg.use_kl_loss or rl_cfg.kl_coef == 0:
        rewards = rl.scores_at_last_token(scores, resp)
    else:
        rewards, kl_metrics = rl.ppo_token_rewards(
            scores, base.old_logprobs, base.ref_logprobs, resp, kl_mask,
            float(rl_cfg.kl_coef), rl_cfg.kl_kind)
        metrics.update({f"actor/reward_{k}": v for k, v in kl_metrics.items()})
    values = jnp.where(critic_mask != 0, values, 0.0)
    adv, returns = rl.gae_advantages(rewards, values, critic_mask, float(rl_cfg.gamma),
                                     float(rl_cfg.lam))
    metrics["critic/returns"] = rl.masked_mean(returns, critic_mask)
    metrics["critic/values_old"] = rl.masked_mean(values, critic_mask)
    return base.replace(advantages=adv, returns=returns, old_values=values), metrics
