"""Masked statistics and loss aggregations vs numpy loops written independently here."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from searchr1_jax import rl

RNG = np.random.default_rng(0)


def _ref_stats(values, mask):
    picked = [values[i, j] for i in range(values.shape[0]) for j in range(values.shape[1])
              if mask[i, j]]
    n = len(picked)
    mean = sum(picked) / n
    var = sum((x - mean) ** 2 for x in picked) / (n - 1)
    return mean, var


def _batch(b=3, t=5):
    values = RNG.normal(size=(b, t)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], np.float32)[:b, :t]
    return values, mask


def test_mean_var_whiten_match_loops():
    values, mask = _batch()
    mean, var = _ref_stats(values, mask)
    np.testing.assert_allclose(rl.masked_sum(values, mask), np.sum(values * mask), rtol=1e-6)
    np.testing.assert_allclose(rl.masked_mean(values, mask), mean, rtol=1e-6)
    np.testing.assert_allclose(rl.masked_var(values, mask), var, rtol=1e-5)
    n = mask.sum()
    np.testing.assert_allclose(rl.masked_var(values, mask, unbiased=False), var * (n - 1) / n,
                               rtol=1e-5)
    white = np.asarray(rl.masked_whiten(values, mask))
    expect = (values - mean) / np.sqrt(var + 1e-8)
    np.testing.assert_allclose(white[mask > 0], expect[mask > 0], rtol=1e-5, atol=1e-6)
    unshifted = np.asarray(rl.masked_whiten(values, mask, shift_mean=False))
    np.testing.assert_allclose(unshifted[mask > 0], expect[mask > 0] + mean, rtol=1e-5, atol=1e-6)
    # per-row mean along an axis
    rows = [np.mean(values[i][mask[i] > 0]) for i in range(3)]
    np.testing.assert_allclose(rl.masked_mean(values, mask, axis=-1), rows, rtol=1e-6)


def test_masked_positions_do_not_influence_even_when_nan():
    values, mask = _batch()
    poisoned = values.copy()
    poisoned[mask == 0] = np.array([np.nan, np.inf, -np.inf, 1e30])[:int((mask == 0).sum())]
    for fn in (rl.masked_sum, rl.masked_mean, rl.masked_var):
        np.testing.assert_array_equal(fn(poisoned, mask), fn(values, mask))
    np.testing.assert_array_equal(np.asarray(rl.masked_whiten(poisoned, mask))[mask > 0],
                                  np.asarray(rl.masked_whiten(values, mask))[mask > 0])
    grad = jax.grad(lambda v: rl.masked_mean(v, mask))(jnp.asarray(poisoned))
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[mask == 0] == 0)


def test_empty_and_single_entry_masks():
    values, _ = _batch()
    zero = np.zeros_like(values)
    assert float(rl.masked_mean(values, zero)) == 0.0
    assert float(rl.masked_var(values, zero)) == 0.0
    one = zero.copy()
    one[1, 2] = 1
    assert float(rl.masked_var(values, one)) == 0.0  # n = 1: biased value, no division by 0
    assert float(np.asarray(rl.masked_whiten(values, one))[1, 2]) == 0.0


def test_loss_aggregations():
    loss, mask = _batch()
    mask[1] = 0  # an empty row must be ignored by the seq-mean aggregations
    tok = sum(loss[i, j] for i in range(3) for j in range(5) if mask[i, j]) / mask.sum()
    rows = [loss[i][mask[i] > 0].mean() for i in (0, 2)]
    sums = [loss[i][mask[i] > 0].sum() for i in range(3)]
    np.testing.assert_allclose(rl.aggregate_loss(loss, mask, "token_mean"), tok, rtol=1e-6)
    np.testing.assert_allclose(rl.aggregate_loss(loss, mask, "seq_mean_token_mean"),
                               np.mean(rows), rtol=1e-6)
    np.testing.assert_allclose(rl.aggregate_loss(loss, mask, "seq_mean_token_sum"),
                               np.mean(sums), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown loss aggregation 'sum'"):
        rl.aggregate_loss(loss, mask, "sum")


def test_jit():
    values, mask = _batch()
    np.testing.assert_allclose(jax.jit(rl.masked_whiten)(values, mask),
                               rl.masked_whiten(values, mask), rtol=1e-6)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(2, 6), st.integers(2, 7), st.integers(0, 10_000))
def test_whiten_property_zero_mean_unit_var(b, t, seed):
    r = np.random.default_rng(seed)
    values = r.normal(size=(b, t)).astype(np.float32) * 3 + 1
    mask = (r.random((b, t)) < 0.6).astype(np.float32)
    mask[0, :2] = 1  # at least two entries
    white = rl.masked_whiten(values, mask)
    assert abs(float(rl.masked_mean(white, mask))) < 1e-4
    assert abs(float(rl.masked_var(white, mask)) - 1.0) < 1e-3
