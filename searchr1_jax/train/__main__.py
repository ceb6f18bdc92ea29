"""Command line: ``python -m searchr1_jax.train --config=configs/<preset>.py [--config.x=y ...]``.

The config is validated (``searchr1_jax.config.validate``) before anything loads or compiles;
a run directory with a checkpoint is resumed at its exact step.
"""
from __future__ import annotations

import logging

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file with get_config(), e.g. configs/demo_cpu.py", lock_config=True)


def main(argv) -> None:
    del argv
    from searchr1_jax.config import validate
    cfg = validate(_CONFIG.value)
    from searchr1_jax.parallel import initialize_distributed
    initialize_distributed()
    from searchr1_jax.train import loop
    from searchr1_jax.train.build import build_trainer
    trainer = build_trainer(cfg)
    history = loop.run(trainer, cfg)
    if history:
        last = history[-1]
        logging.info("finished at step %d: reward %.3f, em %.3f", trainer.step_count,
                     last["reward/mean"], last["reward/em"])


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run(main)
