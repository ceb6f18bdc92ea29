"""HTTP client: same answers as in-process, retries, timeouts and clear exception types."""
import asyncio
import socket
import time

import pytest

from searchr1_jax.retrieval import (RetrievalError, RetrievalRequestError, Retriever,
                                    RetrievalUnavailableError, format_passages)
from searchr1_jax.retrieval.bm25 import BM25Index
from searchr1_jax.retrieval.client import RetrievalClient
from searchr1_jax.retrieval.corpus import PassageStore, iter_passages
from searchr1_jax.retrieval.retriever import BM25Retriever
from searchr1_jax.retrieval.server import BackgroundServer, create_app


def fake_server(handler):
    """A FastAPI app whose /retrieve runs ``handler(attempt_number)``; counts attempts."""
    from fastapi import FastAPI
    app, calls = FastAPI(), []

    @app.post("/retrieve")
    async def retrieve():
        calls.append(time.monotonic())
        return await handler(len(calls))

    return BackgroundServer(app), calls


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_matches_in_process_retriever(assets_dir):
    path = f"{assets_dir}/reference/searchr1_example_corpus.jsonl"
    store = PassageStore.from_passages(iter_passages([path]))
    local = BM25Retriever(BM25Index.build(store.iter_contents()), store)
    queries = ["lobbyist Genentech", "Roche Washington", "no such words zzzz"]
    with BackgroundServer(create_app(local)) as srv:
        client = RetrievalClient(srv.url + "/retrieve", timeout_s=30, retries=0)
        assert isinstance(client, Retriever) and isinstance(local, Retriever)
        remote = client.search(queries, 3)
        assert client.health()["status"] == "ok"
        assert client.search([], 3) == []
    expected = local.search(queries, 3)
    assert [[h["id"] for h in r] for r in remote] == [[h["id"] for h in r] for r in expected]
    assert [format_passages(r) for r in remote] == [format_passages(r) for r in expected]
    assert remote[0][0]["score"] == pytest.approx(expected[0][0]["score"])


def test_server_down_retries_then_unavailable():
    client = RetrievalClient(f"http://127.0.0.1:{free_port()}/retrieve", timeout_s=2, retries=2,
                             backoff_s=0.01)
    with pytest.raises(RetrievalUnavailableError, match=r"after 3 attempts; last error: Connect"):
        client.search(["q"], 3)


def test_slow_server_times_out():
    async def slow(_):
        await asyncio.sleep(3)
        return {"result": [[]]}

    srv, calls = fake_server(slow)
    with srv:
        client = RetrievalClient(srv.url + "/retrieve", timeout_s=0.3, retries=1, backoff_s=0.01)
        start = time.monotonic()
        with pytest.raises(RetrievalUnavailableError, match="after 2 attempts; last error: timed"):
            client.search(["q"], 3)
        assert time.monotonic() - start < 2.5  # gave up on the timeout, not the 3 s sleep
        assert len(calls) == 2


@pytest.mark.parametrize("reply, message", [
    ("not json at all", "malformed reply"),
    ({"results": []}, "not an object with a 'result' list"),
    ({"result": [[], []]}, "2 result lists for 1 queries"),
    ({"result": [[{"document": {"id": "1"}}]]}, "string 'contents'"),
    ({"result": [[{"document": {"id": "1", "contents": "x"}, "score": "high"}]]}, "not a number"),
])
def test_garbage_reply_retried_then_clear_error(reply, message):
    from fastapi.responses import PlainTextResponse

    async def garbage(_):
        return PlainTextResponse(reply) if isinstance(reply, str) else reply

    srv, calls = fake_server(garbage)
    with srv:
        client = RetrievalClient(srv.url + "/retrieve", timeout_s=5, retries=2, backoff_s=0.01)
        with pytest.raises(RetrievalUnavailableError) as err:
            client.search(["q"], 3)
    assert message in str(err.value) and len(calls) == 3
    assert isinstance(err.value, RetrievalError)


def test_transient_5xx_then_success():
    from fastapi.responses import JSONResponse

    async def flaky(n):
        if n < 3:
            return JSONResponse({"detail": "warming up"}, status_code=503)
        return {"result": [[{"document": {"id": "7", "contents": "\"T\"\nbody"}, "score": 1.5}]]}

    srv, calls = fake_server(flaky)
    with srv:
        client = RetrievalClient(srv.url + "/retrieve", timeout_s=5, retries=3, backoff_s=0.01)
        assert client.search(["q"], 1) == [[{"id": "7", "contents": "\"T\"\nbody", "score": 1.5}]]
    assert len(calls) == 3


def test_4xx_is_not_retried():
    from fastapi.responses import JSONResponse

    async def reject(_):
        return JSONResponse({"detail": "field 'topk' must be an int"}, status_code=422)

    srv, calls = fake_server(reject)
    with srv:
        client = RetrievalClient(srv.url + "/retrieve", timeout_s=5, retries=3, backoff_s=0.01)
        with pytest.raises(RetrievalRequestError, match="HTTP 422.*'topk' must be an int"):
            client.search(["q"], 3)
    assert len(calls) == 1


def test_bad_arguments_raise_retrieval_error():
    client = RetrievalClient("http://127.0.0.1:1/retrieve")
    with pytest.raises(RetrievalError, match="k must be a positive int"):
        client.search(["q"], 0)
    with pytest.raises(RetrievalError, match="list of strings"):
        client.search("q", 3)
