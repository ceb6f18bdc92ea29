"""Rollout outputs: the device batch (``RolloutBatch``), host metadata (``RolloutInfo``) and the
assembly of per-row token segments into padded arrays (docs/architecture.md "Rollout output").
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.struct
import jax.numpy as jnp
import numpy as np

GENERATED, OBSERVATION = "gen", "obs"


@flax.struct.dataclass
class RolloutBatch:
    """``B`` rows; prompt width ``P`` (left-padded); response width ``R`` (right-padded)."""
    prompt_tokens: jnp.ndarray    # int32[B,P]
    prompt_mask: jnp.ndarray      # bool[B,P]   real prompt tokens
    response_tokens: jnp.ndarray  # int32[B,R]  generated + observation tokens
    response_mask: jnp.ndarray    # f32[B,R]    1 on every real response token
    loss_mask: jnp.ndarray        # f32[B,R]    1 on model-generated tokens only
    sample_logprobs: jnp.ndarray  # f32[B,R]    sampler log-prob of generated tokens, 0 elsewhere
    group_ids: jnp.ndarray        # int32[B]    prompt index (GRPO groups)

    def positions(self) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Prompt positions ``cumsum(prompt_mask) - 1``; response positions continue from the
        prompt length: ``prompt_len + arange(R)``."""
        prompt_pos = jnp.cumsum(self.prompt_mask.astype(jnp.int32), axis=1) - 1
        prompt_len = self.prompt_mask.sum(axis=1, dtype=jnp.int32)
        resp_pos = prompt_len[:, None] + jnp.arange(self.response_tokens.shape[1], dtype=jnp.int32)
        return jnp.maximum(prompt_pos, 0), resp_pos


@dataclasses.dataclass
class Segment:
    """A run of response tokens of one kind: ``gen`` (sampled, with log-probs) or ``obs``."""
    kind: str
    tokens: list[int]
    logprobs: list[float] | None = None


@dataclasses.dataclass
class TurnRecord:
    """What happened in one turn of one row (host side, for logs and the printer)."""
    text: str                    # decoded generated text of the turn
    action: str | None           # "search" | "answer" | None (invalid)
    content: str                 # the query or answer (stripped)
    stop_reason: int             # sampler's: 0 budget, 1 eos, 2 stop sequence
    observation: str = ""        # text appended after the turn (decoded after any cut)
    doc_ids: list[str] = dataclasses.field(default_factory=list)
    retrieval_error: str = ""


@dataclasses.dataclass
class RolloutInfo:
    """Host metadata per row (lists of length ``B``)."""
    num_turns: np.ndarray        # int: generation turns run
    num_searches: np.ndarray     # int: turns whose action was a search
    has_answer: np.ndarray       # bool: an <answer> block ended the episode
    valid_format: np.ndarray     # bool: every turn's action was valid and the row answered
    truncated: np.ndarray        # bool: the context budget ended the episode
    response_text: list[str]     # decoded response (generated + observations)
    queries: list[list[str]]
    doc_ids: list[list[list[str]]]
    turns: list[list[TurnRecord]]
    questions: list[str]
    golden_answers: list[list[str]]
    data_source: list[str]
    # The prompt text of each row as the model saw it (chat template and its special tokens
    # included), set by the caller that rendered it; Search-R1's exact format reward reads it.
    prompt_text: list[str] = dataclasses.field(default_factory=list)

    @property
    def generated_text(self) -> list[str]:
        """The model's own text per row: its turns joined, observations left out."""
        return ["".join(t.text for t in row) for row in self.turns]


def assemble_batch(prompts: Sequence[Sequence[int]], segments: Sequence[Sequence[Segment]],
                   group_ids: Sequence[int], pad_id: int) -> RolloutBatch:
    """Left-pads prompts and right-pads responses; ``loss_mask`` is 1 exactly on ``gen`` tokens."""
    b = len(prompts)
    p = max(1, max(len(x) for x in prompts))
    lengths = [sum(len(s.tokens) for s in segs) for segs in segments]
    r = max(1, max(lengths))
    prompt_tokens = np.full((b, p), pad_id, np.int32)
    prompt_mask = np.zeros((b, p), bool)
    resp = np.full((b, r), pad_id, np.int32)
    resp_mask = np.zeros((b, r), np.float32)
    loss_mask = np.zeros((b, r), np.float32)
    logprobs = np.zeros((b, r), np.float32)
    for i, (prompt, segs) in enumerate(zip(prompts, segments)):
        if prompt:
            prompt_tokens[i, p - len(prompt):] = prompt
            prompt_mask[i, p - len(prompt):] = True
        at = 0
        for seg in segs:
            n = len(seg.tokens)
            resp[i, at:at + n] = seg.tokens
            resp_mask[i, at:at + n] = 1.0
            if seg.kind == GENERATED:
                loss_mask[i, at:at + n] = 1.0
                logprobs[i, at:at + n] = seg.logprobs
            at += n
    return RolloutBatch(
        prompt_tokens=jnp.asarray(prompt_tokens), prompt_mask=jnp.asarray(prompt_mask),
        response_tokens=jnp.asarray(resp), response_mask=jnp.asarray(resp_mask),
        loss_mask=jnp.asarray(loss_mask), sample_logprobs=jnp.asarray(logprobs),
        group_ids=jnp.asarray(np.asarray(group_ids, np.int32)))


def concat_infos(infos: Sequence[RolloutInfo]) -> RolloutInfo:
    """Joins the infos of consecutive row groups (pipelined halves) in order."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RolloutInfo):
        parts = [getattr(x, f.name) for x in infos]
        out[f.name] = (np.concatenate(parts) if isinstance(parts[0], np.ndarray)
                       else [v for part in parts for v in part])
    return RolloutInfo(**out)
