"""The RL algorithms as small tables of parts, looked up once by ``rl.algo`` (tunix style).

An ``Algorithm`` names its advantage estimator (a key of ``rl.ADVANTAGE_ESTIMATORS``), whether
it trains a critic and whether it samples a group of ``rl.n_samples`` responses per prompt.
``resolve(rl_cfg)`` turns the table entry and the config into an ``AlgoSpec``: every choice the
trainer makes (estimator function, critic or not, rows per prompt, where the KL goes, which
mask each term uses) taken once, so nothing downstream compares algorithm names.

KL placement (veRL ``ray_trainer.fit``): ``rl.use_kl_loss`` puts ``kl_coef * KL(pi, ref)`` in
the actor loss; otherwise ``kl_coef * KL(old, ref)`` is subtracted from the token reward;
``kl_coef = 0`` drops the reference model.

Masks (``AlgoSpec.masks``, the one place the rule lives; Search-R1 file and line in each):
  * policy (PG, entropy, KL loss): the loss mask (generated tokens only) when
    ``rl.mask_retrieved_tokens`` (veRL ``dp_actor.update_policy``: ``loss_mask`` under
    ``state_masking``), else every response token;
  * KL-in-reward: ``rl.kl_reward_mask = "generated"``: the loss mask whatever the policy mask
    is (Search-R1 ``apply_kl_penalty`` multiplies by ``info_mask`` in both arms of the
    ablation); ``"policy"``: the policy mask;
  * critic (GAE recursion, value loss): every response token (Search-R1), the loss mask with
    ``rl.mask_retrieved_in_critic``, or Search-R1's off-by-one ``attention_mask[:, -R-1:-1]``
    with ``rl.shifted_critic_mask`` (``dp_critic.compute_values`` / ``update_critic``): the
    response mask shifted right by one, so the first padding position (the value read from the
    last real token's hidden state) is trained towards a return of 0 and, with ``lam < 1``,
    bootstraps GAE; advantages are still whitened over the response mask
    (``compute_gae_advantage_return``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from searchr1_jax import rl
from searchr1_jax.rl.registry import Registry


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One row of the table."""
    advantage: str        # rl.ADVANTAGE_ESTIMATORS name
    critic: bool          # trains a value model (the estimator reads its values)
    grouped: bool         # rl.n_samples responses per prompt (else one)
    min_samples: int = 1  # the smallest group the estimator can use


ALGORITHMS: Registry = Registry("RL algorithm")
ALGORITHMS.register("ppo")(Algorithm("gae", critic=True, grouped=False))
ALGORITHMS.register("grpo")(Algorithm("grpo", critic=False, grouped=True, min_samples=2))
ALGORITHMS.register("drgrpo")(Algorithm("drgrpo", critic=False, grouped=True, min_samples=2))
ALGORITHMS.register("rloo")(Algorithm("rloo", critic=False, grouped=True, min_samples=2))
ALGORITHMS.register("reinforce_pp")(Algorithm("reinforce_pp", critic=False, grouped=True))

KL_PLACES = ("loss", "reward", "none")
KL_REWARD_MASKS = ("generated", "policy")


@dataclasses.dataclass(frozen=True)
class AlgoSpec:
    """An algorithm resolved against the ``rl`` config (see the module doc)."""
    name: str
    advantage: Callable[..., tuple[jax.Array, jax.Array]]
    critic: bool
    n_samples: int                 # rows per prompt
    kl: str                        # "loss" | "reward" | "none"
    kl_reward_mask: str            # "generated" | "policy"
    mask_retrieved: bool
    mask_retrieved_in_critic: bool
    shifted_critic_mask: bool

    @property
    def needs_reference(self) -> bool:
        return self.kl != "none"

    def masks(self, response_mask: jax.Array, loss_mask: jax.Array
              ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
        """``(policy_mask, kl_mask, critic_mask)`` of an *unpadded* rollout (``[B, R]``, R the
        longest response, as Search-R1's batch is wide); ``None`` where unused."""
        response_mask = response_mask.astype(jnp.float32)
        loss_mask = loss_mask.astype(jnp.float32)
        policy = loss_mask if self.mask_retrieved else response_mask
        kl = None
        if self.kl == "reward":
            kl = loss_mask if self.kl_reward_mask == "generated" else policy
        critic = None
        if self.critic:
            if self.shifted_critic_mask:  # attention_mask[:, -R-1:-1]: last prompt token first
                first = jnp.ones_like(response_mask[:, :1])
                critic = jnp.concatenate([first, response_mask[:, :-1]], axis=1)
            else:
                critic = loss_mask if self.mask_retrieved_in_critic else response_mask
        return policy, kl, critic


def resolve(rl_cfg: Any) -> AlgoSpec:
    """The ``AlgoSpec`` of ``rl_cfg.algo`` (unknown names list the known ones)."""
    algo = ALGORITHMS.get(rl_cfg.algo)
    if rl_cfg.kl_coef == 0:
        kl = "none"
    else:
        kl = "loss" if rl_cfg.use_kl_loss else "reward"
    return AlgoSpec(
        name=rl_cfg.algo, advantage=rl.ADVANTAGE_ESTIMATORS.get(algo.advantage),
        critic=algo.critic, n_samples=int(rl_cfg.n_samples) if algo.grouped else 1, kl=kl,
        kl_reward_mask=rl_cfg.kl_reward_mask,
        mask_retrieved=bool(rl_cfg.mask_retrieved_tokens),
        mask_retrieved_in_critic=bool(rl_cfg.mask_retrieved_in_critic),
        shifted_critic_mask=bool(rl_cfg.shifted_critic_mask))


def rows_per_step(cfg: Any) -> int:
    """Responses in one RL step: ``data.train_batch_size`` prompts x rows per prompt."""
    algo = ALGORITHMS.get(cfg.rl.algo)
    return int(cfg.data.train_batch_size) * (int(cfg.rl.n_samples) if algo.grouped else 1)


def updates_per_step(cfg: Any) -> int:
    """Optimizer updates per RL step: ``ppo_epochs x rows / train.mini_batch_size`` (rows, as
    veRL's ``ppo_mini_batch_size`` counts responses: Search-R1's GRPO makes 2,560 / 256 = 10,
    its PPO 512 / 256 = 2)."""
    return int(cfg.train.ppo_epochs) * (rows_per_step(cfg) // int(cfg.train.mini_batch_size))
