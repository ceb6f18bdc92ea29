"""The trainer's rollout function: Search-R1 episodes with the actor's live weights.

``SearchRollout(cfg, tokenizer, retriever)(model, rows, group_ids, seed)`` renders each row's
prompt (``data.prompt_style``; a Search-R1 parquet's own prompt with ``data.use_file_prompt``),
runs the multi-turn episodes of ``searchr1_jax.rollout`` with a
sampling (``rollout.temperature``) ``CachedGenerator`` over ``model`` and returns
``(RolloutBatch, RolloutInfo)``. ``last_retrieval_s`` is the time spent inside the retriever
during the last call (the rest of the rollout time is sampling and host work).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import numpy as np


class TimedRetriever:
    """Wraps a retriever and sums the seconds spent in ``search`` (thread-safe)."""

    def __init__(self, retriever: Any):
        self.retriever, self.seconds = retriever, 0.0
        self._lock = threading.Lock()

    def search(self, queries: list[str], k: int):
        t0 = time.perf_counter()
        try:
            return self.retriever.search(queries, k)
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - t0


class SearchRollout:
    """``trainer.RolloutFn`` over ``searchr1_jax.rollout.collect_rollouts`` (module doc)."""

    def __init__(self, cfg, tokenizer: Any, retriever: Any):
        from searchr1_jax.rollout import EpisodeSettings
        self.cfg, self.tokenizer = cfg, tokenizer
        self.retriever = TimedRetriever(retriever)
        self.settings = EpisodeSettings.from_config(cfg)
        self.last_retrieval_s = 0.0
        self._generator = None  # built once (its stop-string table too); model swapped per call

    def __call__(self, model, rows: Sequence[Any], group_ids: np.ndarray, seed: int):
        from searchr1_jax.data.prompts import encode_prompts, example_prompt
        from searchr1_jax.eval.backend import make_generator
        from searchr1_jax.rollout import collect_rollouts

        style = self.cfg.data.prompt_style
        use_file = bool(self.cfg.data.use_file_prompt)  # a parquet's own prompt, as written
        texts = [example_prompt(ex, self.tokenizer, style, use_file) for ex in rows]
        prompts = encode_prompts(self.tokenizer, texts, style)
        if self._generator is None:
            self._generator = make_generator(model, self.tokenizer, self.cfg, greedy=False)
        self._generator.model = model  # the actor's live weights this step, no copy
        self.retriever.seconds = 0.0
        batch, info = collect_rollouts(
            self._generator, self.tokenizer, self.retriever, prompts, self.settings,
            group_ids=[int(g) for g in group_ids], questions=[ex.question for ex in rows],
            golden_answers=[list(ex.golden_answers) for ex in rows],
            data_source=[ex.data_source for ex in rows], seed=seed,
            pipeline_groups=int(self.cfg.rollout.pipeline_groups))
        self.last_retrieval_s = self.retriever.seconds
        info.prompt_text = texts  # rl.reward = "format_searchr1" reads prompt + response
        return batch, info
