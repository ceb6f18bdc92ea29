"""Metrics files (jsonl + TensorBoard read back without TF), collapse monitors, NaN guard."""
import json
import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from searchr1_jax.train.metrics import (CollapseMonitor, CollapseRule, MetricsLogger,
                                        NonFiniteCounter, keep_if_finite, read_jsonl,
                                        tree_all_finite)


def test_jsonl_and_tensorboard_contents(tmp_path):
    with MetricsLogger(str(tmp_path)) as logger:
        logger.log(1, {"reward/mean": 0.25, "actor/entropy": np.float32(1.5),
                       "time/step_s": jnp.asarray(2.0), "flag": True})
        logger.log(2, {"reward/mean": 0.5, "actor/loss": float("nan"), "x": float("-inf")})
    rows = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["reward/mean"] == 0.25 and rows[0]["actor/entropy"] == 1.5
    assert rows[0]["time/step_s"] == 2.0 and rows[0]["flag"] == 1.0
    assert rows[1]["actor/loss"] == "nan" and rows[1]["x"] == "-inf"
    for line in open(tmp_path / "metrics.jsonl"):  # strict JSON: no bare NaN tokens
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"reward/mean", "actor/entropy", "time/step_s"} <= set(acc.Tags()["scalars"])
    reward = [(e.step, e.value) for e in acc.Scalars("reward/mean")]
    assert reward == [(1, 0.25), (2, 0.5)]
    assert "actor/loss" not in acc.Tags()["scalars"]  # non-finite values stay out of TB


def test_appends_across_restarts_and_rejects_non_scalars(tmp_path):
    with MetricsLogger(str(tmp_path), tensorboard=False) as logger:
        logger.log(1, {"a": 1})
        with pytest.raises(ValueError, match=r"metric 'v' at step 3: expected a number.*\(2,\)"):
            logger.log(3, {"v": np.ones(2)})
        with pytest.raises(ValueError, match="metric 's' at step 3"):
            logger.log(3, {"s": "text"})
    with MetricsLogger(str(tmp_path), tensorboard=False) as logger:
        logger.log(2, {"a": 2})
    assert [r["a"] for r in read_jsonl(str(tmp_path / "metrics.jsonl"))] == [1.0, 2.0]
    assert not os.path.exists(tmp_path / "tensorboard")


def test_entropy_collapse_warns_once_and_rearms(caplog):
    mon = CollapseMonitor([CollapseRule("actor/entropy", "policy entropy", window=3,
                                        drop_ratio=0.1)])
    entropy = [2.0, 2.0, 2.0, 1.0, 0.1, 0.05, 0.05, 0.01, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    fired = {}
    with caplog.at_level(logging.WARNING):
        for step, e in enumerate(entropy):
            for w in mon.update(step, {"actor/entropy": e}):
                fired[step] = w
    # baseline = 2.0, threshold 0.2: rolling mean of [.1,.05,.05] = .0667 at step 6 first;
    # stays collapsed (no repeat) until it recovers at step 10, fires again at step 13
    assert sorted(fired) == [6, 13]
    w = fired[6]
    assert w.baseline == 2.0 and w.rolling_mean == pytest.approx(0.2 / 3)
    assert "policy entropy collapsed" in str(w) and "first-3-step mean 2" in str(w)
    assert sum("collapse monitor" in r.message for r in caplog.records) == 2


def test_floor_rules_and_missing_or_nan_metrics():
    mon = CollapseMonitor([
        CollapseRule("response/valid_format", "valid-format rate", window=2, floor=0.05),
        CollapseRule("response/length", "response length", window=2, drop_ratio=0.3)])
    assert mon.update(0, {"response/valid_format": 0.5, "response/length": 300}) == []
    assert mon.update(1, {"response/valid_format": 0.02, "response/length": float("nan")}) == []
    out = mon.update(2, {"response/valid_format": 0.0, "response/length": 310})
    assert [w.key for w in out] == ["response/valid_format"]
    assert out[0].reason == "below the floor 0.05"
    assert mon.update(3, {}) == []  # a step without the metrics changes nothing
    out = mon.update(4, {"response/length": 40})  # rolling mean (310+40)/2 = 175 > 91.5
    assert out == []
    out = mon.update(5, {"response/length": 20})  # (40 + 20)/2 = 30 < 0.3 * 305
    assert [w.key for w in out] == ["response/length"]
    with pytest.raises(ValueError, match="set floor and/or drop_ratio"):
        CollapseRule("x", "x")
    with pytest.raises(ValueError, match="window = 0"):
        CollapseRule("x", "x", window=0, floor=1)


def test_default_rules_use_trainer_metric_names():
    mon = CollapseMonitor()
    keys = {r.key for r in mon.rules}
    assert keys == {"actor/entropy", "response/valid_format", "response/length"}
    warnings = []
    for step in range(30):
        late = step >= 10
        warnings += mon.update(step, {"actor/entropy": 0.01 if late else 1.0,
                                      "response/valid_format": 0.0 if late else 0.9,
                                      "response/length": 10 if late else 400})
    assert {w.key for w in warnings} == keys and len(warnings) == 3


def test_nonfinite_guard_jit_and_counter():
    good = {"w": jnp.ones((2, 2)), "n": jnp.arange(3)}
    bad = {"w": jnp.array([[1.0, jnp.nan], [0, 0]]), "n": jnp.arange(3)}
    assert bool(jax.jit(tree_all_finite)(good)) and not bool(jax.jit(tree_all_finite)(bad))
    assert not bool(tree_all_finite({"x": jnp.array([jnp.inf])}))
    old = {"w": jnp.zeros((2, 2))}
    kept = jax.jit(keep_if_finite)(tree_all_finite(bad), {"w": bad["w"]}, old)
    np.testing.assert_array_equal(kept["w"], old["w"])
    taken = keep_if_finite(tree_all_finite(good), {"w": good["w"]}, old)
    np.testing.assert_array_equal(taken["w"], good["w"])

    counter = NonFiniteCounter(max_consecutive=3)
    assert counter.record(0, True) and not counter.record(1, False)
    assert not counter.record(2, jnp.asarray(False))
    assert counter.record(3, True) and counter.consecutive == 0 and counter.total == 2
    counter.record(4, False)
    counter.record(5, False)
    with pytest.raises(FloatingPointError, match="step 6: 3 consecutive non-finite updates"):
        counter.record(6, False)
    assert counter.metrics() == {"guard/skipped_total": 5.0, "guard/skipped_consecutive": 3.0}
    assert math.isfinite(counter.metrics()["guard/skipped_total"])
