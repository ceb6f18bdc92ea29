"""Builds a ``Trainer`` from a config: mesh, model + tokenizer, data, retriever, rollout."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def build_trainer(cfg):
    """Everything ``python -m searchr1_jax.train`` needs, from the validated ``cfg``."""
    from searchr1_jax.data import BatchIterator, load_examples
    from searchr1_jax.models import load_model
    from searchr1_jax.parallel import DECODER_RULES, mesh_from_config
    from searchr1_jax.retrieval import build_retriever
    from searchr1_jax.train.search_rollout import SearchRollout
    from searchr1_jax.train.trainer import Trainer

    mesh = mesh_from_config(cfg.mesh)
    log.info("mesh %s", dict(mesh.shape))
    model, tokenizer, model_cfg = load_model(cfg.model.name, dtype=cfg.model.dtype,
                                             param_dtype=cfg.model.param_dtype, mesh=mesh,
                                             rules=DECODER_RULES)
    # Rematerialise decoder layers in the train step (the sampler's cached path ignores it).
    model.cfg = model_cfg.replace(remat=bool(cfg.model.remat))
    examples = load_examples(cfg.data.train, cfg.data.data_dir or None,
                             cfg.data.manual_dir or None, None, cfg.data.max_train_examples)
    data_iter = BatchIterator(examples, cfg.data.train_batch_size, seed=cfg.data.shuffle_seed)
    retriever = build_retriever(cfg.retrieval)
    rollout = SearchRollout(cfg, tokenizer, retriever)
    trajectories = (os.path.join(cfg.output.dir, "trajectories.jsonl")
                    if cfg.rollout.log_trajectories else None)
    return Trainer(cfg, model, rollout, data_iter, mesh=mesh, trajectory_path=trajectories)
