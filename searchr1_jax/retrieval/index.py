"""Dense indexes over unit vectors: exact (brute-force jnp matmul) and ScaNN.

Both answer ``search(query_vectors float[Q, H], k) -> (rows int64[Q, k'], scores float32[Q, k'])``
with k' = min(k, N), score = <q, x> (cosine for unit vectors), best first.
ScaNN: k-means tree partitioning, then anisotropic asymmetric hashing (4-bit codes) scores the
points of the searched leaves, then the top ``reorder_k`` candidates are re-scored: exactly
against float16 vectors memory-mapped from the index directory (the default below 200k
vectors), or with a compact gain-shape residual code that keeps the directory within 1/8 of
flat fp32 (the default from 200k: see ``scann_params``). Directories hold ``index.json``
(manifest) and numpy/ScaNN files; nothing is unpickled when loading.
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
from searchr1_jax.retrieval.rescore import CompactRescorer, Fp16Rescorer

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


COMPACT_FROM = 200_000  # rescore="auto": compact codes from this many vectors, fp16 below


def scann_params(n: int, rescore: str = "auto") -> dict:
    """ScaNN settings from the corpus size and the re-scoring store.

    About sqrt(n) k-means leaves (ScaNN's guidance); the searched fraction of leaves is
    clip(0.25 * 1e5 / n, 0.02, 0.25). wiki-18 (21M): 4583 leaves, 92 searched. Below 4,000
    vectors there is no tree.

    ``rescore="compact"``: AH with 4 dims per block (H/4 bytes) proposes 200 candidates,
    re-scored with ``CompactRescorer`` codes sized so the whole directory is ``budget`` (1/8) of
    flat fp32. Measured at 1M x 768 synthetic: recall@3 0.965, 163 B codes. Small corpora
    leave the code few bytes (the tree, rotation and centroids are a larger share): 0.690 on
    28k x 384 real MiniLM vectors (docs/benchmarks.md).
    ``rescore="fp16"``: AH with 2 dims per block (ScaNN writes one byte per 4-bit code: H/2
    bytes a vector) proposes 40 candidates, re-scored exactly against a float16 copy of the
    vectors. Measured recall@3 0.9977 at 1M, but the directory is ~0.63 of flat fp32.
    ``rescore="auto"`` (default): compact from ``COMPACT_FROM`` vectors, fp16 below.
    """
    if rescore == "auto":
        rescore = "compact" if n >= COMPACT_FROM else "fp16"
    if rescore not in ("fp16", "compact"):
        raise RetrievalError(f"rescore must be 'auto', 'fp16' or 'compact', got {rescore!r}")
    num_leaves = 0 if n < 4_000 else int(round(math.sqrt(n)))
    fraction = min(0.25, max(0.02, 0.25 * 1e5 / max(n, 1)))
    compact = rescore == "compact"
    return {"num_leaves": num_leaves,
            "leaves_to_search": int(math.ceil(fraction * num_leaves)),
            "training_sample_size": min(n, 250_000),
            "spherical": True,  # unit vectors: spherical k-means (measured: fewer missed leaves)
            "dims_per_block": 4 if compact else 2,
            "anisotropic_threshold": 0.2,
            "reorder_k": 200 if compact else 40,  # fp16: 20..100 give the same recall@3
            "rescore": rescore,
            "budget": 0.125}


def _tokens_of(searcher, n: int) -> np.ndarray:
    """Each vector's leaf: ScaNN's own datapoint_to_token.npy (the serialised tokenisation)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        searcher.serialize(d, relative_path=True)
        return _load_tokens(d, n, mmap=False)


def _load_tokens(art: str, n: int, mmap: bool) -> np.ndarray:
    path = os.path.join(art, "datapoint_to_token.npy")
    if not os.path.exists(path):  # no tree
        return np.zeros(n, np.int32)
    tokens = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    if tokens.shape != (n,):
        raise RetrievalError(f"{path}: shape {tokens.shape}, expected ({n},)")
    return tokens


def _fixed_bytes(n: int, dim: int, num_leaves: int, dims_per_block: int) -> float:
    """Bytes the directory stores besides the re-scoring codes (estimate, for the budget):
    AH codes (a byte per block), tokens (int32), tree (ScaNN keeps two float32 copies of the
    centres), the compact code's tables but its rotation (``CompactRescorer.fixed_bytes``),
    headers (16 KiB)."""
    return (n * (math.ceil(dim / dims_per_block) + 4 * (num_leaves > 0))
            + num_leaves * dim * 8 + CompactRescorer.fixed_bytes(n, dim, num_leaves) + 16_384)


class ScannIndex:
    """ScaNN tree + asymmetric hashing proposes ``reorder_k`` candidates, re-scored against
    float16 vectors (``Fp16Rescorer``) or a compact code (``CompactRescorer``, whole directory
    within ``budget`` x flat fp32 bytes)."""

    kind = "scann"

    def __init__(self, searcher, rescorer: CompactRescorer, params: dict, dim: int):
        self._searcher, self._rescorer, self.params = searcher, rescorer, params
        self._dim = dim

    @property
    def num_vectors(self) -> int:
        return len(self._rescorer.codes)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def vectors(self):
        """The float16 re-scoring copy (``rescore="fp16"`` only)."""
        if not isinstance(self._rescorer, Fp16Rescorer):
            raise AttributeError("a compact ScaNN index keeps no copy of the vectors")
        return self._rescorer.codes

    @classmethod
    def build(cls, vectors: np.ndarray, params: dict | None = None, threads: int = 0
              ) -> "ScannIndex":
        import scann  # lazy: optional dependency
        params = dict(params or {})
        params = {**scann_params(len(vectors), params.pop("rescore", "auto")), **params}
        n, dim = vectors.shape
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
        if params["rescore"] == "fp16":
            fp16 = np.asarray(vectors).astype(np.float16, copy=False)
            return cls(searcher, Fp16Rescorer(fp16), params, dim)
        tokens = _tokens_of(searcher, n)
        budget = params["budget"] * n * dim * 4 - _fixed_bytes(n, dim, params["num_leaves"],
                                                                params["dims_per_block"])
        # Small corpora cannot meet the budget (the tree, rotation and centroids dominate): a
        # floor of D/16 bytes a vector keeps re-scoring useful there.
        code_bytes = max(dim // 16, CompactRescorer.code_bytes(budget, n, dim))
        rescorer = CompactRescorer.fit(db, tokens, params["num_leaves"], min(code_bytes, dim))
        params["code_bytes"] = rescorer.nbytes_per_vector
        params["tiers"] = list(rescorer.tiers)
        del db
        return cls(searcher, rescorer, params, dim)

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
        # Re-score the candidates (ScaNN pads short lists with row 0: dedupe below).
        scores = self._rescorer.score(q, rows)
        dup = np.zeros_like(rows, bool)
        srt = np.sort(rows, axis=1)
        if (srt[:, 1:] == srt[:, :-1]).any():  # rare: mark repeated rows after the first
            for i in range(len(rows)):
                _, first = np.unique(rows[i], return_index=True)
                dup[i] = True
                dup[i, first] = False
        scores = np.where(dup, -np.inf, scores)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(rows, top, 1), np.take_along_axis(scores, top, 1)

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        art = os.path.join(directory, "scann")
        if os.path.exists(art):
            shutil.rmtree(art)
        os.makedirs(art)
        self._searcher.serialize(art, relative_path=True)
        self._rescorer.save(directory)
        _write_manifest(directory, {"kind": "scann", "num_vectors": self.num_vectors,
                                    "dim": self.dim, "params": self.params})

    @staticmethod
    def nbytes(directory: str) -> dict:
        """On-disk bytes of everything in the index directory, by file, and ``total``."""
        sizes = {}
        for root, _, files in os.walk(directory):
            for f in files:
                path = os.path.join(root, f)
                sizes[os.path.relpath(path, directory)] = os.path.getsize(path)
        sizes["total"] = sum(sizes.values())
        return sizes


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
    if manifest["kind"] == "exact":
        vectors = np.load(os.path.join(directory, "vectors.npy"),
                          mmap_mode="r" if mmap else None, allow_pickle=False)
        if vectors.shape != (manifest["num_vectors"], manifest["dim"]):
            raise RetrievalError(f"{directory}/vectors.npy: shape {vectors.shape}, manifest "
                                 f"says {(manifest['num_vectors'], manifest['dim'])}")
        return ExactIndex(vectors)
    if manifest["kind"] == "scann":
        import scann
        art = os.path.join(directory, "scann")
        if os.path.exists(os.path.join(art, "scann_docids.pkl")):
            raise RetrievalError(f"{art}: contains a pickle (scann_docids.pkl); refusing to load")
        searcher = scann.scann_ops_pybind.load_searcher(art)
        n, params = manifest["num_vectors"], manifest["params"]
        if params.get("rescore", "fp16") == "fp16":
            rescorer, shape = Fp16Rescorer.load(directory, mmap), (n, manifest["dim"])
        else:
            rescorer = CompactRescorer.load(directory, params["tiers"], mmap)
            shape = (n, params["code_bytes"])
        if rescorer.codes.shape != shape:
            raise RetrievalError(f"{directory}: re-scoring store shape {rescorer.codes.shape}, "
                                 f"manifest says {shape}")
        return ScannIndex(searcher, rescorer, params, manifest["dim"])
    raise RetrievalError(f"{path}: unknown index kind {manifest['kind']!r}")
