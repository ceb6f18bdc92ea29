"""The interface between the host episode loop and whatever produces tokens.

The loop (``engine.py``) only sees this protocol, so it runs unchanged on the device-backed
``CachedGenerator`` (model + KV cache + jitted sampler) and on the scripted generators used by
the property tests. A generator's *state* is explicit and opaque to the loop (for the device
generator: the KV cache, the last fed token per row and the RNG key).

Context contract: after ``start(prompts)`` row ``b``'s context is ``prompts[b]``; ``generate``
appends the sampled tokens of active rows; ``extend`` first removes the last ``drop[b]`` tokens
sampled in the row's last turn (text after the first stop string; the trailing EOS that
Search-R1 strips before continuing an episode) and then appends ``chunks[b]`` (an observation)
with an incremental prefill: the context is never re-encoded.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence

import numpy as np

STOP_BUDGET, STOP_EOS, STOP_SEQUENCE = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class TurnOutput:
    tokens: list[list[int]]       # sampled tokens per row ([] for inactive rows)
    logprobs: list[list[float]]   # sampler log-prob of each sampled token
    stop_reason: np.ndarray       # int[B]: STOP_BUDGET | STOP_EOS | STOP_SEQUENCE


class TurnGenerator(Protocol):
    max_new_tokens: int           # per-turn budget (rollout.max_response_length)

    def start(self, prompts: Sequence[Sequence[int]], seed: int) -> Any:
        """Prefills the prompts into a fresh state."""

    def generate(self, state: Any, active: np.ndarray) -> tuple[Any, TurnOutput]:
        """Samples one turn for rows with ``active[b]``; stops on eos/stop strings/budget."""

    def extend(self, state: Any, chunks: Sequence[Sequence[int]], drop: np.ndarray) -> Any:
        """Appends ``chunks[b]`` to row ``b``'s context (``[]``: nothing), see module doc."""
