"""rl.reward = "format_searchr1": Search-R1's qa_em_format.compute_score_em on prompt + response,
on hand-made cases (the published traces hold no valid-format row, so they cannot test it)."""
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from searchr1_jax import rewards as R
from searchr1_jax import rewards_searchr1 as S
from tests.data.test_prompts import EXPECTED_NQ  # Search-R1's user turn, typed out by hand

QWEN = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        + EXPECTED_NQ + "<|im_end|>\n<|im_start|>assistant\n")
LLAMA = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + EXPECTED_NQ
         + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
RAW = EXPECTED_NQ
VALID = ("<think>need facts</think>\n<search> capital of france </search>\n\n"
         "<information>Doc 1(Title: \"Paris\") Paris is the capital.</information>\n\n"
         "<think>so Paris</think>\n<answer> Paris </answer>")
WRONG = VALID.replace("> Paris <", "> Lyon <")
NO_ANSWER = "<think>no idea</think> I cannot tell."
INVALID_OBS = ("\nMy previous action is invalid. If I want to search, I should put the query "
               "between <search> and </search>. If I want to give the final answer, I should put "
               "the answer between <answer> and </answer>. Let me try again.\n")


@pytest.mark.parametrize("prompt,response,gold,searchr1,ours", [
    (QWEN, VALID, ["Paris"], 1.0, 1.0),           # correct, valid
    (QWEN, WRONG, ["Paris"], 0.2, 0.2),           # wrong, valid
    (QWEN, "x " + VALID, ["Paris"], 0.8, 0.8),    # correct, invalid (text before <think>)
    # No <|im_start|>assistant marker: never a valid format in Search-R1.
    (LLAMA, VALID, ["Paris"], 0.8, 1.0),
    (LLAMA, WRONG, ["Paris"], 0.1, 0.2),
    (RAW, VALID, ["Paris"], 0.8, 1.0),
    # No answer: Search-R1 reads the prompt's own "<answer> Beijing </answer>".
    (QWEN, NO_ANSWER, ["Paris"], 0.1, 0.0),
    (QWEN, NO_ANSWER, ["Beijing"], 0.8, 0.0),
    # The invalid-action observation's "<answer> and </answer>" is read as the answer "and".
    (QWEN, "I am not sure." + INVALID_OBS + "Still unsure.", ["and"], 0.8, 0.0),
])
def test_hand_cases(prompt, response, gold, searchr1, ours):
    assert S.format_reward_searchr1(prompt, response, gold) == pytest.approx(searchr1)
    assert R.score(response, gold, "format_searchr1", prompt=prompt) == pytest.approx(searchr1)
    generated = response.replace(INVALID_OBS, "")  # the model's own turns
    assert R.score(response, gold, "format", generated=generated) == pytest.approx(ours)


def test_marker_and_validity_details():
    # Search-R1 skips white space after the marker and checks the rest only.
    assert S.is_valid_sequence("<|im_start|>assistant\n \n" + VALID)
    assert not S.is_valid_sequence(VALID)
    assert S.is_valid_sequence(QWEN + VALID) and not S.is_valid_sequence(QWEN + WRONG + " x")
    # Answers: at most one block in the whole sequence -> None; else the last one, stripped.
    assert S.extract_solution("<answer> a </answer>") is None
    assert S.extract_solution(QWEN + NO_ANSWER) == "Beijing"
    assert S.extract_solution(QWEN + VALID) == "Paris"


def test_retrieval_bonus_reads_the_prompt_too():
    # Search-R1's prompt holds "<information> and </information>": gold "and" always "retrieved".
    assert S.format_reward_searchr1(QWEN, WRONG, ["and"], retrieval_score=0.1) == \
        pytest.approx(0.3)
    assert R.format_reward(WRONG, ["and"], retrieval_score=0.1) == pytest.approx(0.2)
    assert S.format_reward_searchr1(QWEN, WRONG, ["capital"], retrieval_score=0.1) == \
        pytest.approx(0.3)


def test_score_needs_the_prompt():
    with pytest.raises(ValueError, match="reads the prompt"):
        R.score(VALID, ["Paris"], "format_searchr1")
    with pytest.raises(ValueError, match=r"must be one of \[.*'format_searchr1'"):
        R.score(VALID, ["Paris"], "bleu")


_PIECES = ["<answer>", "</answer>", "<information>", "</information>", "a", " ", "\n", "<",
           "answer>", "</"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(_PIECES), max_size=30))
def test_tag_blocks_equal_re_findall(pieces):
    text = "".join(pieces)
    for tag in ("answer", "information"):
        assert S.tag_blocks(text, tag) == re.findall(f"<{tag}>(.*?)</{tag}>", text, re.DOTALL)


def test_trainer_scores_prompt_plus_response():
    from searchr1_jax.rollout.batch import RolloutInfo, TurnRecord
    from searchr1_jax.train.trainer import score_rollouts

    responses = [VALID, NO_ANSWER]
    info = RolloutInfo(
        num_turns=np.ones(2, int), num_searches=np.zeros(2, int), has_answer=np.zeros(2, bool),
        valid_format=np.zeros(2, bool), truncated=np.zeros(2, bool), response_text=responses,
        queries=[[]] * 2, doc_ids=[[]] * 2,
        turns=[[TurnRecord(text=r, action=None, content="", stop_reason=0)] for r in responses],
        questions=["q"] * 2, golden_answers=[["Paris"], ["Beijing"]], data_source=["t"] * 2,
        prompt_text=[LLAMA, QWEN])
    reward, em = score_rollouts(info, "format_searchr1")
    np.testing.assert_allclose(reward, [0.8, 0.8])   # Llama: never valid; no answer: "Beijing"
    np.testing.assert_array_equal(em, [1.0, 0.0])    # EM stays the project's reading
