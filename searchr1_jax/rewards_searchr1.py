"""Search-R1's format reward exactly as its code scores it (``rl.reward = "format_searchr1"``).

Search-R1 v0.3 (``verl/utils/reward_score/qa_em_format.py``, ``compute_score_em``, called by
``verl/trainer/main_ppo_format.py``'s ``RewardManager`` on ``tokenizer.decode(prompt ids +
response ids)``) reads the *whole sequence*, prompt included. Two consequences differ from the
project's reading (``rewards.format_reward``, the default), and both are reproduced here:

1. The answer is extracted from prompt + response (``extract_solution``: the last
   ``<answer>(.*?)</answer>`` match, or None when there are at most one). Search-R1's own prompt
   spells ``<answer> and </answer>`` and ``<answer> Beijing </answer>``, so it always holds two
   matches: a response with no answer is scored as the answer "Beijing" (format 0.1, or EM 1.0
   -> 0.8 when the gold answer is Beijing), never as "no answer"; and the invalid-action
   observation's ``<answer> and </answer>`` counts as an answer ("and") too.
2. The format is only valid after an ``<|im_start|>assistant`` marker (``is_valid_sequence``:
   the state machine runs on the text after the first ``<\\|im_start\\|>assistant\\s*``), so a
   Llama-3 or raw prompt is never valid format: 0.8 / 0.1 where the project gives 1.0 / 0.2.

Everything else is the same state machine (``rewards.format_violation``) and normalisation.
The retrieval bonus (``is_retrieval_correct``) also reads the prompt's
``<information> and </information>``; Search-R1's scripts set ``retrieval_score = 0``.
Matching is linear in the text length: the leftmost-first, non-overlapping matches of
``<tag>(.*?)</tag>`` are found with ``str.find`` (same spans as ``re.finditer``).
"""
from __future__ import annotations

import re

from searchr1_jax import rewards

ASSISTANT_MARKER_RE = re.compile(r"<\|im_start\|>assistant\s*")


def tag_blocks(text: str, tag: str) -> list[str]:
    """Contents of every non-overlapping ``<tag>..</tag>`` (``re.findall(r"<tag>(.*?)</tag>",
    text, re.DOTALL)``): the first opening tag, then the first closing tag after it, on."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    out, at = [], 0
    while (start := text.find(opening, at)) >= 0:
        end = text.find(closing, start + len(opening))
        if end < 0:  # no closing tag after this one: none after any later opening either
            break
        out.append(text[start + len(opening):end])
        at = end + len(closing)
    return out


def extract_solution(sequence: str) -> str | None:
    """Search-R1's ``extract_solution``: the stripped last answer block of the whole sequence,
    None when it has at most one block (its way of skipping the prompt's example)."""
    blocks = tag_blocks(sequence, "answer")
    return blocks[-1].strip() if len(blocks) > 1 else None


def is_valid_sequence(sequence: str) -> bool:
    """Search-R1's ``is_valid_sequence``: the format state machine on the text after the first
    ``<|im_start|>assistant`` marker (False without one)."""
    match = ASSISTANT_MARKER_RE.search(sequence)
    return match is not None and rewards.is_valid_format(sequence[match.end():])


def is_retrieval_correct(sequence: str, golden: rewards.Golden) -> bool:
    """A normalised gold answer inside some stripped ``<information>`` block of the sequence."""
    blocks = [rewards.normalize_answer(b.strip()) for b in tag_blocks(sequence, "information")]
    gold = [rewards.normalize_answer(g) for g in ([golden] if isinstance(golden, str) else golden)]
    return any(g in b for b in blocks for g in gold)


def format_reward_searchr1(prompt: str, response: str, golden: rewards.Golden, *,
                           structure_format_score: float = 0.2,
                           final_format_score: float = 0.1, retrieval_score: float = 0.0,
                           score: float = 1.0) -> float:
    """Search-R1's ``compute_score_em`` (qa_em_format.py) on ``prompt + response`` (module doc).

    ``prompt`` is the decoded prompt with its special tokens (Search-R1 decodes prompt and
    response ids together with ``skip_special_tokens=False``); ``response`` the decoded
    response. Scores: 1.0 correct + valid, 0.8 correct + invalid, 0.2 (+ retrieval_score when
    retrieval found a gold answer) wrong or missing + valid, 0.1 wrong + invalid, 0 no answer +
    invalid (which Search-R1's prompt makes unreachable: see the module doc).
    """
    sequence = prompt + response
    valid = is_valid_sequence(sequence)
    bonus = retrieval_score if valid and is_retrieval_correct(sequence, golden) else 0.0
    answer = extract_solution(sequence)
    if answer is not None and rewards.exact_match(answer, golden):
        return score if valid else score - structure_format_score
    if valid:
        return structure_format_score + bonus
    return 0.0 if answer is None else final_format_score
