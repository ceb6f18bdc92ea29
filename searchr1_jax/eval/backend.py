"""Builds what the harness runs on: the model, the device turn generator and the retriever."""
from __future__ import annotations

from typing import Any

from searchr1_jax.eval.harness import EvalSettings
from searchr1_jax.rollout import EpisodeSettings

# End-of-turn tokens of the chat templates this project supports (Qwen, SmolLM2, Llama 3).
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>")


def eos_ids_of(tokenizer: Any) -> list[int]:
    """The tokenizer's eos id(s) plus any chat end-of-turn token it knows."""
    ids = []
    eos = getattr(tokenizer, "eos_token_id", None)
    ids.extend(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    ids.extend(vocab[t] for t in END_TOKENS if t in vocab)
    return sorted({int(i) for i in ids})


def make_generator(model: Any, tokenizer: Any, cfg: Any, greedy: bool = True, *,
                   sampling: dict[str, Any] | None = None) -> Any:
    """``CachedGenerator`` for the config: temperature 0 (greedy) unless ``greedy`` is False.

    ``sampling`` (``{"temperature", "top_p", "top_k"}``, e.g. ``eval.decoding.sampling_params``)
    overrides both. The KV cache is sized per batch from the episode budgets
    (``cache_len=None``).
    """
    from searchr1_jax.rollout import tokens as tok
    from searchr1_jax.rollout.cached_generator import CachedGenerator

    r = cfg.rollout
    p = sampling or dict(temperature=0.0 if greedy else float(r.temperature),
                         top_p=float(r.top_p), top_k=int(r.top_k))
    return CachedGenerator(
        model, cache_len=None, episode=EpisodeSettings.from_config(cfg),
        max_new_tokens=r.max_response_length, eos_ids=eos_ids_of(tokenizer),
        temperature=p["temperature"], top_p=p["top_p"], top_k=p["top_k"], tokenizer=tokenizer,
        pad_id=tok.pad_id_of(tokenizer), weights_dtype=r.get("weights_dtype") or None)


def eval_settings(cfg: Any) -> EvalSettings:
    return EvalSettings(batch_size=cfg.eval.batch_size, prompt_style=cfg.data.prompt_style,
                        rag_topk=cfg.retrieval.topk, episode=EpisodeSettings.from_config(cfg),
                        use_file_prompt=bool(cfg.data.use_file_prompt))


def needs_retriever(methods) -> bool:
    return any(m in ("rag", "search_r1") for m in methods)
