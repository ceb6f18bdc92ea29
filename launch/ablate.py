"""Ablations of the paper as separate runs with identical seeds, and their paper-style figures.

Pairs (each compares two runs that differ in one switch; the shared baseline runs once):
  mask  : retrieved-token loss mask on (baseline) vs off          (paper Fig. / Table 4)
  algo  : GRPO (baseline) vs PPO (n = 1, KL in the reward)        (paper Table 3, Fig. 2a)
  model : instruct (baseline) vs base model (chat template if it has one) (Fig. 2b)
Every run trains with ``python -m searchr1_jax.train`` semantics (same config, same
``train.seed`` / ``data.shuffle_seed``), then is evaluated (Search-R1 rollouts, greedy) on the
mini test suite. Each run is its own subprocess (memory is returned between runs).

  python launch/ablate.py --config=configs/demo_cpu.py --pairs=mask,algo --steps=20 \
      --out=runs/ablate [--base_model=HF_DIR_OR_GGUF] [--eval_examples=5] [--plot_only]

Writes ``<out>/<run>/{metrics.jsonl,eval/results.json,...}`` and, from those files,
``<out>/reward_<pair>.png`` (training reward vs step per pair), ``<out>/response_dynamics.png``
(response length and number of searches vs step), ``<out>/final_em.{md,csv,png}``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BASELINE = "grpo_mask_instruct"
PAIRS = {"mask": (BASELINE, "no_mask"), "algo": (BASELINE, "ppo"), "model": (BASELINE, "base")}
LABELS = {BASELINE: "GRPO, mask, instruct", "no_mask": "no retrieved-token mask",
          "ppo": "PPO", "base": "base model"}


def run_overrides(name: str, cfg, base_model: str | None) -> dict[str, Any]:
    """Config changes of run ``name`` relative to the baseline config."""
    if name == BASELINE:
        return {}
    if name == "no_mask":
        return {"rl.mask_retrieved_tokens": False}
    if name == "ppo":
        # train.mini_batch_size counts rows; PPO has one per prompt (Search-R1: 512 rows / 256
        # = 2 updates where its GRPO makes 10), so it must divide the step's prompts.
        mini_rows = math.gcd(cfg.data.train_batch_size, cfg.train.mini_batch_size)
        return {"rl.algo": "ppo", "rl.n_samples": 1, "rl.use_kl_loss": False,
                "train.mini_batch_size": mini_rows,
                "train.micro_batch_size": math.gcd(mini_rows, cfg.train.micro_batch_size)}
    if name == "base":
        if not base_model:
            raise ValueError("the 'model' pair needs --base_model (a base checkpoint: HF dir, "
                             "hub id or .gguf; e.g. Qwen/Qwen2.5-3B next to the -Instruct one)")
        # Search-R1 applies the tokenizer's chat template whenever it has one, base models
        # included (verl/utils/dataset/rl_dataset.py; Qwen2.5 base tokenizers have one).
        return {"model.name": base_model, "data.prompt_style": "auto"}
    raise ValueError(f"unknown run {name!r}")


def runs_for(pairs: list[str]) -> list[str]:
    for p in pairs:
        if p not in PAIRS:
            raise ValueError(f"--pairs: unknown pair {p!r} (have {sorted(PAIRS)})")
    return list(dict.fromkeys(r for p in pairs for r in PAIRS[p]))


def run_config(args, name: str):
    from searchr1_jax.config import validate
    from searchr1_jax.demo import demo_config

    cfg = demo_config(args.config, steps=args.steps, eval_examples=args.eval_examples,
                      out_dir=os.path.join(args.out, name))
    for dotted, value in run_overrides(name, cfg, args.base_model).items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = value
    return validate(cfg)


def run_one(args, name: str) -> None:
    """Train and evaluate one run in this process (called in a subprocess per run)."""
    from searchr1_jax.evaluate import run_evaluation
    from searchr1_jax.train import loop
    from searchr1_jax.train.build import build_trainer

    cfg = run_config(args, name)
    os.makedirs(cfg.output.dir, exist_ok=True)
    trainer = build_trainer(cfg)
    loop.run(trainer, cfg)
    cfg.eval.out_dir = os.path.join(cfg.output.dir, "eval")
    run_evaluation(cfg, model=trainer.actor_model(), tokenizer=trainer.rollout_fn.tokenizer,
                   retriever=trainer.rollout_fn.retriever)


def _argv_for_child(args, name: str) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), f"--config={args.config}",
            f"--out={args.out}", f"--eval_examples={args.eval_examples}", f"--run_one={name}"]
    if args.steps is not None:
        argv.append(f"--steps={args.steps}")
    if args.base_model:
        argv.append(f"--base_model={args.base_model}")
    return argv


def write_figures(out: str, pairs: list[str]) -> dict[str, str]:
    """All figures and the final EM table from the runs' files under ``out``."""
    from searchr1_jax.eval import table_markdown
    from searchr1_jax.eval.plots import plot_curves, plot_em_bars, read_metrics

    names = runs_for(pairs)
    history = {n: read_metrics(os.path.join(out, n, "metrics.jsonl")) for n in names}
    paths = {}
    for p in pairs:
        a, b = PAIRS[p]
        paths[f"reward_{p}"] = plot_curves(
            {LABELS[a]: history[a], LABELS[b]: history[b]}, ["reward/mean"],
            os.path.join(out, f"reward_{p}.png"), title=f"ablation: {p}")
    paths["response_dynamics"] = plot_curves(
        {LABELS[n]: history[n] for n in names}, ["response/length", "response/num_searches"],
        os.path.join(out, "response_dynamics.png"))
    summaries = {}
    for n in names:
        path = os.path.join(out, n, "eval", "results.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: run {n!r} has no evaluation (did it finish?)")
        with open(path, encoding="utf-8") as f:
            summaries[LABELS[n]] = json.load(f)
    table = {label: s["search_r1"] for label, s in summaries.items()}
    md = table_markdown(table, "em")
    paths["final_em_md"] = os.path.join(out, "final_em.md")
    with open(paths["final_em_md"], "w", encoding="utf-8") as f:
        f.write(f"Final exact match (Search-R1 rollouts, greedy)\n\n{md}\n")
    paths["final_em_csv"] = os.path.join(out, "final_em.csv")
    with open(paths["final_em_csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        cols = list(next(iter(table.values())))
        w.writerow(["run", *cols])
        for label, t in table.items():
            w.writerow([label, *[f"{t[c]['em']:.6f}" for c in cols]])
    paths["final_em_png"] = plot_em_bars(summaries, "search_r1",
                                         os.path.join(out, "final_em.png"))
    print(md)
    return paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(REPO, "configs", "demo_cpu.py"))
    p.add_argument("--pairs", default="mask,algo", help="comma list of mask, algo, model")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--eval_examples", type=int, default=5, help="questions per dataset")
    p.add_argument("--out", default="runs/ablate")
    p.add_argument("--base_model", default="", help="base checkpoint for the 'model' pair")
    p.add_argument("--plot_only", action="store_true", help="only redraw from existing runs")
    p.add_argument("--run_one", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run_one:
        run_one(args, args.run_one)
        return 0
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    names = runs_for(pairs)
    if not args.plot_only:
        for name in names:  # every run's config is checked before the first one starts
            run_config(args, name)
        for name in names:
            if os.path.exists(os.path.join(args.out, name, "eval", "results.json")):
                print(f"[ablate] {name}: done already, skipping")
                continue
            changes = run_overrides(name, run_config(args, BASELINE), args.base_model)
            print(f"[ablate] run {name}: {changes or 'baseline'}")
            subprocess.run(_argv_for_child(args, name), check=True)
    paths = write_figures(args.out, pairs)
    print("\n".join(f"  {k}: {v}" for k, v in paths.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
