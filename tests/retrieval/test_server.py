"""The /retrieve server on a loopback ephemeral port: Search-R1 shapes, limits, bad input."""
import json

import httpx
import pytest

from searchr1_jax.retrieval.bm25 import BM25Index
from searchr1_jax.retrieval.corpus import Passage, PassageStore
from searchr1_jax.retrieval.retriever import BM25Retriever
from searchr1_jax.retrieval.server import BackgroundServer, ServerLimits, create_app

PASSAGES = [Passage("0", "\"Paris\"\nParis is the capital of France."),
            Passage("1", "\"Rome\"\nRome is the capital of Italy."),
            Passage("2", "\"Berlin\"\nBerlin is the capital of Germany."),
            Passage("3", "\"Hamlet\"\nHamlet is a tragedy by William Shakespeare."),
            Passage("4", "\"Danube\"\nThe Danube flows through Germany and Austria.")]


@pytest.fixture(scope="module")
def retriever():
    store = PassageStore.from_passages(PASSAGES)
    return BM25Retriever(BM25Index.build(store.iter_contents()), store)


@pytest.fixture(scope="module")
def server(retriever):
    limits = ServerLimits(max_body_bytes=64 << 10, max_queries=8, max_query_chars=20_000,
                          max_topk=5)
    with BackgroundServer(create_app(retriever, limits)) as srv:
        assert srv.host == "127.0.0.1" and srv.port > 0
        yield srv


def post(server, body, **kw):
    if isinstance(body, (dict, list)):
        return httpx.post(server.url + "/retrieve", json=body, timeout=30, **kw)
    return httpx.post(server.url + "/retrieve", content=body, timeout=30,
                      headers={"content-type": "application/json"}, **kw)


def assert_alive(server, retriever):
    r = post(server, {"queries": ["capital of Italy"], "topk": 1, "return_scores": True})
    assert r.status_code == 200
    assert r.json()["result"][0][0]["document"]["id"] == "1"
    assert httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok"


def test_search_r1_shapes_with_scores(server, retriever):
    queries = ["capital of France", "who wrote Hamlet"]
    r = post(server, {"queries": queries, "topk": 3, "return_scores": True})
    assert r.status_code == 200
    result = r.json()["result"]
    expected = retriever.search(queries, 3)
    assert len(result) == 2
    for row, exp in zip(result, expected):
        assert len(row) == 3
        assert [item["document"] for item in row] == [
            {"id": h["id"], "contents": h["contents"]} for h in exp]
        assert [item["score"] for item in row] == pytest.approx([h["score"] for h in exp])
    assert result[0][0]["document"]["contents"] == PASSAGES[0].contents
    assert result[1][0]["document"]["id"] == "3"


def test_without_scores_returns_document_lists(server):
    r = post(server, {"queries": ["capital of Germany"], "topk": 2, "return_scores": False})
    assert r.status_code == 200
    row = r.json()["result"][0]
    assert len(row) == 2 and set(row[0]) == {"id", "contents"} and row[0]["id"] == "2"
    # Search-R1's defaults: topk from the server (3), return_scores false.
    r = post(server, {"queries": ["capital"]})
    assert r.status_code == 200 and len(r.json()["result"][0]) == 3
    assert "score" not in r.json()["result"][0][0]


@pytest.mark.parametrize("topk, n", [(1, 1), (5, 5)])
def test_topk_variations(server, topk, n):
    r = post(server, {"queries": ["capital", "Danube"], "topk": topk, "return_scores": True})
    assert r.status_code == 200 and [len(x) for x in r.json()["result"]] == [n, n]


def test_empty_query_list_and_empty_query(server):
    r = post(server, {"queries": [], "topk": 3, "return_scores": True})
    assert r.status_code == 200 and r.json() == {"result": []}
    r = post(server, {"queries": [""], "topk": 2, "return_scores": True})
    assert r.status_code == 200 and len(r.json()["result"][0]) == 2


def test_ten_thousand_character_query(server, retriever):
    query = ("Hamlet tragedy Shakespeare " * 400)[:10_000]
    r = post(server, {"queries": [query], "topk": 3, "return_scores": True})
    assert r.status_code == 200
    assert r.json()["result"][0][0]["document"]["id"] == "3"
    assert_alive(server, retriever)


@pytest.mark.parametrize("body, status, message", [
    (b"\xff\xfe{\"queries\": []}", 400, "not valid UTF-8"),
    (b"{\"queries\": [\"a\",", 400, "malformed JSON"),
    (b"[1, 2]", 422, "must be a JSON object"),
    (json.dumps({"topk": 3}).encode(), 422, "'queries' must be a list of strings"),
    (json.dumps({"queries": "one string"}).encode(), 422, "'queries' must be a list"),
    (json.dumps({"queries": ["a", 5]}).encode(), 422, "queries[1] must be a string"),
    (json.dumps({"queries": ["a"], "topk": 0}).encode(), 422, "'topk' must be an int in [1, 5]"),
    (json.dumps({"queries": ["a"], "topk": 6}).encode(), 422, "'topk' must be an int in [1, 5]"),
    (json.dumps({"queries": ["a"], "topk": "3"}).encode(), 422, "'topk' must be an int"),
    (json.dumps({"queries": ["a"], "return_scores": "yes"}).encode(), 422, "'return_scores'"),
    (json.dumps({"queries": ["a"], "k": 3}).encode(), 422, "unknown fields ['k']"),
    (json.dumps({"queries": ["a"] * 9}).encode(), 422, "has 9 items; at most 8"),
    (json.dumps({"queries": ["x" * 20_001]}).encode(), 422, "queries[0] has 20001 characters"),
    (json.dumps({"queries": ["y" * 70_000]}).encode(), 413, "exceeds 65536"),
])
def test_bad_input_gets_clear_4xx_and_server_survives(server, retriever, body, status, message):
    r = post(server, body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert_alive(server, retriever)


def test_chunked_oversized_body_is_rejected(server, retriever):
    def chunks():  # no content-length header: the server must count the streamed bytes
        yield b'{"queries": ["'
        for _ in range(80):
            yield b"z" * 1024
        yield b'"]}'
    r = httpx.post(server.url + "/retrieve", content=chunks(), timeout=30)
    assert r.status_code == 413 and "exceeds 65536" in r.json()["detail"]
    assert_alive(server, retriever)
