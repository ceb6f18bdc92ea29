"""Re-scoring stages of the ScaNN index: the ``reorder_k`` candidates ScaNN's 4-bit codes
propose are re-scored either exactly against float16 vectors (``Fp16Rescorer``, memory-mapped
after load) or with a compact code (``CompactRescorer``): each vector as a gain times its fine
centroid (k-means inside its ScaNN leaf) plus a residual orthogonal to that centroid, rotated
into a PCA basis and scalar-quantised at 8/4/2/0 bits per coordinate, sized so the whole index
directory stays within a byte budget (1/8 of flat fp32 by default).
"""
from __future__ import annotations

import functools
import os

import numpy as np

from searchr1_jax.retrieval.base import RetrievalError


class Fp16Rescorer:
    """Exact re-scoring against a float16 copy of the vectors (memory-mapped after load)."""

    def __init__(self, vectors):
        self.codes = vectors

    def score(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        cand = self.codes[rows.reshape(-1)].astype(np.float32).reshape(*rows.shape, -1)
        return np.einsum("qh,qch->qc", q, cand)

    def save(self, directory: str) -> None:
        np.save(os.path.join(directory, "vectors.npy"), self.codes)

    @staticmethod
    def load(directory: str, mmap: bool) -> "Fp16Rescorer":
        return Fp16Rescorer(np.load(os.path.join(directory, "vectors.npy"),
                                     mmap_mode="r" if mmap else None, allow_pickle=False))


# Uniform scalar quantisers: half-range in sigmas, and relative MSE on a unit Gaussian (for the
# bit allocation). 4 and 2 bits use the Gaussian-optimal ranges; 8 bits 4.5 sigma (measured at
# 1M, residuals to fine centroids: 4.5 beat 9 and 6 sigma, docs/benchmarks.md).
_SQ_RANGE = {8: 4.5, 4: 2.68, 2: 1.99}
_SQ_MSE = {0: 1.0, 2: 0.1175, 4: 0.0095, 8: 0.00005}
VECTORS_PER_CENTROID = 125  # fine residual centroids: one per ~125 vectors of a leaf
# Centred levels of every byte: two 4-bit or four 2-bit coordinates, low bits first.
_NIBBLES = ((np.arange(256)[:, None] >> np.array([0, 4])) & 15).astype(np.float32) - 7.5
_CRUMBS = ((np.arange(256)[:, None] >> np.array([0, 2, 4, 6])) & 3).astype(np.float32) - 1.5


def _allocate_bits(gain: np.ndarray, nbytes: int) -> tuple[int, int, int]:
    """(n8, n4, n2): the first n8 dims (by descending ``gain``) get 8 bits, the next n4 4 bits,
    the next n2 2 bits, within ``nbytes``; minimises sum(gain * relative MSE)."""
    d = len(gain)
    if nbytes >= d // 4:  # measured: every coordinate at >= 2 bits, then 8 bits for the top
        n8 = min(d, (nbytes - d // 4) * 4 // 3)
        return n8, 0, (d - n8) // 4 * 4
    cum = np.concatenate([[0.0], np.cumsum(gain)])
    best, best_err = (0, 0, 0), float(cum[-1])
    for n8 in range(0, min(d, nbytes) + 1):
        left = nbytes - n8
        for n4 in range(0, min(d - n8, 2 * left) + 1, 2):
            n2 = min(d - n8 - n4, 4 * (left - n4 // 2)) // 4 * 4
            a, b, c = n8, n8 + n4, n8 + n4 + n2
            err = (_SQ_MSE[8] * cum[a] + _SQ_MSE[4] * (cum[b] - cum[a])
                   + _SQ_MSE[2] * (cum[c] - cum[b]) + (cum[-1] - cum[c]))
            if err < best_err:
                best, best_err = (n8, n4, n2), err
    return best


def _along(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Row-wise ``<v, c> / |c|^2`` (0 where ``c`` is 0): the multiple of c in v."""
    c2 = (c * c).sum(-1)
    return np.where(c2 > 1e-12, (v * c).sum(-1) / np.maximum(c2, 1e-12), 0)


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 8,
            spherical: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean k-means (``spherical``: of unit vectors, unit means), k-means++ seeding ->
    (centroids [k, D], assignment [n]). k-means++ matters for a leaf's vectors: a leaf often
    holds several clusters, and random seeds that miss one leave a centroid between two
    (measured: 4% of candidates mis-scored)."""
    sq = (x * x).sum(1)
    c = np.empty((k, x.shape[1]), np.float32)
    c[0] = x[rng.integers(len(x))]
    dist = np.maximum(sq - 2 * x @ c[0] + c[0] @ c[0], 0)
    for j in range(1, k):
        p = dist.astype(np.float64)  # float32 weights may not sum to 1 within choice's check
        total = p.sum()
        c[j] = x[rng.choice(len(x), p=p / total) if total > 0 else rng.integers(len(x))]
        dist = np.minimum(dist, np.maximum(sq - 2 * x @ c[j] + c[j] @ c[j], 0))
    for it in range(iters + 1):
        a = np.argmax(x @ c.T - 0.5 * (c * c).sum(1), axis=1)
        if it == iters:
            return c, a
        onehot = (a[:, None] == np.arange(k)[None, :]).astype(np.float32)
        count = onehot.sum(0)
        c = np.where(count[:, None] > 0, (onehot.T @ x) / np.maximum(count, 1)[:, None], c)
        if spherical:  # unit x and unit means: the argmax above is the cosine's
            c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)


def _assign_nearest(x, probed: np.ndarray, members: list[np.ndarray], centroids: np.ndarray,
                    best: np.ndarray, fine: np.ndarray) -> None:
    """For each vector i and list l in ``probed[i]``: if a centroid of ``members[l]`` is nearer
    (Euclidean) than ``best[i]``, it becomes ``fine[i]`` (in place). Inverted lists: one
    matmul per list over the vectors that probe it."""
    p = probed.shape[1]
    flat = np.argsort(probed.reshape(-1), kind="stable")
    bounds = np.searchsorted(probed.reshape(-1)[flat], np.arange(len(members) + 1))
    for lst, ids in enumerate(members):
        if not len(ids):
            continue
        c = centroids[ids]
        half = 0.5 * (c * c).sum(1)
        listed = flat[bounds[lst]:bounds[lst + 1]] // p
        block = max(1, (1 << 22) // len(ids))  # bounded memory: <= 16 MiB of scores at once
        for s in range(0, len(listed), block):
            rows = listed[s:s + block]
            sc = np.asarray(x[rows], np.float32) @ c.T - half
            arg = np.argmax(sc, 1)
            top = sc[np.arange(len(rows)), arg]
            better = top > best[rows]
            best[rows[better]] = top[better]
            fine[rows[better]] = ids[arg[better]]


def fine_centroids(x: np.ndarray, tokens: np.ndarray, num_leaves: int, seed: int = 0,
                   probe: int = 4, chunk: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Residual centroids: k-means inside each leaf (``ceil(count / VECTORS_PER_CENTROID)``
    centroids, at most 256); each vector then takes the nearest centroid of its own leaf or of
    the ``probe`` groups (spherical k-means of the centred centroids, sqrt(C) groups) whose
    means are nearest -> (centroids float32[C, D], fine int[N], each vector's centroid).

    Why search beyond the own leaf: a leaf's k-means serves the clusters that fill it; a vector
    of a cluster that mostly lies in other leaves would be coded against a far centroid, and its
    large residual wrecked 1.5% of the scores at 1M (docs/benchmarks.md). Probing groups of
    centroids (not leaves: a leaf mixing many clusters has an uninformative mean) finds a near
    one at a tenth of the cost of comparing with all of them.
    """
    n, d = x.shape
    leaves = max(num_leaves, int(tokens.max()) + 1 if n else 1)
    counts = np.bincount(tokens, minlength=leaves)
    per_leaf = np.minimum(np.clip(-(-counts // VECTORS_PER_CENTROID), 1, 256), counts)
    offsets = np.concatenate([[0], np.cumsum(per_leaf)]).astype(np.int64)
    centroids = np.zeros((offsets[-1], d), np.float32)
    order = np.argsort(tokens, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    rng = np.random.default_rng(seed)
    for leaf in np.flatnonzero(counts):
        part = np.asarray(x[order[starts[leaf]:starts[leaf + 1]]], np.float32)
        centroids[offsets[leaf]:offsets[leaf + 1]] = _kmeans(part, int(per_leaf[leaf]), rng)[0]
    best = np.full(n, -np.inf, np.float32)
    fine = np.zeros(n, np.uint16 if len(centroids) <= 65_536 else np.int32)
    own = [np.arange(offsets[i], offsets[i + 1]) for i in range(leaves)]
    _assign_nearest(x, tokens.reshape(-1, 1), own, centroids, best, fine)
    groups = int(np.ceil(np.sqrt(len(centroids))))
    probe = min(probe, groups)
    if probe and groups > 1:
        # Spherical k-means of the centred centroids: the shared direction of all embeddings
        # removed, a group's mean points at its members only. (Euclidean k-means of raw
        # centroids once put 8,074 of 8,518 in one group around the overall mean.)
        centre = centroids.mean(0)
        unit = centroids - centre
        unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        means, group = _kmeans(unit, groups, rng, spherical=True)
        members = [np.flatnonzero(group == g) for g in range(groups)]
        probed = np.empty((n, probe), np.int32)
        for s in range(0, n, chunk):
            sc = (np.asarray(x[s:s + chunk], np.float32) - centre) @ means.T
            probed[s:s + chunk] = np.argpartition(-sc, probe - 1, axis=1)[:, :probe]
        _assign_nearest(x, probed, members, centroids, best, fine)
    return centroids, fine


class CompactRescorer:
    """Compact re-scoring code, a gain-shape residual code:
    ``x ~ (1 + delta) * c + R^T y`` with ``c`` the vector's fine centroid (k-means inside its
    ScaNN leaf), ``y`` the residual ``x - alpha c`` (``alpha = <x, c>/|c|^2``, so it is
    orthogonal to ``c``) in a PCA basis ``R`` of such residuals, scalar-quantised with 8/4/2/0
    bits a coordinate (bits go to the coordinates with the largest residual variance x energy of
    the vectors orthogonal to their centroid, a stand-in for the queries). ``delta`` (float16) is
    chosen so the reconstruction has exactly x's component along ``c``.

    Why the gain: a query is close to its neighbours' centroid, so most of ``<q, x>`` is
    ``<q, c>``; a quantisation error along ``c`` is multiplied by that large part, while the
    error orthogonal to ``c`` only meets the small part of ``q`` that is orthogonal to it.
    Measured on 1M clustered vectors, the exact top-50 re-scored with 180 B codes: recall@3
    0.665 with the former leaf-mean code -> 0.97 (docs/benchmarks.md).
    Packed code bytes: [n8 bytes | n4/2 bytes of nibbles | n2/4 bytes of four 2-bit levels]."""

    FILES = ("centroids", "fine", "delta", "rotation", "steps", "codes")

    def __init__(self, centroids, fine, delta, rotation, steps, tiers, codes):
        self.centroids, self.fine, self.delta = centroids, fine, delta  # [C,D] [N] [N]
        self.rotation, self.steps, self.codes = rotation, steps, codes  # [D,K] [K] [N,bytes]
        self.tiers = tuple(int(t) for t in tiers)

    @staticmethod
    def fixed_bytes(n: int, dim: int, num_leaves: int) -> int:
        """Bytes besides the codes and the rotation: centroids (float16, at most n/125 + one
        per leaf), the centroid index (uint16 up to 65,536 centroids, else int32) and delta
        (float16) per vector, steps."""
        centroids = n // VECTORS_PER_CENTROID + max(num_leaves, 1)
        return centroids * dim * 2 + n * (2 if centroids <= 65_536 else 4) + 2 * n + 4 * dim

    @staticmethod
    def code_bytes(available: float, n: int, dim: int) -> int:
        """Largest code (bytes a vector) whose codes plus rotation (float16 [D, K], K <= 4 x
        code bytes: 2-bit coordinates) fit in ``available`` bytes."""
        small = available / (n + 8 * dim)  # K = 4 x code < D
        return int(small if 4 * small < dim else max(dim / 4, (available - 2 * dim * dim) / n))

    @staticmethod
    def fit(x: np.ndarray, tokens: np.ndarray, num_leaves: int, nbytes: int, seed: int = 0
            ) -> "CompactRescorer":
        n, d = x.shape
        centroids, fine = fine_centroids(x, tokens, num_leaves, seed)
        centroids = centroids.astype(np.float16)  # as stored: fit the code to what is decoded
        sample = np.sort(np.random.default_rng(seed).choice(n, min(n, 50_000), replace=False))
        xs = np.asarray(x[sample], np.float32)
        cs = centroids[fine[sample]].astype(np.float32)
        res = xs - _along(xs, cs)[:, None] * cs  # also x's part orthogonal to c: the bits
        var, vecs = np.linalg.eigh(res.T @ res / len(res))  # follow that part's energy too
        gain = np.maximum(var, 0) * ((res @ vecs) ** 2).mean(0)
        order = np.argsort(-gain)
        n8, n4, n2 = _allocate_bits(gain[order], nbytes)
        keep = order[:n8 + n4 + n2]
        sigma = np.sqrt(np.maximum(var[keep], 1e-12))
        bits = np.array([8] * n8 + [4] * n4 + [2] * n2)
        steps = (2 * np.array([_SQ_RANGE[b] for b in bits]) * sigma / 2.0 ** bits
                 ).astype(np.float32)
        out = CompactRescorer(centroids, fine, None, vecs[:, keep].astype(np.float16), steps,
                              (n8, n4, n2), None)
        out.delta, out.codes = out.encode(x)
        return out

    @property
    def nbytes_per_vector(self) -> int:
        n8, n4, n2 = self.tiers
        return n8 + n4 // 2 + n2 // 4

    def _levels(self):
        n8, n4, n2 = self.tiers
        return np.array([256] * n8 + [16] * n4 + [4] * n2, np.float32)

    @functools.cached_property
    def _centroids_fp32(self) -> np.ndarray:
        """float32 copy for the all-centroids matmul, made once (not per search batch)."""
        return self.centroids.astype(np.float32)

    def _centroids_of(self, rows: np.ndarray) -> np.ndarray:
        return self.centroids[self.fine[rows]].astype(np.float32)

    def encode(self, x: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """-> (delta float16[N], packed codes uint8[N, bytes]) for the rows of the fitted x."""
        n8, n4, n2 = self.tiers
        levels = self._levels()
        rot = self.rotation.astype(np.float32)
        codes = np.empty((len(x), self.nbytes_per_vector), np.uint8)
        delta = np.empty(len(x), np.float16)
        for s in range(0, len(x), chunk):
            part = np.asarray(x[s:s + chunk], np.float32)
            c = self._centroids_of(np.arange(s, s + len(part)))
            alpha = _along(part, c)
            y = (part - alpha[:, None] * c) @ rot
            q = np.clip(np.floor(y / self.steps + levels / 2), 0, levels - 1).astype(np.uint8)
            # delta: the decoded residual's leak along c is taken out of the gain.
            beta = ((q + 0.5 - levels / 2) * self.steps) @ rot.T
            delta[s:s + chunk] = alpha - _along(beta, c) - 1
            q4 = q[:, n8:n8 + n4].reshape(len(q), -1, 2)
            q2 = q[:, n8 + n4:].reshape(len(q), -1, 4)
            codes[s:s + chunk] = np.concatenate(
                [q[:, :n8], q4[..., 0] | (q4[..., 1] << 4),
                 q2[..., 0] | (q2[..., 1] << 2) | (q2[..., 2] << 4) | (q2[..., 3] << 6)], 1)
        return delta, codes

    def decode_levels(self, packed: np.ndarray) -> np.ndarray:
        """uint8 [..., bytes] -> centred quantisation levels float32 [..., K] (times steps: y)."""
        n8, n4, n2 = self.tiers
        lead = packed.shape[:-1]
        return np.concatenate(
            [packed[..., :n8].astype(np.float32) - 127.5,
             _NIBBLES[packed[..., n8:n8 + n4 // 2]].reshape(*lead, n4),
             _CRUMBS[packed[..., n8 + n4 // 2:]].reshape(*lead, n2)], -1)

    def score(self, q: np.ndarray, rows: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Approximate <q, x_row> for rows int64 [Q, C] -> float32 [Q, C]:
        ``(1 + delta) <q, c> + <q R, y>``. ``<q, c>``: one matmul with every centroid when
        there are few (measured 5x faster at 8.5k centroids and 200 candidates than gathering
        each candidate's float16 centroid), else gathered."""
        qy = (q @ self.rotation.astype(np.float32)) * self.steps
        few = len(self.centroids) <= 64 * rows.shape[1]
        centroids = self._centroids_fp32 if few else None
        out = np.empty(rows.shape, np.float32)
        for s in range(0, len(q), chunk):
            r, qs = rows[s:s + chunk], q[s:s + chunk]
            fine = self.fine[r]
            if few:
                qc = np.take_along_axis(qs @ centroids.T, fine.astype(np.int64), 1)
            else:
                qc = np.einsum("qd,qcd->qc", qs, self.centroids[fine].astype(np.float32))
            lv = self.decode_levels(self.codes[r.reshape(-1)]).reshape(*r.shape, -1)
            out[s:s + chunk] = ((1 + self.delta[r].astype(np.float32)) * qc
                                + np.einsum("qk,qck->qc", qy[s:s + chunk], lv))
        return out

    def save(self, directory: str) -> None:
        for name in self.FILES:
            np.save(os.path.join(directory, f"rescore_{name}.npy"), getattr(self, name))

    @staticmethod
    def load(directory: str, tiers, mmap: bool) -> "CompactRescorer":
        arr = {}
        for name in CompactRescorer.FILES:
            path = os.path.join(directory, f"rescore_{name}.npy")
            if not os.path.exists(path):
                raise RetrievalError(f"{path} is missing (an index from an older version? "
                                     f"rebuild it with build_index)")
            arr[name] = np.load(path, allow_pickle=False, mmap_mode="r" if mmap and name in (
                "codes", "fine", "delta") else None)
        return CompactRescorer(arr["centroids"], arr["fine"], arr["delta"], arr["rotation"],
                               arr["steps"], tiers, arr["codes"])
