"""The trained actor of a training run, restored alone (for ``export``, ``ask`` and evaluation).

A run directory (``output.dir`` of ``python -m searchr1_jax.train``) holds
``checkpoints/<step>/`` with the run's config in each checkpoint's metadata. ``restore_actor``
reads that config, builds the model's structure from ``model.name`` without loading its
weights (``models.load_config_and_tokenizer`` + ``nnx.eval_shape``) and reads only the actor's
parameters from the checkpoint (``CheckpointManager.restore_subtree``): no optimizer moments,
critic, reference copy, data pipeline or retriever are built, so a 7B actor needs the memory
of its parameters only.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import jax
import ml_collections
from flax import nnx

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RestoredActor:
    model: Any              # models.Transformer with the trained parameters
    tokenizer: Any
    model_cfg: Any          # models.ModelConfig
    config: ml_collections.ConfigDict  # the run's training config
    step: int               # the checkpoint's RL step
    source: Any             # models.ModelSource of the base model (config, tokenizer files)


def checkpoint_dir(run_dir: str) -> str:
    path = os.path.join(os.path.abspath(run_dir), "checkpoints")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{run_dir}: not a training run directory (no checkpoints/ "
                                "inside; pass the output.dir of `python -m searchr1_jax.train`)")
    return path


def run_config(run_dir: str, step: int | None = None) -> ml_collections.ConfigDict:
    """The training config saved with checkpoint ``step`` (default: the latest) of ``run_dir``."""
    from searchr1_jax.train.checkpoint import CheckpointManager

    with CheckpointManager(checkpoint_dir(run_dir), async_save=False) as manager:
        meta = manager.read_metadata(step)
    if "config" not in meta:
        raise ValueError(f"{run_dir}: checkpoint metadata holds no 'config' (written by an "
                         "older trainer?); cannot tell which model it trained")
    cfg = meta["config"]
    return ml_collections.ConfigDict(json.loads(cfg) if isinstance(cfg, str) else cfg)


def restore_actor(run_dir: str, *, step: int | None = None, mesh=None, rules=None,
                  config: ml_collections.ConfigDict | None = None) -> RestoredActor:
    """The actor of checkpoint ``step`` (default: the latest) of ``run_dir`` (module doc).

    ``config``: the run's training config (default: the one saved in the checkpoint). With
    ``mesh`` the parameters are placed by ``rules`` (default ``DECODER_RULES``) as in training;
    without, on the default device.
    """
    from searchr1_jax.models import Transformer
    from searchr1_jax.models.loader import load_config_and_tokenizer
    from searchr1_jax.parallel import DECODER_RULES, tree_shardings
    from searchr1_jax.train.checkpoint import CheckpointManager

    cfg = config if config is not None else run_config(run_dir, step)
    model_cfg, tokenizer, source = load_config_and_tokenizer(
        cfg.model.name, dtype=cfg.model.dtype, param_dtype=cfg.model.param_dtype)
    abstract = nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)  # as the Trainer splits it
    if jax.tree.leaves(rest):  # abstract non-parameter state would need real values here
        raise NotImplementedError(f"{type(abstract).__name__} has {len(jax.tree.leaves(rest))} "
                                  "non-parameter state arrays: restore_actor cannot rebuild them")
    if mesh is not None:
        shardings = tree_shardings(params, mesh, DECODER_RULES if rules is None else rules)
    else:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, params)
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          params, shardings)
    with CheckpointManager(checkpoint_dir(run_dir), async_save=False) as manager:
        step, tree = manager.restore_subtree({"actor": {"params": target}}, step)
    model = nnx.merge(graphdef, tree["actor"]["params"], rest)
    return RestoredActor(model=model, tokenizer=tokenizer, model_cfg=model_cfg, config=cfg,
                         step=step, source=source)


def mesh_if_possible(cfg):
    """The config's mesh when this machine can build it (sharded placement), else None (one
    device): a run trained on a pod is still exportable / askable on a workstation."""
    from searchr1_jax.parallel import mesh_from_config
    try:
        return mesh_from_config(cfg.mesh)
    except ValueError as e:
        log.warning("mesh %s does not fit this machine (%s): using one device",
                    cfg.mesh.to_dict(), e)
        return None
