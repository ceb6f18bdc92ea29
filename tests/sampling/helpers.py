"""Shared builders for the sampler tests: left-padded batches, tiny random Qwen2 (HF + ours)."""
import numpy as np

from searchr1_jax.sampling import left_pad


def tiny_qwen2(seed: int = 0, vocab: int = 384):
    """A random HF Qwen2ForCausalLM (fp32, eval) with peaked logits, and its config dict."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      tie_word_embeddings=False, initializer_range=0.2,
                      max_position_embeddings=512)
    model = Qwen2ForCausalLM(cfg).eval()
    return model, cfg.to_dict()


def ours_from_hf(hf_model, hf_config: dict, mesh=None):
    from searchr1_jax.models import ModelConfig, model_from_state_dict

    state = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
    cfg = ModelConfig.from_hf_config(hf_config)
    return model_from_state_dict(cfg, state.__getitem__, state.keys(), mesh=mesh,
                                 progress=False), cfg


def hf_greedy(hf_model, prompts: list[list[int]], n_new: int, eos_id: int | None,
              pad_id: int = 0) -> list[list[int]]:
    """transformers ``generate`` (greedy, left padding); each row cut after its first EOS."""
    import torch

    tokens, mask, _ = left_pad(prompts, pad_id)
    with torch.no_grad():
        out = hf_model.generate(torch.tensor(tokens, dtype=torch.long),
                                attention_mask=torch.tensor(mask, dtype=torch.long),
                                max_new_tokens=n_new, do_sample=False, eos_token_id=eos_id,
                                pad_token_id=pad_id, min_new_tokens=0)
    rows = []
    for r in out[:, tokens.shape[1]:].tolist():
        if eos_id is not None and eos_id in r:
            r = r[:r.index(eos_id) + 1]
        rows.append(r)
    return rows
