"""The retrieval interface the rest of the project uses: hits, errors, passage formatting.

A retriever answers ``search(queries, k) -> list[list[Hit]]`` where every hit is a plain dict
``{"id": str, "contents": "\\"Title\\"\\ntext", "score": float}`` (Search-R1's document shape
plus its score). ``format_passages`` turns one query's hits into the text that goes between
``<information>`` and ``</information>``.
"""
from __future__ import annotations

from typing import Protocol, Sequence, TypedDict, runtime_checkable


class Hit(TypedDict):
    """One retrieved passage: corpus id, Search-R1 ``contents`` and the retriever's score."""
    id: str
    contents: str
    score: float


class RetrievalError(RuntimeError):
    """Anything that stops a search from answering (bad input, server down, bad reply)."""


class RetrievalUnavailableError(RetrievalError):
    """The retrieval server could not be reached or gave no usable answer after all retries."""


class RetrievalRequestError(RetrievalError):
    """The server rejected the request (HTTP 4xx): retrying the same request cannot help."""


@runtime_checkable
class Retriever(Protocol):
    """Anything with ``search(queries, k)``: BM25, exact dense, ScaNN, reranked, HTTP client."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        ...


def split_contents(contents: str) -> tuple[str, str]:
    """Search-R1's split: title = first line of ``contents``, text = the remaining lines."""
    title, _, text = contents.partition("\n")
    return title, text


def make_contents(title: str, text: str) -> str:
    """wiki-18 ``contents`` from a title and a text: ``"Title"\\ntext`` (title keeps quotes)."""
    return f'"{title}"\n{text}'


def format_passages(hits: Sequence[Hit | dict]) -> str:
    """Search-R1's observation text for one query's hits.

    ``"".join(f"Doc {i}(Title: {title}) {text}\\n" for i, hit in enumerate(hits, 1)).strip()``
    with ``title`` = first line of ``contents`` and ``text`` = the rest (Search-R1's
    ``_passages2string``). Accepts flat hits and Search-R1's ``{"document": {...}}`` items.
    """
    parts = []
    for i, hit in enumerate(hits, 1):
        doc = hit["document"] if "document" in hit else hit
        title, text = split_contents(doc["contents"])
        parts.append(f"Doc {i}(Title: {title}) {text}\n")
    return "".join(parts).strip()


def check_k(k: int, where: str = "search") -> int:
    """Validates a top-k argument (a positive int, not a bool)."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise RetrievalError(f"{where}: k must be a positive int, got {k!r}")
    return k


def check_queries(queries: Sequence[str], where: str = "search") -> list[str]:
    """Validates a batch of queries: a list of strings (empty list allowed)."""
    if isinstance(queries, str):
        raise RetrievalError(f"{where}: queries must be a list of strings, got one string")
    out = list(queries)
    for i, q in enumerate(out):
        if not isinstance(q, str):
            raise RetrievalError(f"{where}: queries[{i}] must be a string, got {type(q).__name__}")
    return out
