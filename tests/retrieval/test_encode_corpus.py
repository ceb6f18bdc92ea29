"""Corpus encoding job: fp16 shards + manifest, resume after interruption, per-process slices."""
import json
import os

import numpy as np
import pytest

from searchr1_jax.retrieval.base import RetrievalError
from searchr1_jax.retrieval.corpus import Passage, iter_passages
from searchr1_jax.retrieval.encode_corpus import encode_corpus, load_embeddings, read_manifest


@pytest.fixture(scope="module")
def passages():
    # 36 real passages, cut short to keep the encoder cheap on CPU.
    return [Passage(p.id, p.contents[:120]) for _, p in zip(range(36), iter_passages(
        "hotpotqa_dev500"))]


def interrupted(passages, after):
    for i, p in enumerate(passages):
        if i == after:
            raise KeyboardInterrupt("simulated interruption")
        yield p


def test_resume_skips_finished_shards(tmp_path, minilm_encoder, passages):
    out = str(tmp_path / "emb")
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(minilm_encoder, interrupted(passages, 25), out, shard_size=10)
    assert sorted(f for f in os.listdir(out) if f.endswith(".json")) == [
        "emb_00000.json", "emb_00001.json"]
    assert not os.path.exists(os.path.join(out, "manifest.json"))
    with pytest.raises(RetrievalError, match="no manifest.json"):
        load_embeddings(out)
    mtimes = [os.stat(os.path.join(out, f"emb_0000{i}.npy")).st_mtime_ns for i in (0, 1)]

    stats = encode_corpus(minilm_encoder, iter(passages), out, shard_size=10)
    assert stats == {"encoded": [2, 3], "skipped": [0, 1], "num_passages": 36}
    assert mtimes == [os.stat(os.path.join(out, f"emb_0000{i}.npy")).st_mtime_ns for i in (0, 1)]
    manifest = read_manifest(out)
    assert manifest["num_passages"] == 36 and manifest["dim"] == 384
    emb = load_embeddings(out)
    assert emb.dtype == np.float16 and emb.shape == (36, 384)

    # Same vectors as encoding everything in one go (fp16 rounding only).
    direct = minilm_encoder.encode([p.contents for p in passages], "passage")
    np.testing.assert_allclose(emb.astype(np.float32), direct, atol=2e-3)
    # A finished job re-run does nothing.
    again = encode_corpus(minilm_encoder, iter(passages), out, shard_size=10)
    assert again["encoded"] == [] and again["skipped"] == [0, 1, 2, 3]


def test_mismatched_rerun_is_an_error(tmp_path, minilm_encoder, passages):
    out = str(tmp_path / "emb")
    encode_corpus(minilm_encoder, iter(passages[:10]), out, shard_size=10)
    with pytest.raises(RetrievalError, match=r"emb_00000.json: count = 10 but this run has 12"):
        encode_corpus(minilm_encoder, iter(passages[:12]), out, shard_size=12)
    with pytest.raises(RetrievalError, match=r"emb_00000.json: first_id = '.*' but this run"):
        encode_corpus(minilm_encoder, iter(passages[10:20]), out, shard_size=10)


def test_processes_encode_disjoint_slices(tmp_path, minilm_encoder, passages):
    out = str(tmp_path / "emb")
    s0 = encode_corpus(minilm_encoder, iter(passages), out, shard_size=10, process_index=0,
                       process_count=2)
    assert s0["encoded"] == [0, 2] and not os.path.exists(os.path.join(out, "manifest.json"))
    s1 = encode_corpus(minilm_encoder, iter(passages), out, shard_size=10, process_index=1,
                       process_count=2)
    assert s1["encoded"] == [1, 3]
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["shards"] == [f"emb_0000{i}.npy" for i in range(4)]
    assert load_embeddings(out).shape == (36, 384)
