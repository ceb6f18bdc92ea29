"""``python -m searchr1_jax.export``: a trained run -> a Hugging Face directory; transformers'
fp32 logits on it equal ours with the trained parameters (1e-5), sharded or not, any step."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from searchr1_jax.export import export_run
from searchr1_jax.models import load_model
from tests.train._tiny import REPO

TOKENS = np.array([[5, 17, 42, 99, 3, 250, 7, 8, 19, 300, 11, 2],
                   [1, 64, 65, 66, 120, 121, 4, 9, 310, 13, 14, 15]], np.int32)


def our_logits(hf_dir, leaves):
    """Our decoder (fp32) with the given parameter leaves, on ``TOKENS``."""
    model, _, _ = load_model(hf_dir, dtype="float32", param_dtype="float32")
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params = jax.tree.unflatten(jax.tree.structure(params), [np.asarray(x) for x in leaves])
    model = nnx.merge(graphdef, params, rest)
    positions = np.broadcast_to(np.arange(TOKENS.shape[1], dtype=np.int32), TOKENS.shape)
    logits, _ = model(TOKENS, positions)
    return np.asarray(logits)


def hf_logits(out_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor(TOKENS, dtype=torch.long)).logits.numpy()


def test_export_latest_step_loads_in_transformers(tiny_run, tmp_path):
    out = str(tmp_path / "hf")
    summary = export_run(tiny_run.run_dir, out)
    assert summary["step"] == 2
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "generation_config.json",
            "tokenizer.json", "tokenizer_config.json"} <= files
    assert "model.safetensors.index.json" not in files  # one shard: no index, as HF does
    trained = tiny_run.params[2]
    assert max(np.abs(a - b).max() for a, b in zip(trained, tiny_run.initial)) > 1e-4
    ref = hf_logits(out)
    np.testing.assert_allclose(ref, our_logits(tiny_run.hf_dir, trained), atol=1e-5, rtol=0)
    base = hf_logits(tiny_run.hf_dir)
    assert np.abs(ref - base).max() > 1e-3  # the trained weights were exported, not the base

    from transformers import AutoTokenizer, GenerationConfig
    tok, src = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(tiny_run.hf_dir)
    text = "who is the capital of France ?"
    assert tok.encode(text) == src.encode(text) and tok.unk_token_id not in tok.encode(text)
    gen = GenerationConfig.from_pretrained(out)
    assert (gen.eos_token_id, gen.bos_token_id) == (2, 1)
    # and our own loader reads the export back
    model, _, _ = load_model(out, dtype="float32", param_dtype="float32")
    leaves = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    for a, b in zip(leaves, trained):
        np.testing.assert_array_equal(a, b)


def test_export_cli_given_step_in_shards(tiny_run, tmp_path):
    out = str(tmp_path / "hf_sharded")
    proc = subprocess.run(
        [sys.executable, "-m", "searchr1_jax.export", f"--run={tiny_run.run_dir}",
         f"--out={out}", "--step=1", "--max_shard_size=100KB"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "step 1" in proc.stdout
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        index = json.load(f)
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert sorted(f for f in os.listdir(out) if f.endswith(".safetensors")) == shards
    from safetensors import safe_open
    total, names = 0, set()
    for shard in shards:
        with safe_open(os.path.join(out, shard), "np") as f:
            keys = list(f.keys())
            size = sum(f.get_tensor(k).nbytes for k in keys)
        assert size <= 100_000 or len(keys) == 1, (shard, size, keys)  # HF's rule
        assert all(index["weight_map"][k] == shard for k in keys)
        total += size
        names |= set(keys)
    assert names == set(index["weight_map"]) and index["metadata"]["total_size"] == total
    ref = hf_logits(out)
    np.testing.assert_allclose(ref, our_logits(tiny_run.hf_dir, tiny_run.params[1]),
                               atol=1e-5, rtol=0)
    assert np.abs(ref - our_logits(tiny_run.hf_dir, tiny_run.params[2])).max() > 1e-4


def test_export_refuses_a_non_empty_out_dir(tiny_run, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_run(tiny_run.run_dir, str(tmp_path / "busy"))
    with pytest.raises(FileNotFoundError, match="checkpoint step 7 not in"):
        export_run(tiny_run.run_dir, str(tmp_path / "new"), step=7)
    with pytest.raises(FileNotFoundError, match="not a training run directory"):
        export_run(str(tmp_path), str(tmp_path / "new"))
