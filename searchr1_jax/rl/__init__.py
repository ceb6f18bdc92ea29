"""Pure RL maths over ``[batch, time]`` arrays with a float mask; every function is jit-able.

Search-R1 / veRL numerical conventions (see each docstring for the formula):
advantages (``gae_advantages``, ``grpo_advantages``; also Dr. GRPO, RLOO, REINFORCE++),
PPO token rewards, KL estimators,
clipped policy / value losses, entropy and log-probs from logits, masked statistics and
loss aggregations. Variants are registered by name: ``ADVANTAGE_ESTIMATORS``,
``KL_ESTIMATORS``, ``LOSS_AGGREGATIONS``.
"""
from searchr1_jax.rl.advantages import (ADVANTAGE_ESTIMATORS, drgrpo_advantages,
                                        gae_advantages, grpo_advantages, last_token_index,
                                        ppo_token_rewards, reinforce_pp_advantages,
                                        rloo_advantages, scores_at_last_token)
from searchr1_jax.rl.kl import KL_ESTIMATORS, kl_loss, kl_penalty
from searchr1_jax.rl.logits import entropy_from_logits, token_logprobs
from searchr1_jax.rl.losses import entropy_loss, ppo_policy_loss, value_loss
from searchr1_jax.rl.masked import (LOSS_AGGREGATIONS, aggregate_loss, masked_mean, masked_sum,
                                    masked_var, masked_whiten, safe_divide)
from searchr1_jax.rl.registry import Registry

__all__ = [
    "ADVANTAGE_ESTIMATORS", "KL_ESTIMATORS", "LOSS_AGGREGATIONS", "Registry", "aggregate_loss",
    "drgrpo_advantages", "entropy_from_logits", "entropy_loss", "gae_advantages",
    "grpo_advantages", "kl_loss", "reinforce_pp_advantages", "rloo_advantages",
    "kl_penalty", "last_token_index", "masked_mean", "masked_sum", "masked_var",
    "masked_whiten", "ppo_policy_loss", "ppo_token_rewards", "safe_divide",
    "scores_at_last_token", "token_logprobs", "value_loss",
]
