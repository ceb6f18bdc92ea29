"""Tokenizer calls the rollout makes (Hugging Face tokenizer API; the test fakes mirror it)."""
from __future__ import annotations

from typing import Any, Sequence


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text alone, without special tokens (Search-R1's ``_process_next_obs``)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def decode_texts(tokenizer: Any, ids: Sequence[Sequence[int]], *, skip_special: bool = True
                 ) -> list[str]:
    """Text of each id list; special tokens skipped, as Search-R1 decodes before parsing."""
    if not ids:
        return []
    return list(tokenizer.batch_decode([list(x) for x in ids], skip_special_tokens=skip_special))


def pad_id_of(tokenizer: Any) -> int:
    """The pad id, else the eos id, else 0 (padding never reaches the loss: its masks are 0)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return 0


def stop_cut(tokenizer: Any, ids: Sequence[int], stops: Sequence[str]) -> int:
    """Smallest ``k`` such that ``decode(ids[:k])`` contains a stop string (``len(ids)`` when
    none does). Binary search: containment only grows with the prefix."""
    def has_stop(k: int) -> bool:
        text = tokenizer.decode(list(ids[:k]), skip_special_tokens=True)
        return any(s in text for s in stops)

    if not ids or not has_stop(len(ids)) or not has_stop(len(ids) - 1):
        return len(ids)  # no stop string, or it ends exactly at the last token
    lo, hi = 1, len(ids) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if has_stop(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
