"""HTTP client for a Search-R1-compatible ``/retrieve`` server, with timeouts and retries.

Transport errors, timeouts, HTTP 5xx and malformed replies are retried ``retries`` times with
exponential back-off (``backoff_s * 2**attempt``); then ``RetrievalUnavailableError`` is raised.
HTTP 4xx raises ``RetrievalRequestError`` at once (the same request would fail again).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from searchr1_jax.retrieval.base import (Hit, RetrievalRequestError, RetrievalUnavailableError,
                                         check_k, check_queries)


def parse_reply(reply: Any, num_queries: int) -> list[list[Hit]]:
    """Search-R1 reply -> hits; raises ValueError on any deviation from the expected shape."""
    if not isinstance(reply, dict) or not isinstance(reply.get("result"), list):
        raise ValueError("reply is not an object with a 'result' list")
    result = reply["result"]
    if len(result) != num_queries:
        raise ValueError(f"reply has {len(result)} result lists for {num_queries} queries")
    out = []
    for i, row in enumerate(result):
        if not isinstance(row, list):
            raise ValueError(f"result[{i}] is not a list")
        hits = []
        for j, item in enumerate(row):
            doc = item.get("document", item) if isinstance(item, dict) else None
            if not isinstance(doc, dict) or not isinstance(doc.get("contents"), str):
                raise ValueError(f"result[{i}][{j}] has no document with string 'contents'")
            score = item.get("score", float("nan"))
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise ValueError(f"result[{i}][{j}].score is not a number")
            hits.append({"id": str(doc.get("id", "")), "contents": doc["contents"],
                         "score": float(score)})
        out.append(hits)
    return out


class RetrievalClient:
    """``search(queries, k) -> list[list[Hit]]`` against ``url`` (…/retrieve)."""

    def __init__(self, url: str, *, timeout_s: float = 30.0, retries: int = 3,
                 backoff_s: float = 0.5):
        import httpx
        self.url, self.retries, self.backoff_s = url, retries, backoff_s
        self._client = httpx.Client(timeout=timeout_s)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        import httpx
        queries = check_queries(queries, "RetrievalClient.search")
        k = check_k(k, "RetrievalClient.search")
        if not queries:
            return []
        payload = {"queries": queries, "topk": k, "return_scores": True}
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._client.post(self.url, json=payload)
            except httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
                continue
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            if 400 <= response.status_code < 500:
                raise RetrievalRequestError(
                    f"{self.url} rejected the request with HTTP {response.status_code}: "
                    f"{response.text[:500]}")
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            try:
                return parse_reply(response.json(), len(queries))
            except ValueError as e:  # includes JSONDecodeError
                last = f"malformed reply ({e})"
        raise RetrievalUnavailableError(
            f"retrieval server {self.url}: no usable answer after {self.retries + 1} attempts; "
            f"last error: {last}")

    def health(self) -> dict:
        import httpx
        try:
            return self._client.get(self.url.rsplit("/", 1)[0] + "/health").json()
        except (httpx.HTTPError, ValueError) as e:
            raise RetrievalUnavailableError(f"{self.url}: health check failed ({e})") from e

    def close(self) -> None:
        self._client.close()
