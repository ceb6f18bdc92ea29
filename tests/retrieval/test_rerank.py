"""Cross-encoder rerank stage, checked against transformers on a tiny random BERT."""
import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from configs import base as base_config
from searchr1_jax.retrieval.bert import resolve_model_dir
from searchr1_jax.retrieval.bm25 import BM25Index
from searchr1_jax.retrieval.corpus import Passage, PassageStore, iter_passages
from searchr1_jax.retrieval.rerank import CrossEncoderReranker, RerankingRetriever
from searchr1_jax.retrieval.retriever import BM25Retriever, build_retriever


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A random 2-layer BERT cross-encoder (num_labels = 1) with MiniLM's WordPiece vocab."""
    path = tmp_path_factory.mktemp("tiny_ce")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1)
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(resolve_model_dir("minilm")).save_pretrained(path)
    return str(path), model


def torch_scores(model_dir, model, query, passages):
    tok = AutoTokenizer.from_pretrained(model_dir)
    batch = tok([query] * len(passages), passages, padding=True, truncation="longest_first",
                max_length=128, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[:, 0].numpy()


@pytest.fixture(scope="module")
def small_corpus():
    return [Passage(p.id, p.contents) for _, p in zip(range(60), iter_passages("hotpotqa_dev500"))]


def test_scores_match_transformers(tiny_cross_encoder, small_corpus):
    path, model = tiny_cross_encoder
    reranker = CrossEncoderReranker(path, max_length=128, batch_size=8)
    passages = [p.contents for p in small_corpus[:11]]
    query = "Who played Corliss Archer in Kiss and Tell?"
    ours = reranker.score(query, passages)
    ref = torch_scores(path, model, query, passages)
    print("max abs diff", np.abs(ours - ref).max())
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert reranker.score(query, []).shape == (0,)


def test_reranking_retriever_reorders_candidates(tiny_cross_encoder, small_corpus):
    path, model = tiny_cross_encoder
    store = PassageStore.from_passages(small_corpus)
    base = BM25Retriever(BM25Index.build(store.iter_contents()), store)
    retriever = RerankingRetriever(base, CrossEncoderReranker(path, max_length=128), candidates=10)
    queries = ["Kiss and Tell Shirley Temple", "Animorphs science fantasy series"]
    got = retriever.search(queries, 3)
    for query, candidates, hits in zip(queries, base.search(queries, 10), got):
        ref = torch_scores(path, model, query, [h["contents"] for h in candidates])
        best = np.argsort(-ref, kind="stable")[:3]
        assert [h["id"] for h in hits] == [candidates[i]["id"] for i in best]
        np.testing.assert_allclose([h["score"] for h in hits], ref[best], atol=1e-4)


def test_config_switch_wires_the_reranker(tiny_cross_encoder, small_corpus, tmp_path):
    path, _ = tiny_cross_encoder
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.id, "contents": p.contents}) + "\n"
                              for p in small_corpus))
    rcfg = base_config.get_config().retrieval
    rcfg.corpus = str(corpus)
    assert rcfg.rerank is False and isinstance(build_retriever(rcfg), BM25Retriever)
    rcfg.rerank, rcfg.reranker, rcfg.rerank_candidates = True, path, 5
    retriever = build_retriever(rcfg)
    assert isinstance(retriever, RerankingRetriever) and retriever.candidates == 5
    assert [len(r) for r in retriever.search(["Shirley Temple", "Animorphs"], 3)] == [3, 3]


def test_http_kind_reranks_client_side(tiny_cross_encoder, small_corpus):
    """retrieval.rerank with kind=http is no longer ignored: the server's candidates are
    re-scored by the cross-encoder in the client, exactly as for an in-process retriever."""
    from searchr1_jax.retrieval.client import RetrievalClient
    from searchr1_jax.retrieval.server import BackgroundServer, create_app

    path, model = tiny_cross_encoder
    store = PassageStore.from_passages(small_corpus)
    local = BM25Retriever(BM25Index.build(store.iter_contents()), store)
    queries = ["Kiss and Tell Shirley Temple", "Animorphs science fantasy series"]
    with BackgroundServer(create_app(local)) as srv:
        rcfg = base_config.get_config().retrieval
        rcfg.kind, rcfg.url = "http", srv.url + "/retrieve"
        rcfg.rerank, rcfg.reranker, rcfg.rerank_candidates = True, path, 10
        retriever = build_retriever(rcfg)
        assert isinstance(retriever, RerankingRetriever)
        assert isinstance(retriever.base, RetrievalClient)
        got = retriever.search(queries, 3)
    # Same reranker settings in process (build_retriever's defaults) give the same hits.
    want = RerankingRetriever(local, CrossEncoderReranker(path), candidates=10).search(queries, 3)
    assert [[h["id"] for h in r] for r in got] == [[h["id"] for h in r] for r in want]
    np.testing.assert_allclose([h["score"] for r in got for h in r],
                               [h["score"] for r in want for h in r], rtol=1e-5)
    bm25 = [h["score"] for r in local.search(queries, 3) for h in r]
    assert not np.allclose([h["score"] for r in got for h in r], bm25)  # cross-encoder scores
