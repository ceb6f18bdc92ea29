"""Trainer rewards read the answer from the model's own turns, never from an observation."""
import numpy as np

from searchr1_jax.rollout.batch import RolloutInfo, TurnRecord
from searchr1_jax.rollout.observations import INVALID_ACTION_OBS
from searchr1_jax.train.trainer import score_rollouts


def _info(turn_texts_per_row, golden):
    turns, responses = [], []
    for texts in turn_texts_per_row:
        row = [TurnRecord(text=t, action=None, content="", stop_reason=0,
                          observation=INVALID_ACTION_OBS if i < len(texts) - 1 else "")
               for i, t in enumerate(texts)]
        turns.append(row)
        responses.append("".join(r.text + r.observation for r in row))
    n = len(turns)
    return RolloutInfo(
        num_turns=np.array([len(t) for t in turns]), num_searches=np.zeros(n, int),
        has_answer=np.zeros(n, bool), valid_format=np.zeros(n, bool),
        truncated=np.zeros(n, bool), response_text=responses, queries=[[]] * n,
        doc_ids=[[]] * n, turns=turns, questions=["q"] * n, golden_answers=golden,
        data_source=["t"] * n)


def test_invalid_action_message_is_never_the_answer():
    assert "<answer> and </answer>" in INVALID_ACTION_OBS  # the trap this guards against
    info = _info([["<think>hmm</think> no tags", "still nothing"],          # never answers
                  ["bad turn", "<think>ok</think><answer>and</answer>"]],   # answers after
                 golden=[["and"], ["and"]])
    for kind in ("em", "sub_em", "f1"):
        reward, em = score_rollouts(info, kind)
        np.testing.assert_array_equal(reward, [0.0, 1.0], err_msg=kind)
        np.testing.assert_array_equal(em, [0.0, 1.0])
    # format reward: both rows have an invalid turn; row 0 has no answer (0), row 1 a correct
    # answer with invalid format (1.0 - 0.2).
    reward, _ = score_rollouts(info, "format")
    np.testing.assert_allclose(reward, [0.0, 0.8])
