"""QA records: one validated type for every source format, and the readers that produce it.

Formats read here (user-supplied Search-R1 data):
- FlashRAG jsonl: one object a line, ``{"id", "question", "golden_answers": [..]}``
  (``id`` optional; the embedded ``assets/qa`` files use it too).
- Search-R1 parquet (``scripts/data_process/*.py`` of PeterGriffinJin/Search-R1): columns
  ``data_source``, ``prompt`` (chat messages whose user turn holds the templated question),
  ``reward_model`` (``{"ground_truth": {"target": [..]}, "style": "rule"}``) and ``extra_info``
  (``{"split", "index"}``). The raw question is taken from ``extra_info.question`` when present,
  else recovered from the templated prompt (the text after ``Question: ``). The ``prompt``
  messages themselves are kept (``QaExample.prompt_messages``): Search-R1 feeds them as they are,
  so a file made with a custom template keeps it (``data.use_file_prompt``).

Every bad row raises ``DataError`` naming the file, the row (0-based line/row number) and the field.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import os
from typing import Any, Iterable, Iterator, Sequence

from searchr1_jax.rewards import normalize_answer


class DataError(ValueError):
    """A data file or row is malformed; the message names the file, row and field."""


@dataclasses.dataclass(frozen=True)
class QaExample:
    """One question with its gold answers.

    ``uid`` is unique across every data source of a split (Search-R1's ``extra_info.index``
    restarts at 0 for each source, so its GRPO group ids collide when sources are mixed).
    ``answerable`` is True when some normalised golden answer occurs, as a whole-token run, in the
    normalised text of the corpus the suite ships with (always False without a corpus).
    """

    id: str
    question: str
    golden_answers: tuple[str, ...]
    data_source: str
    uid: int = -1
    answerable: bool = False
    # The file's own prompt as ``((role, content), ..)`` chat messages (Search-R1 parquet
    # ``prompt`` column); empty: build the prompt from ``question`` with the template.
    prompt_messages: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["golden_answers"] = list(self.golden_answers)
        return d


def normalize_question(question: str) -> str:
    """Key for de-duplication: SQuAD normalisation (lower, no punctuation/articles, one space)."""
    return normalize_answer(question)


def check_example(raw: dict[str, Any], where: str, data_source: str, default_id: str
                  ) -> QaExample:
    """Validates one ``{"question", "golden_answers", "id"?}`` dict into a ``QaExample``.

    ``where`` is ``"<file>, row <n>"`` and starts every error message.
    """
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    if "question" not in raw:
        raise DataError(f"{where}: field 'question' is missing")
    question = raw["question"]
    if not isinstance(question, str):
        raise DataError(f"{where}: field 'question' must be a string, got "
                        f"{type(question).__name__}")
    if not question.strip():
        raise DataError(f"{where}: field 'question' is empty")
    answers = raw.get("golden_answers")
    if answers is None:
        raise DataError(f"{where}: field 'golden_answers' is missing")
    if isinstance(answers, str):
        answers = [answers]
    if hasattr(answers, "tolist"):  # numpy arrays from parquet readers
        answers = answers.tolist()
    if not isinstance(answers, (list, tuple)):
        raise DataError(f"{where}: field 'golden_answers' must be a list of strings, got "
                        f"{type(answers).__name__}")
    answers = list(answers)
    if not answers:
        raise DataError(f"{where}: field 'golden_answers' is empty")
    for j, a in enumerate(answers):
        if not isinstance(a, str):
            raise DataError(f"{where}: field 'golden_answers[{j}]' must be a string, got "
                            f"{type(a).__name__}")
    if not any(a.strip() for a in answers):
        raise DataError(f"{where}: field 'golden_answers' holds only empty strings")
    ex_id = raw.get("id", default_id)
    if not isinstance(ex_id, (str, int)):
        raise DataError(f"{where}: field 'id' must be a string or integer, got "
                        f"{type(ex_id).__name__}")
    return QaExample(id=str(ex_id), question=question.strip(),
                     golden_answers=tuple(a.strip() for a in answers if a.strip()),
                     data_source=data_source)


def _open_text(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(
        path, encoding="utf-8")


def read_jsonl_rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(row, object)`` for each non-blank line; bad JSON names the file and row."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    with _open_text(path) as f:
        for row, line in enumerate(f):
            if not line.strip():
                continue
            try:
                yield row, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, row {row}: invalid JSON ({e.msg})") from None


def read_flashrag_jsonl(path: str, data_source: str | None = None) -> list[QaExample]:
    """Reads a FlashRAG-style jsonl(.gz); ``data_source`` defaults to the file's stem."""
    source = data_source or _stem(path)
    return [check_example(obj, f"{path}, row {row}", source, f"{source}_{row}")
            for row, obj in read_jsonl_rows(path)]


def _question_from_prompt(prompt: Any, where: str) -> str:
    """Recovers the raw question from Search-R1's templated user turn."""
    if hasattr(prompt, "tolist"):
        prompt = prompt.tolist()
    if isinstance(prompt, (list, tuple)):
        users = [m.get("content") for m in prompt
                 if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise DataError(f"{where}: field 'prompt' has no user message")
        text = users[-1]
    elif isinstance(prompt, str):
        text = prompt
    else:
        raise DataError(f"{where}: field 'prompt' must be chat messages or a string, got "
                        f"{type(prompt).__name__}")
    if not isinstance(text, str) or "Question:" not in text:
        raise DataError(f"{where}: field 'prompt' holds no 'Question:' to recover the "
                        "question from")
    return text.rsplit("Question:", 1)[1].strip()


def searchr1_row_to_raw(row: dict[str, Any], where: str) -> tuple[dict[str, Any], str]:
    """Maps one Search-R1 parquet row to ``({"id","question","golden_answers"}, data_source)``."""
    for field in ("data_source", "reward_model"):
        if field not in row or row[field] is None:
            raise DataError(f"{where}: field '{field}' is missing")
    source = row["data_source"]
    if not isinstance(source, str) or not source:
        raise DataError(f"{where}: field 'data_source' must be a non-empty string")
    rm = row["reward_model"]
    target = rm.get("ground_truth", {}).get("target") if isinstance(rm, dict) else None
    if target is None:
        raise DataError(f"{where}: field 'reward_model.ground_truth.target' is missing")
    if hasattr(target, "tolist"):
        target = target.tolist()
    extra = row.get("extra_info") or {}
    if not isinstance(extra, dict):
        raise DataError(f"{where}: field 'extra_info' must be a struct/dict")
    question = extra.get("question")
    if question is None:
        if "prompt" not in row:
            raise DataError(f"{where}: neither 'extra_info.question' nor 'prompt' is present")
        question = _question_from_prompt(row["prompt"], where)
    index = extra.get("index", row.get("id"))
    ex_id = f"{extra.get('split', 'row')}_{index}" if index is not None else None
    raw = {"question": question, "golden_answers": target}
    if ex_id is not None:
        raw["id"] = ex_id
    return raw, source


def read_searchr1_parquet(path: str) -> list[QaExample]:
    """Reads a Search-R1 parquet file (needs ``pyarrow``, the ``data`` extra)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    import pyarrow.parquet as pq  # lazy: optional dependency

    rows = pq.read_table(path).to_pylist()
    out = []
    for i, row in enumerate(rows):
        where = f"{path}, row {i}"
        raw, source = searchr1_row_to_raw(row, where)
        ex = check_example(raw, where, source, f"{source}_{i}")
        if row.get("prompt") is not None:
            ex = dataclasses.replace(ex, prompt_messages=prompt_messages(row["prompt"], where))
        out.append(ex)
    return out


def prompt_messages(prompt: Any, where: str) -> tuple[tuple[str, str], ...]:
    """A parquet ``prompt`` cell (chat messages, or one string = one user turn) as
    ``((role, content), ..)``; a malformed cell names the file, row and field."""
    if hasattr(prompt, "tolist"):
        prompt = prompt.tolist()
    if isinstance(prompt, str):
        return (("user", prompt),)
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise DataError(f"{where}: field 'prompt' must be a non-empty list of chat messages")
    out = []
    for j, m in enumerate(prompt):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise DataError(f"{where}: field 'prompt[{j}]' must be a message "
                            "{'role': str, 'content': str}")
        out.append((m["role"], m["content"]))
    return tuple(out)


def read_qa_file(path: str, data_source: str | None = None) -> list[QaExample]:
    """Dispatches on the extension: ``.parquet`` (Search-R1) or ``.jsonl[.gz]`` (FlashRAG)."""
    if path.endswith(".parquet"):
        return read_searchr1_parquet(path)
    if path.endswith((".jsonl", ".jsonl.gz", ".json")):
        return read_flashrag_jsonl(path, data_source)
    raise DataError(f"{path}: unknown QA file type (expected .parquet, .jsonl or .jsonl.gz)")


def assign_uids(examples: Iterable[QaExample], start: int = 0) -> list[QaExample]:
    """Numbers examples ``start, start+1, ..`` across all sources (unique GRPO group ids)."""
    return [dataclasses.replace(ex, uid=start + i) for i, ex in enumerate(examples)]


def dedupe(examples: Sequence[QaExample], exclude: set[str] = frozenset()
           ) -> tuple[list[QaExample], int]:
    """Drops repeats (by normalised question) and questions whose key is in ``exclude``.

    Returns the kept examples (first occurrence wins) and how many were dropped.
    """
    seen = set(exclude)
    kept = []
    for ex in examples:
        key = normalize_question(ex.question)
        if key in seen:
            continue
        seen.add(key)
        kept.append(ex)
    return kept, len(examples) - len(kept)


def _stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".gz", ".jsonl", ".json", ".parquet"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name
