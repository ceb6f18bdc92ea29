"""Outcome rewards for Search-R1: answer extraction, normalisation, EM / sub-EM / F1 / format.

Conventions (all checked against the published Search-R1 evaluation traces in
``assets/reference/searchr1_3b_*_traces.json.gz``, every row, see ``tests/test_rewards.py``):

* ``extract_answer`` takes the LAST ``<answer>..</answer>`` of the *response only* (Search-R1
  scores the decoded prompt+response and therefore needs >= 2 matches to skip the prompt's
  ``<answer> Beijing </answer>`` example; scoring the response alone makes that hack unneeded).
* ``normalize_answer`` is SQuAD's: lower-case, drop ASCII punctuation, drop the articles
  a/an/the as whole words, collapse white space.
* ``exact_match``: normalised prediction equals any normalised gold answer (Search-R1 ``em``).
* ``substring_match``: any normalised gold answer is a substring of the normalised prediction
  (Search-R1 ``subem``; FlashRAG's ``acc``).
* ``f1_score``: FlashRAG's token F1, the max over gold answers, where a prediction or gold
  answer that normalises to ``yes``/``no``/``noanswer`` scores 0 unless both are equal.
* ``format_reward``: Search-R1 v0.3 (``qa_em_format.py``) with ``structure_format_score`` 0.2,
  ``final_format_score`` 0.1, ``retrieval_score`` 0: 1.0 correct + valid format, 0.8 correct +
  invalid, 0.2 wrong + valid, 0.1 wrong + invalid, 0 when there is no answer. Read on the
  response; ``rewards_searchr1.format_reward_searchr1`` (``rl.reward = "format_searchr1"``)
  reproduces Search-R1's two prompt-dependent quirks exactly (see ``format_reward``).
"""
from __future__ import annotations

import collections
import re
import string
from typing import Callable, Sequence

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
INFORMATION_RE = re.compile(r"<information>(.*?)</information>", re.DOTALL)
_TAG_SPLIT_RE = re.compile(r"(</?(?:think|search|information|answer)>)")
_TAGS = ("think", "search", "information", "answer")
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
# FlashRAG's F1 treats these as categorical answers: partial token overlap earns nothing.
_CATEGORICAL = ("yes", "no", "noanswer")

Golden = str | Sequence[str]


def _as_list(golden: Golden) -> list[str]:
    if isinstance(golden, str):
        return [golden]
    golden = list(golden)
    if not all(isinstance(g, str) for g in golden):
        raise TypeError(f"golden answers must be strings, got {golden!r}")
    return golden


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: ``ws_fix(drop_articles(drop_punct(lower(text))))``."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def extract_answer(response: str) -> str | None:
    """The stripped text of the last ``<answer>..</answer>`` in ``response``; None if absent.

    Pass the response only (never prompt + response): the prompt's own example answer would
    otherwise be picked up when the model gives none.
    """
    matches = ANSWER_RE.findall(response)
    return matches[-1].strip() if matches else None


def exact_match(prediction: str | None, golden: Golden) -> float:
    """1.0 if ``normalize(prediction) == normalize(g)`` for some gold answer ``g``, else 0.0."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _as_list(golden)))


def substring_match(prediction: str | None, golden: Golden) -> float:
    """1.0 if some ``normalize(g)`` is a substring of ``normalize(prediction)``, else 0.0."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any(normalize_answer(g) in pred for g in _as_list(golden)))


def f1_score(prediction: str | None, golden: Golden) -> float:
    """Token F1 ``2 P R / (P + R)`` on normalised whitespace tokens, max over gold answers.

    ``P = |common| / |pred tokens|``, ``R = |common| / |gold tokens|`` with multiset overlap.
    FlashRAG rule: if either side normalises to yes/no/noanswer and they differ, that gold
    answer scores 0.
    """
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    pred_tokens = pred.split()
    best = 0.0
    for g in _as_list(golden):
        gold = normalize_answer(g)
        if (pred in _CATEGORICAL or gold in _CATEGORICAL) and pred != gold:
            continue
        gold_tokens = gold.split()
        common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
        num_same = sum(common.values())
        if num_same == 0:
            continue
        precision = num_same / len(pred_tokens)
        recall = num_same / len(gold_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def format_violation(response: str) -> str | None:
    """Why ``response`` breaks the Search-R1 format, or None when it is valid.

    State machine (Search-R1 ``is_valid_sequence``): tags must balance, and the sequence must be
    ``<think>..</think> (<search>..</search> <information>..</information> <think>..</think>)*
    <think>..</think>? ... <answer>..</answer>`` with only white space between tags, i.e.
    start -think-> after_think -search-> after_search -information-> information -think-> ...
    after_think -answer-> end; nothing but white space may follow ``</answer>``.
    """
    for tag in _TAGS:
        opened, closed = response.count(f"<{tag}>"), response.count(f"</{tag}>")
        if opened != closed:
            return f"mismatch in {tag} tags: {opened} opening vs {closed} closing"
    transitions = {
        ("<think>", "start"): "in_think", ("<think>", "information"): "in_think",
        ("</think>", "in_think"): "after_think",
        ("<search>", "after_think"): "in_search", ("</search>", "in_search"): "after_search",
        ("<information>", "after_search"): "in_information",
        ("</information>", "in_information"): "information",
        ("<answer>", "after_think"): "in_answer", ("</answer>", "in_answer"): "end",
    }
    state = "start"
    for part in _TAG_SPLIT_RE.split(response):
        if not part.strip():
            continue
        if _TAG_SPLIT_RE.fullmatch(part):
            if (part, state) not in transitions:
                return f"unexpected tag {part} in state {state}"
            state = transitions[(part, state)]
        elif not state.startswith("in_"):
            return f"unexpected content {part.strip()[:40]!r} in state {state}"
    return None if state == "end" else f"incomplete sequence, ended in state {state}"


def is_valid_format(response: str) -> bool:
    """True when ``format_violation(response)`` finds nothing wrong."""
    return format_violation(response) is None


def retrieval_hit(response: str, golden: Golden) -> bool:
    """Some normalised gold answer occurs in some ``<information>`` block of the response."""
    blocks = [normalize_answer(b.strip()) for b in INFORMATION_RE.findall(response)]
    return any(normalize_answer(g) in b for b in blocks for g in _as_list(golden))


def format_reward(response: str, golden: Golden, *, structure_format_score: float = 0.2,
                  final_format_score: float = 0.1, retrieval_score: float = 0.0,
                  score: float = 1.0, answer_text: str | None = None) -> float:
    """Search-R1 v0.3 format-aware EM reward.

    ==========================  =====================  =========================
    answer                      valid format           invalid format
    ==========================  =====================  =========================
    correct (EM)                ``score`` (1.0)        ``score - sfs`` (0.8)
    wrong                       ``sfs [+ rs]`` (0.2)   ``final_format_score`` (0.1)
    none                        ``sfs [+ rs]``         0
    ==========================  =====================  =========================
    ``sfs`` = structure_format_score; ``rs`` = retrieval_score, added when a gold answer
    occurs in a retrieved ``<information>`` block. (A valid format always ends in an answer,
    so "none + valid" cannot happen for a response-only string.)
    The format is judged on the whole ``response``; the answer is read from ``answer_text``
    when given (the model's own turns: the invalid-action observation spells
    ``<answer> and </answer>`` and must never count as the model's answer).

    Search-R1's own ``compute_score_em`` scores ``decode(prompt + response)`` instead, with two
    bugs this reading fixes (``rl.reward = "format_searchr1"`` keeps them, for like-for-like
    numbers; ``searchr1_jax/rewards_searchr1.py``):

    1. the answer is the last ``<answer>`` block of prompt + response, and the prompt's own
       ``<answer> Beijing </answer>`` example means a response with no answer scores as the
       answer "Beijing": 0.1 (format) instead of 0, or 0.8 when the gold answer is Beijing
       (5 of the 3,610 NQ-open dev questions);
    2. the format is valid only after an ``<|im_start|>assistant`` marker, so Llama-3 chat or
       raw prompts never have a valid format: 0.8 / 0.1 where this gives 1.0 / 0.2.
    """
    valid = is_valid_format(response)
    retrieval_bonus = retrieval_score if valid and retrieval_hit(response, golden) else 0.0
    answer = extract_answer(response if answer_text is None else answer_text)
    if answer is None:
        return structure_format_score + retrieval_bonus if valid else 0.0
    if exact_match(answer, golden):
        return score if valid else score - structure_format_score
    if valid:
        return structure_format_score + retrieval_bonus
    return final_format_score


def _on_answer(metric: Callable[[str | None, Golden], float]) -> Callable[[str, Golden], float]:
    return lambda response, golden: metric(extract_answer(response), golden)


# kind -> reward of a response string (the trainer's ``rl.reward`` names these).
REWARDS: dict[str, Callable[[str, Golden], float]] = {
    "em": _on_answer(exact_match),
    "sub_em": _on_answer(substring_match),
    "f1": _on_answer(f1_score),
    "format": format_reward,
}
# Kinds that read the prompt too (Search-R1's exact format reward: rewards_searchr1.py).
PROMPT_REWARDS = ("format_searchr1",)


def score(response: str, golden: Golden, kind: str = "em", *,
          generated: str | None = None, prompt: str | None = None) -> float:
    """Outcome reward of one ``response`` (text after the prompt) against ``golden``.

    ``generated`` is the model's own text (its turns without the observations). When given,
    the answer is extracted from it alone; the format reward still judges the whole response.
    ``prompt`` (the decoded prompt, special tokens kept) is needed by ``format_searchr1``,
    which reads prompt + response as Search-R1 does (and ignores ``generated``).
    """
    if kind in PROMPT_REWARDS:
        if prompt is None:
            raise ValueError(f"reward kind {kind!r} reads the prompt: pass prompt=")
        from searchr1_jax.rewards_searchr1 import format_reward_searchr1
        return float(format_reward_searchr1(prompt, response, golden))
    if kind not in REWARDS:
        raise ValueError(f"reward kind {kind!r}: must be one of "
                         f"{sorted([*REWARDS, *PROMPT_REWARDS])}")
    if kind == "format":
        return float(format_reward(response, golden, answer_text=generated))
    return float(REWARDS[kind](response if generated is None else generated, golden))
