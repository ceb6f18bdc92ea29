"""Readers of user-supplied QA files: fields, uids, and errors that name file/row/field."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchr1_jax.data.records import (DataError, QaExample, assign_uids, dedupe,
                                       read_flashrag_jsonl, read_qa_file, read_searchr1_parquet)
from searchr1_jax.data.prompts import SEARCH_R1_TEMPLATE


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _searchr1_row(source, question, answers, index):
    """A row as Search-R1's scripts/data_process/nq_search.py writes it."""
    q = question.strip()
    q = q if q.endswith("?") else q + "?"
    return {"data_source": source,
            "prompt": [{"role": "user", "content": SEARCH_R1_TEMPLATE.format(question=q)}],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": answers}},
            "extra_info": {"split": "train", "index": index}}


def test_flashrag_jsonl_fields(tmp_path):
    path = _write_jsonl(tmp_path / "nq.jsonl", [
        {"id": "a1", "question": " who wrote hamlet ", "golden_answers": ["Shakespeare"]},
        {"question": "capital of france", "golden_answers": ["Paris", "paris city"]},
    ])
    got = read_flashrag_jsonl(path)
    assert got == [
        QaExample("a1", "who wrote hamlet", ("Shakespeare",), "nq"),
        QaExample("nq_1", "capital of france", ("Paris", "paris city"), "nq"),
    ]


def test_searchr1_parquet_fields(tmp_path):
    rows = [_searchr1_row("nq", "who wrote hamlet", ["Shakespeare"], 0),
            _searchr1_row("hotpotqa", "Which is older, A or B?", ["A"], 0)]
    path = str(tmp_path / "train.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    got = assign_uids(read_qa_file(path))
    assert [(e.question, e.golden_answers, e.data_source, e.uid) for e in got] == [
        ("who wrote hamlet?", ("Shakespeare",), "nq", 0),
        ("Which is older, A or B?", ("A",), "hotpotqa", 1),
    ]
    # Search-R1's own ids collide across sources (index 0 twice); uids do not.
    assert [e.id for e in got] == ["train_0", "train_0"]
    assert len({e.uid for e in got}) == 2


def test_searchr1_parquet_keeps_its_prompt(tmp_path):
    """Search-R1 feeds the parquet's `prompt` messages as written (rl_dataset.py), so a file
    made with a custom template keeps it."""
    custom = _searchr1_row("nq", "who wrote hamlet", ["Shakespeare"], 0)
    custom["prompt"] = [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Use <search>. Question: who wrote hamlet?"}]
    bad = _searchr1_row("nq", "q", ["a"], 1)
    bad["prompt"] = [{"role": "user", "content": None}]
    bad["extra_info"]["question"] = "q"
    path = str(tmp_path / "custom.parquet")
    pq.write_table(pa.Table.from_pylist([custom]), path)
    (ex,) = read_qa_file(path)
    assert ex.question == "who wrote hamlet?"
    assert ex.prompt_messages == (("system", "Be brief."),
                                  ("user", "Use <search>. Question: who wrote hamlet?"))
    path = str(tmp_path / "bad.parquet")
    pq.write_table(pa.Table.from_pylist([_searchr1_row("nq", "q", ["a"], 0), bad]), path)
    with pytest.raises(DataError, match=r"bad.parquet, row 1: field 'prompt\[0\]' must be"):
        read_searchr1_parquet(path)


@pytest.mark.parametrize("row, field", [
    ({"golden_answers": ["x"]}, "'question' is missing"),
    ({"question": "  ", "golden_answers": ["x"]}, "'question' is empty"),
    ({"question": 5, "golden_answers": ["x"]}, "'question' must be a string"),
    ({"question": "q"}, "'golden_answers' is missing"),
    ({"question": "q", "golden_answers": []}, "'golden_answers' is empty"),
    ({"question": "q", "golden_answers": [3]}, "'golden_answers[0]' must be a string"),
    ({"question": "q", "golden_answers": {"a": 1}}, "'golden_answers' must be a list"),
    ({"question": "q", "golden_answers": [""]}, "only empty strings"),
    ("[1, 2]", "expected a JSON object"),
    ("{not json", "invalid JSON"),
])
def test_flashrag_bad_rows_name_file_row_field(tmp_path, row, field):
    good = {"question": "ok", "golden_answers": ["ok"]}
    path = _write_jsonl(tmp_path / "bad.jsonl", [good, good, row])
    with pytest.raises(DataError) as err:
        read_flashrag_jsonl(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}, row 2: "), msg
    assert field in msg


def test_searchr1_parquet_bad_row(tmp_path):
    rows = [_searchr1_row("nq", "q1", ["a"], 0), _searchr1_row("nq", "q2", ["a"], 1)]
    rows[1]["reward_model"] = {"style": "rule", "ground_truth": {"target": []}}
    path = str(tmp_path / "bad.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(DataError, match=r"bad.parquet, row 1: field 'golden_answers' is empty"):
        read_searchr1_parquet(path)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_flashrag_jsonl(str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="unknown QA file type"):
        read_qa_file(str(tmp_path / "x.csv"))


def test_dedupe_by_normalised_question():
    ex = [QaExample("1", "Who is The King?", ("a",), "s"),
          QaExample("2", "who is king", ("b",), "s"),
          QaExample("3", "Where?", ("c",), "s")]
    kept, dropped = dedupe(ex, exclude={"where"})
    assert [e.id for e in kept] == ["1"] and dropped == 2
