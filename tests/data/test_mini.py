"""Corpus formats: Search-R1's {"id","contents"} and ours {"id","title","text"} round-trip."""
import json
import os

import pytest

from searchr1_jax import ASSETS_DIR
from searchr1_jax.data.mini import (AnswerIndex, read_corpus_file, union_corpus,
                                    write_corpus_jsonl)
from searchr1_jax.data.records import DataError

EXAMPLE = os.path.join(ASSETS_DIR, "reference", "searchr1_example_corpus.jsonl")


def test_searchr1_example_corpus_round_trips(tmp_path):
    raw = [json.loads(line) for line in open(EXAMPLE, encoding="utf-8")]
    got = read_corpus_file(EXAMPLE)
    assert [p["contents"] for p in got] == [r["contents"] for r in raw]
    assert got[0]["title"] == "Evan Morris" and got[0]["text"].startswith("Evan Morris Evan L.")
    out = write_corpus_jsonl(got, str(tmp_path / "c.jsonl"))
    assert [json.loads(line) for line in open(out, encoding="utf-8")] == raw
    ours = write_corpus_jsonl(got, str(tmp_path / "o.jsonl"), searchr1_format=False)
    assert read_corpus_file(ours) == got


def test_union_dedupes_repeated_passages(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"id": "a1", "title": "T", "text": "x"}) + "\n" +
                 json.dumps({"id": "a2", "title": "U", "text": "y"}) + "\n")
    b.write_text(json.dumps({"id": "b1", "contents": '"T"\nx'}) + "\n" +
                 json.dumps({"id": "b2", "contents": '"V"\nz'}) + "\n")
    assert [p["id"] for p in union_corpus([str(a), str(b)])] == ["a1", "a2", "b2"]
    c = tmp_path / "c.jsonl"
    c.write_text(json.dumps({"id": "a1", "title": "W", "text": "w"}) + "\n")
    with pytest.raises(DataError, match="passage id 'a1' repeats"):
        union_corpus([str(a), str(c)])


def test_bad_corpus_rows_are_named(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"id": "1", "title": "T", "text": "x"}) + "\n" +
                 json.dumps({"id": "2", "title": "T"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl, row 1: needs 'contents' or both"):
        read_corpus_file(str(p))


def test_answer_index_whole_token_runs():
    idx = AnswerIndex(["New York", "York", "ny", "The Beatles"])
    idx.scan("He moved to New York, then Newyork; the Beatles played.")
    # "new york" and "york" match whole tokens; "ny" is not a token of the text.
    assert idx.found == {"new york", "york", "beatles"}
    assert idx.contains_any(["NY", "the beatles"]) and not idx.contains_any(["ny"])
