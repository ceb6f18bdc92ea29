"""Corpus readers, Search-R1 passage formatting and the passage store."""
import gzip
import json
import os

import pytest

from searchr1_jax.retrieval import (CorpusError, Passage, PassageStore, format_passages,
                                    iter_passages, iter_shards, resolve_corpus)


def test_search_r1_format_read_verbatim(assets_dir):
    path = os.path.join(assets_dir, "reference", "searchr1_example_corpus.jsonl")
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    got = list(iter_passages([path]))
    assert [p.id for p in got] == [str(r["id"]) for r in rows]
    assert [p.contents for p in got] == [r["contents"] for r in rows]


def test_title_text_format_becomes_quoted_title_line(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"id": "a1", "title": "Paris", "text": "Paris is big.\nSecond line."}))
        f.write("\n\n")  # blank lines are skipped
        f.write(json.dumps({"id": 7, "contents": "\"Rome\"\nRome is old."}) + "\n")
    got = list(iter_passages([str(path)]))
    assert got == [Passage("a1", "\"Paris\"\nParis is big.\nSecond line."),
                   Passage("7", "\"Rome\"\nRome is old.")]


def test_format_passages_matches_search_r1():
    hits = [{"id": "1", "contents": "\"T1\"\ntext1", "score": 3.0},
            {"id": "2", "contents": "\"T2\"\nline a\nline b", "score": 2.0},
            {"id": "3", "contents": "\"T3\"\ntext3\n", "score": 1.0}]
    # Search-R1's _passages2string, written out by hand:
    expected = ("Doc 1(Title: \"T1\") text1\nDoc 2(Title: \"T2\") line a\nline b\n"
                "Doc 3(Title: \"T3\") text3")
    assert format_passages(hits) == expected
    # The server's {"document": {...}, "score"} items format identically.
    wrapped = [{"document": {"id": h["id"], "contents": h["contents"]}, "score": h["score"]}
               for h in hits]
    assert format_passages(wrapped) == expected
    assert format_passages([]) == ""


@pytest.mark.parametrize("line, message", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"title": "x", "text": "y"}), "missing field 'id'"),
    (json.dumps({"id": "1", "title": "x"}), "needs 'contents' or both 'title' and 'text'"),
    (json.dumps({"id": "1", "contents": 5}), "'contents' must be a string"),
    (json.dumps({"id": None, "contents": "x"}), "'id' must be a string or int"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "0", "contents": "\"A\"\nok"}) + "\n" + line + "\n")
    with pytest.raises(CorpusError) as err:
        list(iter_passages([str(path)]))
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_non_utf8_row_names_file_and_line(tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b'{"id": "0", "contents": "ok"}\n{"id": "1", "contents": "\xff\xfe"}\n')
    with pytest.raises(CorpusError, match=r"bytes.jsonl:2: not valid UTF-8"):
        list(iter_passages([str(path)]))


def test_resolve_corpus_names_and_errors(assets_dir):
    assert resolve_corpus("hotpotqa_dev500") == [
        os.path.join(assets_dir, "corpora", "hotpotqa_dev500.jsonl.gz")]
    assert len(resolve_corpus("mini")) == 6
    with pytest.raises(CorpusError, match="no_such_corpus"):
        resolve_corpus("no_such_corpus")


def test_streaming_shards_are_bounded():
    def gen():
        for i in range(10):
            yield Passage(str(i), f"\"t{i}\"\nx")
    shards = list(iter_shards(gen(), 4))
    assert [len(s) for s in shards] == [4, 4, 2]
    assert [p.id for s in shards for p in s] == [str(i) for i in range(10)]


def test_passage_store_roundtrip(tmp_path, hotpot_store):
    passages = [Passage("é1", "\"Café\"\ntext ü"), Passage("2", "\"B\"\n"), Passage("3", "")]
    mem = PassageStore.from_passages(passages)
    PassageStore.write(iter(passages), str(tmp_path / "s"))
    disk = PassageStore.load(str(tmp_path / "s"))
    assert len(mem) == len(disk) == 3
    assert [mem[i] for i in range(3)] == [disk[i] for i in range(3)] == passages
    with pytest.raises(IndexError):
        disk[3]
    # The real corpus: every row comes back in file order.
    first = [p for _, p in zip(range(50), iter_passages("hotpotqa_dev500"))]
    assert [hotpot_store[i] for i in range(50)] == first
    assert len(hotpot_store) == 4858
