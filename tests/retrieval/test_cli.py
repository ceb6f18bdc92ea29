"""The two CLIs end to end: build_index writes a directory; serve answers from it."""
import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from searchr1_jax.retrieval.client import RetrievalClient
from searchr1_jax.retrieval.corpus import iter_passages
from searchr1_jax.retrieval.retriever import load_retriever

from tests.retrieval.test_client import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_corpus(path, n=40):
    with open(path, "w") as f:
        for _, p in zip(range(n), iter_passages("hotpotqa_dev500")):
            f.write(json.dumps({"id": p.id, "contents": p.contents[:200]}) + "\n")


def test_build_bm25_in_process(tmp_path):
    from configs import base as base_config
    from searchr1_jax.retrieval.build_index import build
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus)
    rcfg = base_config.get_config().retrieval
    rcfg.corpus = str(corpus)
    build(rcfg, str(tmp_path / "index"), ["bm25"])
    retriever = load_retriever(str(tmp_path / "index"), "bm25")
    assert len(retriever.store) == 40
    assert retriever.search(["Corliss Archer radio program"], 1)[0][0]["id"] == "hp0"


@pytest.mark.slow  # two subprocesses that import jax and compile the encoder: ~2 min on 2 cores
def test_build_index_then_serve(tmp_path, minilm_encoder):
    corpus, out = tmp_path / "corpus.jsonl", tmp_path / "index"
    write_corpus(corpus)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    cmd = [sys.executable, "-m", "searchr1_jax.retrieval.build_index",
           "--config=configs/retrieval_minilm.py", f"--config.retrieval.corpus={corpus}",
           "--config.retrieval.shard_size=16", f"--out_dir={out}", "--kinds=bm25,scann"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["bm25", "dense", "embeddings", "passages", "retrieval.json"]
    assert len([f for f in os.listdir(out / "embeddings") if f.endswith(".npy")]) == 3

    # The saved dense index answers like the in-process encoder + brute force.
    dense = load_retriever(str(out), "scann")
    question = "Which actress played Corliss Archer?"
    vectors = minilm_encoder.encode([p.contents[:200] for _, p in zip(
        range(40), iter_passages("hotpotqa_dev500"))], "passage")
    q = minilm_encoder.encode([question], "query")[0]
    best = np.argsort(-(vectors @ q))[:3]
    hits = dense.search([question], 3)[0]
    assert [h["id"] for h in hits] == [dense.store[int(b)].id for b in best]

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "searchr1_jax.retrieval.serve", "--config=configs/retrieval_minilm.py",
         f"--config.retrieval.index_dir={out}", "--config.retrieval.kind=bm25",
         f"--config.retrieval.port={port}", "--log_level=warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.5)
        result = RetrievalClient(url + "/retrieve", timeout_s=30).search(["Corliss Archer"], 3)
        bm25 = load_retriever(str(out), "bm25").search(["Corliss Archer"], 3)
        assert [h["id"] for h in result[0]] == [h["id"] for h in bm25[0]]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_scann_rescore_config_reaches_the_index(tmp_path, minilm_encoder):
    """``retrieval.scann_rescore`` picks the ScaNN re-scoring store; bad values are named."""
    from configs import base as base_config
    from searchr1_jax.config import ConfigError, validate
    from searchr1_jax.retrieval.retriever import build_retriever
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus)
    cfg = base_config.get_config()
    cfg.retrieval.update(kind="scann", corpus=str(corpus), encoder="minilm",
                         scann_rescore="compact")
    validate(cfg)
    retriever = build_retriever(cfg.retrieval)
    assert retriever.index.params["rescore"] == "compact"
    question = "Which actress played Corliss Archer?"
    vectors = minilm_encoder.encode([p.contents[:200] for _, p in zip(
        range(40), iter_passages("hotpotqa_dev500"))], "passage")
    best = int(np.argmax(vectors @ minilm_encoder.encode([question], "query")[0]))
    assert retriever.search([question], 1)[0][0]["id"] == retriever.store[best].id
    cfg.retrieval.scann_rescore = "int4"
    with pytest.raises(ConfigError, match="retrieval.scann_rescore"):
        validate(cfg)
