"""Kill-and-resume: SIGTERM a training subprocess mid-run, resume it, and compare every logged
metric with an uninterrupted run (exact on CPU)."""
import json
import os
import subprocess
import sys

import pytest

from tests.train._tiny import REPO

STEPS, KILL_AT = 6, 2
KEYS = ("actor/loss", "actor/pg_loss", "actor/grad_norm", "reward/mean", "actor/kl_loss",
        "critic/loss")


def _start(out_dir, algo, kill_at=-1, cache_dir=None):
    # A persistent compilation cache shared by the three runs: the same programs compile once.
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.Popen([sys.executable, "-m", "tests.train._resume_worker", out_dir,
                             str(STEPS), algo, str(kill_at)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _read(out_dir):
    path = os.path.join(out_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _finish(proc):
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]


@pytest.mark.parametrize("algo", ["grpo", pytest.param("ppo", marks=pytest.mark.slow)])
def test_kill_and_resume_matches_uninterrupted(tmp_path, algo):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    cache = str(tmp_path / "jax_cache")
    _finish(_start(full, algo, cache_dir=cache))
    reference = _read(full)
    assert [m["step"] for m in reference] == list(range(1, STEPS + 1))

    _finish(_start(cut, algo, kill_at=KILL_AT, cache_dir=cache))  # SIGTERM after step KILL_AT
    assert len(_read(cut)) == KILL_AT  # it really stopped early
    _finish(_start(cut, algo, cache_dir=cache))  # resume
    resumed = _read(cut)
    assert [m["step"] for m in resumed] == list(range(1, STEPS + 1))
    for ref, got in zip(reference, resumed):
        for k in KEYS:
            if k in ref:
                assert got[k] == ref[k], (int(ref["step"]), k, got[k], ref[k])
