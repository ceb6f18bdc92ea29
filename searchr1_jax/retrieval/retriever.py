"""In-process retrievers (BM25, exact dense, ScaNN) and the factory that builds one from config.

Every retriever maps index rows to passages through a ``PassageStore`` and answers
``search(queries, k) -> list[list[Hit]]`` (see ``base.Retriever``). An index directory written
by ``build_index`` holds ``passages/`` (the store), ``bm25/`` and/or ``dense/`` (the index) and
``retrieval.json`` (the encoder settings used for ``dense/``).
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from searchr1_jax.retrieval.base import (Hit, RetrievalError, Retriever, check_k,
                                         check_queries)
from searchr1_jax.retrieval.corpus import PassageStore, iter_passages


def hits_from_rows(rows: np.ndarray, scores: np.ndarray, store: PassageStore) -> list[list[Hit]]:
    out = []
    for row_ids, row_scores in zip(rows, scores):
        hits = []
        for r, s in zip(row_ids, row_scores):
            p = store[int(r)]
            hits.append({"id": p.id, "contents": p.contents, "score": float(s)})
        out.append(hits)
    return out


class BM25Retriever:
    def __init__(self, index, store: PassageStore):
        if index.num_docs != len(store):
            raise RetrievalError(f"BM25 index has {index.num_docs} documents, passage store "
                                 f"{len(store)}: they were not built from the same corpus")
        self.index, self.store = index, store

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        queries = check_queries(queries, "BM25Retriever.search")
        rows, scores = self.index.search(queries, check_k(k))
        return hits_from_rows(rows, scores, self.store)


class DenseRetriever:
    """Encoder (query side) + exact or ScaNN index + passage store."""

    def __init__(self, encoder, index, store: PassageStore):
        if index.num_vectors != len(store):
            raise RetrievalError(f"dense index has {index.num_vectors} vectors, passage store "
                                 f"{len(store)}: they were not built from the same corpus")
        if index.dim != encoder.dim:
            raise RetrievalError(f"dense index dim {index.dim} != encoder dim {encoder.dim}")
        self.encoder, self.index, self.store = encoder, index, store

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        queries = check_queries(queries, "DenseRetriever.search")
        k = check_k(k)
        if not queries:
            return []
        rows, scores = self.index.search(self.encoder.encode_queries(queries), k)
        return hits_from_rows(rows, scores, self.store)


def encoder_from_config(rcfg, **overrides):
    from searchr1_jax.retrieval.encoder import TextEncoder
    kw = dict(query_max_length=rcfg.get("query_max_length", 256),
              passage_max_length=rcfg.get("passage_max_length", 256),
              batch_size=rcfg.get("encode_batch_size", 64),
              dtype=rcfg.get("encoder_dtype", "float32"))
    for name in ("query_prefix", "passage_prefix"):  # "auto": e5 prefixes for e5 models only
        value = rcfg.get(name, "auto")
        kw[name] = None if value == "auto" else value
    kw.update(overrides)
    return TextEncoder(rcfg.encoder, **kw)


def _with_rerank(retriever: Retriever, rcfg) -> Retriever:
    if not rcfg.get("rerank", False):
        return retriever
    from searchr1_jax.retrieval.rerank import CrossEncoderReranker, RerankingRetriever
    return RerankingRetriever(retriever, CrossEncoderReranker(rcfg.reranker),
                              candidates=rcfg.rerank_candidates)


def build_retriever(rcfg) -> Retriever:
    """The retriever named by the ``retrieval`` config section (see configs/base.py).

    ``retrieval.rerank`` wraps any kind, ``http`` included, in a ``RerankingRetriever`` that
    asks the first stage for ``rerank_candidates`` hits and keeps the reranker's top k."""
    kind = rcfg.kind
    if kind == "http":
        # With rerank, the server's hits are re-scored here, client-side (the server may be
        # Search-R1's own, which knows nothing of this config).
        from searchr1_jax.retrieval.client import RetrievalClient
        return _with_rerank(
            RetrievalClient(rcfg.url, timeout_s=rcfg.timeout_s, retries=rcfg.retries), rcfg)
    if rcfg.index_dir:
        return _with_rerank(load_retriever(rcfg.index_dir, kind, rcfg), rcfg)
    store = PassageStore.from_passages(iter_passages(rcfg.corpus))
    if kind == "bm25":
        from searchr1_jax.retrieval.bm25 import BM25Index
        retriever = BM25Retriever(BM25Index.build(store.iter_contents(), total=len(store)), store)
    elif kind in ("exact", "scann"):
        from searchr1_jax.retrieval.index import ExactIndex, ScannIndex
        encoder = encoder_from_config(rcfg)
        vectors = encoder.encode_passages(list(store.iter_contents()), show_progress=True)
        index = ExactIndex(vectors) if kind == "exact" else ScannIndex.build(
            vectors, params={"rescore": rcfg.get("scann_rescore", "auto")})
        retriever = DenseRetriever(encoder, index, store)
    else:
        raise RetrievalError(f"retrieval.kind = {kind!r}: must be bm25, exact, scann or http")
    return _with_rerank(retriever, rcfg)


def load_retriever(index_dir: str, kind: str, rcfg=None) -> Retriever:
    """A retriever over a directory written by ``python -m searchr1_jax.retrieval.build_index``."""
    store = PassageStore.load(os.path.join(index_dir, "passages"))
    if kind == "bm25":
        from searchr1_jax.retrieval.bm25 import BM25Index
        return BM25Retriever(BM25Index.load(os.path.join(index_dir, "bm25")), store)
    from searchr1_jax.retrieval.index import load_index
    index = load_index(os.path.join(index_dir, "dense"))
    if index.kind != kind:
        raise RetrievalError(f"{index_dir}/dense holds a {index.kind!r} index, asked for {kind!r}")
    with open(os.path.join(index_dir, "retrieval.json")) as f:
        settings = json.load(f)  # the encoder settings the corpus was encoded with
    from searchr1_jax.retrieval.encoder import TextEncoder
    encoder = TextEncoder(settings["encoder"], query_prefix=settings["query_prefix"],
                          passage_prefix=settings["passage_prefix"],
                          query_max_length=settings["query_max_length"],
                          passage_max_length=settings["passage_max_length"],
                          dtype=(rcfg.get("encoder_dtype", "float32") if rcfg else "float32"))
    return DenseRetriever(encoder, index, store)
