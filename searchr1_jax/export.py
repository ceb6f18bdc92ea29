"""Export a training run's actor as a Hugging Face model directory.

  python -m searchr1_jax.export --run=runs/demo_cpu --out=exports/demo_cpu [--step=N]
      [--dtype=bfloat16] [--max_shard_size=5GB] [--overwrite]

Writes ``config.json``, the weights as safetensors shards of at most ``--max_shard_size``
(``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``),
the tokenizer files and ``generation_config.json``; the directory loads with
``transformers.AutoModelForCausalLM.from_pretrained`` (and with ``load_model`` here). The latest
checkpoint unless ``--step``; only the actor's parameters are read (``train/restore.py``). The
weights keep the run's ``model.param_dtype`` unless ``--dtype``.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any


def generation_config_for(source: Any, model_cfg: Any, tokenizer: Any) -> dict[str, Any]:
    """The base model's ``generation_config.json`` (when it had one) with the stop ids set.

    ``eos_token_id`` lists the config's eos ids and the chat end-of-turn tokens the tokenizer
    knows (``<|im_end|>`` ...): a Search-R1 episode's last turn ends there, so
    ``model.generate`` must stop there too.
    """
    from searchr1_jax.eval.backend import eos_ids_of

    gen: dict[str, Any] = {}
    path = os.path.join(source.path, "generation_config.json")
    if source.kind == "hf_dir" and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            gen = json.load(f)
    old = gen.get("eos_token_id")
    old = [] if old is None else list(old) if isinstance(old, (list, tuple)) else [old]
    eos = sorted({int(i) for i in [*old, *model_cfg.eos_token_ids, *eos_ids_of(tokenizer)]})
    if eos:
        gen["eos_token_id"] = eos[0] if len(eos) == 1 else eos
    bos = model_cfg.bos_token_id if model_cfg.bos_token_id is not None else getattr(
        tokenizer, "bos_token_id", None)
    if bos is not None:
        gen.setdefault("bos_token_id", int(bos))
    pad = model_cfg.pad_token_id if model_cfg.pad_token_id is not None else getattr(
        tokenizer, "pad_token_id", None)
    if pad is not None:
        gen.setdefault("pad_token_id", int(pad))
    gen.pop("transformers_version", None)
    return gen


def export_run(run_dir: str, out_dir: str, *, step: int | None = None, dtype: str = "",
               max_shard_size: int | str = "5GB", overwrite: bool = False) -> dict[str, Any]:
    """Exports checkpoint ``step`` (default: latest) of ``run_dir`` to ``out_dir``; returns a
    summary ``{"step", "out_dir", "files", "model"}``."""
    from searchr1_jax.models import export_hf
    from searchr1_jax.train.restore import mesh_if_possible, restore_actor, run_config

    out_dir = os.path.abspath(out_dir)
    if os.path.abspath(run_dir) == out_dir or out_dir.startswith(
            os.path.join(os.path.abspath(run_dir), "checkpoints")):
        raise ValueError(f"--out={out_dir} is inside the run's checkpoints: pick another place")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(f"--out={out_dir} exists and is not empty (pass --overwrite)")
    if dtype and dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"--dtype={dtype!r}: must be float32, bfloat16 or float16")
    cfg = run_config(run_dir, step)
    actor = restore_actor(run_dir, step=step, mesh=mesh_if_possible(cfg), config=cfg)
    print(f"[export] {run_dir}: step {actor.step} of {cfg.model.name} "
          f"({actor.model_cfg.family}, {actor.model_cfg.num_layers} layers)")
    export_hf(actor.model, actor.model_cfg, out_dir, actor.tokenizer, dtype=dtype or None,
              max_shard_size=max_shard_size,
              generation_config=generation_config_for(actor.source, actor.model_cfg,
                                                      actor.tokenizer))
    files = sorted(os.listdir(out_dir))
    print(f"[export] wrote {out_dir}: {', '.join(files)}")
    return {"step": actor.step, "out_dir": out_dir, "files": files, "model": cfg.model.name}


def _define_flags():
    from absl import flags
    flags.DEFINE_string("run", None, "training run directory (output.dir: holds checkpoints/)")
    flags.DEFINE_string("out", None, "Hugging Face directory to write")
    flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
    flags.DEFINE_enum("dtype", "", ["", "float32", "bfloat16", "float16"],
                      "weight dtype (default: the run's model.param_dtype)")
    flags.DEFINE_string("max_shard_size", "5GB", "largest safetensors shard, e.g. 5GB, 500MB")
    flags.DEFINE_bool("overwrite", False, "write into a non-empty --out")
    flags.mark_flags_as_required(["run", "out"])


def main(argv) -> None:
    from absl import flags
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    export_run(f.run, f.out, step=f.step, dtype=f.dtype, max_shard_size=f.max_shard_size,
               overwrite=f.overwrite)


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
    sys.exit(0)
