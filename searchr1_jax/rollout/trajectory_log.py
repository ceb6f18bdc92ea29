"""Trajectory log: one JSON line per rollout row (question, each turn's text, queries,
retrieved doc ids, answer, reward fields), appended to ``runs/.../trajectories.jsonl``.

Read it back with ``read_trajectories`` or look at it with
``python -m searchr1_jax.rollout.show runs/.../trajectories.jsonl``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from searchr1_jax.rollout.batch import RolloutInfo


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def trajectory_records(info: RolloutInfo, *, rewards: Mapping[str, Sequence[float]] | None = None,
                       step: int | None = None, group_ids: Sequence[int] | None = None
                       ) -> list[dict[str, Any]]:
    """JSON-ready dicts, one per row; ``rewards`` maps a field name to one value per row."""
    n = len(info.turns)
    for name, values in (rewards or {}).items():
        if len(values) != n:
            raise ValueError(f"trajectory log: reward field {name!r} has {len(values)} values "
                             f"for {n} rows")
    records = []
    for i in range(n):
        answers = [t.content for t in info.turns[i] if t.action == "answer"]
        records.append({
            "step": step, "row": i,
            "group_id": None if group_ids is None else int(group_ids[i]),
            "question": info.questions[i], "golden_answers": list(info.golden_answers[i]),
            "data_source": info.data_source[i],
            "turns": [dataclasses.asdict(t) for t in info.turns[i]],
            "queries": list(info.queries[i]), "doc_ids": info.doc_ids[i],
            "answer": answers[-1] if answers else None,
            "num_turns": int(info.num_turns[i]), "num_searches": int(info.num_searches[i]),
            "has_answer": bool(info.has_answer[i]), "valid_format": bool(info.valid_format[i]),
            "truncated": bool(info.truncated[i]),
            "reward": {k: _plain(v[i]) for k, v in (rewards or {}).items()},
        })
    return records


def write_trajectories(path: str, info: RolloutInfo, **kwargs) -> int:
    """Appends the rows of one rollout batch to ``path``; returns the number of lines written."""
    records = trajectory_records(info, **kwargs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return len(records)


def read_trajectories(path: str) -> Iterator[dict[str, Any]]:
    """Yields the records of a trajectory log; a bad line raises naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({e.msg})") from None
            if not isinstance(rec, dict) or "turns" not in rec:
                raise ValueError(f"{path}:{lineno}: not a trajectory record (no 'turns' field)")
            yield rec
