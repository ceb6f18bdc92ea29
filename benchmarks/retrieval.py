"""ScaNN vs exact (brute-force jnp) dense search: recall@3, queries/s at batch 512, index bytes.

  python benchmarks/retrieval.py --n 1000000            # synthetic clustered 1M x 768 (~5 GB RAM)
  python benchmarks/retrieval.py --n 100000 --emb_dir /tmp/index/embeddings --qa hotpotqa_dev500

Synthetic data: ``--clusters`` centres on the unit sphere, each point a centre plus Gaussian
noise with a per-cluster spread, normalised (clustered, like real passage embeddings); queries
are fresh points from the same mixture. With ``--emb_dir`` (an encode_corpus output) the real
corpus embeddings are benchmarked too, with the QA set's questions (MiniLM) as queries.
Flat fp32 bytes = N x D x 4 (Search-R1's flat e5 index); wiki-18 sizes are extrapolated to 21M.

Index bytes = every file of the saved index directory (ScaNN files, codes, tree, tokens, ...).

Measured on the shared 2-core CPU box (2026-11-22), --n 1000000 --leaves_to_search 20
--training_sample_size 100000 (docs/benchmarks.md):
  --rescore compact: recall@3 0.964, 1,082 vs 96 q/s (11.2x), 0.1247 of flat fp32 (wiki-18 7.5 GiB)
  --rescore fp16:    recall@3 0.9977, 1,910 vs 98 q/s (19.5x), 0.628 of flat (wiki-18 37.8 GiB)
"""
from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

import numpy as np

WIKI18 = 21_015_324


def clustered(n: int, dim: int, clusters: int, seed: int, model=None):
    """Unit vectors x = normalize(mu + c_j + B z + e): a shared direction ``mu`` (embeddings
    are anisotropic), a topic centre ``c_j``, a 64-dim latent ``B z`` (low intrinsic
    dimension, as in learned embeddings) and a little isotropic noise ``e``."""
    rng = np.random.default_rng(seed)
    if model is None:
        mrng = np.random.default_rng(1234)
        unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
        mu = unit(mrng.normal(size=dim)).astype(np.float32)
        centres = unit(mrng.normal(size=(clusters, dim))).astype(np.float32)
        basis = np.linalg.qr(mrng.normal(size=(dim, 64)))[0].T.astype(np.float32)  # [64, D]
        model = (mu, centres, basis)
    mu, centres, basis = model
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # chunks: no second full-size temporary
        m = min(100_000, n - s)
        c = rng.integers(0, len(centres), m)
        x = (mu + centres[c] + 0.7 / 8 * rng.normal(size=(m, 64)).astype(np.float32) @ basis
             + 0.2 / np.sqrt(dim) * rng.normal(size=(m, dim)).astype(np.float32))
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, model


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def recall(approx, exact):
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)]))


def score_error_tolerance(queries: np.ndarray, exact, sigmas=(2e-4, 5e-4, 1e-3, 2e-3, 4e-3),
                          seed: int = 0) -> dict:
    """How precise re-scoring must be on this data: the gap between the 3rd and 4th exact
    scores, and recall@3 if every one of the exact top-50 scores had ``N(0, sigma^2)`` error
    (a compressed store must score the candidates at least this well to reach that recall)."""
    rows, scores = exact.search(queries, 50)
    rows, scores = np.asarray(rows), np.asarray(scores, np.float32)
    rng = np.random.default_rng(seed)
    out = {"gap34_p5_p25_p50": np.percentile(scores[:, 2] - scores[:, 3], [5, 25, 50]).tolist(),
           "top1_minus_top10_median": float(np.median(scores[:, 0] - scores[:, 9]))}
    for sigma in sigmas:
        noisy = scores + rng.normal(size=scores.shape).astype(np.float32) * sigma
        top = np.take_along_axis(rows, np.argsort(-noisy, 1)[:, :3], 1)
        out[f"recall@3_sigma_{sigma:g}"] = recall(top, rows[:, :3])
    return out


def timed_qps(search, queries, batch: int, repeats: int) -> float:
    search(queries[:batch])  # warm-up: compilation / caches
    start = time.perf_counter()
    n = 0
    for r in range(repeats):
        q = queries[(r * batch) % len(queries):][:batch]
        search(q)
        n += len(q)
    return n / (time.perf_counter() - start)


def bench(name: str, holder: list, queries: np.ndarray, args) -> dict:
    """``holder`` = [db]: the fp32 matrix is popped so it can be freed after the ScaNN build."""
    from searchr1_jax.retrieval.index import ExactIndex, ScannIndex, load_index
    db = holder.pop()
    n, dim = db.shape
    print(f"\n== {name}: {n:,} x {dim}, {len(queries)} queries")
    t = time.perf_counter()
    params = {k: v for k, v in (("leaves_to_search", args.leaves_to_search),
                                ("reorder_k", args.reorder_k),
                                ("dims_per_block", args.dims_per_block),
                                ("training_sample_size", args.training_sample_size)) if v}
    params["rescore"] = args.rescore
    scann = ScannIndex.build(db, params=params)
    build_s = time.perf_counter() - t
    print(f"ScaNN build {build_s:.1f} s, params {scann.params}; RSS {rss_mib():,.0f} MiB")
    fp16 = db.astype(np.float16)  # the exact index's copy
    del db
    gc.collect()
    exact = ExactIndex(fp16)
    exact_rows, _ = exact.search(queries, 3)
    scann_rows, _ = scann.search(queries, 3)
    ah_rows, _ = scann.search(queries, 3, reorder=False)
    r3, r3_ah = recall(scann_rows, exact_rows), recall(ah_rows, exact_rows)
    tolerance = score_error_tolerance(queries, exact)
    print("score gap 3rd-4th (p5, p25, p50): " + ", ".join(
        f"{g:.2e}" for g in tolerance["gap34_p5_p25_p50"]) + "; recall@3 with score error "
        "N(0, s^2): " + ", ".join(f"s={k.rsplit('_', 1)[1]} {v:.3f}" for k, v in tolerance.items()
                                 if k.startswith("recall")))
    qps_exact = timed_qps(lambda q: exact.search(q, 3), queries, args.batch, args.exact_repeats)
    qps_scann = timed_qps(lambda q: scann.search(q, 3), queries, args.batch, args.repeats)
    for leaves in args.sweep_leaves:
        if scann.params["num_leaves"]:
            old = scann.params["leaves_to_search"]
            scann.params["leaves_to_search"] = leaves
            r = recall(scann.search(queries, 3)[0], exact_rows)
            qps = timed_qps(lambda q: scann.search(q, 3), queries, args.batch, args.repeats)
            print(f"  leaves_to_search {leaves}: recall@3 {r:.4f}, {qps:,.0f} queries/s")
            scann.params["leaves_to_search"] = old
    del exact, fp16
    gc.collect()
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        scann.save(d)
        sizes = ScannIndex.nbytes(d)
        del scann
        gc.collect()
        before = rss_mib()
        loaded = load_index(d)  # the re-scoring store is memory-mapped, not read
        loaded.search(queries[:args.batch], 3)
        print(f"RSS growth from loading the saved ScaNN index and one search batch: "
              f"{rss_mib() - before:,.0f} MiB")
        del loaded
    flat = n * dim * 4
    total = sizes["total"]
    row = {"name": name, "n": n, "recall@3": r3, "recall@3_no_reorder": r3_ah,
           "qps_exact": qps_exact, "qps_scann": qps_scann, "speedup": qps_scann / qps_exact,
           "flat_fp32_bytes": flat, "index_bytes": total, "fraction_of_flat": total / flat,
           "build_s": build_s, **tolerance}
    print(f"recall@3 vs exact: {r3:.4f} (AH only, no reorder: {r3_ah:.4f})")
    print(f"queries/s at batch {args.batch}: exact {qps_exact:,.0f}  ScaNN {qps_scann:,.0f}  "
          f"({qps_scann / qps_exact:.1f}x)")
    print("index directory bytes per vector: " + ", ".join(
        f"{k} {v / n:.1f}" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])))
    print(f"bytes: flat fp32 {flat / 2**20:,.1f} MiB | index directory (everything) "
          f"{total / 2**20:,.1f} MiB = {total / flat:.4f} of flat fp32 (target <= 0.125)")
    print(f"wiki-18 ({WIKI18:,} x {dim}) extrapolated: flat fp32 {WIKI18 * dim * 4 / 2**30:.1f} GiB"
          f" | index directory {WIKI18 * total / n / 2**30:.1f} GiB (per-vector bytes x 21M; the "
          f"tree's share shrinks with n)")
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="synthetic vectors (0: skip)")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--queries", type=int, default=2048)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--repeats", type=int, default=4, help="timed ScaNN batches")
    p.add_argument("--exact_repeats", type=int, default=2, help="timed exact batches")
    p.add_argument("--leaves_to_search", type=int, default=0, help="override (0: from n)")
    p.add_argument("--reorder_k", type=int, default=0, help="override (0: default)")
    p.add_argument("--dims_per_block", type=int, default=0, help="override AH (0: default 2)")
    p.add_argument("--training_sample_size", type=int, default=0, help="override (0: default)")
    p.add_argument("--sweep_leaves", type=lambda s: [int(x) for x in s.split(",") if x],
                   default=[], help="extra leaves_to_search settings to report, e.g. 40,80,160")
    p.add_argument("--emb_dir", default="", help="encode_corpus output to benchmark as well")
    p.add_argument("--qa", default="hotpotqa_dev500", help="questions for --emb_dir")
    p.add_argument("--rescore", default="compact", choices=["compact", "fp16"],
                   help="re-scoring store: compact codes (1/8 budget) or float16 vectors")
    p.add_argument("--tmp", default=None, help="where to write the index for byte counts")
    args = p.parse_args()

    if args.n:
        db, model = clustered(args.n, args.dim, args.clusters, seed=0)
        queries, _ = clustered(args.queries, args.dim, args.clusters, 1, model)
        holder = [db]
        del db
        bench(f"synthetic clustered ({args.clusters} clusters)", holder, queries, args)
        gc.collect()
    if args.emb_dir:
        import json
        from searchr1_jax import ASSETS_DIR
        from searchr1_jax.retrieval.encode_corpus import load_embeddings, read_manifest
        from searchr1_jax.retrieval.encoder import TextEncoder
        manifest = read_manifest(args.emb_dir)
        holder = [load_embeddings(args.emb_dir).astype(np.float32)]
        with open(os.path.join(ASSETS_DIR, "qa", f"{args.qa}.jsonl")) as f:
            questions = [json.loads(line)["question"] for line in f]
        encoder = TextEncoder(manifest["model"], passage_prefix=manifest["prefix"])
        queries = encoder.encode_queries(questions)
        bench(f"real: {manifest['model']} embeddings of {args.emb_dir}", holder, queries, args)


if __name__ == "__main__":
    main()
