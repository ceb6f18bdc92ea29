"""One RL step's train batch: masks resolved once, then the algorithm's advantages.

  batch = train_batch(rollout_batch, spec, prompt_width, response_width)   # host, once
  batch = batch.replace(old_logprobs=.., ref_logprobs=..)                  # forward passes
  batch, metrics = prepare_batch(batch, scores, group_ids, values, spec, rl_cfg)   # jitted

Token reward (Search-R1 ``RewardManager`` puts the score on the last response token;
``apply_kl_penalty`` subtracts the KL when it goes in the reward)::

  r_t = score * [t = last response token] - kl_coef * kl(old_t, ref_t) * kl_mask_t

Advantages: ``spec.advantage(r, mask, values=V, group_ids=g, gamma, lam, whiten_mask)``
(``rl.ADVANTAGE_ESTIMATORS``), with ``mask`` the critic mask for a critic's GAE and the
response mask otherwise (veRL's ``eos_mask`` for GRPO). Group estimators sum ``r`` over time.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from searchr1_jax import rl
from searchr1_jax.train.algorithms import AlgoSpec
from searchr1_jax.train.state import TrainBatch


def dense_group_ids(group_ids) -> np.ndarray:
    """Maps arbitrary prompt uids to ``0..G-1`` (the group estimators need ids < B)."""
    _, dense = np.unique(np.asarray(group_ids), return_inverse=True)
    return dense.astype(np.int32)


def _pad(x: jax.Array | None, before: int, after: int) -> jax.Array | None:
    return None if x is None else jnp.pad(x, [(0, 0), (before, after)])


def train_batch(rb: Any, spec: AlgoSpec, prompt_width: int, response_width: int
                ) -> TrainBatch:
    """The step's ``TrainBatch`` from a ``RolloutBatch``: masks resolved on the unpadded
    rollout (so Search-R1's shifted critic mask stops at its batch width, as there), then
    prompts left-padded / responses right-padded to fixed widths (few compiled shapes)."""
    p, r = rb.prompt_tokens.shape[1], rb.response_tokens.shape[1]
    if p > prompt_width or r > response_width:
        raise ValueError(f"rollout widths prompt={p}, response={r} exceed the padded widths "
                         f"{prompt_width}, {response_width}")
    lp, rr = prompt_width - p, response_width - r
    policy, kl, critic = spec.masks(rb.response_mask, rb.loss_mask)
    response_mask = _pad(rb.response_mask.astype(jnp.float32), 0, rr)
    zeros = jnp.zeros(response_mask.shape, jnp.float32)
    return TrainBatch(
        prompt_tokens=_pad(rb.prompt_tokens, lp, 0), prompt_mask=_pad(rb.prompt_mask, lp, 0),
        response_tokens=_pad(rb.response_tokens, 0, rr), response_mask=response_mask,
        policy_mask=_pad(policy, 0, rr), kl_mask=_pad(kl, 0, rr),
        critic_mask=_pad(critic, 0, rr), old_logprobs=zeros,
        ref_logprobs=zeros if spec.needs_reference else None, advantages=zeros,
        returns=zeros if spec.critic else None, old_values=zeros if spec.critic else None)


def prepare_batch(batch: TrainBatch, scores: jax.Array, group_ids: jax.Array,
                  values: jax.Array | None, spec: AlgoSpec, rl_cfg: Any
                  ) -> tuple[TrainBatch, dict[str, jax.Array]]:
    """Fills ``advantages`` (and ``returns``/``old_values`` with a critic): module doc."""
    resp = batch.response_mask
    metrics: dict[str, jax.Array] = {}
    if spec.kl == "reward":
        rewards, kl_metrics = rl.ppo_token_rewards(
            scores, batch.old_logprobs, batch.ref_logprobs, resp, batch.kl_mask,
            float(rl_cfg.kl_coef), rl_cfg.kl_kind)
        metrics.update({f"actor/reward_{k}": v for k, v in kl_metrics.items()})
    else:
        rewards = rl.scores_at_last_token(scores, resp)
    if not spec.critic:
        adv, _ = spec.advantage(rewards, resp, group_ids=group_ids, gamma=float(rl_cfg.gamma),
                                lam=float(rl_cfg.lam))
        return batch.replace(advantages=adv), metrics
    mask = batch.critic_mask
    values = jnp.where(mask != 0, values, 0.0)
    # Search-R1 whitens over the response mask even where its (shifted) critic mask runs on.
    whiten = resp if spec.shifted_critic_mask else None
    adv, returns = spec.advantage(rewards, mask, values=values, group_ids=group_ids,
                                  gamma=float(rl_cfg.gamma), lam=float(rl_cfg.lam),
                                  whiten_mask=whiten)
    metrics["critic/returns"] = rl.masked_mean(returns, mask)
    metrics["critic/values_old"] = rl.masked_mean(values, mask)
    return batch.replace(advantages=adv, returns=returns, old_values=values), metrics
