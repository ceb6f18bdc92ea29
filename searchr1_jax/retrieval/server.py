"""Search-R1-compatible retrieval server (FastAPI).

``POST /retrieve`` with ``{"queries": [str, ..], "topk": int, "return_scores": bool}`` answers
``{"result": [[{"document": {"id", "contents"}, "score": float}, ..], ..]}``, or lists of bare
documents when ``return_scores`` is false (Search-R1's own server crashes there; here it works).
``topk`` defaults to the server's top-k, ``return_scores`` to false (Search-R1's defaults).
``GET /health`` reports liveness. Bad input gets a 4xx whose ``detail`` says what is wrong;
request bytes, query count, query length and top-k are bounded.
"""
# No `from __future__ import annotations`: FastAPI must see the real `Request` annotation.

import dataclasses
import json
import socket
import threading
import time
from typing import Any

from searchr1_jax.retrieval.base import RetrievalError, Retriever


@dataclasses.dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 4 << 20
    max_queries: int = 1024
    max_query_chars: int = 32_768
    max_topk: int = 100
    default_topk: int = 3


class BadRequest(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def parse_request(body: bytes, limits: ServerLimits) -> tuple[list[str], int, bool]:
    """Validates a /retrieve body; raises ``BadRequest`` (4xx) naming the field at fault."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(400, f"request body is not valid UTF-8 (byte {e.start})") from None
    try:
        req = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(400, f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}"
                         ) from None
    if not isinstance(req, dict):
        raise BadRequest(422, f"body must be a JSON object, got {type(req).__name__}")
    unknown = set(req) - {"queries", "topk", "return_scores"}
    if unknown:
        raise BadRequest(422, f"unknown fields {sorted(unknown)}; allowed: queries, topk, "
                              "return_scores")
    queries = req.get("queries")
    if not isinstance(queries, list):
        raise BadRequest(422, "field 'queries' must be a list of strings")
    if len(queries) > limits.max_queries:
        raise BadRequest(422, f"field 'queries' has {len(queries)} items; at most "
                              f"{limits.max_queries} per request")
    for i, q in enumerate(queries):
        if not isinstance(q, str):
            raise BadRequest(422, f"queries[{i}] must be a string, got {type(q).__name__}")
        if len(q) > limits.max_query_chars:
            raise BadRequest(422, f"queries[{i}] has {len(q)} characters; at most "
                                  f"{limits.max_query_chars}")
    topk = req.get("topk", None)
    topk = limits.default_topk if topk is None else topk
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= limits.max_topk:
        raise BadRequest(422, f"field 'topk' must be an int in [1, {limits.max_topk}], "
                              f"got {topk!r}")
    return_scores = req.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise BadRequest(422, f"field 'return_scores' must be true or false, got {return_scores!r}")
    return queries, topk, return_scores


def format_result(hits: list[list[dict]], return_scores: bool) -> dict[str, Any]:
    def doc(h):
        return {"id": h["id"], "contents": h["contents"]}
    if return_scores:
        return {"result": [[{"document": doc(h), "score": h["score"]} for h in row]
                           for row in hits]}
    return {"result": [[doc(h) for h in row] for row in hits]}


def create_app(retriever: Retriever, limits: ServerLimits = ServerLimits()):
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    app = FastAPI(title="searchr1-jax retrieval")
    lock = threading.Lock()  # one search at a time: indexes and jitted encoders are not reentrant

    def run_search(queries, topk):
        with lock:
            return retriever.search(queries, topk)

    @app.get("/health")
    def health():
        return {"status": "ok", "retriever": type(retriever).__name__}

    @app.post("/retrieve")
    async def retrieve(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            return JSONResponse({"detail": f"request body of {declared} bytes exceeds "
                                           f"{limits.max_body_bytes}"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                return JSONResponse({"detail": f"request body exceeds {limits.max_body_bytes} "
                                               "bytes"}, status_code=413)
        try:
            queries, topk, return_scores = parse_request(bytes(body), limits)
        except BadRequest as e:
            return JSONResponse({"detail": e.detail}, status_code=e.status)
        if not queries:
            return {"result": []}
        try:
            hits = await run_in_threadpool(run_search, queries, topk)
        except RetrievalError as e:
            return JSONResponse({"detail": f"retrieval failed: {e}"}, status_code=500)
        return format_result(hits, return_scores)

    return app


class BackgroundServer:
    """uvicorn in a daemon thread on ``host`` (loopback default) and a given or ephemeral port."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RetrievalError(f"retrieval server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
