"""Retriever failure mid-episode: an error observation to the model, or a clear exception;
a hung retriever times out instead of blocking the rollout."""
import time

import numpy as np
import pytest

from searchr1_jax.rollout import RolloutRetrievalError
from searchr1_jax.rollout.observations import information_obs
from searchr1_jax.rollout.search_step import call_with_timeout, run_searches
from tests.rollout.fakes import FailingRetriever, ScriptedTurn, doc
from tests.rollout.test_engine import TOK, check_masks, run

SCRIPTS = [[ScriptedTurn("<search>first</search>"), ScriptedTurn("<search>second</search>"),
            ScriptedTurn("<answer>x</answer>")]] * 2


def test_failure_becomes_an_observation():
    prompts, gen, retriever, batch, info = run(SCRIPTS, retriever=FailingRetriever(fail_from=1))
    for i in range(2):
        first, second, last = info.turns[i]
        assert first.doc_ids and "Doc 1(Title:" in first.observation and not first.retrieval_error
        assert second.doc_ids == [] and "ConnectionError" in second.retrieval_error
        assert second.observation == ("\n\n<information>Search failed (ConnectionError): no "
                                      "documents were retrieved.</information>\n\n")
        assert last.action == "answer" and info.has_answer[i]
    check_masks(prompts, gen, batch, info, SCRIPTS, 64, 4)


def test_failure_raises_naming_turn_and_rows():
    with pytest.raises(RolloutRetrievalError, match=r"turn 1 for batch rows \[0, 1\].*"
                                                   r"ConnectionError.*refused"):
        run(SCRIPTS, retriever=FailingRetriever(fail_from=1), on_error="raise")


@pytest.mark.parametrize("on_error", ["observation", "raise"])
def test_hung_retriever_times_out(on_error):
    t0 = time.perf_counter()
    if on_error == "raise":
        with pytest.raises(RolloutRetrievalError, match="TimeoutError"):
            run(SCRIPTS, retriever=FailingRetriever(fail_from=0, hang_s=30), on_error=on_error)
    else:
        _, _, _, _, info = run(SCRIPTS, retriever=FailingRetriever(fail_from=0, hang_s=30))
        assert "TimeoutError" in info.turns[0][0].retrieval_error
    assert time.perf_counter() - t0 < 10   # two 2 s timeouts at most, never the 30 s hang


def test_malformed_results_are_retrieval_errors():
    class Short:
        def search(self, queries, k):
            return [[doc(0, "T", "x")]]   # one list for two queries

    out = run_searches(Short(), ["a", "b"], topk=3, timeout_s=1, on_error="observation",
                       turn=0, rows=[0, 1])
    assert isinstance(out.error, ValueError) and "1 result lists for 2 queries" in str(out.error)
    with pytest.raises(RolloutRetrievalError, match="1 result lists for 2 queries"):
        run_searches(Short(), ["a", "b"], topk=3, timeout_s=1, on_error="raise", turn=0,
                     rows=[0, 1])


def test_call_with_timeout_passes_values_and_errors():
    assert call_with_timeout(lambda: 7, 1.0) == 7
    with pytest.raises(KeyError):
        call_with_timeout(lambda: {}["x"], 1.0)


def test_passage_format_is_search_r1s():
    hits = [{"id": "1", "contents": '"Paris"\nCapital of France.\nSecond line'},
            {"document": {"id": "2", "contents": '"Lyon"\nCity.'}, "score": 0.5},
            {"id": "3", "contents": "No newline"}]
    expected = ('Doc 1(Title: "Paris") Capital of France.\nSecond line\n'
                'Doc 2(Title: "Lyon") City.\nDoc 3(Title: No newline) \n')
    assert information_obs(hits) == f"\n\n<information>{expected.strip()}</information>\n\n"
