"""Chunked log-probs / entropy == a direct full-vocabulary log-softmax (values and gradients)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from searchr1_jax.train.logprobs import policy_logprobs, sequence_layout
from tests.train._tiny import random_batch, split_params, tiny_model, tree_max_abs_diff


def reference_positions(b):
    p, r = b.prompt_tokens.shape[1], b.response_tokens.shape[1]
    pos = np.zeros((b.prompt_tokens.shape[0], p + r), np.int32)
    for i, n in enumerate(np.asarray(b.prompt_mask).sum(1)):
        pos[i, p - n:p] = np.arange(n)
        pos[i, p:] = n + np.arange(r)
    return jnp.asarray(pos)


def direct_logprobs(model, b, temperature=1.0, pos=None):
    """Reference: whole-sequence logits, log_softmax, shift by one, written independently."""
    p, r = b.prompt_tokens.shape[1], b.response_tokens.shape[1]
    tokens = jnp.concatenate([b.prompt_tokens, b.response_tokens], 1)
    mask = jnp.concatenate([b.prompt_mask, b.response_mask > 0], 1)
    pos = reference_positions(b) if pos is None else pos
    logits, _ = model(tokens, pos, token_mask=mask)
    logits = logits[:, p - 1:p + r - 1] / temperature
    logsm = jax.nn.log_softmax(logits, -1)
    logp = jnp.take_along_axis(logsm, b.response_tokens[..., None], -1)[..., 0]
    ent = -(jnp.exp(logsm) * logsm).sum(-1)
    return logp, ent


def test_sequence_layout_positions():
    b = random_batch(0, rows=4)
    _, pos, mask = sequence_layout(b.prompt_tokens, b.prompt_mask, b.response_tokens,
                                   b.response_mask)
    for i in range(4):
        n = int(b.prompt_mask[i].sum())
        np.testing.assert_array_equal(pos[i, 5 - n:5], np.arange(n))
        np.testing.assert_array_equal(pos[i, 5:], n + np.arange(7))
        assert bool(mask[i, :5].sum() == n)


@pytest.mark.parametrize("chunk,temperature", [(3, 1.0), (7, 0.7), (100, 1.0)])
def test_chunked_matches_direct(chunk, temperature):
    model = tiny_model(1)
    b = random_batch(1)
    logp, ent = policy_logprobs(model, b.prompt_tokens, b.prompt_mask, b.response_tokens,
                                b.response_mask, chunk=chunk, temperature=temperature)
    ref_logp, ref_ent = direct_logprobs(model, b, temperature)
    m = np.asarray(b.response_mask) > 0
    np.testing.assert_allclose(np.asarray(logp)[m], np.asarray(ref_logp)[m], atol=2e-5)
    np.testing.assert_allclose(np.asarray(ent)[m], np.asarray(ref_ent)[m], atol=2e-5)


def test_chunked_gradient_matches_direct():
    model = tiny_model(2)
    b = random_batch(2)
    graphdef, params, rest = split_params(model)
    w = jnp.asarray(np.random.default_rng(0).normal(size=b.response_mask.shape), jnp.float32)
    w = w * b.response_mask

    def chunked(params):
        m = nnx.merge(graphdef, params, rest)
        lp, en = policy_logprobs(m, b.prompt_tokens, b.prompt_mask, b.response_tokens,
                                 b.response_mask, chunk=3)
        return jnp.sum((lp + 0.5 * en) * w)

    pos = reference_positions(b)

    def direct(params):
        lp, en = direct_logprobs(nnx.merge(graphdef, params, rest), b, pos=pos)
        return jnp.sum((lp + 0.5 * en) * w)

    g1, g2 = jax.jit(jax.grad(chunked))(params), jax.jit(jax.grad(direct))(params)
    assert tree_max_abs_diff(g1, g2) < 1e-5
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g1)) > 1e-3  # non-trivial
