"""Per-step metrics to JSON lines, TensorBoard and (optionally) wandb, collapse monitors and a
non-finite guard.

TensorBoard without TensorFlow: ``flax.metrics.tensorboard`` and ``tensorboard.summary.v2``
import TensorFlow, and ``torch.utils.tensorboard`` would make torch a runtime dependency.
The ``tensorboard`` package alone ships a TF-free event writer
(``tensorboard.summary.writer.event_file_writer.EventFileWriter``) and the protos
(``tensorboard.compat.proto``); ``ScalarWriter`` writes scalar ``Summary`` events with them,
which ``tensorboard --logdir`` and ``EventAccumulator`` read. Only process 0 writes.
Weights & Biases is a third, optional sink (``train/wandb_sink.py``: ``output.wandb_project``).

Collapse monitors watch rolling means of chosen metrics (Search-R1 users report GRPO
collapse: entropy falls to ~0, the valid-format rate and response length crash) and warn once
per episode; the thresholds and windows are ``CollapseRule`` fields.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger(__name__)


def _json_value(v: Any) -> Any:
    """Floats stay floats; NaN/inf become the strings "nan"/"inf"/"-inf" (strict JSON)."""
    v = float(v)
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


class ScalarWriter:
    """TensorFlow-free TensorBoard scalar writer (one events file under ``logdir``)."""

    def __init__(self, logdir: str):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        os.makedirs(logdir, exist_ok=True)
        self._writer = EventFileWriter(logdir)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        summary = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                               summary=summary))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MetricsLogger:
    """Writes ``{"step", "time", **metrics}`` to ``<logdir>/metrics.jsonl``, TensorBoard and,
    with ``wandb`` settings, a wandb run (``config`` becomes the run's config).

    Values must be scalars (Python/numpy/0-d jax); a non-scalar raises naming the key.
    """

    def __init__(self, logdir: str, *, jsonl: bool = True, tensorboard: bool = True,
                 filename: str = "metrics.jsonl", wandb: Any = None,
                 config: Mapping[str, Any] | None = None):
        self.logdir = logdir
        self.enabled = jax.process_index() == 0
        self._file = None
        self._tb = None
        self._wandb = None
        if not self.enabled:
            return
        if wandb is not None:  # a train.wandb_sink.WandbSettings
            from searchr1_jax.train.wandb_sink import WandbSink
            self._wandb = WandbSink(wandb, logdir, config)
        os.makedirs(logdir, exist_ok=True)
        if jsonl:
            self.path = os.path.join(logdir, filename)
            self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            self._tb = ScalarWriter(os.path.join(logdir, "tensorboard"))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        values = {}
        for k, v in metrics.items():
            arr = np.asarray(v)
            numeric = np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
            if arr.shape != () or not numeric:
                raise ValueError(f"metric {k!r} at step {step}: expected a number, got "
                                 f"{type(v).__name__} of shape {arr.shape}")
            values[k] = float(arr)
        if not self.enabled:
            return
        if self._file is not None:
            record = {"step": int(step), "time": time.time(),
                      **{k: _json_value(v) for k, v in values.items()}}
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self._tb is not None:
            self._tb.scalars(step, {k: v for k, v in values.items() if math.isfinite(v)})
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(step, values)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.close()
            self._wandb = None

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The records of a metrics file (for plots and tests)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------ collapse monitors
@dataclasses.dataclass(frozen=True)
class CollapseRule:
    """Warn when the rolling mean of ``key`` over ``window`` steps collapses.

    ``floor``: warn when the rolling mean < floor. ``drop_ratio``: warn when it falls below
    ``drop_ratio * baseline``, the baseline being the mean of the first ``window`` values.
    """
    key: str
    what: str
    window: int = 10
    floor: float | None = None
    drop_ratio: float | None = None

    def __post_init__(self):
        if self.window < 1:
            raise ValueError(f"CollapseRule({self.key}).window = {self.window}: must be >= 1")
        if self.floor is None and self.drop_ratio is None:
            raise ValueError(f"CollapseRule({self.key}): set floor and/or drop_ratio")


DEFAULT_RULES: tuple[CollapseRule, ...] = (
    CollapseRule("actor/entropy", "policy entropy", window=10, drop_ratio=0.1),
    CollapseRule("response/valid_format", "valid-format rate", window=10, floor=0.05,
                 drop_ratio=0.5),
    CollapseRule("response/length", "response length", window=10, drop_ratio=0.3),
)


@dataclasses.dataclass(frozen=True)
class CollapseWarning:
    step: int
    key: str
    what: str
    rolling_mean: float
    baseline: float | None
    reason: str

    def __str__(self) -> str:
        return (f"step {self.step}: {self.what} collapsed ({self.key} rolling mean "
                f"{self.rolling_mean:.4g}: {self.reason})")


class CollapseMonitor:
    """Feeds per-step metrics to ``CollapseRule``s; warns once until the metric recovers."""

    def __init__(self, rules: Iterable[CollapseRule] = DEFAULT_RULES):
        self.rules = tuple(rules)
        self._recent = {r.key: collections.deque(maxlen=r.window) for r in self.rules}
        self._first: dict[str, list[float]] = {r.key: [] for r in self.rules}
        self._firing: set[str] = set()

    def update(self, step: int, metrics: Mapping[str, Any]) -> list[CollapseWarning]:
        out = []
        for rule in self.rules:
            if rule.key not in metrics:
                continue
            value = float(metrics[rule.key])
            if not math.isfinite(value):
                continue
            first = self._first[rule.key]
            if len(first) < rule.window:
                first.append(value)
            recent = self._recent[rule.key]
            recent.append(value)
            if len(recent) < rule.window:
                continue
            warning = self._check(step, rule, float(np.mean(recent)), first)
            if warning is None:
                self._firing.discard(rule.key)
            elif rule.key not in self._firing:
                self._firing.add(rule.key)
                log.warning("collapse monitor: %s", warning)
                out.append(warning)
        return out

    @staticmethod
    def _check(step, rule, mean, first) -> CollapseWarning | None:
        baseline = float(np.mean(first)) if len(first) == rule.window else None
        if rule.floor is not None and mean < rule.floor:
            return CollapseWarning(step, rule.key, rule.what, mean, baseline,
                                   f"below the floor {rule.floor:g}")
        if rule.drop_ratio is not None and baseline is not None and baseline > 0 \
                and mean < rule.drop_ratio * baseline:
            return CollapseWarning(step, rule.key, rule.what, mean, baseline,
                                   f"below {rule.drop_ratio:g} x the first-{rule.window}-step "
                                   f"mean {baseline:.4g}")
        return None


# ------------------------------------------------------------------------ non-finite guard
def tree_all_finite(tree: Any) -> jax.Array:
    """Scalar bool: every floating leaf of ``tree`` is finite (jit-able)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def keep_if_finite(ok: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``ok`` else ``old``, leaf by leaf (skip an update without a host sync)."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


class NonFiniteCounter:
    """Host-side count of skipped updates; raises after ``max_consecutive`` in a row."""

    def __init__(self, max_consecutive: int = 10):
        self.max_consecutive = max_consecutive
        self.total = 0
        self.consecutive = 0

    def record(self, step: int, finite: bool | jax.Array, what: str = "update") -> bool:
        """Counts one update; returns ``finite``. Raises FloatingPointError past the limit."""
        finite = bool(finite)
        if finite:
            self.consecutive = 0
            return True
        self.total += 1
        self.consecutive += 1
        log.warning("step %d: non-finite %s skipped (%d in a row, %d total)", step, what,
                    self.consecutive, self.total)
        if self.consecutive >= self.max_consecutive:
            raise FloatingPointError(
                f"step {step}: {self.consecutive} consecutive non-finite {what}s "
                f"(max_consecutive = {self.max_consecutive}); lower the learning rate or "
                "check the inputs")
        return False

    def metrics(self) -> dict[str, float]:
        return {"guard/skipped_total": float(self.total),
                "guard/skipped_consecutive": float(self.consecutive)}
