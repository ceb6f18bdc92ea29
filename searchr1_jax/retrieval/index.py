"""Dense indexes over unit vectors: exact (brute-force jnp matmul) and ScaNN.

Both answer ``search(query_vectors float[Q, H], k) -> (rows int64[Q, k'], scores float32[Q, k'])``
with k' = min(k, N), score = <q, x> (cosine for unit vectors), best first.
ScaNN: k-means tree partitioning, then anisotropic asymmetric hashing (4-bit codes, 2 dims per
block: H/4 bytes a vector) scores the points of the searched leaves, then the top
``reorder_k`` candidates are re-scored exactly against the float16 vectors, memory-mapped from
the index directory. Directories hold ``index.json`` (manifest) and numpy/ScaNN files; nothing
is unpickled when loading.
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from searchr1_jax.retrieval.base import RetrievalError, check_k

_MANIFEST = "index.json"
_FORMAT = "searchr1_jax.dense_index/1"


def _check_queries(q: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(q, np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise RetrievalError(f"query vectors must have shape [Q, {dim}], got {q.shape}")
    return q


@functools.partial(jax.jit, static_argnames="k")
def _chunk_top_k(q: jax.Array, chunk: jax.Array, valid: jax.Array, k: int):
    """Top-k of q . chunk^T (float32) with invalid (padding) rows at -inf."""
    scores = jnp.einsum("qh,nh->qn", q, chunk.astype(jnp.float32))
    scores = jnp.where(valid[None, :], scores, -jnp.inf)
    return jax.lax.top_k(scores, k)


class ExactIndex:
    """Brute force: every query against every vector, in chunks of ``chunk_rows`` rows."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray, chunk_rows: int = 262_144):
        if vectors.ndim != 2 or len(vectors) == 0:
            raise RetrievalError(f"ExactIndex needs a non-empty [N, H] array, got {vectors.shape}")
        self.vectors = vectors  # float16/float32, possibly memory-mapped
        self.chunk_rows = min(chunk_rows, len(vectors))
        self._device_chunks = None

    @property
    def num_vectors(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def _chunks(self):
        if self._device_chunks is None:  # copy to the device once, padded to equal chunks
            chunks = []
            for s in range(0, self.num_vectors, self.chunk_rows):
                part = np.asarray(self.vectors[s:s + self.chunk_rows])
                valid = np.ones(self.chunk_rows, bool)
                if len(part) < self.chunk_rows:
                    valid[len(part):] = False
                    part = np.concatenate(
                        [part, np.zeros((self.chunk_rows - len(part), self.dim), part.dtype)])
                chunks.append((s, jnp.asarray(part), jnp.asarray(valid)))
            self._device_chunks = chunks
        return self._device_chunks

    def search(self, query_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _check_queries(query_vectors, self.dim)
        k = min(check_k(k, "ExactIndex.search"), self.num_vectors)
        if len(q) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        all_s, all_r = [], []
        for start, chunk, valid in self._chunks():
            s, r = _chunk_top_k(jnp.asarray(q), chunk, valid, min(k, self.chunk_rows))
            all_s.append(np.asarray(s))
            all_r.append(np.asarray(r, np.int64) + start)
        scores, rows = np.concatenate(all_s, 1), np.concatenate(all_r, 1)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(rows, top, 1), np.take_along_axis(scores, top, 1)

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        np.save(os.path.join(directory, "vectors.npy"), np.asarray(self.vectors, np.float16))
        _write_manifest(directory, {"kind": "exact", "num_vectors": self.num_vectors,
                                    "dim": self.dim})


def scann_params(n: int) -> dict:
    """ScaNN settings from the corpus size.

    About sqrt(n) k-means leaves (ScaNN's guidance); the searched fraction of leaves is
    clip(0.25 * 1e5 / n, 0.02, 0.25). Measured recall@3 vs exact: a quarter of the leaves
    gives >= 0.96 on 4.9k and 28k real MiniLM vectors; on 1M clustered 768-d vectors 2% of
    the leaves (20 of 1000) gives 0.9997 at 14x exact's queries/s (benchmarks/retrieval.py).
    wiki-18 (21M): 4583 leaves, 92 searched. Below 4,000 vectors there is no tree.
    """
    num_leaves = 0 if n < 4_000 else int(round(math.sqrt(n)))
    fraction = min(0.25, max(0.02, 0.25 * 1e5 / max(n, 1)))
    return {"num_leaves": num_leaves,
            "leaves_to_search": int(math.ceil(fraction * num_leaves)),
            "training_sample_size": min(n, 250_000),
            "spherical": True,  # unit vectors: spherical k-means (measured: fewer missed leaves)
            "dims_per_block": 2,
            "anisotropic_threshold": 0.2,
            "reorder_k": 40}  # measured: 20..100 give the same recall@3; the leaves decide it


class ScannIndex:
    """ScaNN tree + asymmetric hashing, then exact re-scoring of ``reorder_k`` candidates."""

    kind = "scann"

    def __init__(self, searcher, vectors: np.ndarray, params: dict):
        self._searcher, self.vectors, self.params = searcher, vectors, params

    @property
    def num_vectors(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @classmethod
    def build(cls, vectors: np.ndarray, params: dict | None = None, threads: int = 0
              ) -> "ScannIndex":
        import scann  # lazy: optional dependency
        vectors = np.asarray(vectors)
        params = {**scann_params(len(vectors)), **(params or {})}
        db = np.ascontiguousarray(vectors, np.float32)
        builder = scann.scann_ops_pybind.builder(db, params["reorder_k"], "dot_product")
        if threads:
            builder = builder.set_n_training_threads(threads)
        if params["num_leaves"]:
            builder = builder.tree(num_leaves=params["num_leaves"],
                                   num_leaves_to_search=params["leaves_to_search"],
                                   training_sample_size=params["training_sample_size"],
                                   spherical=params.get("spherical", True))
        builder = builder.score_ah(params["dims_per_block"],
                                   anisotropic_quantization_threshold=params[
                                       "anisotropic_threshold"],
                                   training_sample_size=params["training_sample_size"])
        searcher = builder.build()
        del db
        return cls(searcher, vectors.astype(np.float16, copy=False), params)

    def search(self, query_vectors: np.ndarray, k: int, reorder: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
        q = _check_queries(query_vectors, self.dim)
        k = min(check_k(k, "ScannIndex.search"), self.num_vectors)
        if len(q) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        cand_k = max(k, self.params["reorder_k"]) if reorder else k
        kw = {"final_num_neighbors": cand_k}
        if self.params["num_leaves"]:
            kw["leaves_to_search"] = self.params["leaves_to_search"]
        rows, approx = self._searcher.search_batched_parallel(q, **kw)
        rows = np.asarray(rows, np.int64)
        if not reorder:
            return rows[:, :k], np.asarray(approx, np.float32)[:, :k]
        # Exact re-scoring of the candidates (ScaNN pads short lists with row 0: dedupe below).
        cand = self.vectors[rows.reshape(-1)].astype(np.float32).reshape(*rows.shape, self.dim)
        exact = np.einsum("qh,qch->qc", q, cand)
        dup = np.zeros_like(rows, bool)
        srt = np.sort(rows, axis=1)
        if (srt[:, 1:] == srt[:, :-1]).any():  # rare: mark repeated rows after the first
            for i in range(len(rows)):
                _, first = np.unique(rows[i], return_index=True)
                dup[i] = True
                dup[i, first] = False
        exact = np.where(dup, -np.inf, exact)
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(rows, top, 1), np.take_along_axis(exact, top, 1)

    def save(self, directory: str) -> None:
        art = os.path.join(directory, "scann")
        if os.path.exists(art):
            shutil.rmtree(art)
        os.makedirs(art)
        self._searcher.serialize(art, relative_path=True)
        np.save(os.path.join(directory, "vectors.npy"), self.vectors)
        _write_manifest(directory, {"kind": "scann", "num_vectors": self.num_vectors,
                                    "dim": self.dim, "params": self.params})

    def nbytes(self, directory: str) -> dict:
        """On-disk bytes: ScaNN artefacts (tree, codes, codebooks) and the float16 vectors."""
        art = os.path.join(directory, "scann")
        scann_bytes = sum(os.path.getsize(os.path.join(art, f)) for f in os.listdir(art))
        return {"scann": scann_bytes,
                "reorder_vectors": os.path.getsize(os.path.join(directory, "vectors.npy"))}


def _write_manifest(directory: str, body: dict) -> None:
    with open(os.path.join(directory, _MANIFEST), "w") as f:
        json.dump({"format": _FORMAT, **body}, f, indent=1)


def load_index(directory: str, mmap: bool = True) -> ExactIndex | ScannIndex:
    """Loads an index directory written by ``save`` (``np.load(allow_pickle=False)`` only)."""
    path = os.path.join(directory, _MANIFEST)
    if not os.path.exists(path):
        raise RetrievalError(f"{directory}: no {_MANIFEST} (not a dense index directory)")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != _FORMAT:
        raise RetrievalError(f"{path}: format {manifest.get('format')!r}, expected {_FORMAT!r}")
    vectors = np.load(os.path.join(directory, "vectors.npy"), mmap_mode="r" if mmap else None,
                      allow_pickle=False)
    if vectors.shape != (manifest["num_vectors"], manifest["dim"]):
        raise RetrievalError(f"{directory}/vectors.npy: shape {vectors.shape}, manifest says "
                             f"{(manifest['num_vectors'], manifest['dim'])}")
    if manifest["kind"] == "exact":
        return ExactIndex(vectors)
    if manifest["kind"] == "scann":
        import scann
        art = os.path.join(directory, "scann")
        if os.path.exists(os.path.join(art, "scann_docids.pkl")):
            raise RetrievalError(f"{art}: contains a pickle (scann_docids.pkl); refusing to load")
        searcher = scann.scann_ops_pybind.load_searcher(art)
        return ScannIndex(searcher, vectors, manifest["params"])
    raise RetrievalError(f"{path}: unknown index kind {manifest['kind']!r}")
