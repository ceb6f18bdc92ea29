"""``python -m searchr1_jax.ask``: one question's episode printed turn by turn (queries,
retrieved titles, answer), plain when piped, terminal escapes from model/corpus text removed."""
import json
import os
import re
import subprocess
import sys

from searchr1_jax.ask import ask, format_answered, retrieval_settings, strip_control
from searchr1_jax.rollout import EpisodeSettings
from tests.eval.fakes import CharTokenizer, ScriptedGenerator
from tests.train._tiny import REPO, base_config

OSC_TITLE, CLEAR, BLINK = "\x1b]0;owned\x07", "\x1b[2J", "\x1b[5m"
DOCS = {"capital of France": [
    {"id": "7", "contents": f'"{BLINK}Paris\x1b[0m"\nParis is the capital of France.',
     "score": 9.0},
    {"id": "3", "contents": '"France"\nFrance is a country in Europe.', "score": 4.0}]}


class FixedRetriever:
    def __init__(self):
        self.calls = []

    def search(self, queries, k):
        self.calls.append((list(queries), k))
        return [DOCS[q][:k] for q in queries]


def script(prompt, turn, context):
    if turn == 0:
        return (f"<think>I need to look it up.{OSC_TITLE}</think>\n"
                "<search> capital of France </search>")
    assert "<information>Doc 1(Title: " in context  # the passages reached the model
    return f"<think>{CLEAR}Doc 1 says so.\r</think>\n<answer> Paris </answer>"


def run_scripted():
    retriever = FixedRetriever()
    settings = EpisodeSettings(max_turns=2, max_obs_length=500, max_prompt_length=4096, topk=2)
    result = ask("What is the capital of France", ScriptedGenerator(script, CharTokenizer()),
                 CharTokenizer(), retriever, settings, prompt_style="raw")
    return result, retriever


EXPECTED = """\
Question: What is the capital of France
--- turn 1 ---
<think>I need to look it up.</think>
<search> capital of France </search>
search: capital of France
  [1] "Paris"  (id 7)
  [2] "France"  (id 3)
--- turn 2 ---
<think>Doc 1 says so.</think>
<answer> Paris </answer>
Answer: Paris
(2 turns, 1 search)
"""


def test_scripted_episode_prints_queries_titles_and_answer():
    result, retriever = run_scripted()
    assert retriever.calls == [(["capital of France"], 2)]
    assert result.answer == "Paris"
    assert "What is the capital of France?" in result.prompt  # Search-R1 adds the "?"
    assert format_answered(result, color=False) == EXPECTED


def test_colour_only_from_us_and_passages_on_request():
    result, _ = run_scripted()
    text = format_answered(result, color=True, passages=True)
    ours = re.compile(r"\x1b\[(?:0|1|2|32|33|34)m")
    assert ours.search(text)
    assert "\x1b" not in ours.sub("", text) and "\x07" not in text and "\r" not in text
    plain = ours.sub("", text)
    assert "Doc 1(Title: \"Paris\") Paris is the capital of France." in plain
    assert "\n  [1] \"Paris\"  (id 7)\n" in plain


def test_strip_control_removes_escape_sequences():
    assert strip_control("a\x1b[1;31mb\x1b[0m c\x1b]8;;http://x\x1b\\d\x9b2Je\x00f\tg\nh") == (
        "ab cdef\tg\nh")
    assert strip_control(OSC_TITLE + "x" + CLEAR + "\x1bc" + "\x7f" + "\x1b(B"
                         + "\x1bP1$r\x1b\\") == "x"


def test_retriever_flag_forms(tmp_path):
    rcfg = base_config().retrieval
    retrieval_settings(rcfg, "http://10.0.0.2:8000")
    assert (rcfg.kind, rcfg.url) == ("http", "http://10.0.0.2:8000/retrieve")
    retrieval_settings(rcfg, "http://10.0.0.2:8000/retrieve")
    assert rcfg.url == "http://10.0.0.2:8000/retrieve"
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("")
    retrieval_settings(rcfg, str(corpus))
    assert (rcfg.kind, rcfg.corpus) == ("bm25", str(corpus))
    (tmp_path / "idx" / "dense").mkdir(parents=True)
    (tmp_path / "idx" / "dense" / "index.json").write_text(json.dumps({"kind": "scann"}))
    retrieval_settings(rcfg, str(tmp_path / "idx"))
    assert (rcfg.kind, rcfg.index_dir) == ("scann", str(tmp_path / "idx"))


def test_cli_on_a_training_run_prints_plain_text_when_piped(tiny_run, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "contents": f'"T{i}"\nw{i} the capital'})
                              + "\n" for i in range(20)))
    proc = subprocess.run(
        [sys.executable, "-m", "searchr1_jax.ask", "who is the capital of France",
         f"--run={tiny_run.run_dir}", f"--retriever={corpus}", "--max_turns=1",
         "--max_response_length=6"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "\x1b" not in out
    assert out.startswith("Question: who is the capital of France\n--- turn 1 ---\n")
    assert re.search(r"\n\(2 turns, \d+ search(es)?\)\n$", out), out
    assert "step 2 of" in proc.stderr  # the run's latest actor
