"""Top-k / top-p / temperature sampling properties, checked against numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from searchr1_jax.sampling import first_argmax, sample_tokens, top_k_mask, top_p_mask


def nucleus_np(logits: np.ndarray, p: float) -> set[int]:
    """Smallest set of likeliest tokens with mass >= p (numpy reference)."""
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])
    n = int(np.searchsorted(mass, p) + 1)
    return set(order[:min(n, len(order))].tolist())


def draw(logits: np.ndarray, n: int, seed: int, **kw):
    batch = jnp.broadcast_to(jnp.asarray(logits, jnp.float32), (n, logits.shape[-1]))
    fn = jax.jit(lambda l, k: sample_tokens(l, k, greedy=False, temperature=jnp.float32(
        kw.get("temperature", 1.0)), top_k=kw.get("top_k", 0), top_p=kw.get("top_p")))
    tokens, logp = fn(batch, jax.random.key(seed))
    return np.asarray(tokens), np.asarray(logp)


@pytest.mark.parametrize("p", [0.3, 0.75, 0.9])
def test_top_p_never_samples_outside_the_nucleus(p):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal(64).astype(np.float32) * 2.0
    nucleus = nucleus_np(logits, p)
    tokens, _ = draw(logits, 4096, 0, top_p=jnp.float32(p))
    assert set(tokens.tolist()) <= nucleus
    assert len(set(tokens.tolist())) == len(nucleus)  # every nucleus token is reachable
    kept = np.isfinite(np.asarray(top_p_mask(jnp.asarray(logits)[None], jnp.float32(p))[0]))
    assert set(np.flatnonzero(kept).tolist()) == nucleus


def test_top_p_frequencies_follow_renormalised_probs():
    logits = np.log(np.array([0.5, 0.3, 0.1, 0.06, 0.04], np.float32))
    tokens, _ = draw(logits, 20000, 3, top_p=jnp.float32(0.85))
    freq = np.bincount(tokens, minlength=5) / len(tokens)
    want = np.array([0.5, 0.3, 0.1, 0, 0]) / 0.9
    np.testing.assert_allclose(freq, want, atol=0.015)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_k_never_samples_outside_top_k(k):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal(100).astype(np.float32)
    allowed = set(np.argsort(-logits)[:k].tolist())
    tokens, _ = draw(logits, 4096, 1, top_k=k, temperature=2.0)
    assert set(tokens.tolist()) <= allowed and len(set(tokens.tolist())) == k
    kept = np.isfinite(np.asarray(top_k_mask(jnp.asarray(logits)[None], k)[0]))
    assert set(np.flatnonzero(kept).tolist()) == allowed


def test_fixed_key_is_deterministic_and_keys_differ():
    logits = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    a, la = draw(logits, 256, 11, temperature=1.0)
    b, lb = draw(logits, 256, 11, temperature=1.0)
    c, _ = draw(logits, 256, 12, temperature=1.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert (a != c).mean() > 0.5


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_logprob_is_temperature_scaled_log_softmax(temperature):
    logits = np.random.default_rng(4).standard_normal((1, 50)).astype(np.float32) * 3
    tokens, logp = draw(logits[0], 64, 5, temperature=temperature, top_p=jnp.float32(0.9))
    scaled = logits[0] / temperature
    ref = scaled - scaled.max() - np.log(np.exp(scaled - scaled.max()).sum())
    np.testing.assert_allclose(logp, ref[tokens], rtol=1e-5, atol=1e-5)


def test_temperature_sharpens_and_greedy_is_argmax():
    logits = np.log(np.array([0.4, 0.35, 0.25], np.float32))
    cold, _ = draw(logits, 8000, 6, temperature=0.25)
    hot, _ = draw(logits, 8000, 6, temperature=1.0)
    assert (cold == 0).mean() > (hot == 0).mean() + 0.15
    batch = jnp.asarray(np.random.default_rng(7).standard_normal((8, 30)), jnp.float32)
    tok, lp = sample_tokens(batch, jax.random.key(0), greedy=True, temperature=jnp.float32(1),
                            top_k=0, top_p=None)
    np.testing.assert_array_equal(np.asarray(tok), np.asarray(batch).argmax(-1))
    np.testing.assert_allclose(np.asarray(lp), np.asarray(jax.nn.log_softmax(batch)).max(-1),
                               rtol=1e-6)


def test_greedy_takes_first_index_on_ties_and_matches_argmax_on_a_vocab_row():
    ties = jnp.asarray([[0.0, 2.0, 1.0, 2.0], [3.0, 3.0, 3.0, 3.0], [-1.0, -5.0, -1.0, -9.0]])
    tok, lp = sample_tokens(ties, jax.random.key(0), greedy=True, temperature=jnp.float32(1),
                            top_k=0, top_p=None)
    np.testing.assert_array_equal(np.asarray(tok), [1, 0, 0])
    np.testing.assert_allclose(np.asarray(lp), np.asarray(jax.nn.log_softmax(ties)).max(-1),
                               rtol=1e-6)
    big = np.random.default_rng(3).standard_normal((4, 49152)).astype(np.float32) * 4
    tok, lp = jax.jit(lambda x: sample_tokens(x, jax.random.key(0), greedy=True,
                                              temperature=jnp.float32(1), top_k=0,
                                              top_p=None))(jnp.asarray(big))
    np.testing.assert_array_equal(np.asarray(tok), big.argmax(-1))
    ref = big.max(-1) - big.max(-1) - np.log(np.exp(big - big.max(-1, keepdims=True)).sum(-1))
    np.testing.assert_allclose(np.asarray(lp), ref, rtol=1e-5, atol=1e-6)


def test_sampling_is_gumbel_max_with_first_index_on_ties():
    """Tokens are argmax(logits / T + Gumbel(key)), the Gumbel-max definition, with top-k
    filtering applied before the noise; ties (a -inf filtered row aside) take the first index."""
    logits = jnp.asarray(np.random.default_rng(5).standard_normal((6, 4000)), jnp.float32) * 2
    key = jax.random.key(11)
    for temperature, top_k in ((1.0, 0), (0.7, 50)):
        tok, _ = sample_tokens(logits, key, greedy=False, temperature=jnp.float32(temperature),
                               top_k=top_k, top_p=None)
        scaled = logits / temperature
        if top_k:
            scaled = top_k_mask(scaled, top_k)
        ref = jnp.argmax(scaled + jax.random.gumbel(key, scaled.shape), axis=-1)
        np.testing.assert_array_equal(np.asarray(tok), np.asarray(ref))


def test_first_argmax_stays_in_range_on_a_nan_row():
    x = jnp.asarray([[1.0, jnp.nan, 0.0], [0.0, 2.0, 2.0]])
    np.testing.assert_array_equal(np.asarray(first_argmax(x)), [2, 1])
