"""The host loop of multi-turn Search-R1 episodes (DESIGN.md "The method in one page").

Per turn: the generator samples every live row until ``</search>``, ``</answer>``, EOS or the
per-turn budget; each row's turn text is parsed (first ``<search>``/``<answer>`` block); all the
turn's queries go to the retriever in one call; each row's observation (information block or
invalid-action message) is tokenised alone, cut to ``max_obs_length`` tokens and appended to the
row's live context by an incremental prefill. Rows that answered stop. After ``max_turns``
search turns one final turn runs with search disabled (a search there gets an empty
``<information></information>`` block, appended to the response but never fed to the model).

Budget: before each turn a row's context (prompt + response so far) is at most
``max_prompt_length`` tokens, so the context never exceeds ``max_prompt_length +
max_response_length``. Search-R1 keeps the *last* ``max_prompt_length`` tokens, which can cut
the question away; here observations are cut to the room left instead, and a row with no room
ends (``truncated``): the question is never lost.

Generated text after the closing tag: the sampler stops at the token that completes the tag,
so at most the rest of that one token follows it; it is kept (re-tokenising the cut text as
Search-R1 does would change the tokens whose log-probs PPO uses).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import numpy as np
import tqdm

from searchr1_jax.rollout import observations, parsing, search_step, tokens as tok
from searchr1_jax.rollout.batch import (GENERATED, OBSERVATION, RolloutInfo, Segment,
                                        TurnRecord)
from searchr1_jax.rollout.generator import STOP_EOS, STOP_SEQUENCE, TurnGenerator, TurnOutput

STOP_STRINGS: tuple[str, ...] = ("</search>", "</answer>")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EpisodeSettings:
    max_turns: int = 4
    max_obs_length: int = 500
    max_prompt_length: int = 4096
    topk: int = 3
    retrieval_timeout_s: float = 30.0
    on_error: str = "observation"

    @classmethod
    def from_config(cls, cfg: Any) -> "EpisodeSettings":
        """From a full config (``rollout`` and ``retrieval`` sections)."""
        r, q = cfg.rollout, cfg.retrieval
        # The HTTP client already times out each of its (1 + retries) attempts after
        # timeout_s; the rollout's own guard must not cut those retries short.
        return cls(max_turns=r.max_turns, max_obs_length=r.max_obs_length,
                   max_prompt_length=r.max_prompt_length, topk=q.topk,
                   retrieval_timeout_s=float(q.timeout_s) * (1 + int(q.get("retries", 0))) + 1.0,
                   on_error=q.on_error)


@dataclasses.dataclass
class _Row:
    prompt: list[int]
    segments: list[Segment] = dataclasses.field(default_factory=list)
    turns: list[TurnRecord] = dataclasses.field(default_factory=list)
    done: bool = False
    has_answer: bool = False
    truncated: bool = False

    @property
    def context_len(self) -> int:
        return len(self.prompt) + sum(len(s.tokens) for s in self.segments)


def check_prompts(prompts: Sequence[Sequence[int]], max_prompt_length: int) -> None:
    """Fails early, naming the row, when a prompt alone exceeds the context budget."""
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt row {i} is empty")
        if len(p) > max_prompt_length:
            raise ValueError(
                f"prompt row {i} has {len(p)} tokens > rollout.max_prompt_length = "
                f"{max_prompt_length}; the question would be cut away (filter or raise the budget)")


def run_episodes(generator: TurnGenerator, tokenizer: Any, retriever: search_step.Retriever,
                 prompts: Sequence[Sequence[int]], settings: EpisodeSettings, *, seed: int = 0,
                 progress: bool = False) -> tuple[list[list[Segment]], RolloutInfo]:
    """Runs one batch of episodes to the end; returns each row's response segments and info."""
    check_prompts(prompts, settings.max_prompt_length)
    rows = [_Row(prompt=list(p)) for p in prompts]
    state = generator.start([r.prompt for r in rows], seed)
    bar = tqdm.tqdm(total=settings.max_turns + 1, desc="rollout turns", unit="turn",
                    disable=not progress, leave=False)
    for turn in range(settings.max_turns + 1):
        live = np.array([not r.done for r in rows])
        bar.set_postfix(live_rows=int(live.sum()))
        if not live.any():
            break
        final = turn == settings.max_turns
        state, out = generator.generate(state, live)
        live_idx = [int(i) for i in np.flatnonzero(live)]
        turn_out = {i: _cut_turn(tokenizer, out, i) for i in live_idx}
        texts = tok.decode_texts(tokenizer, [turn_out[i][0] for i in live_idx])
        obs_text: dict[int, str] = {}
        searching: list[int] = []
        for i, text in zip(live_idx, texts):
            row, action = rows[i], parsing.parse_action(text)
            row.turns.append(TurnRecord(text=text, action=action.kind, content=action.content,
                                        stop_reason=turn_out[i][2]))
            if action.is_answer:
                row.done = row.has_answer = True
            elif action.is_search:
                searching.append(i)
            elif not final:  # Search-R1 discards the final turn's invalid-action message
                obs_text[i] = observations.INVALID_ACTION_OBS
        if final:
            for i in searching:
                obs_text[i] = observations.EMPTY_INFORMATION_OBS
        else:
            outcome = search_step.run_searches(
                retriever, [rows[i].turns[-1].content for i in searching], topk=settings.topk,
                timeout_s=settings.retrieval_timeout_s, on_error=settings.on_error, turn=turn,
                rows=searching)
            for i, obs, ids in zip(searching, outcome.observations, outcome.doc_ids):
                obs_text[i] = obs
                rows[i].turns[-1].doc_ids = ids
                if outcome.error is not None:
                    rows[i].turns[-1].retrieval_error = (
                        f"{type(outcome.error).__name__}: {outcome.error}")
        chunks, drop = _record_turn(rows, live_idx, out, turn_out, obs_text, tokenizer,
                                    settings, final)
        if not final:
            state = generator.extend(state, chunks, drop)
        bar.update()
    bar.close()
    return [r.segments for r in rows], _info(rows, tokenizer)


def _cut_turn(tokenizer: Any, out: TurnOutput, i: int) -> tuple[list[int], list[float], int]:
    """Row ``i``'s turn up to the token that completes the first stop string (the sampler
    normally stopped there already; this guards against one that matched token ids only)."""
    ids, lps, stop = list(out.tokens[i]), list(out.logprobs[i]), int(out.stop_reason[i])
    keep = tok.stop_cut(tokenizer, ids, STOP_STRINGS)
    if keep < len(ids):
        return ids[:keep], lps[:keep], STOP_SEQUENCE
    return ids, lps, stop


def _record_turn(rows: list[_Row], live_idx: list[int], out: TurnOutput,
                 turn_out: dict[int, tuple[list[int], list[float], int]],
                 obs_text: dict[int, str], tokenizer: Any, settings: EpisodeSettings,
                 final: bool) -> tuple[list[list[int]], np.ndarray]:
    """Adds the turn's generated and observation segments; returns the chunks to prefill and
    how many of each row's sampled tokens leave the context first (cut text, trailing EOS)."""
    chunks: list[list[int]] = [[] for _ in rows]
    drop = np.zeros(len(rows), np.int32)
    obs_rows = [i for i in live_idx if i in obs_text]
    obs_ids = dict(zip(obs_rows, tok.encode_texts(tokenizer, [obs_text[i] for i in obs_rows])))
    for i in live_idx:
        row = rows[i]
        gen, lps, stop = turn_out[i]
        if i in obs_text and not final and stop == STOP_EOS and gen:
            # Search-R1 decodes with skip_special_tokens before continuing: a trailing EOS of a
            # turn that goes on never reaches the next turn's context.
            gen, lps = gen[:-1], lps[:-1]
        room = settings.max_obs_length if final else min(
            settings.max_obs_length,
            settings.max_prompt_length - row.context_len - len(gen))
        ids = obs_ids[i][:max(0, room)] if i in obs_text else []
        if i in obs_text and not ids:  # no room left: the episode ends with the turn as sampled
            row.done = row.truncated = True
            gen, lps, _ = turn_out[i]
            log.debug("row %d: context budget %d reached", i, settings.max_prompt_length)
        if gen:
            row.segments.append(Segment(GENERATED, gen, lps))
        if not ids:
            continue
        row.segments.append(Segment(OBSERVATION, ids))
        row.turns[-1].observation = tok.decode_texts(tokenizer, [ids], skip_special=False)[0]
        if final:
            row.done = True
        else:
            chunks[i] = ids
            drop[i] = len(out.tokens[i]) - len(gen)
    return chunks, drop


def _info(rows: list[_Row], tokenizer: Any) -> RolloutInfo:
    response_ids = [[t for s in r.segments for t in s.tokens] for r in rows]
    texts = tok.decode_texts(tokenizer, response_ids) if rows else []
    return RolloutInfo(
        num_turns=np.array([len(r.turns) for r in rows], np.int32),
        num_searches=np.array([sum(t.action == "search" for t in r.turns) for r in rows],
                              np.int32),
        has_answer=np.array([r.has_answer for r in rows], bool),
        valid_format=np.array([r.has_answer and all(t.action for t in r.turns) for r in rows],
                              bool),
        truncated=np.array([r.truncated for r in rows], bool),
        response_text=texts,
        queries=[[t.content for t in r.turns if t.action == "search"] for r in rows],
        doc_ids=[[t.doc_ids for t in r.turns if t.action == "search"] for r in rows],
        turns=[r.turns for r in rows],
        questions=[""] * len(rows), golden_answers=[[] for _ in rows],
        data_source=[""] * len(rows))
