"""Scores and the paper-style results table (Table 2: methods x datasets, exact match).

Per row: ``pred = extract_answer(response)`` (last ``<answer>`` block of the response only),
``em`` / ``sub_em`` / ``f1`` from ``searchr1_jax.rewards``. Per (method, dataset):
the mean over rows; ``avg`` is the unweighted mean over the datasets present (the paper's
"Avg." column). With several seeds a cell is ``mean`` and ``std`` (population std over seeds).
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from searchr1_jax import rewards
from searchr1_jax.data.mini import TEST_SETS

METRICS = ("em", "sub_em", "f1")
# Column order of the paper's Table 2, then anything else in first-seen order.
DATASET_ORDER = tuple(TEST_SETS)
COLUMN_TITLES = {"nq": "NQ", "triviaqa": "TriviaQA", "popqa": "PopQA", "hotpotqa": "HotpotQA",
                 "2wikimultihopqa": "2wiki", "musique": "Musique", "bamboogle": "Bamboogle",
                 "avg": "Avg."}


def score_response(response: str, golden: Sequence[str]) -> dict[str, Any]:
    """``{"pred", "em", "sub_em", "f1"}`` of one response against its gold answers."""
    pred = rewards.extract_answer(response)
    return {"pred": pred, "em": rewards.exact_match(pred, golden),
            "sub_em": rewards.substring_match(pred, golden),
            "f1": rewards.f1_score(pred, golden)}


def ordered_sources(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    seen = list(dict.fromkeys(r["data_source"] for r in rows))
    return [s for s in DATASET_ORDER if s in seen] + [s for s in seen if s not in DATASET_ORDER]


def aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {dataset | "avg": {metric: mean, metric+"_std": std, "n": rows per seed}}}``.

    Means are taken per seed first, then mean and std over seeds.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mrows = [r for r in rows if r["method"] == method]
        seeds = sorted({r["seed"] for r in mrows})
        sources = ordered_sources(mrows)
        per_seed = {s: {src: {m: float(np.mean([r[m] for r in mrows
                                                 if r["seed"] == s and r["data_source"] == src]))
                              for m in METRICS} for src in sources} for s in seeds}
        for s in seeds:
            per_seed[s]["avg"] = {m: float(np.mean([per_seed[s][src][m] for src in sources]))
                                  for m in METRICS}
        table = {}
        for col in [*sources, "avg"]:
            cell: dict[str, float] = {}
            for m in METRICS:
                vals = [per_seed[s][col][m] for s in seeds]
                cell[m], cell[m + "_std"] = float(np.mean(vals)), float(np.std(vals))
            cell["n"] = (sum(1 for r in mrows if r["seed"] == seeds[0] and r["data_source"] == col)
                         if col != "avg" else
                         sum(1 for r in mrows if r["seed"] == seeds[0]))
            table[col] = cell
        out[method] = table
    return out


def _cell(cell: Mapping[str, float], metric: str, with_std: bool) -> str:
    text = f"{cell[metric]:.3f}"
    return text + f" ± {cell[metric + '_std']:.3f}" if with_std else text


def table_markdown(summary: Mapping[str, Mapping[str, Mapping[str, float]]],
                   metric: str = "em", with_std: bool = False) -> str:
    """Methods as rows, datasets (+ Avg.) as columns, like the paper's Table 2."""
    cols = list(dict.fromkeys(c for t in summary.values() for c in t if c != "avg")) + ["avg"]
    cols = [c for c in DATASET_ORDER if c in cols] + [c for c in cols if c not in DATASET_ORDER]
    head = ["Method"] + [COLUMN_TITLES.get(c, c) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, table in summary.items():
        lines.append("| " + " | ".join(
            [method] + [_cell(table[c], metric, with_std) if c in table else "-" for c in cols])
            + " |")
    return "\n".join(lines)


def write_results(out_dir: str, rows: Sequence[Mapping[str, Any]],
                  summary: Mapping[str, Any], with_std: bool = False,
                  decoding: str = "") -> dict[str, str]:
    """Writes ``results.json``, ``results.csv``, ``results.md`` and ``trajectories.jsonl``.

    ``decoding`` (``eval.decoding.decoding_label``) heads every table of ``results.md``: a
    greedy and a sampled table are not comparable (Search-R1's published numbers are sampled).
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f) for k, f in (
        ("json", "results.json"), ("csv", "results.csv"), ("md", "results.md"),
        ("trajectories", "trajectories.jsonl"))}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["method", "dataset", "n", *[x for m in METRICS for x in (m, m + "_std")]])
        for method, table in summary.items():
            for col, cell in table.items():
                w.writerow([method, col, cell["n"],
                            *[f"{cell[x]:.6f}" for m in METRICS for x in (m, m + "_std")]])
    with open(paths["md"], "w", encoding="utf-8") as f:
        head = f", decoding: {decoding}" if decoding else ""
        for metric in METRICS:
            f.write(f"### {metric}{head}\n\n{table_markdown(summary, metric, with_std)}\n\n")
    with open(paths["trajectories"], "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return paths
