"""One batched retriever call per turn, with a timeout and the two failure modes.

``retrieval.on_error``:
  * ``"observation"``: every searching row gets ``retrieval_error_obs`` and the episode goes on;
  * ``"raise"``: the batch fails with ``RolloutRetrievalError`` naming the turn and the rows.
Either way nothing hangs: the call runs in a daemon thread and is abandoned after ``timeout_s``.
"""
from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any, Callable, Protocol, Sequence

from searchr1_jax.rollout import observations


class Retriever(Protocol):
    """docs/architecture.md "Retrieval": ``search(queries, k) -> list[list[Hit]]``."""

    def search(self, queries: list[str], k: int) -> list[list[dict[str, Any]]]:
        ...


class RolloutRetrievalError(RuntimeError):
    """The retriever failed (or timed out) and ``retrieval.on_error == "raise"``."""


@dataclasses.dataclass(frozen=True)
class SearchOutcome:
    observations: list[str]      # one observation string per query
    doc_ids: list[list[str]]     # retrieved ids per query ([] when the search failed)
    error: BaseException | None  # the failure, when ``on_error == "observation"`` swallowed it


def call_with_timeout(fn: Callable[[], Any], timeout_s: float) -> Any:
    """Runs ``fn()`` in a daemon thread; raises ``TimeoutError`` after ``timeout_s`` seconds.

    A daemon thread (not an executor) so that a retriever that never returns cannot block the
    interpreter from exiting.
    """
    box: queue.Queue = queue.Queue(maxsize=1)

    def target():
        try:
            box.put((True, fn()))
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box.put((False, e))

    threading.Thread(target=target, daemon=True, name="rollout-retrieval").start()
    try:
        ok, value = box.get(timeout=timeout_s)
    except queue.Empty:
        raise TimeoutError(f"retriever did not answer within {timeout_s:g} s") from None
    if not ok:
        raise value
    return value


def _hit_id(hit: Any) -> str:
    doc = hit.get("document", hit) if isinstance(hit, dict) else hit
    return str(doc.get("id", "")) if isinstance(doc, dict) else ""


def _check_results(results: Any, queries: Sequence[str]) -> list[list[dict[str, Any]]]:
    if not isinstance(results, (list, tuple)) or len(results) != len(queries):
        got = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
        raise ValueError(f"retriever returned {got} result lists for {len(queries)} queries")
    for i, hits in enumerate(results):
        for j, hit in enumerate(hits):
            doc = hit.get("document", hit) if isinstance(hit, dict) else None
            if not isinstance(doc, dict) or "contents" not in doc:
                raise ValueError(f"retriever result {i} hit {j} has no 'contents': {hit!r:.200}")
    return [list(h) for h in results]


def run_searches(retriever: Retriever, queries: list[str], *, topk: int, timeout_s: float,
                 on_error: str, turn: int, rows: Sequence[int]) -> SearchOutcome:
    """Sends all ``queries`` in one call and formats one observation per query."""
    if not queries:
        return SearchOutcome([], [], None)
    try:
        results = _check_results(
            call_with_timeout(lambda: retriever.search(list(queries), topk), timeout_s), queries)
    except Exception as e:  # noqa: BLE001 - any retriever failure goes through on_error
        if on_error == "raise":
            raise RolloutRetrievalError(
                f"retrieval failed at turn {turn} for batch rows {list(rows)} "
                f"({len(queries)} queries, first {queries[0]!r:.80}): {type(e).__name__}: {e}"
            ) from e
        if on_error != "observation":
            raise ValueError(f"retrieval.on_error = {on_error!r}: must be 'observation' or "
                             "'raise'") from e
        return SearchOutcome([observations.retrieval_error_obs(e)] * len(queries),
                             [[] for _ in queries], e)
    return SearchOutcome([observations.information_obs(h) for h in results],
                         [[_hit_id(hit) for hit in h] for h in results], None)
