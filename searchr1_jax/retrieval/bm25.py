"""BM25 sparse retrieval through ``bm25s`` (Lucene scoring, English stop words, Snowball stems).

score(q, d) = sum_{t in q} idf(t) * tf(t,d) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl)),
idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))  (Lucene >= 8, as in Pyserini; |d| counts
tokens after stop-word removal). Defaults k1 = 0.9, b = 0.4 are Pyserini's, which Search-R1's
BM25 server uses.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from searchr1_jax.retrieval.base import RetrievalError, check_k, check_queries

_MANIFEST = "bm25.json"
_FORMAT = "searchr1_jax.bm25/1"


def _import_bm25s():
    """Lazy import (optional dependency). bm25s sets its own logger to DEBUG at import, which
    prints "DEBUG:bm25s:..." lines once any root handler exists: keep it at WARNING."""
    import logging

    import bm25s
    import bm25s.tokenization
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _make_tokenizer(stemmer_language: str | None):
    bm25s = _import_bm25s()
    stemmer = None
    if stemmer_language:
        import Stemmer  # PyStemmer
        stemmer = Stemmer.Stemmer(stemmer_language)
    return bm25s.tokenization.Tokenizer(lower=True, stopwords="en", stemmer=stemmer)


class BM25Index:
    """``search(queries, k) -> (rows int64[Q, k'], scores float32[Q, k'])`` with k' = min(k, N)."""

    def __init__(self, model, tokenizer, params: dict):
        self._model, self._tokenizer, self.params = model, tokenizer, params

    @property
    def num_docs(self) -> int:
        return int(self.params["num_docs"])

    @classmethod
    def build(cls, contents: Iterable[str], *, k1: float = 0.9, b: float = 0.4,
              stemmer_language: str | None = "english", shard_size: int = 100_000,
              total: int | None = None) -> "BM25Index":
        """Tokenises the corpus shard by shard (vocabulary grows as it goes), then indexes."""
        bm25s = _import_bm25s()
        tokenizer = _make_tokenizer(stemmer_language)
        token_ids: list[list[int]] = []
        shard: list[str] = []
        bar = tqdm(total=total, desc="bm25 tokenize", unit="doc", mininterval=2.0)

        def flush():
            token_ids.extend(tokenizer.tokenize(shard, update_vocab=True, return_as="ids",
                                                show_progress=False))
            bar.update(len(shard))
            shard.clear()

        for text in contents:
            shard.append(text)
            if len(shard) >= shard_size:
                flush()
        if shard:
            flush()
        bar.close()
        if not token_ids:
            raise RetrievalError("BM25Index.build: the corpus is empty")
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.index((token_ids, tokenizer.get_vocab_dict()), show_progress=False)
        params = {"format": _FORMAT, "k1": k1, "b": b, "stemmer_language": stemmer_language,
                  "num_docs": len(token_ids)}
        return cls(model, tokenizer, params)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_queries(queries, "BM25Index.search")
        k = min(check_k(k, "BM25Index.search"), self.num_docs)
        if not queries:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        # Words unseen in the corpus are dropped; an all-unknown query scores 0 everywhere.
        tokens = self._tokenizer.tokenize(queries, update_vocab=False, return_as="string",
                                          show_progress=False)
        rows, scores = self._model.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        return np.asarray(rows, np.int64), np.asarray(scores, np.float32)

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self._model.save(directory, allow_pickle=False, show_progress=False)
        self._tokenizer.save_vocab(directory)
        with open(os.path.join(directory, _MANIFEST), "w") as f:
            json.dump(self.params, f, indent=1)

    @classmethod
    def load(cls, directory: str, mmap: bool = True) -> "BM25Index":
        bm25s = _import_bm25s()
        path = os.path.join(directory, _MANIFEST)
        if not os.path.exists(path):
            raise RetrievalError(f"{directory}: no {_MANIFEST} (not a BM25 index directory)")
        with open(path) as f:
            params = json.load(f)
        if params.get("format") != _FORMAT:
            raise RetrievalError(f"{path}: format {params.get('format')!r}, expected {_FORMAT!r}")
        model = bm25s.BM25.load(directory, mmap=mmap, allow_pickle=False, show_progress=False)
        tokenizer = _make_tokenizer(params["stemmer_language"])
        tokenizer.load_vocab(directory)
        return cls(model, tokenizer, params)
