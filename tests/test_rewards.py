"""Rewards vs the published Search-R1 evaluation traces (every row) and hand-worked cases."""
import glob
import gzip
import json
import os

import pytest

from searchr1_jax import rewards as R

PROMPT_EXAMPLE = "For example, <answer> Beijing </answer>. Question: who?\n"


def _trace_files(assets_dir):
    files = sorted(glob.glob(os.path.join(assets_dir, "reference", "searchr1_3b_*_traces.json.gz")))
    assert len(files) == 4, files
    return files


@pytest.fixture(scope="module")
def trace_rows(assets_dir):
    rows = []
    for path in _trace_files(assets_dir):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            rows += [(os.path.basename(path), r) for r in json.load(f)]
    assert len(rows) == 2250
    return rows


def test_metrics_reproduce_published_scores_on_every_row(trace_rows):
    metrics = {"em": R.exact_match, "acc": R.substring_match, "f1": R.f1_score}
    wrong = []
    for name, row in trace_rows:
        out = row["output"]
        for key, fn in metrics.items():
            ours = fn(out["pred"], row["golden_answers"])
            if abs(ours - float(out["metric_score"][key])) > 1e-12:
                wrong.append((name, row["id"], key, out["pred"], ours, out["metric_score"][key]))
    assert not wrong, f"{len(wrong)} mismatches, first: {wrong[:5]}"


def test_extraction_reproduces_published_pred(trace_rows):
    checked = 0
    for name, row in trace_rows:
        out = row["output"]
        extracted = R.extract_answer(out["final_response"])
        if out["stop_matched_text"] == "</answer>":
            assert extracted == out["pred"], (name, row["id"])
            checked += 1
        else:  # stopped on the length budget: no answer, published pred is ''
            assert extracted is None and out["pred"] == "", (name, row["id"])
    assert checked == 2248


def test_score_dispatch_matches_published_em(trace_rows):
    for name, row in trace_rows[:300]:
        out = row["output"]
        em = R.score(out["final_response"], row["golden_answers"], "em")
        assert em == out["metric_score"]["em"]
        assert R.score(out["final_response"], row["golden_answers"], "f1") == pytest.approx(
            out["metric_score"]["f1"], abs=1e-12)


def test_normalize_answer_hand_cases():
    assert R.normalize_answer("  The  Eiffel-Tower! ") == "eiffeltower"
    assert R.normalize_answer("A cat, an owl and THE dog.") == "cat owl and dog"
    assert R.normalize_answer("theatre another") == "theatre another"  # articles are whole words
    assert R.normalize_answer("") == ""


def test_extract_answer_takes_last_and_ignores_prompt_example():
    resp = "<think>x</think><answer> first </answer> then <answer>\n Paris \n</answer>"
    assert R.extract_answer(resp) == "Paris"
    assert R.extract_answer("<think>no answer</think>") is None
    assert R.extract_answer("<answer>unterminated") is None
    # The prompt's example is never part of what we score.
    assert R.extract_answer("<think>t</think> nothing") is None
    assert R.exact_match(R.extract_answer("<think>t</think>"), ["Beijing"]) == 0.0
    assert "Beijing" in PROMPT_EXAMPLE


def test_em_subem_f1_hand_cases():
    assert R.exact_match("the Barack Obama", ["barack obama", "x"]) == 1.0
    assert R.exact_match("Barack Hussein Obama", ["barack obama"]) == 0.0
    assert R.substring_match("President Barack Obama.", "Barack Obama") == 1.0
    assert R.substring_match(None, "x") == 0.0 and R.f1_score(None, "x") == 0.0
    # pred "new york city" vs gold "york city new jersey": common {new, york, city} = 3,
    # P = 3/3, R = 3/4, F1 = 2 * 1 * .75 / 1.75
    assert R.f1_score("New York City", ["york city new jersey"]) == pytest.approx(1.5 / 1.75)
    # max over gold answers
    assert R.f1_score("x y z", ["z w", "x y z w"]) == pytest.approx(2 * 1 * .75 / 1.75)
    # repeated tokens count as a multiset: pred "x x y", gold "x y y": common {x:1, y:1}
    assert R.f1_score("x x y", "x y y") == pytest.approx(2 / 3)
    # FlashRAG categorical rule: "yes" vs "yes sir" share a token but score 0
    assert R.f1_score("yes", ["yes sir"]) == 0.0
    assert R.f1_score("no way", ["no"]) == 0.0
    assert R.f1_score("Yes.", ["yes"]) == 1.0


VALID = ("<think>need facts</think>\n<search> capital of france </search>\n\n"
         "<information>Doc 1(Title: \"Paris\") Paris is the capital.</information>\n\n"
         "<think>so Paris</think>\n<answer> Paris </answer>")


@pytest.mark.parametrize("response,reason", [
    (VALID, None),
    ("<think>a</think><answer>b</answer>", None),
    ("<think>a</think><search>q</search><information>i</information><think>b</think>"
     "<search>q2</search><information>j</information><think>c</think><answer>d</answer>  \n", None),
    ("preamble <think>a</think><answer>b</answer>", "unexpected content"),
    ("<think>a</think><answer>b</answer> trailing", "unexpected content"),
    ("<answer>b</answer>", "unexpected tag <answer> in state start"),
    ("<think>a</think><think>b</think><answer>c</answer>", "unexpected tag <think>"),
    ("<think>a</think><search>q</search><information>i</information><answer>c</answer>",
     "unexpected tag <answer> in state information"),
    ("<think>a</think><search>q</search><think>b</think><answer>c</answer>",
     "unexpected tag <think> in state after_search"),
    ("<think>a</think><search>q</search><information>i</information>",
     "incomplete sequence"),
    ("<think>a<think></think><answer>b</answer>", "mismatch in think tags"),
    ("<think>a</think> x <answer>b</answer>", "unexpected content 'x' in state after_think"),
])
def test_format_state_machine(response, reason):
    violation = R.format_violation(response)
    if reason is None:
        assert violation is None
    else:
        assert violation is not None and reason in violation, violation


def test_format_reward_table():
    gold = ["Paris"]
    assert R.format_reward(VALID, gold) == 1.0                                  # correct, valid
    assert R.format_reward("oops " + VALID, gold) == pytest.approx(0.8)         # correct, invalid
    assert R.format_reward(VALID.replace("> Paris <", "> Lyon <"), gold) == 0.2  # wrong, valid
    assert R.format_reward("oops <answer>Lyon</answer>", gold) == 0.1          # wrong, invalid
    assert R.format_reward("<think>no idea</think>", gold) == 0.0               # none, invalid
    # retrieval bonus (off by default) only for a valid, wrong answer whose docs hold the gold
    wrong = VALID.replace("> Paris <", "> Lyon <")
    assert R.format_reward(wrong, gold, retrieval_score=0.1) == pytest.approx(0.3)
    assert R.format_reward(wrong, ["Berlin"], retrieval_score=0.1) == pytest.approx(0.2)
    assert R.score(VALID, gold, "format") == 1.0


def test_score_kinds_and_errors():
    resp = "<think>t</think><answer>The Paris city</answer>"
    assert R.score(resp, ["Paris"], "em") == 0.0
    assert R.score(resp, ["Paris"], "sub_em") == 1.0
    assert R.score(resp, ["Paris"], "f1") == pytest.approx(2 * .5 * 1 / 1.5)
    with pytest.raises(ValueError, match="reward kind 'bleu'"):
        R.score(resp, ["Paris"], "bleu")
    with pytest.raises(TypeError, match="golden answers must be strings"):
        R.exact_match("x", [1])
