"""Corpus encoding job: shards of fp16 embeddings + a JSON manifest, resumable.

Layout of ``out_dir``: ``emb_00000.npy`` (float16 [n_i, H], unit rows) with ``emb_00000.json``
(its metadata; written after the array, so it marks the shard finished) for every shard of
``shard_size`` passages in corpus order, and ``manifest.json`` once all shards exist.
Re-running skips finished shards. With several processes (multi-host), process p encodes the
shards s with s % process_count == p; every process streams the corpus (one shard of Python
objects at a time) and the last to finish writes the manifest.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Iterator

import jax
import numpy as np
from tqdm.auto import tqdm

from searchr1_jax.retrieval.base import RetrievalError
from searchr1_jax.retrieval.corpus import Passage, iter_shards

FORMAT = "searchr1_jax.embeddings/1"


def _shard_name(i: int) -> str:
    return f"emb_{i:05d}"


def _write_json_atomic(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _encoder_signature(encoder) -> dict:
    return {"model": encoder.model_name, "dim": encoder.dim,
            "prefix": encoder.prefix["passage"], "max_length": encoder.max_length["passage"]}


def _finished(out_dir: str, i: int, meta: dict) -> bool:
    """True when shard i's metadata exists and matches this run; error on a mismatch."""
    path = os.path.join(out_dir, _shard_name(i) + ".json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        old = json.load(f)
    for key, value in meta.items():
        if old.get(key) != value:
            raise RetrievalError(f"{path}: {key} = {old.get(key)!r} but this run has {value!r}; "
                                 "use a fresh output directory for a different corpus or encoder")
    arr = np.load(os.path.join(out_dir, old["file"]), mmap_mode="r", allow_pickle=False)
    return arr.shape == (meta["count"], meta["dim"])


def encode_corpus(encoder, passages: Iterable[Passage], out_dir: str, *, shard_size: int = 100_000,
                  process_index: int | None = None, process_count: int | None = None,
                  total: int | None = None) -> dict:
    """Encodes ``passages`` into ``out_dir``; returns ``{"encoded": [...], "skipped": [...]}``."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    os.makedirs(out_dir, exist_ok=True)
    signature = _encoder_signature(encoder)
    encoded, skipped, start, num_shards = [], [], 0, 0
    bar = tqdm(total=total, desc=f"encode corpus (process {process_index})", unit="passage",
               mininterval=5.0)
    for i, shard in enumerate(iter_shards(passages, shard_size)):
        num_shards = i + 1
        meta = {"format": FORMAT, **signature, "file": _shard_name(i) + ".npy", "start": start,
                "count": len(shard), "first_id": shard[0].id, "last_id": shard[-1].id}
        start += len(shard)
        if i % process_count != process_index or _finished(out_dir, i, meta):
            skipped += [i] if i % process_count == process_index else []
            bar.update(len(shard))
            continue
        emb = encoder.encode([p.contents for p in shard], "passage").astype(np.float16)
        tmp = os.path.join(out_dir, _shard_name(i) + ".tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, os.path.join(out_dir, meta["file"]))
        _write_json_atomic(os.path.join(out_dir, _shard_name(i) + ".json"), meta)
        encoded.append(i)
        bar.update(len(shard))
    bar.close()
    if all(os.path.exists(os.path.join(out_dir, _shard_name(i) + ".json"))
           for i in range(num_shards)):
        _write_json_atomic(os.path.join(out_dir, "manifest.json"), {
            "format": FORMAT, **signature, "dtype": "float16", "num_passages": start,
            "shards": [_shard_name(i) + ".npy" for i in range(num_shards)]})
    return {"encoded": encoded, "skipped": skipped, "num_passages": start}


def read_manifest(emb_dir: str) -> dict:
    path = os.path.join(emb_dir, "manifest.json")
    if not os.path.exists(path):
        raise RetrievalError(f"{emb_dir}: no manifest.json (encoding unfinished or not started)")
    with open(path) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise RetrievalError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def iter_embedding_shards(emb_dir: str) -> Iterator[np.ndarray]:
    """Memory-mapped float16 shards in corpus order."""
    manifest = read_manifest(emb_dir)
    for name in manifest["shards"]:
        arr = np.load(os.path.join(emb_dir, name), mmap_mode="r", allow_pickle=False)
        if arr.ndim != 2 or arr.shape[1] != manifest["dim"]:
            raise RetrievalError(f"{emb_dir}/{name}: shape {arr.shape}, expected [*, "
                                 f"{manifest['dim']}]")
        yield arr


def load_embeddings(emb_dir: str, dtype=np.float16) -> np.ndarray:
    """All embeddings as one [N, H] array (N x H x 2 bytes for float16)."""
    manifest = read_manifest(emb_dir)
    out = np.empty((manifest["num_passages"], manifest["dim"]), dtype)
    row = 0
    for arr in iter_embedding_shards(emb_dir):
        out[row:row + len(arr)] = arr
        row += len(arr)
    if row != manifest["num_passages"]:
        raise RetrievalError(f"{emb_dir}: shards hold {row} rows, manifest says "
                             f"{manifest['num_passages']}")
    return out
