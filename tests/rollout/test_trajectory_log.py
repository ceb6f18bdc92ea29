"""Trajectory jsonl round trip and the pretty-printer CLI (run as a subprocess)."""
import json
import os
import subprocess
import sys

import pytest

from searchr1_jax.rollout.show import format_record
from searchr1_jax.rollout.trajectory_log import read_trajectories, write_trajectories
from tests.rollout.fakes import ScriptedTurn
from tests.rollout.test_engine import run

SCRIPTS = [[ScriptedTurn("<think>hm</think><search> capital of France </search>"),
            ScriptedTurn("<think>ok</think><answer> Paris </answer>")],
           [ScriptedTurn("no idea")]]


def _log(tmp_path):
    _, _, _, _, info = run(SCRIPTS, max_turns=1)
    info.questions = ["What is the capital of France?", "Q2"]
    info.golden_answers = [["Paris"], ["x"]]
    path = str(tmp_path / "run" / "trajectories.jsonl")
    assert write_trajectories(path, info, rewards={"em": [1.0, 0.0]}, step=3) == 2
    return path, info


def test_round_trip(tmp_path):
    path, info = _log(tmp_path)
    recs = list(read_trajectories(path))
    assert [r["row"] for r in recs] == [0, 1] and recs[0]["step"] == 3
    assert recs[0]["queries"] == ["capital of France"] and recs[0]["answer"] == "Paris"
    assert recs[0]["turns"][0]["doc_ids"] == info.turns[0][0].doc_ids != []
    assert recs[0]["turns"][0]["observation"].startswith("\n\n<information>Doc 1(Title: ")
    assert recs[1]["answer"] is None and recs[1]["reward"] == {"em": 0.0}
    assert recs[1]["num_turns"] == 2 and not recs[1]["valid_format"]
    with pytest.raises(ValueError, match="reward field 'em' has 1 values for 2 rows"):
        write_trajectories(path, info, rewards={"em": [1.0]})


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"turns": []}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"t.jsonl:2: not a JSON line"):
        list(read_trajectories(str(path)))


def test_cli_prints_and_colours(tmp_path):
    path, _ = _log(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "-m", "searchr1_jax.rollout.show", path]
    plain = subprocess.run(cmd + ["--only", "correct"], capture_output=True, text=True, env=env,
                           check=True).stdout
    assert "Q: What is the capital of France?" in plain and "answer: 'Paris'" in plain
    assert "turn 1: search (stop: tag)" in plain and "Q2" not in plain and "\033[" not in plain
    coloured = subprocess.run(cmd + ["--color", "always", "--limit", "1"], capture_output=True,
                              text=True, env=env, check=True).stdout
    assert "\033[32m<think>hm</think><search> capital of France </search>\033[0m" in coloured
    assert "\033[34m<information>Doc 1(Title:" in coloured
    bad = subprocess.run(cmd[:-1] + [str(tmp_path / "missing.jsonl")], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 2 and "missing.jsonl" in bad.stderr


def test_format_record_marks_retrieval_errors():
    rec = {"row": 0, "turns": [{"text": "<search>q</search>", "action": "search",
                                "stop_reason": 2, "observation": "", "doc_ids": [],
                                "retrieval_error": "TimeoutError: late"}], "truncated": True}
    text = format_record(rec)
    assert "[retrieval error: TimeoutError: late]" in text and "TRUNCATED" in text
