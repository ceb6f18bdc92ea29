"""The PPO critic: an own copy of the actor's backbone plus a scalar value head.

As in veRL (``AutoModelForTokenClassification`` with one label), the value of response token
``t`` is read from the hidden state that predicts it (``hidden[:, P-1+t]``, logprobs.py):

  V_t = value_head(h_{P-1+t}) = h_{P-1+t} . w + b      (fp32)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from searchr1_jax.train.logprobs import response_hidden


class Critic(nnx.Module):
    """``backbone`` (a Transformer; its untied lm-head is dropped) + ``value_head [H, 1]``."""

    def __init__(self, backbone_model: nnx.Module, hidden_size: int, *, rngs: nnx.Rngs):
        self.model = backbone_model
        if getattr(self.model, "lm_head_proj", None) is not None:
            self.model.lm_head_proj = None  # the critic never reads logits: save [H, V] + Adam
        self.value_head = nnx.Linear(
            hidden_size, 1, kernel_init=nnx.initializers.normal(0.02),
            bias_init=nnx.initializers.zeros, param_dtype=jnp.float32, rngs=rngs)

    def values(self, prompt_tokens, prompt_mask, response_tokens, response_mask) -> jax.Array:
        """fp32 ``[B, R]`` values of the response positions."""
        hidden = response_hidden(self.model.backbone, prompt_tokens, prompt_mask,
                                 response_tokens, response_mask)
        return self.value_head(hidden.astype(jnp.float32))[..., 0]


def copy_module(module: nnx.Module) -> nnx.Module:
    """A deep copy with fresh buffers (the critic and the reference must not alias the actor,
    whose parameters are donated to the update step)."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))


def make_critic(actor: nnx.Module, hidden_size: int, seed: int = 0) -> Critic:
    """Critic initialised from the actor's weights (Search-R1 initialises both from the base
    model) with a freshly initialised value head."""
    return Critic(copy_module(actor), hidden_size, rngs=nnx.Rngs(seed))
