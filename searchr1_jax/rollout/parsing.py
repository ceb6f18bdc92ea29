"""Action parsing with Search-R1's semantics, in linear time.

Search-R1 (``LLMGenerationManager.postprocess_predictions``) takes the first match of
``re.search(r'<(search|answer)>(.*?)</\\1>', turn_text, re.DOTALL)`` and strips the content.
The regex tries start positions left to right and, at each ``<search>``/``<answer>``, the
nearest matching close tag after it; a start with no close tag anywhere after it fails and the
scan moves on. This module reproduces that exactly without backtracking: an opening tag at
``p`` matches iff the *last* closing tag of its kind starts at or after ``p + len(open)``,
so the match is the earliest such opening tag over both kinds.
"""
from __future__ import annotations

import dataclasses

ACTIONS: tuple[str, ...] = ("search", "answer")


@dataclasses.dataclass(frozen=True)
class Action:
    """One turn's action: ``kind`` is "search", "answer" or None (invalid); ``content`` stripped."""
    kind: str | None
    content: str = ""

    @property
    def is_search(self) -> bool:
        return self.kind == "search"

    @property
    def is_answer(self) -> bool:
        return self.kind == "answer"


INVALID = Action(None, "")


def _first_match(text: str, tag: str) -> tuple[int, int, int] | None:
    """(start of open tag, start of content, end of content) of the regex match for ``tag``."""
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    last_close = text.rfind(close_tag)
    if last_close < 0:
        return None
    start = text.find(open_tag)
    if start < 0 or start + len(open_tag) > last_close:
        return None  # every later opening tag lies even further right
    body = start + len(open_tag)
    return start, body, text.find(close_tag, body)


def parse_action(text: str) -> Action:
    """First ``<search>..</search>`` or ``<answer>..</answer>`` block of ``text`` (Search-R1).

    Never raises: any string gives an ``Action``; no complete block gives ``INVALID``.
    """
    best: tuple[int, str, int, int] | None = None
    for tag in ACTIONS:
        match = _first_match(text, tag)
        if match is not None and (best is None or match[0] < best[0]):
            best = (match[0], tag, match[1], match[2])
    if best is None:
        return INVALID
    _, tag, body, end = best
    return Action(tag, text[body:end].strip())


def cut_after_action(text: str) -> str:
    """Search-R1's ``_postprocess_responses``: cut after the first ``</search>``, else after the
    first ``</answer>``; text without either tag is returned unchanged."""
    for close_tag in ("</search>", "</answer>"):
        at = text.find(close_tag)
        if at >= 0:
            return text[:at + len(close_tag)]
    return text
