"""Paper presets and the CPU demo validate and carry the paper's numbers; the CLI validates
the config before loading anything."""
import glob
import os
import subprocess
import sys

import pytest

from searchr1_jax.config import load_config_file, validate
from tests.train._tiny import REPO

PRESETS = sorted(glob.glob(os.path.join(REPO, "configs", "*_ppo.py")) +
                 glob.glob(os.path.join(REPO, "configs", "*_grpo.py")))


def test_all_paper_presets_exist():
    names = {os.path.basename(p)[:-3] for p in PRESETS}
    for model in ("qwen2.5-3b", "qwen2.5-7b", "llama3.2-3b"):
        for variant in ("", "-instruct"):
            for algo in ("ppo", "grpo"):
                assert f"{model}{variant}_{algo}" in names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: os.path.basename(p))
def test_paper_preset(path):
    cfg = validate(load_config_file(path))
    algo = "ppo" if path.endswith("_ppo.py") else "grpo"
    assert cfg.rl.algo == algo
    assert (cfg.data.train_batch_size, cfg.train.mini_batch_size, cfg.train.steps) == (512, 256, 1005)
    assert (cfg.train.actor_lr, cfg.train.critic_lr, cfg.train.grad_clip) == (1e-6, 1e-5, 1.0)
    assert cfg.rollout.max_turns == 4 and cfg.rollout.temperature == 1.0
    assert cfg.rl.kl_coef == 0.001 and cfg.rl.mask_retrieved_tokens
    assert cfg.retrieval.topk == 3
    if algo == "grpo":
        assert cfg.rl.n_samples == 5 and cfg.rl.use_kl_loss and cfg.rl.kl_kind == "low_var_kl"
    else:
        assert cfg.rl.n_samples == 1 and not cfg.rl.use_kl_loss and cfg.rl.kl_kind == "kl"
    want_style = "chat" if "-instruct" in path else "raw"
    assert cfg.data.prompt_style == want_style


def test_demo_preset_validates():
    cfg = validate(load_config_file(os.path.join(REPO, "configs", "demo_cpu.py")))
    assert cfg.model.name == "smollm2-135m-instruct" and cfg.retrieval.kind == "bm25"


def test_cli_rejects_bad_config_before_loading():
    out = subprocess.run(
        [sys.executable, "-m", "searchr1_jax.train", "--config=configs/demo_cpu.py",
         "--config.rl.kl_kind=k9"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "rl.kl_kind = 'k9'" in out.stderr + out.stdout
    assert "mesh {" not in out.stderr  # failed before building the mesh / loading the model
