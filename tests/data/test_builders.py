"""TFDS builders: build from files into tmp dirs, read back with tfds.data_source, no TensorFlow."""
import gzip
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds

from searchr1_jax import ASSETS_DIR
from searchr1_jax.data import builders, hub, load_examples, load_mini_corpus
from searchr1_jax.data.mini import TEST_SETS, TRAIN_SETS


def test_tensorflow_is_not_installed():
    proc = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True)
    assert proc.returncode != 0 and b"No module named 'tensorflow'" in proc.stderr


@pytest.fixture(scope="module")
def mini_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builders.build(builders.MiniQa, data_dir)
    assert "tensorflow" not in sys.modules
    return data_dir


def _lines(name):
    with open(os.path.join(ASSETS_DIR, "qa", name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_mini_qa_through_data_source(mini_dir):
    ds = tfds.data_source("mini_qa", data_dir=mini_dir)
    assert set(ds) == {"train", "test"}
    expected = [(src, row) for src, f in TEST_SETS.items() for row in _lines(f)]
    assert len(ds["test"]) == len(expected) == 4625
    for i in (0, 1000, 2999, 4624):  # record order == file order, uid == record index
        rec = ds["test"][i]
        src, row = expected[i]
        assert rec["question"].decode() == row["question"].strip()
        assert [a.decode() for a in rec["golden_answers"]] == row["golden_answers"]
        assert rec["data_source"].decode() == src and rec["uid"] == i
    assert "tensorflow" not in sys.modules


def _norm(s):
    import re
    import string
    s = "".join(c for c in s.lower() if c not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def test_mini_splits_do_not_overlap_and_train_is_deduped(mini_dir):
    test = load_examples("mini:test", data_dir=mini_dir)
    train = load_examples("mini:train", data_dir=mini_dir)
    test_keys = {_norm(e.question) for e in test}
    train_keys = [_norm(e.question) for e in train]
    assert not test_keys & set(train_keys)
    assert len(set(train_keys)) == len(train_keys)
    raw_train = [r for f in TRAIN_SETS.values() for r in _lines(f)]
    # Everything dropped from train is a repeat or a test question; nothing else is lost.
    assert {_norm(r["question"]) for r in raw_train} - test_keys == set(train_keys)
    assert len(train) < len(raw_train)  # the r1s stage files do repeat some test questions
    assert sorted({e.data_source for e in train}) == sorted(TRAIN_SETS)


def test_answerable_flag_matches_brute_force_search(mini_dir):
    test = load_examples("mini:test", data_dir=mini_dir)
    corpus = load_mini_corpus(mini_dir)
    text = " " + " ".join(_norm(p["title"] + " " + p["text"]) for p in corpus) + " "
    sample = [e for e in test[::123] if len(e.golden_answers) <= 3]  # bound the brute force
    for ex in sample:  # independent check: whole-token substring of the normalised corpus
        want = any(_norm(a) and f" {_norm(a)} " in text for a in ex.golden_answers)
        assert ex.answerable == want, ex
    assert 0 < sum(e.answerable for e in sample) < len(sample)
    hotpot = [e for e in test if e.data_source == "hotpotqa"]
    assert all(e.answerable for e in hotpot)  # its gold paragraphs are in the corpus


def test_mini_corpus(mini_dir):
    corpus = load_mini_corpus(mini_dir)
    raw = []
    for f in sorted(os.listdir(os.path.join(ASSETS_DIR, "corpora"))):
        with gzip.open(os.path.join(ASSETS_DIR, "corpora", f), "rt", encoding="utf-8") as fh:
            raw.extend(json.loads(line) for line in fh)
    assert len(corpus) == len({(r["title"].strip(), r["text"].strip()) for r in raw})
    assert 25_000 < len(corpus) <= len(raw)
    assert len({p["id"] for p in corpus}) == len(corpus)
    by_id = {r["id"]: r for r in raw}
    for p in corpus[::5000]:
        r = by_id[p["id"]]
        assert p["contents"] == '"' + r["title"] + '"\n' + r["text"]


def _searchr1_rows(source, qs):
    return [{"data_source": source,
             "prompt": [{"role": "user", "content": f"... Question: {q}?\n"}],
             "reward_model": {"style": "rule", "ground_truth": {"target": [f"ans{i}"]}},
             "extra_info": {"split": "train", "index": i}} for i, q in enumerate(qs)]


def test_searchr1_builder_from_manual_files(tmp_path):
    manual = tmp_path / "manual"
    (manual / "nq").mkdir(parents=True)
    (manual / "nq" / "test.jsonl").write_text(
        json.dumps({"id": "t0", "question": "who is x", "golden_answers": ["y"]}) + "\n" +
        json.dumps({"id": "t1", "question": "who is z", "golden_answers": ["w", "v"]}) + "\n")
    (manual / "nq_hotpotqa_train_search").mkdir()
    pq.write_table(pa.Table.from_pylist(_searchr1_rows("nq", ["a", "b"]) +
                                        _searchr1_rows("hotpotqa", ["c"])),
                   str(manual / "nq_hotpotqa_train_search" / "train.parquet"))
    data_dir = str(tmp_path / "tfds")
    got = load_examples("searchr1/nq:test", data_dir=data_dir, manual_dir=str(manual))
    assert [(e.id, e.question, e.golden_answers, e.data_source) for e in got] == [
        ("t0", "who is x", ("y",), "nq"), ("t1", "who is z", ("w", "v"), "nq")]
    mix = load_examples("searchr1/nq_hotpotqa_train:train+searchr1/nq:test",
                        data_dir=data_dir, manual_dir=str(manual))
    assert [e.data_source for e in mix] == ["nq", "nq", "hotpotqa", "nq", "nq"]
    assert [e.question for e in mix[:3]] == ["a?", "b?", "c?"]
    assert [e.uid for e in mix] == [0, 1, 2, 3, 4]  # unique across sources and files
    # The parquet's own prompt messages survive the TFDS records; jsonl rows have none.
    assert mix[0].prompt_messages == (("user", "... Question: a?\n"),)
    assert mix[3].prompt_messages == ()


def test_searchr1_builder_without_files_or_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubUnavailableError,
                       match=r"RUC-NLPIR/FlashRAG_datasets/bamboogle/test.jsonl.*manual_dir"):
        load_examples("searchr1/bamboogle:test", data_dir=str(tmp_path))


def test_bad_specs(tmp_path, mini_dir):
    with pytest.raises(ValueError, match="needs ':<split>'"):
        load_examples("mini", data_dir=mini_dir)
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_examples("mini:dev", data_dir=mini_dir)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_examples("squad:train", data_dir=mini_dir)


def test_sources_and_max_examples(mini_dir):
    got = load_examples("mini:test", data_dir=mini_dir, sources=["bamboogle", "nq"],
                        max_examples=3)
    assert [e.data_source for e in got] == ["nq"] * 3 + ["bamboogle"] * 3
    assert [e.uid for e in got] == list(range(6))
