"""A scripted "model" behind the rollout's TurnGenerator interface, for harness tests.

The script maps (prompt text, turn index, context text) to the next turn's text; the generator
emulates the sampler: it stops after the first ``</search>``/``</answer>`` or at EOS, never
past ``max_new_tokens``. Deterministic, like greedy decoding.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from searchr1_jax.rollout.generator import STOP_BUDGET, STOP_EOS, STOP_SEQUENCE, TurnOutput

PAD, EOS, OFFSET = 0, 1, 10


class CharTokenizer:
    """One token per character (id = ord + 10); pad 0, eos 1; no chat template."""
    pad_token_id, eos_token_id, chat_template = PAD, EOS, None

    def encode(self, text: str) -> list[int]:
        return [ord(c) + OFFSET for c in text]

    def __call__(self, texts, add_special_tokens: bool = False):
        return {"input_ids": [self.encode(t) for t in texts]}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(int(t) - OFFSET) if t >= OFFSET else
                       ("" if skip_special_tokens else "<eos>") for t in ids)

    def batch_decode(self, ids, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(x, skip_special_tokens) for x in ids]


Script = Callable[[str, int, str], str]


@dataclasses.dataclass
class ScriptedGenerator:
    script: Script
    tokenizer: CharTokenizer
    max_new_tokens: int = 200
    calls: int = 0

    def start(self, prompts, seed):
        return {"ctx": [list(p) for p in prompts], "turn": [0] * len(prompts),
                "prompt": [self.tokenizer.decode(p) for p in prompts]}

    def generate(self, state, active):
        toks, lps, stops = [], [], []
        self.calls += 1
        for b, ctx in enumerate(state["ctx"]):
            if not active[b]:
                toks.append([]), lps.append([]), stops.append(STOP_BUDGET)
                continue
            text = self.script(state["prompt"][b], state["turn"][b], self.tokenizer.decode(ctx))
            ids, stop = self.tokenizer.encode(text), STOP_EOS
            for k in range(len(ids)):
                if any(self.tokenizer.decode(ids[:k + 1]).endswith(s)
                       for s in ("</search>", "</answer>")):
                    ids, stop = ids[:k + 1], STOP_SEQUENCE
                    break
            else:
                ids = ids + [EOS]
            if len(ids) > self.max_new_tokens:
                ids, stop = ids[:self.max_new_tokens], STOP_BUDGET
            ctx.extend(ids)
            state["turn"][b] += 1
            toks.append(ids), lps.append([-0.5] * len(ids)), stops.append(stop)
        return state, TurnOutput(toks, lps, np.array(stops, np.int32))

    def extend(self, state, chunks, drop):
        for b, chunk in enumerate(chunks):
            if drop[b]:
                del state["ctx"][b][-int(drop[b]):]
            state["ctx"][b].extend(chunk)
        return state


class FakeRetriever:
    """Returns, for any query, ``k`` passages; passage 1 holds the query text itself."""

    def __init__(self):
        self.queries: list[str] = []

    def search(self, queries, k):
        self.queries.extend(queries)
        return [[{"id": f"d{j}", "contents": f'"Title {j}"\nabout {q}' if j == 0 else
                  f'"Title {j}"\nfiller {j}', "score": 1.0 / (j + 1)} for j in range(k)]
                for q in queries]
