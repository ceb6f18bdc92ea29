"""How evaluation decodes (``eval.decoding``), and the label its results tables carry.

  greedy    temperature 0 (the default: deterministic, one seed is enough).
  sample    the run's own ``rollout.temperature`` / ``top_p`` / ``top_k``.
  searchr1  temperature 1.0, top-p 0.95, top-k off: what Search-R1's published validation
            actually ran. Its ``_validate`` asks for ``do_sample=False``, but
            ``LLMGenerationManager.run_llm_loop`` rebuilds each turn's batch with
            ``DataProto.from_dict`` and drops that ``meta_info``, so vLLM samples with the
            rollout's settings: ``scripts/nq_hotpotqa/evaluate.sh`` sets temperature 1 and
            keeps ``ppo_trainer.yaml``'s top_p 0.95. (Search-R1 also drops the last partial
            batch; here every example is scored.)

Sampling decodings take ``eval.seeds`` runs for a mean and a spread.
"""
from __future__ import annotations

from typing import Any

DECODINGS = ("greedy", "sample", "searchr1")
SEARCHR1_TEMPERATURE, SEARCHR1_TOP_P = 1.0, 0.95


def sampling_params(cfg: Any) -> dict[str, float | int]:
    """``{"temperature", "top_p", "top_k"}`` for ``cfg.eval.decoding`` (module doc)."""
    decoding, r = cfg.eval.decoding, cfg.rollout
    if decoding == "greedy":
        return dict(temperature=0.0, top_p=1.0, top_k=0)
    if decoding == "sample":
        return dict(temperature=float(r.temperature), top_p=float(r.top_p), top_k=int(r.top_k))
    if decoding == "searchr1":
        return dict(temperature=SEARCHR1_TEMPERATURE, top_p=SEARCHR1_TOP_P, top_k=0)
    raise ValueError(f"eval.decoding = {decoding!r}: must be one of {list(DECODINGS)}")


def decoding_label(cfg: Any) -> str:
    """e.g. ``"greedy"`` or ``"searchr1 (sampled: temperature 1.0, top-p 0.95; 3 seeds)"``."""
    if cfg.eval.decoding == "greedy":
        return "greedy"
    p = sampling_params(cfg)
    top_k = f", top-k {p['top_k']}" if p["top_k"] else ""
    seeds = cfg.eval.seeds
    return (f"{cfg.eval.decoding} (sampled: temperature {p['temperature']:g}, top-p "
            f"{p['top_p']:g}{top_k}; {seeds} seed{'s' if seeds != 1 else ''})")
