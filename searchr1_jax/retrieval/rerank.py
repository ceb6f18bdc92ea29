"""Optional second stage: a BERT cross-encoder re-scores the first stage's candidates.

score(q, p) = classifier(tanh(W_pool . BERT([CLS] q [SEP] p [SEP])[0]))[-1]: the single logit
of a ``num_labels = 1`` model (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2), or the last
("relevant") class logit otherwise. Off by default (``retrieval.rerank = False``).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax.retrieval.base import Hit, Retriever, check_k, check_queries
from searchr1_jax.retrieval.bert import load_bert
from searchr1_jax.retrieval.encoder import bucket_width


class CrossEncoderReranker:
    """``score(query, passages) -> float32[len(passages)]``."""

    def __init__(self, model: str, *, max_length: int = 512, batch_size: int = 32):
        from transformers import AutoTokenizer
        self.module, model_dir = load_bert(model, with_classifier=True)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.max_length, self.batch_size = max_length, batch_size
        graphdef, self._state = nnx.split(self.module)

        def logits(state, ids, mask, types):
            return nnx.merge(graphdef, state).classify(ids, mask, types)[:, -1]

        self._logits = jax.jit(logits)

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, np.float32)
        enc = self.tokenizer([query] * len(passages), list(passages), truncation="longest_first",
                             max_length=self.max_length, padding=False)
        out = np.zeros(len(passages), np.float32)
        bs = self.batch_size
        for start in range(0, len(passages), bs):
            rows = range(start, min(start + bs, len(passages)))
            width = bucket_width(max(len(enc["input_ids"][r]) for r in rows), self.max_length)
            ids, mask, types = (np.zeros((bs, width), np.int32) for _ in range(3))
            for i, r in enumerate(rows):
                n = len(enc["input_ids"][r])
                ids[i, :n], mask[i, :n] = enc["input_ids"][r], 1
                types[i, :n] = enc["token_type_ids"][r]
            logits = self._logits(self._state, jnp.asarray(ids), jnp.asarray(mask),
                                  jnp.asarray(types))
            out[start:start + len(rows)] = np.asarray(logits)[:len(rows)]
        return out


class RerankingRetriever:
    """First stage ``base`` fetches ``candidates`` hits per query; the reranker keeps the top k."""

    def __init__(self, base: Retriever, reranker: CrossEncoderReranker, candidates: int = 10):
        self.base, self.reranker, self.candidates = base, reranker, candidates

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        queries = check_queries(queries, "RerankingRetriever.search")
        k = check_k(k, "RerankingRetriever.search")
        first = self.base.search(queries, max(k, self.candidates))
        out = []
        for query, hits in zip(queries, first):
            scores = self.reranker.score(query, [h["contents"] for h in hits])
            order = np.argsort(-scores, kind="stable")[:k]
            out.append([{"id": hits[i]["id"], "contents": hits[i]["contents"],
                         "score": float(scores[i])} for i in order])
        return out
