"""Retrieval: corpora, BM25, Flax BERT/e5 encoder, exact and ScaNN indexes, HTTP server/client.

The interface the rollout uses (docs/architecture.md, "Retrieval"):
  ``Retriever.search(queries: list[str], k: int) -> list[list[Hit]]``,
  ``Hit = {"id": str, "contents": '"Title"\\ntext', "score": float}``,
  ``RetrievalError`` (and subclasses) on failure, ``format_passages(hits) -> str``.
Heavy modules (jax encoder, bm25s, scann, fastapi, httpx) are imported on first use.
"""
import importlib

from searchr1_jax.retrieval.base import (Hit, RetrievalError, RetrievalRequestError, Retriever,
                                         RetrievalUnavailableError, format_passages,
                                         make_contents, split_contents)
from searchr1_jax.retrieval.corpus import (CorpusError, Passage, PassageStore, iter_passages,
                                           iter_shards, resolve_corpus)

_LAZY = {
    "BM25Index": "bm25", "BertConfig": "bert", "BertEncoder": "bert", "load_bert": "bert",
    "TextEncoder": "encoder", "encode_corpus": "encode_corpus",
    "load_embeddings": "encode_corpus", "ExactIndex": "index", "ScannIndex": "index",
    "load_index": "index", "BM25Retriever": "retriever", "DenseRetriever": "retriever",
    "build_retriever": "retriever", "load_retriever": "retriever",
    "CrossEncoderReranker": "rerank", "RerankingRetriever": "rerank",
    "RetrievalClient": "client", "create_app": "server", "BackgroundServer": "server",
    "ServerLimits": "server",
}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"searchr1_jax.retrieval.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'searchr1_jax.retrieval' has no attribute {name!r}")


__all__ = ["Hit", "RetrievalError", "RetrievalRequestError", "RetrievalUnavailableError",
           "Retriever", "format_passages", "make_contents", "split_contents", "CorpusError",
           "Passage", "PassageStore", "iter_passages", "iter_shards", "resolve_corpus", *_LAZY]
