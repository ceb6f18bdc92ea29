"""The embedded offline "mini" suite: one union corpus and seven question sets (assets/).

Corpus: the union of ``assets/corpora/*.jsonl.gz`` (about 31k Wikipedia-style passages),
de-duplicated by ``(title, text)`` after stripping (first file in sorted order wins, ids kept).
Each passage is ``{"id", "title", "text", "contents"}`` where ``contents = '"' + title + '"\\n' +
text`` is Search-R1's wiki-18 form, so ``{"id", "contents"}`` is exactly what Search-R1's
retrieval server reads (``write_corpus_jsonl``).

Splits (no question occurs in both; keys are SQuAD-normalised questions):
- ``test``: the paper's seven evaluation sets, as ``data_source`` values ``nq``, ``triviaqa``,
  ``popqa``, ``hotpotqa``, ``2wikimultihopqa``, ``musique``, ``bamboogle``, kept whole (PopQA
  repeats a few question strings with different answers: the benchmark counts them all).
- ``train``: ``hotpotqa_train100``, ``musique_train100``, ``r1s_train_stage_1``/``_2``
  (HotpotQA/2Wiki train questions), minus every question that is in ``test`` and minus repeats.

``answerable``: True when some normalised golden answer occurs as a whole-token run in the
normalised text (title + text) of some corpus passage: an upper bound on what a perfect
retriever could support (questions whose answer is not in the corpus can still be answered from
the model's own knowledge).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Iterable, Sequence

import tqdm

from searchr1_jax import ASSETS_DIR
from searchr1_jax.data.records import (DataError, QaExample, assign_uids, dedupe,
                                       normalize_question, read_flashrag_jsonl,
                                       read_jsonl_rows)
from searchr1_jax.rewards import normalize_answer

# data_source name -> file under assets/qa (the order is the paper's Table 2 column order).
TEST_SETS = {
    "nq": "nq_test1000.jsonl",
    "triviaqa": "triviaqa_test1000.jsonl",
    "popqa": "popqa_test1000.jsonl",
    "hotpotqa": "hotpotqa_dev500.jsonl",
    "2wikimultihopqa": "2wiki_500.jsonl",
    "musique": "musique_500.jsonl",
    "bamboogle": "bamboogle.jsonl",
}
TRAIN_SETS = {
    "hotpotqa_train100": "hotpotqa_train100.jsonl",
    "musique_train100": "musique_train100.jsonl",
    "r1s_train_stage_1": "r1s_train_stage_1.jsonl",
    "r1s_train_stage_2": "r1s_train_stage_2.jsonl",
}
SINGLE_HOP = ("nq", "triviaqa", "popqa")
MULTI_HOP = ("hotpotqa", "2wikimultihopqa", "musique", "bamboogle")


def passage_contents(title: str, text: str) -> str:
    """Search-R1's wiki-18 ``contents``: the quoted title, a newline, the text."""
    return f'"{title}"\n{text}'


def split_contents(contents: str) -> tuple[str, str]:
    """Inverse of ``passage_contents``: ``("Title", "text")`` with the quotes removed."""
    title, _, text = contents.partition("\n")
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]
    return title, text


def read_corpus_file(path: str) -> list[dict[str, str]]:
    """Reads ``{"id","title","text"}`` or Search-R1 ``{"id","contents"}`` jsonl(.gz) passages."""
    out = []
    for row, obj in read_jsonl_rows(path):
        where = f"{path}, row {row}"
        if not isinstance(obj, dict) or "id" not in obj:
            raise DataError(f"{where}: field 'id' is missing")
        if "contents" in obj:
            if not isinstance(obj["contents"], str):
                raise DataError(f"{where}: field 'contents' must be a string")
            title, text = split_contents(obj["contents"])
        elif "title" in obj and "text" in obj:
            title, text = obj["title"], obj["text"]
            if not isinstance(title, str) or not isinstance(text, str):
                raise DataError(f"{where}: fields 'title' and 'text' must be strings")
        else:
            raise DataError(f"{where}: needs 'contents' or both 'title' and 'text'")
        out.append({"id": str(obj["id"]), "title": title, "text": text,
                    "contents": passage_contents(title, text)})
    return out


def union_corpus(paths: Sequence[str] | None = None) -> list[dict[str, str]]:
    """De-duplicated union of the corpus files (default: every embedded corpus slice)."""
    paths = sorted(paths or glob.glob(os.path.join(ASSETS_DIR, "corpora", "*.jsonl.gz")))
    if not paths:
        raise DataError(f"{ASSETS_DIR}/corpora: no *.jsonl.gz corpus files")
    seen_text, seen_id, out = set(), set(), []
    for path in paths:
        for p in read_corpus_file(path):
            key = (p["title"].strip(), p["text"].strip())
            if key in seen_text:
                continue
            if p["id"] in seen_id:
                raise DataError(f"{path}: passage id {p['id']!r} repeats an id of another file")
            seen_text.add(key)
            seen_id.add(p["id"])
            out.append(p)
    return out


def write_corpus_jsonl(passages: Iterable[dict[str, str]], path: str,
                       searchr1_format: bool = True) -> str:
    """Writes passages as ``{"id","contents"}`` (Search-R1) or ``{"id","title","text"}``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for p in passages:
            rec = ({"id": p["id"], "contents": p["contents"]} if searchr1_format else
                   {"id": p["id"], "title": p["title"], "text": p["text"]})
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


class AnswerIndex:
    """Finds which normalised answers occur as whole-token runs in a normalised corpus.

    Scanning each passage once with a first-token lookup (answer first token -> answer token
    lengths) costs O(corpus tokens x lengths per first token), a few seconds for 31k passages.
    """

    def __init__(self, answers: Iterable[str]):
        self.answers = {a for a in (normalize_answer(x) for x in answers) if a}
        self.lengths_by_first: dict[str, set[int]] = {}
        for a in self.answers:
            toks = a.split()
            self.lengths_by_first.setdefault(toks[0], set()).add(len(toks))
        self.found: set[str] = set()

    def scan(self, text: str) -> None:
        toks = normalize_answer(text).split()
        for i, tok in enumerate(toks):
            for n in self.lengths_by_first.get(tok, ()):
                cand = " ".join(toks[i:i + n])
                if cand in self.answers:
                    self.found.add(cand)

    def contains_any(self, golden_answers: Iterable[str]) -> bool:
        return any(normalize_answer(a) in self.found for a in golden_answers)


def mark_answerable(examples: Sequence[QaExample], passages: Iterable[dict[str, str]],
                    progress: bool = False) -> list[QaExample]:
    """Sets ``answerable`` on each example against the passages (see the module docstring)."""
    index = AnswerIndex(a for ex in examples for a in ex.golden_answers)
    for p in tqdm.tqdm(passages, desc="answerable scan", unit="passage", disable=not progress,
                       leave=False):
        index.scan(p["title"] + " " + p["text"])
    return [dataclasses.replace(ex, answerable=index.contains_any(ex.golden_answers))
            for ex in examples]


def _qa_path(name: str) -> str:
    return os.path.join(ASSETS_DIR, "qa", name)


def mini_test_examples() -> list[QaExample]:
    """The seven evaluation sets, unchanged (uids not yet assigned)."""
    out = []
    for source, fname in TEST_SETS.items():
        out.extend(read_flashrag_jsonl(_qa_path(fname), data_source=source))
    return out


def mini_train_examples(test: Sequence[QaExample]) -> list[QaExample]:
    """Train questions with test questions and repeats removed."""
    test_keys = {normalize_question(ex.question) for ex in test}
    raw = []
    for source, fname in TRAIN_SETS.items():
        raw.extend(read_flashrag_jsonl(_qa_path(fname), data_source=source))
    kept, _ = dedupe(raw, exclude=test_keys)
    return kept


def mini_suite(progress: bool = False) -> dict[str, list[QaExample]]:
    """``{"train": [...], "test": [...]}`` with uids (unique within a split) and answerable."""
    passages = union_corpus()
    test = mini_test_examples()
    train = mini_train_examples(test)
    both = mark_answerable(test + train, passages, progress=progress)
    test, train = both[:len(test)], both[len(test):]
    return {"train": assign_uids(train), "test": assign_uids(test)}
