"""HTML view of one rollout row with its loss mask coloured (notebooks, reports).

The response is split into runs of tokens with the same ``loss_mask`` value and each run is
decoded on its own (decoding token by token would break multi-byte characters), so what the
policy loss trains on (model-generated tokens, mask 1) and what it skips (retrieved
``<information>`` blocks and invalid-action messages, mask 0) stand apart at a glance.
"""
from __future__ import annotations

import html
from typing import Any

import numpy as np

GENERATED_STYLE = "background:#c8f0c8"   # loss_mask 1: trained on
OBSERVATION_STYLE = "background:#cfe0ff"  # loss_mask 0: retrieved / observation text
PROMPT_STYLE = "color:#888"


def mask_runs(tokens: Any, loss_mask: Any, response_mask: Any) -> list[tuple[int, list[int]]]:
    """``[(mask value 0/1, token ids)]`` for the real tokens of one row, in order."""
    runs: list[tuple[int, list[int]]] = []
    for t, m, real in zip(np.asarray(tokens), np.asarray(loss_mask), np.asarray(response_mask)):
        if not real:
            continue
        m = int(m > 0)
        if runs and runs[-1][0] == m:
            runs[-1][1].append(int(t))
        else:
            runs.append((m, [int(t)]))
    return runs


def loss_mask_html(batch: Any, tokenizer: Any, row: int = 0, *, prompt: bool = False) -> str:
    """``<pre>`` of row ``row`` of a ``RolloutBatch``: green spans = loss_mask 1 (generated),
    blue = 0 (observations); the prompt in grey when ``prompt``. Text is HTML-escaped."""
    parts = []
    if prompt:
        ids = np.asarray(batch.prompt_tokens[row])[np.asarray(batch.prompt_mask[row])]
        parts.append(f'<span style="{PROMPT_STYLE}">'
                     f"{html.escape(tokenizer.decode([int(t) for t in ids]))}</span>")
    for m, ids in mask_runs(batch.response_tokens[row], batch.loss_mask[row],
                            batch.response_mask[row]):
        style = GENERATED_STYLE if m else OBSERVATION_STYLE
        parts.append(f'<span style="{style}" title="loss_mask={m}">'
                     f"{html.escape(tokenizer.decode(ids))}</span>")
    legend = (f'<div><span style="{GENERATED_STYLE}">generated (loss_mask 1)</span> '
              f'<span style="{OBSERVATION_STYLE}">retrieved / observation (loss_mask 0)'
              "</span></div>")
    return (legend + '<pre style="white-space:pre-wrap;font-size:12px">' + "".join(parts)
            + "</pre>")
