"""Evaluate a model on QA datasets with the paper's methods; print and save a Table-2 table.

  python -m searchr1_jax.evaluate --config=configs/eval_mini.py [--checkpoint=DIR|FILE.gguf]
  python -m searchr1_jax.evaluate --config=configs/demo_cpu.py --checkpoint=runs/demo_cpu
      [--methods=direct,cot,rag,search_r1] [--decoding=searchr1 --seeds=3] [--out=runs/eval]
      [--config.data.max_eval_examples=50]

Decoding (``eval.decoding``, eval/decoding.py): ``greedy`` (default), ``sample`` (the run's
``rollout.temperature``/``top_p``) or ``searchr1`` (temperature 1, top-p 0.95: how Search-R1's
published numbers were decoded), one run per seed; ``--seeds=N`` (N > 1) gives mean and
spread and needs a sampling decoding (greedy runs would be identical). The table's header says
which decoding produced it. Every example is scored (the last batch is padded and the padding
dropped; a prompt too long for the budget is scored as unanswered). A training run directory
restores only its actor's parameters into ``model.name`` (no trainer, critic, reference or
data). Writes ``results.{json,csv,md}`` and ``trajectories.jsonl`` (one line per example,
method and seed).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from searchr1_jax.config import ConfigError, validate

SECTIONS = ("model", "data", "retrieval", "rollout", "eval")


def _methods(cfg) -> list[str]:
    return [m.strip() for m in cfg.eval.methods.split(",") if m.strip()]


def check_eval_config(cfg) -> None:
    validate(cfg, sections=SECTIONS)
    if cfg.eval.decoding == "greedy" and cfg.eval.seeds > 1:
        raise ConfigError(f"eval.seeds = {cfg.eval.seeds}: greedy decoding is deterministic, "
                          "so seeds > 1 needs a sampling eval.decoding ('searchr1' or 'sample')")


def is_run_dir(path: str) -> bool:
    """A training output directory (``<dir>/checkpoints/<step>/``) rather than a model."""
    return os.path.isdir(os.path.join(path, "checkpoints"))


def model_from_run(cfg, run_dir: str, retriever: Any = None) -> tuple[Any, Any, Any]:
    """The actor of the latest checkpoint of a training run (``cfg`` = its training config).

    ``train.restore.restore_actor`` builds the model's structure without weights and reads only
    the checkpoint's actor parameters (no optimizer state, critic, reference, data or rollout is
    built); returns ``(model, tokenizer, retriever)`` (``retriever`` passed through).
    """
    from searchr1_jax.train.restore import restore_actor

    restored = restore_actor(run_dir, config=cfg)
    print(f"[evaluate] {run_dir}: restored the actor of step {restored.step}")
    return restored.model, restored.tokenizer, retriever


def run_evaluation(cfg, *, checkpoint: str | None = None, model: Any = None,
                   tokenizer: Any = None, retriever: Any = None, examples=None,
                   progress: bool = True) -> tuple[dict, dict[str, str], list[dict]]:
    """Loads what is not given, evaluates, writes the results; returns (summary, paths, rows)."""
    from searchr1_jax.data import load_examples
    from searchr1_jax.eval import aggregate, evaluate_all, write_results
    from searchr1_jax.eval.backend import eval_settings, make_generator, needs_retriever
    from searchr1_jax.eval.decoding import decoding_label, sampling_params

    check_eval_config(cfg)
    methods = _methods(cfg)
    if examples is None:
        sources = [s.strip() for s in cfg.eval.sources.split(",") if s.strip()] or None
        examples = load_examples(cfg.data.eval, cfg.data.data_dir or None,
                                 cfg.data.manual_dir or None, sources,
                                 cfg.data.max_eval_examples)
    if model is None and checkpoint and is_run_dir(checkpoint):
        model, tokenizer, retriever = model_from_run(cfg, checkpoint, retriever)
    elif model is None:
        from searchr1_jax.models import load_model
        model, tokenizer, _ = load_model(checkpoint or cfg.model.name, dtype=cfg.model.dtype,
                                         param_dtype=cfg.model.param_dtype)
    if retriever is None and needs_retriever(methods):
        from searchr1_jax.retrieval import build_retriever
        retriever = build_retriever(cfg.retrieval)
    generator = make_generator(model, tokenizer, cfg, sampling=sampling_params(cfg))
    rows = evaluate_all(methods, examples, generator, tokenizer, retriever, eval_settings(cfg),
                        seeds=list(range(cfg.eval.seeds)), progress=progress)
    summary = aggregate(rows)
    out_dir = cfg.eval.out_dir or os.path.join(cfg.output.dir, "eval")
    paths = write_results(out_dir, rows, summary, with_std=cfg.eval.seeds > 1,
                          decoding=decoding_label(cfg))
    return summary, paths, rows


def main(argv) -> None:
    from absl import flags
    from searchr1_jax.eval import table_markdown
    from searchr1_jax.eval.decoding import decoding_label

    f = flags.FLAGS
    cfg = f.config
    if f.methods:
        cfg.eval.methods = f.methods
    if f.decoding:
        cfg.eval.decoding = f.decoding
    if f.seeds:
        cfg.eval.seeds = f.seeds
    if f.out:
        cfg.eval.out_dir = f.out
    t0 = time.time()
    summary, paths, rows = run_evaluation(cfg, checkpoint=f.checkpoint or None)
    print(f"\nExact match, decoding: {decoding_label(cfg)} ({len(rows)} rows scored, "
          f"{time.time() - t0:.0f}s):\n")
    print(table_markdown(summary, "em", with_std=cfg.eval.seeds > 1))
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in paths.items()))


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", "configs/eval_mini.py", "config file")
    flags.DEFINE_string("checkpoint", "", "a training run directory (its latest checkpoint; "
                        "--config must be its training config), an HF directory, a .gguf file "
                        "or a model name (default: the config's model.name)")
    flags.DEFINE_string("methods", "", "comma list: direct,cot,rag,search_r1")
    flags.DEFINE_string("decoding", "", "greedy | sample | searchr1 (default: eval.decoding)")
    flags.DEFINE_integer("seeds", 0, "seeds for mean and spread (needs a sampling --decoding)")
    flags.DEFINE_string("out", "", "output directory (default: {output.dir}/eval)")


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
    sys.exit(0)
