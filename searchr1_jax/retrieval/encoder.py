"""Text -> unit vectors with the Flax BERT encoder: tokenise, length-bucket, shard, pool.

Embedding of a text s: ``e = normalize(mean_pool(BERT(prefix + s)))`` (e5: prefix "query: " for
questions and "passage: " for corpus passages; MiniLM: no prefix). Batches are sorted by token
length and padded to power-of-two widths (one compiled program per width), and each batch is
split over the local devices along the mesh's (data, fsdp) axes.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tqdm.auto import tqdm

from searchr1_jax.parallel import batch_sharding, make_mesh, replicated
from searchr1_jax.retrieval.bert import load_bert, mean_pool

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def default_prefixes(model: str) -> tuple[str, str]:
    """(query prefix, passage prefix): e5 models were trained with them, others without."""
    return ("query: ", "passage: ") if "e5" in model.lower() else ("", "")


def bucket_width(length: int, max_length: int, min_width: int = 16) -> int:
    """Smallest power of two >= ``length`` (at least ``min_width``), capped at ``max_length``."""
    width = min_width
    while width < length:
        width *= 2
    return min(width, max_length)


def local_mesh() -> Mesh:
    """A mesh over this process's devices: with many hosts each process encodes its own slice."""
    return make_mesh(data=1, fsdp=-1, tensor=1, devices=jax.local_devices())


class TextEncoder:
    """``encode(texts, kind) -> float32[N, H]`` (unit rows), ``kind`` in {"query", "passage"}."""

    def __init__(self, model: str = "intfloat/e5-base-v2", *, query_prefix: str | None = None,
                 passage_prefix: str | None = None, query_max_length: int = 256,
                 passage_max_length: int = 256, batch_size: int = 64, dtype: str = "float32",
                 normalize: bool = True, mesh: Mesh | None = None):
        from transformers import AutoTokenizer
        self.model_name = model
        self.module, model_dir = load_bert(model, dtype=_DTYPES[dtype])
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        auto_q, auto_p = default_prefixes(model)
        self.prefix = {"query": auto_q if query_prefix is None else query_prefix,
                       "passage": auto_p if passage_prefix is None else passage_prefix}
        self.max_length = {"query": query_max_length, "passage": passage_max_length}
        self.mesh = mesh or local_mesh()
        shards = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        self._shards = shards
        self.batch_size = -(-batch_size // shards) * shards  # a multiple of the batch shards
        self.dim = self.module.cfg.hidden_size
        graphdef, state = nnx.split(self.module)
        self._state = jax.device_put(state, replicated(self.mesh))
        self._in_sharding = batch_sharding(self.mesh, 2)

        def embed(state, ids, mask):
            hidden = nnx.merge(graphdef, state)(ids, mask)
            return mean_pool(hidden, mask, normalize)

        self._embed = jax.jit(embed, out_shardings=batch_sharding(self.mesh, 2))

    def tokenize(self, texts: Sequence[str], kind: str) -> list[list[int]]:
        if kind not in self.prefix:
            raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
        prefix = self.prefix[kind]
        out = self.tokenizer([prefix + t for t in texts], truncation=True,
                             max_length=self.max_length[kind], padding=False)
        return out["input_ids"]

    def encode(self, texts: Sequence[str], kind: str = "query", show_progress: bool = False
               ) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        token_ids = self.tokenize(texts, kind)
        order = np.argsort([len(t) for t in token_ids], kind="stable")
        bs = self.batch_size
        bar = tqdm(total=len(texts), desc=f"encode {kind}s", unit="text", disable=not show_progress,
                   mininterval=2.0)
        for start in range(0, len(texts), bs):
            rows = order[start:start + bs]
            width = bucket_width(max(len(token_ids[r]) for r in rows), self.max_length[kind])
            # Short final batches pad to a power of two rows (>= the shard count), not to bs.
            height = min(bs, bucket_width(len(rows), bs, min_width=self._shards))
            ids = np.zeros((height, width), np.int32)
            mask = np.zeros((height, width), np.int32)
            for i, r in enumerate(rows):
                ids[i, :len(token_ids[r])] = token_ids[r]
                mask[i, :len(token_ids[r])] = 1
            ids = jax.device_put(ids, self._in_sharding)
            mask = jax.device_put(mask, self._in_sharding)
            emb = np.asarray(self._embed(self._state, ids, mask))
            out[rows] = emb[:len(rows)]
            bar.update(len(rows))
        bar.close()
        return out

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encode(queries, "query")

    def encode_passages(self, passages: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self.encode(passages, "passage", show_progress)
