"""One harness for every method of the paper's Table 2, on any ``TurnGenerator``.

Methods: ``direct`` (answer at once), ``cot`` (reason, then answer), ``rag`` (top-k passages
for the question in the prompt), ``search_r1`` (multi-turn episodes through the rollout engine,
retrieval between turns). Single-turn methods run one ``generate`` turn of the same generator.

Every example is scored exactly once: examples go in fixed-size batches, the last one padded
by repeating its final example, and the padding rows' results are dropped (Search-R1's eval
drops the last partial batch). A prompt is never cut and a long one never stops the run: RAG
passages are cut to ``episode.max_prompt_length`` tokens (eval/rag.py), and a row whose prompt
still does not fit is scored as unanswered (``too_long``) while the rest of its batch runs.
Decoding is whatever the generator does (``evaluate.py``: ``eval.decoding``, eval/decoding.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import tqdm

from searchr1_jax.data.batching import padded_batches
from searchr1_jax.data.prompts import build_prompt, encode_prompts, example_prompt
from searchr1_jax.data.records import QaExample
from searchr1_jax.eval.scoring import score_response
from searchr1_jax.rollout import EpisodeSettings, collect_rollouts
from searchr1_jax.rollout import tokens as tok

METHODS = ("direct", "cot", "rag", "search_r1")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    batch_size: int = 64
    prompt_style: str = "auto"
    rag_topk: int = 3
    episode: EpisodeSettings = EpisodeSettings()
    use_file_prompt: bool = True   # data.use_file_prompt: a parquet's own prompt (search_r1)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"eval method {method!r}: must be one of {list(METHODS)}")


def method_prompts(method: str, batch: Sequence[QaExample], tokenizer: Any, style: str,
                   retriever: Any = None, topk: int = 3, budget: int | None = None,
                   use_file_prompt: bool = True) -> list[str]:
    """Prompt strings of one batch. RAG retrieves ``topk`` passages per question first and
    cuts them to ``budget`` prompt tokens (eval/rag.py); ``search_r1`` takes a parquet's own
    prompt when ``use_file_prompt``."""
    _check_method(method)
    if method == "search_r1":
        return [example_prompt(ex, tokenizer, style, use_file_prompt) for ex in batch]
    if method != "rag":
        return [build_prompt(ex.question, tokenizer, style, method) for ex in batch]
    if retriever is None:
        raise ValueError("eval method 'rag' needs a retriever")
    from searchr1_jax.eval.rag import fit_rag_prompt
    from searchr1_jax.retrieval.base import format_passages

    hits = retriever.search([ex.question for ex in batch], topk)
    if budget is None:
        return [build_prompt(ex.question, tokenizer, style, "rag", passages=format_passages(h))
                for ex, h in zip(batch, hits)]
    return [fit_rag_prompt(ex.question, format_passages(h), tokenizer, style, budget)
            for ex, h in zip(batch, hits)]


def _too_long_result() -> dict[str, Any]:
    """The row of an example whose prompt alone exceeds the budget: scored, unanswered."""
    return {"response": "", "generated": "", "num_turns": 0, "num_searches": 0, "queries": [],
            "too_long": True}


def _single_turn(generator: Any, tokenizer: Any, prompt_ids: list[list[int]], seed: int
                 ) -> list[dict[str, Any]]:
    state = generator.start(prompt_ids, seed)
    _, out = generator.generate(state, np.ones(len(prompt_ids), bool))
    texts = tok.decode_texts(tokenizer, out.tokens)
    return [{"response": t, "generated": t, "num_turns": 1, "num_searches": 0, "queries": []}
            for t in texts]


def _episodes(generator: Any, tokenizer: Any, retriever: Any, prompt_ids: list[list[int]],
              batch: Sequence[QaExample], settings: EvalSettings, seed: int
              ) -> list[dict[str, Any]]:
    _, info = collect_rollouts(
        generator, tokenizer, retriever, prompt_ids, settings.episode,
        group_ids=[ex.uid for ex in batch], questions=[ex.question for ex in batch],
        golden_answers=[list(ex.golden_answers) for ex in batch],
        data_source=[ex.data_source for ex in batch], seed=seed)
    # Scored on the model's own turns: observations (the invalid-action message spells
    # "<answer> and </answer>") must never be read as the model's answer.
    return [{"response": info.response_text[i],
             "generated": "".join(t.text for t in info.turns[i]),
             "num_turns": int(info.num_turns[i]),
             "num_searches": int(info.num_searches[i]), "queries": list(info.queries[i]),
             "doc_ids": info.doc_ids[i], "valid_format": bool(info.valid_format[i]),
             "truncated": bool(info.truncated[i])} for i in range(len(batch))]


def evaluate_method(method: str, examples: Sequence[QaExample], generator: Any, tokenizer: Any,
                    retriever: Any, settings: EvalSettings, seed: int = 0,
                    progress: bool = True) -> list[dict[str, Any]]:
    """One row dict per example (in order): ids, question, response, pred, em/sub_em/f1.

    ``response`` is everything after the prompt (observations included); ``generated`` is the
    model's own text, the only text ``pred`` is extracted from.
    """
    _check_method(method)
    if method == "search_r1" and retriever is None:
        raise ValueError("eval method 'search_r1' needs a retriever")
    rows: list[dict[str, Any]] = []
    batch_size = max(1, min(settings.batch_size, len(examples)))  # no all-padding rows
    n_batches = -(-len(examples) // batch_size)
    budget = settings.episode.max_prompt_length
    for batch, n_real in tqdm.tqdm(padded_batches(examples, batch_size),
                                   total=n_batches, desc=f"eval {method} seed {seed}",
                                   unit="batch", disable=not progress):
        texts = method_prompts(method, batch, tokenizer, settings.prompt_style, retriever,
                               settings.rag_topk, budget, settings.use_file_prompt)
        prompt_ids = encode_prompts(tokenizer, texts, settings.prompt_style)
        fits = [0 < len(p) <= budget for p in prompt_ids]
        if any(fits):
            # A row that cannot fit is run as a copy of one that does (same batch shape) and
            # its result replaced: every example keeps a row, none is cut.
            spare = fits.index(True)
            run_ids = [p if ok else prompt_ids[spare] for p, ok in zip(prompt_ids, fits)]
            if method == "search_r1":
                results = _episodes(generator, tokenizer, retriever, run_ids, batch, settings,
                                    seed)
            else:
                results = _single_turn(generator, tokenizer, run_ids, seed)
        else:
            results = [_too_long_result() for _ in batch]
        results = [res if ok else _too_long_result() for res, ok in zip(results, fits)]
        for ex, res in zip(batch[:n_real], results[:n_real]):  # padding rows are dropped
            rows.append({"method": method, "seed": seed, "uid": ex.uid, "id": ex.id,
                         "data_source": ex.data_source, "question": ex.question,
                         "golden_answers": list(ex.golden_answers), "answerable": ex.answerable,
                         "too_long": False, **res,
                         **score_response(res["generated"], ex.golden_answers)})
    return rows


def evaluate_all(methods: Sequence[str], examples: Sequence[QaExample], generator: Any,
                 tokenizer: Any, retriever: Any, settings: EvalSettings,
                 seeds: Sequence[int] = (0,), progress: bool = True) -> list[dict[str, Any]]:
    """Rows of every (method, seed), methods in the given order."""
    return [row for method in methods for seed in seeds
            for row in evaluate_method(method, examples, generator, tokenizer, retriever,
                                       settings, seed, progress)]
