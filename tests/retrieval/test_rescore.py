"""Compact re-scoring code: fine centroids, the gain-shape residual code and its scores."""
import numpy as np
import pytest

from searchr1_jax.retrieval.base import RetrievalError
from searchr1_jax.retrieval.rescore import CompactRescorer, _kmeans, fine_centroids


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n, dim, clusters, seed, spread=0.4):
    """Anisotropic clustered unit vectors: a shared direction + a cluster centre + noise."""
    rng = np.random.default_rng(seed)
    model = np.random.default_rng(99)
    mu, centres = unit(model.normal(size=dim)), unit(model.normal(size=(clusters, dim)))
    label = rng.integers(0, clusters, n)
    x = mu + centres[label] + spread / np.sqrt(dim) * rng.normal(size=(n, dim))
    return unit(x), label


def test_kmeans_pp_seeds_every_separated_cluster():
    """One big and four small well-separated clusters, k = 5: k-means++ seeding gives each its
    own centroid (random seeds would usually put two in the big one and merge two small)."""
    rng = np.random.default_rng(0)
    centres = 10 * np.eye(5, 16, dtype=np.float32)
    sizes = [500, 12, 12, 12, 12]
    x = np.concatenate([c + 0.1 * rng.normal(size=(m, 16)) for c, m in zip(centres, sizes)]
                       ).astype(np.float32)
    c, a = _kmeans(x, 5, np.random.default_rng(1))
    nearest = np.argmin(((centres[:, None] - c[None]) ** 2).sum(-1), axis=1)
    assert sorted(nearest) == [0, 1, 2, 3, 4]
    assert np.abs(c[nearest] - centres).max() < 0.2
    labels = np.repeat(np.arange(5), sizes)
    assert all(len(set(a[labels == j])) == 1 for j in range(5))


def test_fine_centroids_assign_nearest_even_outside_the_own_leaf():
    """Leaves that mix clusters (random leaf tokens here, the worst case): each vector still
    gets its nearest centroid (brute force over all of them) almost always."""
    x, _ = clustered(6000, 32, 40, seed=0)
    tokens = np.random.default_rng(1).integers(0, 6, len(x)).astype(np.int32)
    centroids, fine = fine_centroids(x, tokens, 6)
    assert len(centroids) == sum(-(-c // 125) for c in np.bincount(tokens))
    dist = ((x[:, None] - centroids[None]) ** 2).sum(-1)
    brute = np.argmin(dist, axis=1)
    assert (fine == brute).mean() >= 0.98  # measured 0.9885
    rows = np.arange(len(x))
    assert dist[rows, fine].mean() <= 1.01 * dist[rows, brute].mean()
    own_only = np.empty_like(brute)  # what the own leaf alone would give: much worse
    counts = np.bincount(tokens)
    offsets = np.concatenate([[0], np.cumsum(-(-counts // 125))])
    for leaf in range(6):
        rows = np.flatnonzero(tokens == leaf)
        c = centroids[offsets[leaf]:offsets[leaf + 1]]
        own_only[rows] = offsets[leaf] + np.argmin(((x[rows, None] - c[None]) ** 2).sum(-1), 1)
    assert (own_only == brute).mean() < 0.5


@pytest.fixture(scope="module")
def fitted():
    x, _ = clustered(20_000, 64, 50, seed=2)
    tokens = np.random.default_rng(3).integers(0, 10, len(x)).astype(np.int32)
    return x, CompactRescorer.fit(x, tokens, 10, nbytes=48)


def test_score_is_the_inner_product_with_the_decoded_vector(fitted):
    """score(q, i) == <q, (1 + delta_i) c_i + R^T y_i>, decoded here step by step, and that
    reconstruction keeps x's exact component along its centroid (what delta is for)."""
    x, r = fitted
    rows = np.arange(0, len(x), 97)
    c = r.centroids[r.fine[rows]].astype(np.float32)
    y = r.decode_levels(r.codes[rows]) * r.steps
    recon = (1 + r.delta[rows].astype(np.float32))[:, None] * c + y @ r.rotation.astype(
        np.float32).T
    q = unit(np.random.default_rng(4).normal(size=(3, 64)))
    np.testing.assert_allclose(r.score(q, np.tile(rows, (3, 1))), q @ recon.T, atol=2e-5)
    chat = c / np.linalg.norm(c, axis=1, keepdims=True)
    along_x, along_recon = (x[rows] * chat).sum(1), (recon * chat).sum(1)
    np.testing.assert_allclose(along_recon, along_x, atol=2e-3)  # float16 delta


def test_more_bytes_smaller_error_and_near_exact_at_one_byte_a_coordinate():
    x, _ = clustered(8000, 64, 20, seed=5)
    tokens = np.zeros(len(x), np.int32)
    q = unit(x[:40] + 0.05 * np.random.default_rng(6).normal(size=(40, 64)))
    rows = np.argsort(-(q @ x.T), axis=1)[:, :50]
    exact = np.einsum("qd,qcd->qc", q, x[rows])
    errors = []
    for nbytes in (8, 16, 64):
        r = CompactRescorer.fit(x, tokens, 0, nbytes=nbytes)
        assert r.nbytes_per_vector <= nbytes and r.codes.shape == (len(x), r.nbytes_per_vector)
        errors.append(np.abs(r.score(q, rows) - exact).mean())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3  # 8 bits on every coordinate


def test_recall_on_clustered_vectors_and_what_delta_adds(fitted):
    """Each query's exact top-50 re-scored with 48 B codes (6 bits a coordinate; isotropic noise
    around the centres, the hardest case for a short code: 3rd-4th score gap 1.2e-3): measured
    recall@3 0.80, and 0.35 with delta (the gain along the centroid) set to 0."""
    x, r = fitted
    q = unit(x[:300] + 0.02 * np.random.default_rng(7).normal(size=(300, 64)))
    top = np.argsort(-(q @ x.T), axis=1)[:, :50]

    def recall(scores):
        got = np.take_along_axis(top, np.argsort(-scores, 1)[:, :3], 1)
        return np.mean([len(set(a) & set(b)) / 3 for a, b in zip(got, top[:, :3])])

    with_delta = recall(r.score(q, top))
    delta, r.delta = r.delta, np.zeros_like(r.delta)
    try:
        without = recall(r.score(q, top))
    finally:
        r.delta = delta
    print(f"compact 48 B recall@3 of the exact top-50: {with_delta:.3f} (delta = 0: {without:.3f})")
    assert with_delta >= 0.75
    assert with_delta > without + 0.3


def test_load_names_a_missing_file(tmp_path, fitted):
    _, r = fitted
    r.save(str(tmp_path))
    loaded = CompactRescorer.load(str(tmp_path), r.tiers, mmap=True)
    np.testing.assert_array_equal(loaded.codes, r.codes)
    (tmp_path / "rescore_fine.npy").unlink()
    with pytest.raises(RetrievalError, match="rescore_fine.npy is missing"):
        CompactRescorer.load(str(tmp_path), r.tiers, mmap=True)
