"""Test doubles honouring the rollout's interfaces: a lossless multi-character tokenizer, a
scripted turn generator that emulates the sampler's stopping rules, and in-memory retrievers."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from searchr1_jax.rollout.generator import (STOP_BUDGET, STOP_EOS, STOP_SEQUENCE, TurnOutput)

PAD, EOS = 0, 1
# Multi-character pieces so that tags straddle token boundaries in many ways.
PIECES = sorted({"<search>", "</search>", "</search>\n", "<answer>", "</answer>", "</answer>.",
                 "</", "<", ">", "search", "answer", "ch>", "</se", "arch>", "<information>",
                 "</information>", "\n\n", "Doc", " the", "Title", "ation", "think>", " ", "e"},
                key=len, reverse=True)
_PIECE_ID = {p: 2 + k for k, p in enumerate(PIECES)}
_CHAR_BASE = 1000


class FakeTokenizer:
    """Greedy longest-match tokenizer; decode(encode(s)) == s for every string."""
    pad_token_id = PAD
    eos_token_id = EOS

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            for p in PIECES:
                if text.startswith(p, i):
                    ids.append(_PIECE_ID[p])
                    i += len(p)
                    break
            else:
                ids.append(_CHAR_BASE + ord(text[i]))
                i += 1
        return ids

    def __call__(self, texts, add_special_tokens: bool = False):
        return {"input_ids": [self.encode(t) for t in texts]}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        out = []
        for t in ids:
            t = int(t)
            if t in (PAD, EOS):
                if not skip_special_tokens:
                    out.append("<eos>" if t == EOS else "<pad>")
            elif t < 2 + len(PIECES):
                out.append(PIECES[t - 2])
            elif t < _CHAR_BASE:
                continue   # unused ids (a model's padded vocabulary) add no text
            else:
                out.append(chr(t - _CHAR_BASE))
        return "".join(out)

    def batch_decode(self, ids, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(x, skip_special_tokens) for x in ids]


@dataclasses.dataclass(frozen=True)
class ScriptedTurn:
    text: str
    eos: bool = False   # the "model" emits EOS after the text


def fake_logprob(token: int, position: int) -> float:
    return -0.01 - 0.1 * ((token * 7 + position) % 13)


def emulate_sampler(tokenizer: FakeTokenizer, turn: ScriptedTurn, budget: int,
                    stop_sequences=("</search>", "</answer>")) -> tuple[list[int], int]:
    """The sampler's stopping rule: stop after the token that completes a stop string in the
    turn's text, after EOS, or at the budget."""
    ids = tokenizer.encode(turn.text) + ([EOS] if turn.eos or not turn.text else [])
    for k, t in enumerate(ids):
        if t == EOS:
            return ids[:k + 1], STOP_EOS
        text = tokenizer.decode(ids[:k + 1], skip_special_tokens=True)
        if any(s in text for s in stop_sequences):
            return ids[:k + 1], STOP_SEQUENCE
        if k + 1 == budget:
            return ids[:k + 1], STOP_BUDGET
    return ids, STOP_BUDGET


class ScriptedGenerator:
    """Plays each row's scripted turns; keeps each row's context to check what was fed."""

    def __init__(self, tokenizer: FakeTokenizer, scripts: Sequence[Sequence[ScriptedTurn]],
                 max_new_tokens: int, stop_sequences=("</search>", "</answer>")):
        self.tokenizer, self.scripts, self.max_new_tokens = tokenizer, scripts, max_new_tokens
        self.stop_sequences = stop_sequences  # () emulates a sampler that overshoots the tags
        self.final_states: list[dict] = []

    def start(self, prompts, seed):
        # Rows are identified by their prompt's first token (tests give each row a unique one).
        rows = [int(p[0]) for p in prompts]
        state = {"rows": rows, "context": [list(p) for p in prompts], "turn": [0] * len(rows),
                 "last_turn": [[] for _ in rows]}
        self.final_states.append(state)
        return state

    def generate(self, state, active):
        tokens, logprobs = [], []
        stop = np.zeros(len(active), np.int32)
        for b, on in enumerate(active):
            if not on:
                tokens.append([])
                logprobs.append([])
                continue
            script = self.scripts[state["rows"][b]]
            k = state["turn"][b]
            turn = script[k] if k < len(script) else ScriptedTurn("...")
            ids, stop[b] = emulate_sampler(self.tokenizer, turn, self.max_new_tokens,
                                           self.stop_sequences)
            start = len(state["context"][b])
            tokens.append(ids)
            logprobs.append([fake_logprob(t, start + j) for j, t in enumerate(ids)])
            state["context"][b] += ids
            state["turn"][b] += 1
            state["last_turn"][b] = ids
        return state, TurnOutput(tokens, logprobs, stop)

    def extend(self, state, chunks, drop):
        for b, (chunk, n) in enumerate(zip(chunks, drop)):
            assert 0 <= n <= len(state["last_turn"][b]), f"row {b}: drops {n} tokens"
            if n:
                del state["context"][b][-n:]
            state["context"][b] += list(chunk)
            state["last_turn"][b] = []
        return state


def doc(i: int, title: str, text: str) -> dict:
    return {"id": str(i), "contents": f'"{title}"\n{text}', "score": 1.0}


class ListRetriever:
    """Deterministic in-memory retriever: hits depend on the query's characters."""

    def __init__(self, docs: Sequence[dict] | None = None):
        self.docs = list(docs) if docs else [doc(i, f"T{i}", f"text number {i} é")
                                             for i in range(10)]
        self.calls: list[list[str]] = []

    def search(self, queries, k):
        self.calls.append(list(queries))
        out = []
        for q in queries:
            start = sum(map(ord, q)) % len(self.docs)
            out.append([self.docs[(start + j) % len(self.docs)] for j in range(k)])
        return out


class FailingRetriever:
    """Fails (or hangs) from the ``fail_from``-th call on."""

    def __init__(self, fail_from: int = 1, hang_s: float = 0.0):
        self.inner, self.fail_from, self.hang_s, self.n = ListRetriever(), fail_from, hang_s, 0

    def search(self, queries, k):
        self.n += 1
        if self.n > self.fail_from:
            if self.hang_s:
                import time
                time.sleep(self.hang_s)
            raise ConnectionError("retrieval server at 127.0.0.1:8000 refused the connection")
        return self.inner.search(queries, k)
