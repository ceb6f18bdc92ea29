"""Tiny random transformers (PyTorch) Qwen2/Llama models: the independent reference.

Every parameter, including biases and norm scales, is drawn at random so that a wrongly mapped
or transposed tensor changes the logits.
"""
from __future__ import annotations

import numpy as np
import torch

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64}

# name -> (family, HF config kwargs). head_dim 16 with theta 5e5 and the llama3 scaling above
# puts RoPE wavelengths in all three bands (kept, smoothed, divided by the factor).
CASES = {
    "qwen2_mha_untied": ("qwen2", dict(num_attention_heads=4, num_key_value_heads=4,
                                       tie_word_embeddings=False)),
    "qwen2_gqa2_tied": ("qwen2", dict(num_attention_heads=4, num_key_value_heads=2,
                                      tie_word_embeddings=True)),
    "qwen2_gqa4_untied": ("qwen2", dict(num_attention_heads=8, num_key_value_heads=2,
                                        head_dim=8, tie_word_embeddings=False)),
    "llama3_scaled_tied": ("llama", dict(num_attention_heads=4, num_key_value_heads=2,
                                         rope_theta=500000.0, rope_scaling=LLAMA3_SCALING,
                                         tie_word_embeddings=True)),
    "llama_bias_untied": ("llama", dict(num_attention_heads=4, num_key_value_heads=1,
                                        attention_bias=True, tie_word_embeddings=False)),
}


def make_hf_model(family: str, seed: int = 0, vocab: int = 320, **kw) -> torch.nn.Module:
    """A random fp32 HF ``Qwen2ForCausalLM``/``LlamaForCausalLM`` (hidden 64, 2 layers)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(seed)
    base = dict(vocab_size=vocab, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                max_position_embeddings=512, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2)
    base.update(kw)
    if family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(architectures=["Qwen2ForCausalLM"], **base))
    else:
        model = LlamaForCausalLM(LlamaConfig(architectures=["LlamaForCausalLM"], **base))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    return model.eval().float()


def save_case(tmp_path, name: str, seed: int = 0):
    """Builds case ``name`` and saves it with ``save_pretrained``; returns (hf_model, dir)."""
    family, kw = CASES[name]
    model = make_hf_model(family, seed=seed, **kw)
    out = str(tmp_path / name)
    model.save_pretrained(out)
    return model, out


def hf_logits(model, tokens: np.ndarray, positions: np.ndarray | None = None,
              attention_mask: np.ndarray | None = None) -> np.ndarray:
    """Reference fp32 logits ``[B, T, V]`` from the PyTorch model."""
    kwargs = {}
    if positions is not None:
        kwargs["position_ids"] = torch.tensor(np.asarray(positions), dtype=torch.long)
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.tensor(np.asarray(attention_mask), dtype=torch.long)
    with torch.no_grad():
        return model(torch.tensor(np.asarray(tokens), dtype=torch.long), **kwargs).logits.numpy()
