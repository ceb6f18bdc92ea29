"""``collect_rollouts``: episodes for a batch of prompts -> (``RolloutBatch``, ``RolloutInfo``).

Host/device overlap: with ``pipeline_groups = g > 1`` the rows are split into ``g`` contiguous
groups, each running its own episode loop (own generator state) in a thread. JAX releases the
GIL while a jitted computation runs, so one group's parsing, tokenisation and retrieval run
while another group's turn is being sampled on the device.
"""
from __future__ import annotations

import concurrent.futures
from typing import Any, Sequence

import numpy as np

from searchr1_jax.rollout import tokens as tok
from searchr1_jax.rollout.batch import RolloutBatch, RolloutInfo, assemble_batch, concat_infos
from searchr1_jax.rollout.engine import EpisodeSettings, run_episodes
from searchr1_jax.rollout.generator import TurnGenerator
from searchr1_jax.rollout.search_step import Retriever


def split_rows(n: int, groups: int) -> list[range]:
    """Contiguous, nearly equal row ranges (no empty group)."""
    groups = max(1, min(groups, n))
    bounds = np.linspace(0, n, groups + 1).round().astype(int)
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def collect_rollouts(generator: TurnGenerator, tokenizer: Any, retriever: Retriever,
                     prompts: Sequence[Sequence[int]], settings: EpisodeSettings, *,
                     group_ids: Sequence[int] | None = None,
                     questions: Sequence[str] | None = None,
                     golden_answers: Sequence[Sequence[str]] | None = None,
                     data_source: Sequence[str] | None = None,
                     seed: int = 0, pipeline_groups: int = 1, progress: bool = False
                     ) -> tuple[RolloutBatch, RolloutInfo]:
    """Runs every prompt's episode; rows keep the order of ``prompts``."""
    n = len(prompts)
    if n == 0:
        raise ValueError("collect_rollouts: no prompts")
    for name, values in (("group_ids", group_ids), ("questions", questions),
                         ("golden_answers", golden_answers), ("data_source", data_source)):
        if values is not None and len(values) != n:
            raise ValueError(f"collect_rollouts: {name} has {len(values)} entries for {n} prompts")
    parts = split_rows(n, pipeline_groups)

    def run(g: int):
        return run_episodes(generator, tokenizer, retriever, [prompts[i] for i in parts[g]],
                            settings, seed=seed * 1_000_003 + g, progress=progress and g == 0)

    if len(parts) == 1:
        results = [run(0)]
    else:
        with concurrent.futures.ThreadPoolExecutor(len(parts), "rollout-group") as pool:
            results = list(pool.map(run, range(len(parts))))
    segments = [segs for part_segments, _ in results for segs in part_segments]
    info = concat_infos([part_info for _, part_info in results])
    info.questions = list(questions) if questions is not None else [""] * n
    info.golden_answers = ([list(a) for a in golden_answers] if golden_answers is not None
                           else [[] for _ in range(n)])
    info.data_source = list(data_source) if data_source is not None else [""] * n
    batch = assemble_batch(prompts, segments,
                           group_ids if group_ids is not None else list(range(n)),
                           tok.pad_id_of(tokenizer))
    return batch, info
