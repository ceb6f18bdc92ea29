"""A scripted search rollout on a tiny model: real ancestral sampling + a fixed "retriever".

Each row: prompt (fixed tokens per prompt id) -> the model samples ``gen1`` tokens -> the
scripted retriever appends ``OBS`` tokens (loss_mask 0, like an <information> block) -> the model
samples ``gen2`` more tokens. Reward 1 when ``TARGET`` occurs among the generated tokens: a
learnable signal the policy can pick up in a few dozen steps.
"""
from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax.rollout import RolloutBatch

TARGET, OBS = 7, (11, 12)


def _next_token(graphdef, params, rest, tokens, positions, mask, t, key):
    model = nnx.merge(graphdef, params, rest)
    logits, _ = model(tokens, positions, token_mask=mask)
    logits = jax.lax.dynamic_index_in_dim(logits, t - 1, axis=1, keepdims=False)
    tok = jax.random.categorical(key, logits)
    logp = jax.nn.log_softmax(logits)[jnp.arange(tok.shape[0]), tok]
    return tok.astype(jnp.int32), logp


_next_token_jit = jax.jit(_next_token, static_argnums=0)


class ScriptedRollout:
    """``rollout_fn(model, rows, group_ids, seed) -> (RolloutBatch, info)`` (trainer.RolloutFn)."""

    def __init__(self, prompt_len: int = 3, gen1: int = 3, gen2: int = 3):
        self.prompt_len, self.gen1, self.gen2 = prompt_len, gen1, gen2
        self.last_retrieval_s = 0.0

    def __call__(self, model, rows, group_ids, seed):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        b, p = len(rows), self.prompt_len
        r = self.gen1 + len(OBS) + self.gen2
        prompts = np.stack([(np.arange(p) * 5 + 13 * int(x) + 1) % 40 + 8 for x in rows])
        tokens = np.zeros((b, p + r), np.int32)
        tokens[:, :p] = prompts
        mask = np.zeros((b, p + r), bool)
        mask[:, :p] = True
        positions = np.broadcast_to(np.arange(p + r, dtype=np.int32), (b, p + r))
        loss_mask = np.zeros((b, r), np.float32)
        logps = np.zeros((b, r), np.float32)
        key = jax.random.key(seed)
        for t in range(p, p + r):
            if t - p in range(self.gen1, self.gen1 + len(OBS)):  # the scripted retriever
                tokens[:, t] = OBS[t - p - self.gen1]
            else:
                key, sub = jax.random.split(key)
                tok, lp = _next_token_jit(graphdef, params, rest, jnp.asarray(tokens),
                                          jnp.asarray(positions), jnp.asarray(mask), t, sub)
                tokens[:, t] = np.asarray(tok)
                loss_mask[:, t - p] = 1.0
                logps[:, t - p] = np.asarray(lp)
            mask[:, t] = True
        gen = np.where(loss_mask > 0, tokens[:, p:], -1)
        hit = (gen == TARGET).any(-1)
        batch = RolloutBatch(
            prompt_tokens=jnp.asarray(prompts, jnp.int32), prompt_mask=jnp.ones((b, p), bool),
            response_tokens=jnp.asarray(tokens[:, p:]), response_mask=jnp.ones((b, r)),
            loss_mask=jnp.asarray(loss_mask), sample_logprobs=jnp.asarray(logps),
            group_ids=jnp.asarray(group_ids, jnp.int32))
        info = types.SimpleNamespace(
            hit=hit, num_searches=np.ones(b), valid_format=np.ones(b, bool),
            has_answer=hit, response_text=[""] * b, golden_answers=[[]] * b)
        return batch, info


def hit_reward(info):
    r = info.hit.astype(np.float32)
    return r, r
