"""Bad checkpoints and configs fail with errors that name the file, tensor or field at fault."""
import json
import os
import re

import numpy as np
import pytest

from searchr1_jax.models import CheckpointError, ModelConfig, ModelConfigError, load_hf_checkpoint
from searchr1_jax.models.hf_io import model_from_state_dict
from searchr1_jax.models.safetensors_io import SafetensorsFile, save_safetensors
from tests.models.hf_tiny import save_case


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    _, path = save_case(tmp_path_factory.mktemp("errors"), "qwen2_gqa2_tied")
    return path


def _copy_with(tmp_path, src: str, config_changes=None, drop=(), weights=True) -> str:
    dst = str(tmp_path / "ckpt")
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(config_changes or {})
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f)
    if weights:
        st = SafetensorsFile(os.path.join(src, "model.safetensors"))
        save_safetensors(os.path.join(dst, "model.safetensors"),
                         [(n, np.array(st.get(n))) for n in st.names() if n not in drop])
    return dst


def test_missing_directory_and_weight_file(tmp_path, good_dir):
    with pytest.raises(CheckpointError, match="model directory not found: .*nowhere"):
        load_hf_checkpoint(str(tmp_path / "nowhere"))
    no_weights = _copy_with(tmp_path, good_dir, weights=False)
    with pytest.raises(CheckpointError, match=r"no model\.safetensors.* in .*ckpt"):
        load_hf_checkpoint(no_weights)


def test_missing_or_corrupt_config(tmp_path, good_dir):
    path = _copy_with(tmp_path, good_dir)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(CheckpointError, match=r"corrupt .*config\.json"):
        load_hf_checkpoint(path)
    os.remove(os.path.join(path, "config.json"))
    with pytest.raises(CheckpointError, match=r"config\.json not found"):
        load_hf_checkpoint(path)


def test_truncated_weight_file_names_file_and_tensor(tmp_path, good_dir):
    path = _copy_with(tmp_path, good_dir)
    weights = os.path.join(path, "model.safetensors")
    size = os.path.getsize(weights)
    with open(weights, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(CheckpointError, match=re.escape(weights) + r".*tensor '.*' .*byte range"):
        load_hf_checkpoint(path)
    with open(weights, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage header}")
    with pytest.raises(CheckpointError, match=re.escape(weights) + ".*bad JSON header"):
        load_hf_checkpoint(path)
    with open(weights, "wb") as f:
        f.write(b"\x00\x01")
    with pytest.raises(CheckpointError, match="shorter than 8 bytes"):
        load_hf_checkpoint(path)


def test_missing_tensor_is_named(tmp_path, good_dir):
    path = _copy_with(tmp_path, good_dir, drop={"model.layers.1.mlp.up_proj.weight"})
    with pytest.raises(CheckpointError, match=r"missing 1 tensor.*model\.layers\.1\.mlp\.up_proj"):
        load_hf_checkpoint(path)


def test_shape_mismatch_names_tensor_and_shapes(tmp_path, good_dir):
    path = _copy_with(tmp_path, good_dir, {"intermediate_size": 96})
    with pytest.raises(CheckpointError,
                       match=r"ckpt: tensor 'model\.layers\.0\.mlp\.(down_proj\.weight' has shape "
                             r"\[64, 112\], but the config expects \[64, 96\]|(gate|up)_proj\.weight' "
                             r"has shape \[112, 64\], but the config expects \[96, 64\])"):
        load_hf_checkpoint(path)


def test_unexpected_tensors_mean_config_mismatch(tmp_path, good_dir):
    path = _copy_with(tmp_path, good_dir, {"num_hidden_layers": 1})
    with pytest.raises(CheckpointError, match=r"does not use.*model\.layers\.1\."):
        load_hf_checkpoint(path)


def test_unknown_architecture_is_named(tmp_path, good_dir):
    path = _copy_with(tmp_path, good_dir, {"architectures": ["MistralForCausalLM"],
                                           "model_type": "mistral"})
    with pytest.raises(ModelConfigError, match="MistralForCausalLM"):
        load_hf_checkpoint(path)


def test_bad_config_fields_are_named():
    with pytest.raises(ModelConfigError, match="yarn"):
        ModelConfig.from_hf_config({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 8,
                                    "hidden_size": 8, "intermediate_size": 8,
                                    "num_hidden_layers": 1, "num_attention_heads": 2,
                                    "rope_scaling": {"type": "yarn", "factor": 4.0}})
    with pytest.raises(ModelConfigError, match="'num_hidden_layers'"):
        ModelConfig.from_hf_config({"architectures": ["LlamaForCausalLM"], "vocab_size": 8,
                                    "hidden_size": 8, "intermediate_size": 8,
                                    "num_attention_heads": 2})
    with pytest.raises(ModelConfigError, match="num_kv_heads=3"):
        ModelConfig(family="llama", vocab_size=8, hidden_size=8, intermediate_size=8,
                    num_layers=1, num_heads=4, num_kv_heads=3, head_dim=2)
    with pytest.raises(ModelConfigError, match="unknown model preset 'qwen9-1b'"):
        ModelConfig.preset("qwen9-1b")


def test_state_dict_getter_errors_name_the_source():
    cfg = ModelConfig(family="llama", vocab_size=16, hidden_size=8, intermediate_size=8,
                      num_layers=1, num_heads=2, num_kv_heads=1, head_dim=4,
                      tie_word_embeddings=True)
    from searchr1_jax.models.hf_io import tensor_maps
    tensors = {m.hf_name: np.zeros(m.hf_shape, np.float32) for m in tensor_maps(cfg)}
    model_from_state_dict(cfg, tensors.__getitem__, tensors, progress=False)  # complete: loads
    tensors["model.norm.weight"] = np.zeros((9,), np.float32)
    with pytest.raises(CheckpointError, match=r"my\.gguf: tensor 'model\.norm\.weight' has shape "
                                              r"\[9\], but the config expects \[8\]"):
        model_from_state_dict(cfg, tensors.__getitem__, tensors, source="my.gguf",
                              progress=False)
