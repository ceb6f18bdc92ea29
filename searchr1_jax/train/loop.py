"""Runs a ``Trainer`` for ``train.steps`` RL steps: metrics, checkpoints, preemption, resume.

  * resume: if ``<output.dir>/checkpoints`` holds a checkpoint, params, optimizer states,
    the RL step and the data position are restored first (the rollout seed is a function of
    the step, so the run continues exactly as if never stopped);
  * every step's metrics go to ``<output.dir>/metrics.jsonl`` and TensorBoard
    (``train/metrics.py``'s ``MetricsLogger``), collapse monitors watch entropy / valid format /
    length, a ``NonFiniteCounter`` stops a run whose updates keep being skipped, and a tqdm bar
    shows reward, KL and tokens/s;
  * a checkpoint is saved every ``train.checkpoint_every`` steps, at the end, and when SIGTERM /
    SIGINT arrives (after the step in flight finishes), then the loop exits.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Callable

from searchr1_jax.train.checkpoint import CheckpointManager, PreemptionFlag
from searchr1_jax.train.metrics import CollapseMonitor, MetricsLogger, NonFiniteCounter
from searchr1_jax.train.trainer import Trainer
from searchr1_jax.train.wandb_sink import WandbSettings

log = logging.getLogger(__name__)


def restore_if_any(trainer: Trainer, manager: CheckpointManager) -> int | None:
    """Restores the latest checkpoint into ``trainer``; returns its step or None."""
    if manager.latest_step() is None:
        return None
    restored = manager.restore(trainer.state_tree())
    trainer.load_state(restored.state, restored.host)
    log.info("resumed from step %d", restored.step)
    return restored.step


def run(trainer: Trainer, cfg, *, steps: int | None = None,
        on_step: Callable[[dict[str, float]], None] | None = None,
        progress: bool = True) -> list[dict[str, float]]:
    """The training loop (module doc); returns the metrics of the steps it ran."""
    from tqdm.auto import tqdm

    steps = int(cfg.train.steps if steps is None else steps)
    out_dir = cfg.output.dir
    os.makedirs(out_dir, exist_ok=True)
    manager = CheckpointManager(os.path.join(out_dir, "checkpoints"),
                                keep=int(cfg.train.keep_checkpoints),
                                async_save=bool(cfg.train.async_checkpoint))
    history: list[dict[str, float]] = []
    logger = MetricsLogger(out_dir, wandb=WandbSettings.from_config(cfg),
                           config=json.loads(cfg.to_json_best_effort()))
    monitor, guard = CollapseMonitor(), NonFiniteCounter()
    try:
        restore_if_any(trainer, manager)
        every = max(1, int(cfg.train.checkpoint_every))
        bar = tqdm(total=steps, initial=trainer.step_count, desc=f"{cfg.rl.algo} steps",
                   disable=not progress, dynamic_ncols=True)
        with PreemptionFlag() as flag:
            while trainer.step_count < steps:
                metrics = trainer.train_step()
                guard.record(trainer.step_count, metrics.get("actor/update_skipped", 0.0) == 0.0,
                             "actor update")
                metrics.update(guard.metrics())
                history.append(metrics)
                logger.log(trainer.step_count, metrics)
                monitor.update(trainer.step_count, metrics)
                if on_step is not None:
                    on_step(metrics)
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                                kl=f"{metrics.get('actor/kl_loss', metrics.get('actor/approx_kl', 0.0)):.4f}",
                                tok_s=f"{metrics['perf/tokens_per_s']:.0f}")
                done = trainer.step_count >= steps
                stop = flag.should_stop()
                if done or stop or trainer.step_count % every == 0:
                    manager.save(trainer.step_count, trainer.state_tree(),
                                 host=trainer.host_state(),
                                 metadata={"config": cfg.to_json_best_effort()}, force=True)
                if stop:
                    log.warning("signal %s: saved step %d, exiting", flag.signum,
                                trainer.step_count)
                    break
        bar.close()
    finally:
        manager.close()
        logger.close()
    return history
