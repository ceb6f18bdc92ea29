"""Subprocess body of the kill-and-resume test: a tiny-model GRPO run through ``loop.run``.

usage: python -m tests.train._resume_worker OUT_DIR STEPS ALGO [KILL_AT]
Each finished step appends its metrics to OUT_DIR/metrics.jsonl. With KILL_AT the process sends
itself SIGTERM right after step KILL_AT is logged (a real signal through the loop's handler, at
a deterministic point); the loop saves and exits, and a second invocation resumes.
"""
import os
import signal
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from searchr1_jax.data import BatchIterator  # noqa: E402
from searchr1_jax.train import loop  # noqa: E402
from searchr1_jax.train.trainer import Trainer  # noqa: E402
from tests.train._scripted import ScriptedRollout, hit_reward  # noqa: E402
from tests.train._tiny import tiny_model  # noqa: E402
from tests.train.test_trainer import tiny_config  # noqa: E402


def main(out_dir: str, steps: int, algo: str, kill_at: int) -> None:
    cfg = tiny_config(algo, steps)
    cfg.output.dir = out_dir
    cfg.train.checkpoint_every = 1000
    cfg.train.actor_warmup_ratio = 0.2  # the schedule must resume at the right count too
    trainer = Trainer(cfg, tiny_model(0, num_layers=1), ScriptedRollout(),
                      BatchIterator(list(range(64)), cfg.data.train_batch_size, seed=0),
                      reward_fn=hit_reward, min_width=8)
    def on_step(metrics):
        if int(metrics["step"]) == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)

    loop.run(trainer, cfg, progress=False, on_step=on_step)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else -1)
