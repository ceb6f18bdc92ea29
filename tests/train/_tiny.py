"""Shared test helpers: a tiny random Transformer, random train batches and the base config."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax.config import load_config_file
from searchr1_jax.models import ModelConfig, Transformer
from searchr1_jax.train.state import TrainBatch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_model_config(**overrides) -> ModelConfig:
    kw = dict(family="qwen2", vocab_size=48, hidden_size=32, intermediate_size=64, num_layers=2,
              num_heads=4, num_kv_heads=2, head_dim=8, attention_bias=True)
    kw.update(overrides)
    return ModelConfig(**kw)


def tiny_model(seed: int = 0, **overrides) -> Transformer:
    return Transformer(tiny_model_config(**overrides), rngs=nnx.Rngs(seed))


def base_config():
    return load_config_file(os.path.join(REPO, "configs", "base.py"))


def random_batch(seed: int, rows: int = 16, prompt: int = 5, response: int = 7,
                 vocab: int = 48, mask_retrieved: bool = True) -> TrainBatch:
    """Left-padded prompts, right-padded responses with an observation block (generated-token
    mask 0 there). Every field is filled: ``policy_mask`` is the generated-token mask when
    ``mask_retrieved`` (else the response mask), ``kl_mask`` the generated-token mask,
    ``critic_mask`` the response mask."""
    rng = np.random.default_rng(seed)
    p_len = rng.integers(1, prompt + 1, rows)
    r_len = rng.integers(0, response + 1, rows)
    r_len[0] = response  # at least one full row
    prompt_mask = np.arange(prompt)[None, :] >= (prompt - p_len)[:, None]
    response_mask = (np.arange(response)[None, :] < r_len[:, None]).astype(np.float32)
    loss_mask = response_mask.copy()
    for i in range(rows):  # an "observation" block in the middle of some rows
        if r_len[i] >= 4 and i % 2 == 0:
            loss_mask[i, 1:3] = 0.0
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return TrainBatch(
        prompt_tokens=jnp.asarray(rng.integers(0, vocab, (rows, prompt)), jnp.int32),
        prompt_mask=jnp.asarray(prompt_mask),
        response_tokens=jnp.asarray(rng.integers(0, vocab, (rows, response)), jnp.int32),
        response_mask=jnp.asarray(response_mask),
        policy_mask=jnp.asarray(loss_mask if mask_retrieved else response_mask),
        kl_mask=jnp.asarray(loss_mask), critic_mask=jnp.asarray(response_mask),
        old_logprobs=jnp.asarray(-3.9 + 0.3 * f(rows, response)),
        ref_logprobs=jnp.asarray(-3.9 + 0.3 * f(rows, response)),
        advantages=jnp.asarray(f(rows, response)), returns=jnp.asarray(f(rows, response)),
        old_values=jnp.asarray(0.1 * f(rows, response)))


def split_params(module):
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    return graphdef, params, rest


def assert_adam_params_close(a, b, lr: float) -> None:
    """Params after Adam steps from two numerically different (sharded / single-device) runs
    agree: all but 0.1% of elements within 1e-6, every element within ``lr / 10``.

    Adam divides by ``sqrt(v)``, so an element whose gradient is ~1e-10 moves by up to ``lr``
    in a direction set by reduction-order noise (one element in 21,792 differed by 1.06e-5 on
    an AVX2 machine). A real sharding bug moves elements by ~``lr`` wholesale.
    """
    diff = np.concatenate([np.abs(np.asarray(x) - np.asarray(y)).ravel()
                           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))])
    assert diff.max() < lr / 10, f"max |diff| {diff.max():.3g} >= lr/10"
    assert (diff > 1e-6).mean() < 1e-3, f"{(diff > 1e-6).mean():.2%} of elements differ > 1e-6"


def tree_max_abs_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))
