"""Re-scoring stages of the ScaNN index: the ``reorder_k`` candidates ScaNN's 4-bit codes
propose are re-scored either exactly against float16 vectors (``Fp16Rescorer``, memory-mapped
after load) or with a compact code (``CompactRescorer``): each vector minus its leaf mean,
rotated into a PCA basis and scalar-quantised at 8/4/2/0 bits per coordinate, sized so the
whole index directory stays within a byte budget (1/8 of flat fp32 by default).
"""
from __future__ import annotations

import os

import numpy as np


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
# bit allocation). 4 and 2 bits use the Gaussian-optimal ranges; 8 bits a wider one: residuals
# within a leaf are heavy-tailed (a leaf can hold parts of several clusters; coordinates reach
# 9 sigma) and a clipped outlier flips a ranking, while 8 bits lose little precision to a wider
# range. Measured on 200k clustered vectors, the exact top-200 re-scored with 384 B codes:
# recall@3 0.908 -> 0.928. Wider 4/2-bit ranges (4.5/2.5) helped there (0.936) but lowered the
# 1M benchmark, whose 180 B code is mostly 4- and 2-bit, from 0.649 to 0.616.
_SQ_RANGE = {8: 9.0, 4: 2.68, 2: 1.99}
_SQ_MSE = {0: 1.0, 2: 0.1175, 4: 0.0095, 8: 0.00005}


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


class CompactRescorer:
    """Compact re-scoring code: x ~ mean[leaf] + R^T y, y = residual in a PCA basis of the
    within-leaf residuals, scalar-quantised with 8/4/2/0 bits a coordinate, the bits given to
    the coordinates with the largest (query energy x residual variance). Packed bytes:
    [n8 bytes | n4/2 bytes of nibbles | n2/4 bytes of four 2-bit levels]."""

    def __init__(self, means, rotation, steps, tiers, codes, tokens):
        self.means, self.rotation, self.steps = means, rotation, steps  # [L,D] [D,K] [K]
        self.tiers, self.codes, self.tokens = tuple(int(t) for t in tiers), codes, tokens

    @staticmethod
    def fit(x: np.ndarray, tokens: np.ndarray, num_leaves: int, nbytes: int, seed: int = 0
            ) -> "CompactRescorer":
        n, d = x.shape
        sums = np.zeros((max(num_leaves, 1), d), np.float64)
        for s in range(0, n, 65_536):
            np.add.at(sums, tokens[s:s + 65_536], x[s:s + 65_536])
        counts = np.bincount(tokens, minlength=len(sums))[:, None]
        means = (sums / np.maximum(counts, 1)).astype(np.float16)
        sample = np.sort(np.random.default_rng(seed).choice(n, min(n, 50_000), replace=False))
        xs = np.asarray(x[sample], np.float32)
        res = xs - means[tokens[sample]].astype(np.float32)
        var, vecs = np.linalg.eigh(res.T @ res / len(res))
        query_energy = ((xs @ vecs) ** 2).mean(0)  # the vectors stand in for the queries
        gain = np.maximum(var, 0) * query_energy
        order = np.argsort(-gain)
        n8, n4, n2 = _allocate_bits(gain[order], nbytes)
        keep = order[:n8 + n4 + n2]
        rotation = vecs[:, keep].astype(np.float16)
        sigma = np.sqrt(np.maximum(var[keep], 1e-12))
        bits = np.array([8] * n8 + [4] * n4 + [2] * n2)
        steps = (2 * np.array([_SQ_RANGE[b] for b in bits]) * sigma / 2.0 ** bits
                 ).astype(np.float32)
        out = CompactRescorer(means, rotation, steps, (n8, n4, n2), None, tokens)
        out.codes = out.encode(x)
        return out

    @property
    def nbytes_per_vector(self) -> int:
        n8, n4, n2 = self.tiers
        return n8 + n4 // 2 + n2 // 4

    def _levels(self):
        n8, n4, n2 = self.tiers
        return np.array([256] * n8 + [16] * n4 + [4] * n2, np.float32)

    def encode(self, x: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        n8, n4, n2 = self.tiers
        levels = self._levels()
        rot = self.rotation.astype(np.float32)
        out = np.empty((len(x), self.nbytes_per_vector), np.uint8)
        for s in range(0, len(x), chunk):
            part = np.asarray(x[s:s + chunk], np.float32)
            y = (part - self.means[self.tokens[s:s + chunk]].astype(np.float32)) @ rot
            q = np.clip(np.floor(y / self.steps + levels / 2), 0, levels - 1).astype(np.uint8)
            q4 = q[:, n8:n8 + n4].reshape(len(q), -1, 2)
            q2 = q[:, n8 + n4:].reshape(len(q), -1, 4)
            out[s:s + chunk] = np.concatenate(
                [q[:, :n8], q4[..., 0] | (q4[..., 1] << 4),
                 q2[..., 0] | (q2[..., 1] << 2) | (q2[..., 2] << 4) | (q2[..., 3] << 6)], 1)
        return out

    def decode_levels(self, packed: np.ndarray) -> np.ndarray:
        """uint8 [..., bytes] -> centred quantisation levels float32 [..., K] (times steps: y)."""
        n8, n4, n2 = self.tiers
        b4 = packed[..., n8:n8 + n4 // 2]
        b2 = packed[..., n8 + n4 // 2:]
        q = np.concatenate(
            [packed[..., :n8],
             np.stack([b4 & 15, b4 >> 4], -1).reshape(*b4.shape[:-1], -1),
             np.stack([b2 & 3, (b2 >> 2) & 3, (b2 >> 4) & 3, b2 >> 6], -1
                      ).reshape(*b2.shape[:-1], -1)], -1)
        return q.astype(np.float32) + 0.5 - self._levels() / 2

    def score(self, q: np.ndarray, rows: np.ndarray, chunk: int = 64) -> np.ndarray:
        """Approximate <q, x_row> for rows int64 [Q, C] -> float32 [Q, C]."""
        base = np.take_along_axis(q @ self.means.astype(np.float32).T, self.tokens[rows], 1)
        qy = (q @ self.rotation.astype(np.float32)) * self.steps
        out = np.empty(rows.shape, np.float32)
        for s in range(0, len(q), chunk):
            lv = self.decode_levels(self.codes[rows[s:s + chunk].reshape(-1)])
            lv = lv.reshape(*rows[s:s + chunk].shape, -1)
            out[s:s + chunk] = np.einsum("qk,qck->qc", qy[s:s + chunk], lv)
        return base + out

    def save(self, directory: str) -> None:
        for name in ("means", "rotation", "steps", "codes"):
            np.save(os.path.join(directory, f"rescore_{name}.npy"), getattr(self, name))

    @staticmethod
    def load(directory: str, tiers, tokens, mmap: bool) -> "CompactRescorer":
        arr = {name: np.load(os.path.join(directory, f"rescore_{name}.npy"),
                             mmap_mode="r" if mmap and name == "codes" else None,
                             allow_pickle=False)
               for name in ("means", "rotation", "steps", "codes")}
        return CompactRescorer(arr["means"], arr["rotation"], arr["steps"], tiers, arr["codes"],
                         tokens)
