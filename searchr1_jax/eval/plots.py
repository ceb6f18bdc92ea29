"""Paper-style figures (matplotlib PNG) from training ``metrics.jsonl`` and evaluation summaries.

- ``plot_curves``: one panel per metric key (e.g. training reward, response length, number of
  searches) against the RL step, one line per run (the paper's Figures 2-4 for pairs of runs).
- ``plot_em_bars``: exact match per dataset (+ Avg.), one bar group per dataset, one bar per
  labelled summary (e.g. before / after training; each ablation run).
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

from searchr1_jax.eval.scoring import COLUMN_TITLES, DATASET_ORDER

CURVE_TITLES = {"reward/mean": "training reward", "reward/em": "training exact match",
                "response/length": "response length (tokens)",
                "response/num_searches": "number of searches",
                "response/valid_format": "valid format rate"}


def read_metrics(path: str) -> list[dict[str, float]]:
    """The JSON lines of a ``metrics.jsonl`` (later lines win for a repeated step)."""
    by_step: dict[float, dict] = {}
    with open(path, encoding="utf-8") as f:
        for row, line in enumerate(f):
            if line.strip():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, row {row}: invalid JSON ({e.msg})") from None
                by_step[rec.get("step", row)] = rec
    return [by_step[k] for k in sorted(by_step)]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt
    return plt


def plot_curves(runs: Mapping[str, Sequence[Mapping[str, float]]], keys: Sequence[str],
                path: str, title: str = "") -> str:
    """Metric ``keys`` vs step, one panel per key, one line per run name."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, history in runs.items():
            pts = [(h["step"], h[key]) for h in history if key in h]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3, label=name)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # RL steps are whole numbers
        ax.set_title(CURVE_TITLES.get(key, key), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_em_bars(summaries: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]],
                 method: str, path: str, metric: str = "em") -> str:
    """``metric`` per dataset for each labelled summary (``aggregate`` output) of ``method``."""
    plt = _pyplot()
    cols: list[str] = []
    for s in summaries.values():
        cols.extend(c for c in s[method] if c not in cols)
    cols = [c for c in DATASET_ORDER if c in cols] + [c for c in cols
                                                      if c not in DATASET_ORDER and c != "avg"]
    cols.append("avg")
    n = len(summaries)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2, 3.6))
    for k, (label, s) in enumerate(summaries.items()):
        vals = [s[method][c][metric] if c in s[method] else 0.0 for c in cols]
        ax.bar([i + (k - (n - 1) / 2) * width for i in range(len(cols))], vals, width,
               label=label)
    ax.set_xticks(range(len(cols)), [COLUMN_TITLES.get(c, c) for c in cols], fontsize=8)
    ax.set_ylabel(f"{metric} ({method})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
