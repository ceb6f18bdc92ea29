"""Observation strings appended after a turn (DESIGN.md "The method in one page").

These are Search-R1's exact strings (``LLMGenerationManager.execute_predictions``); the rollout
tokenises each one alone, without special tokens, and cuts it to ``max_obs_length`` tokens as
Search-R1's ``_process_next_obs`` does.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from searchr1_jax.retrieval.base import format_passages

INVALID_ACTION_OBS = (
    "\nMy previous action is invalid. If I want to search, I should put the query between "
    "<search> and </search>. If I want to give the final answer, I should put the answer between "
    "<answer> and </answer>. Let me try again.\n")

EMPTY_INFORMATION_OBS = "\n\n<information></information>\n\n"


def information_obs(hits: Sequence[Mapping[str, Any]]) -> str:
    """``\\n\\n<information>{passages, stripped}</information>\\n\\n``; ``format_passages``
    (retrieval) gives Search-R1's ``Doc {i}(Title: {line 1}) {other lines}`` text."""
    return f"\n\n<information>{format_passages(hits).strip()}</information>\n\n"


def retrieval_error_obs(error: BaseException) -> str:
    """What the model sees when ``retrieval.on_error == "observation"`` and the search failed."""
    return (f"\n\n<information>Search failed ({type(error).__name__}): no documents were "
            "retrieved.</information>\n\n")
