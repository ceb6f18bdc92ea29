"""Explicit state crossing ``jax.jit``: ``TrainState``, ``TrainBatch`` and the optimizer.

The optimizer is Search-R1's (veRL's): AdamW (betas 0.9/0.999, eps 1e-8, weight decay) after
global-norm clipping, with a linear warm-up counted in RL steps, not optimizer updates:

  lr(update u) = lr * min(1, floor(u / updates_per_step) / warmup_steps)   (warmup_steps > 0)
  lr(update u) = lr                                                         (warmup_steps = 0)

so, as in veRL's ``get_constant_schedule_with_warmup``, the first RL step runs at lr 0 when
warm-up is on. ``warmup_steps = int(warmup_ratio * total_steps)``.
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Parameters and optimizer state of one trained model (actor or critic).

    step: optimizer updates attempted; skipped: updates dropped for a non-finite loss/grad.
    """
    step: jax.Array
    params: Any
    opt_state: Any
    skipped: jax.Array

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation) -> "TrainState":
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   skipped=jnp.zeros((), jnp.int32))


@flax.struct.dataclass
class TrainBatch:
    """Rows fed to the update step; all ``[B, R]`` unless noted (R = response width).

    Built once per RL step by ``prepare.train_batch`` from a ``RolloutBatch``: the masks are
    already resolved for the algorithm (``algorithms.AlgoSpec.masks``) and a field the
    algorithm does not use is ``None``. ``old_logprobs``: actor log-probs before the update;
    ``ref_logprobs``: the frozen reference (None without a KL term); ``advantages`` (and,
    with a critic, ``returns``/``old_values``) are filled by ``prepare.prepare_batch``.
    """
    prompt_tokens: jax.Array      # int32[B, P]
    prompt_mask: jax.Array        # bool[B, P]
    response_tokens: jax.Array    # int32[B, R]
    response_mask: jax.Array      # f32 1 on every real response token (forward, reward slot)
    policy_mask: jax.Array        # f32 policy loss, entropy and KL loss
    kl_mask: jax.Array | None     # f32 KL-in-reward term (None unless the KL is in the reward)
    critic_mask: jax.Array | None  # f32 GAE recursion and value loss (None without a critic)
    old_logprobs: jax.Array
    ref_logprobs: jax.Array | None
    advantages: jax.Array
    returns: jax.Array | None
    old_values: jax.Array | None

    @property
    def num_rows(self) -> int:
        return self.response_tokens.shape[0]


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    return int(warmup_ratio * total_steps)


def warmup_schedule(lr: float, num_warmup_steps: int, updates_per_step: int) -> optax.Schedule:
    """Linear warm-up in RL steps (see module doc), constant afterwards."""
    updates_per_step = max(1, int(updates_per_step))

    def schedule(count):
        if num_warmup_steps <= 0:
            return jnp.asarray(lr, jnp.float32)
        rl_step = (count // updates_per_step).astype(jnp.float32)
        return lr * jnp.minimum(1.0, rl_step / num_warmup_steps)
    return schedule


def make_optimizer(lr: float, *, num_warmup_steps: int = 0, updates_per_step: int = 1,
                   weight_decay: float = 0.01, grad_clip: float = 1.0
                   ) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip)`` then AdamW with the warm-up schedule."""
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.adamw(warmup_schedule(lr, num_warmup_steps, updates_per_step),
                    b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay))
