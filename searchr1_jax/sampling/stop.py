"""Stop strings detected on token ids, on device, exactly: a string-matching automaton per token.

For a stop string ``s`` (UTF-8 bytes ``s_0..s_{m-1}``) the Knuth-Morris-Pratt automaton has
states ``q = 0..m``: ``q`` = length of the longest prefix of ``s`` that is a suffix of the text
so far, ``q = m`` = "``s`` occurred" (absorbing). Feeding a whole token (its byte string ``w``)
composes the byte transitions: ``next[t, q] = delta*(q, w_t)``. Tabulated for every token id
once on the host (``StopTable.build``), the per-step device work is one gather
``q <- next[token, q]`` per row and stop string, and a match is found whatever the tokenizer
did with the tag: ``"</answer>"`` as one token, as ``"</" "answer" ">"``, as ``" </"``,
``"answer"``, ``">\\n"``, or with the tag's first bytes glued to earlier text.

Token text follows vLLM's default (``skip_special_tokens=True``): special tokens add no text.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Sequence

import numpy as np


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode map used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_BYTE_DECODER = {c: b for b, c in _bytes_to_unicode().items()}
_SP_BYTE_RE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    parts = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    return any(p.get("type") == "ByteLevel" for p in parts)


def token_byte_strings(tokenizer, vocab_size: int | None = None) -> list[bytes]:
    """The bytes each token id contributes to the decoded text (``b""`` for special tokens).

    Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2): invert the byte -> unicode map.
    SentencePiece: ``"▁" -> " "``, ``<0xNN>`` -> that byte, else the piece's UTF-8.
    Ids past the tokenizer (padded embedding rows) add no text.
    """
    n = len(tokenizer)
    vocab_size = max(n, vocab_size or 0)
    pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
    special = set(getattr(tokenizer, "all_special_ids", []))
    for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(tok, "special", False):
            special.add(int(i))
    byte_level = _is_byte_level(tokenizer)
    out: list[bytes] = []
    for i, piece in enumerate(pieces):
        if i in special or piece is None:
            out.append(b"")
        elif byte_level and all(c in _BYTE_DECODER for c in piece):
            out.append(bytes(_BYTE_DECODER[c] for c in piece))
        elif not byte_level and (m := _SP_BYTE_RE.match(piece)):
            out.append(bytes([int(m.group(1), 16)]))
        else:
            out.append((piece.replace("\u2581", " ") if not byte_level else piece).encode())
    return out + [b""] * (vocab_size - n)


def kmp_byte_automaton(pattern: bytes) -> np.ndarray:
    """``delta[q, byte]`` for ``q in 0..m`` (``m`` absorbing), plus an identity column 256.

    ``delta[q, c] = q + 1`` if ``pattern[q] == c``, else ``delta[fail[q], c]`` (``0`` at q=0).
    """
    m = len(pattern)
    delta = np.zeros((m + 1, 257), np.int32)
    delta[:, 256] = np.arange(m + 1)
    fail = 0  # state reached by pattern[1:q]
    for q in range(m):
        delta[q, :256] = delta[fail, :256] if q else 0
        delta[q, pattern[q]] = q + 1
        if q:
            fail = delta[fail, pattern[q]]
    delta[m, :256] = m  # matched: absorbing
    return delta


def token_transitions(pattern: bytes, token_bytes: Sequence[bytes]) -> np.ndarray:
    """``next[t, q]`` = KMP state after feeding token ``t``'s bytes from state ``q``: int[V, m+1]."""
    delta = kmp_byte_automaton(pattern)
    m = len(pattern)
    width = max((len(b) for b in token_bytes), default=0)
    padded = np.full((len(token_bytes), max(width, 1)), 256, np.int32)  # 256: no-op byte
    for t, b in enumerate(token_bytes):
        padded[t, :len(b)] = np.frombuffer(b, np.uint8)
    state = np.broadcast_to(np.arange(m + 1, dtype=np.int32), (len(token_bytes), m + 1)).copy()
    for j in range(padded.shape[1]):
        state = delta[state, padded[:, j:j + 1]]
    return state


@dataclasses.dataclass(frozen=True)
class StopTable:
    """Token-level automata for stop strings.

    ``next_state``: int8/int16 ``[V, n_stop, m_max+1]``; ``match_state``: int ``[n_stop]``
    (``m_i``, the absorbing "seen" state of string ``i``; shorter strings pad unused states).
    """

    strings: tuple[str, ...]
    next_state: np.ndarray
    match_state: np.ndarray

    @classmethod
    def build(cls, tokenizer, strings: Sequence[str], vocab_size: int | None = None
              ) -> "StopTable":
        strings = tuple(strings)
        for s in strings:
            if not s:
                raise ValueError("stop strings must be non-empty")
        tokens = token_byte_strings(tokenizer, vocab_size)
        return cls.from_token_bytes(strings, tokens)

    @classmethod
    def from_token_bytes(cls, strings: Sequence[str], tokens: Sequence[bytes]) -> "StopTable":
        strings = tuple(strings)
        m_max = max((len(s.encode()) for s in strings), default=0)
        dtype = np.int8 if m_max < 127 else np.int16
        table = np.zeros((len(tokens), max(len(strings), 1), m_max + 1), dtype)
        for i, s in enumerate(strings):
            pat = s.encode()
            table[:, i, :len(pat) + 1] = token_transitions(pat, tokens)
        match = np.array([len(s.encode()) for s in strings] or [m_max + 1], np.int32)
        return cls(strings=strings, next_state=table, match_state=match)

    @property
    def num_strings(self) -> int:
        return len(self.strings)


def step_stop_state(next_state, match_state, state, tokens):
    """One decode step on device: ``state[b, i] <- next[tok_b, i, state[b, i]]``.

    Returns ``(new_state int32[B, n], hit bool[B])``; ``hit`` = some string has now occurred.
    """
    import jax.numpy as jnp

    rows = next_state[tokens].astype(jnp.int32)                      # [B, n, m+1]
    new = jnp.take_along_axis(rows, state[..., None], axis=-1)[..., 0]  # [B, n]
    return new, jnp.any(new == match_state[None, :], axis=-1)
