"""Episode loop with a scripted generator: masks, observations, budgets, Search-R1 semantics.

The reference is an independent string-level re-statement of Search-R1's ``run_llm_loop``
(text per turn, regex parse, observation strings), compared with what the engine assembled.
"""
import re

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from searchr1_jax.rollout import EpisodeSettings, collect_rollouts
from searchr1_jax.rollout.generator import STOP_EOS
from tests.rollout.fakes import (EOS, FakeTokenizer, ListRetriever, ScriptedGenerator,
                                 ScriptedTurn, emulate_sampler)

TOK = FakeTokenizer()
INVALID = ("\nMy previous action is invalid. If I want to search, I should put the query between "
           "<search> and </search>. If I want to give the final answer, I should put the answer "
           "between <answer> and </answer>. Let me try again.\n")


def reference_episode(script, retriever_docs, max_turns, budget):
    """Search-R1's loop on strings (budgets large enough that no cut happens)."""
    resp, n_search = "", 0
    for t in range(max_turns + 1):
        turn = script[t] if t < len(script) else ScriptedTurn("...")
        ids, _ = emulate_sampler(TOK, turn, budget)
        text = TOK.decode(ids, skip_special_tokens=True)
        resp += text
        m = re.search(r"<(search|answer)>(.*?)</\1>", text, re.DOTALL)
        if m and m.group(1) == "answer":
            return resp, n_search, True
        if t == max_turns:
            if m:
                resp += "\n\n<information></information>\n\n"
                n_search += 1
            return resp, n_search, False
        if m:
            n_search += 1
            q = m.group(2).strip()
            start = sum(map(ord, q)) % len(retriever_docs)
            hits = [retriever_docs[(start + j) % len(retriever_docs)] for j in range(3)]
            passages = "".join(
                f"Doc {i + 1}(Title: {h['contents'].split(chr(10))[0]}) "
                f"{chr(10).join(h['contents'].split(chr(10))[1:])}\n" for i, h in enumerate(hits))
            resp += f"\n\n<information>{passages.strip()}</information>\n\n"
        else:
            resp += INVALID
    raise AssertionError("unreachable")


def run(scripts, *, max_turns=4, budget=64, max_prompt_length=4096, max_obs_length=4096,
        groups=1, retriever=None, on_error="observation", overshoot=False):
    prompts = [[r] + TOK.encode(f"Question {r}?") for r in range(len(scripts))]
    gen = ScriptedGenerator(TOK, scripts, budget,
                            () if overshoot else ("</search>", "</answer>"))
    retriever = retriever or ListRetriever()
    cfg = EpisodeSettings(max_turns=max_turns, max_obs_length=max_obs_length,
                          max_prompt_length=max_prompt_length, on_error=on_error,
                          retrieval_timeout_s=2.0)
    batch, info = collect_rollouts(gen, TOK, retriever, prompts, cfg, pipeline_groups=groups)
    return prompts, gen, retriever, batch, info


def check_masks(prompts, gen, batch, info, scripts, budget, max_turns, overshoot=False):
    resp = np.asarray(batch.response_tokens)
    loss, rmask = np.asarray(batch.loss_mask), np.asarray(batch.response_mask)
    lps = np.asarray(batch.sample_logprobs)
    contexts = {s["rows"][b]: s["context"][b] for s in gen.final_states
                for b in range(len(s["rows"]))}
    for i in range(len(prompts)):
        n = int(rmask[i].sum())
        assert rmask[i, :n].all() and not rmask[i, n:].any()        # right-padded, contiguous
        assert not loss[i, n:].any() and (lps[i][loss[i] == 0] == 0).all()
        # The generator's own context is exactly prompt + response (the final-turn empty
        # information block is appended to the response but never fed).
        fed = contexts[i]
        tail = TOK.encode("\n\n<information></information>\n\n")
        row = list(resp[i, :n])
        if info.turns[i][-1].action == "search" and info.num_turns[i] == max_turns + 1:
            assert row[-len(tail):] == tail and not loss[i, n - len(tail):n].any()
            row = row[:-len(tail)]
        expected = list(prompts[i]) + row
        # No extend follows the last turn, so text an overshooting sampler wrote after the tag
        # stays in its context there (and nowhere else).
        assert fed == expected if not overshoot else fed[:len(expected)] == expected
        # Tokens with loss_mask 1 are exactly the model's sampled tokens (minus Search-R1's
        # stripped EOS of turns that continue), with the sampler's log-probs.
        sampled = []
        for t, rec in enumerate(info.turns[i]):
            turn = scripts[i][t] if t < len(scripts[i]) else ScriptedTurn("...")
            ids, stop = emulate_sampler(TOK, turn, budget)
            assert TOK.decode(ids, skip_special_tokens=True) == rec.text
            last = t == len(info.turns[i]) - 1
            sampled += ids[:-1] if (stop == STOP_EOS and not last) else ids
        assert list(resp[i][loss[i] == 1]) == sampled
        # Observation tokens (mask 0) decode to the observation strings only.
        obs = TOK.decode(resp[i][(loss[i] == 0) & (rmask[i] == 1)])
        assert obs == "".join(r.observation for r in info.turns[i])


TURN = st.one_of(
    st.builds(lambda q: ScriptedTurn(f"<think>need</think><search> {q} </search>"),
              st.text(max_size=12)),
    st.builds(lambda a: ScriptedTurn(f"<think>ok</think><answer>{a}</answer>"), st.text(max_size=8)),
    st.builds(lambda s, e: ScriptedTurn(s, eos=e), st.text(max_size=20), st.booleans()),
    st.just(ScriptedTurn("<search>unclosed")),
    st.just(ScriptedTurn("closing only</search>")),
    st.just(ScriptedTurn("<search>x</search>\ntrailing text")),
    st.just(ScriptedTurn("<search>q</se", eos=True)),
    st.just(ScriptedTurn("<answer>a</answer>.")),
    st.just(ScriptedTurn("x" * 200)),   # over the per-turn budget
)


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.lists(TURN, min_size=1, max_size=6), min_size=1, max_size=5),
       st.integers(1, 4), st.integers(1, 2), st.booleans())
def test_random_turn_structures(scripts, max_turns, groups, overshoot):
    """``overshoot``: the generator ignores stop strings; the engine must cut the turn after
    the first tag and remove the rest from the generator's context."""
    budget = 64
    prompts, gen, retriever, batch, info = run(scripts, max_turns=max_turns, budget=budget,
                                               groups=groups, overshoot=overshoot)
    check_masks(prompts, gen, batch, info, scripts, budget, max_turns, overshoot)
    for i, script in enumerate(scripts):
        text, n_search, answered = reference_episode(script, retriever.docs, max_turns, budget)
        assert info.response_text[i] == text
        assert info.num_searches[i] == n_search and info.has_answer[i] == answered
    # One retriever call per turn with a search, holding every searching row of the group.
    n_calls = sum(len({t for t, r in enumerate(turns[:max_turns]) if r.action == "search"})
                  for turns in info.turns)
    assert sum(len(c) for c in retriever.calls) == n_calls
    assert len(retriever.calls) <= max_turns * groups


def test_one_retriever_call_per_turn_with_all_queries():
    scripts = [[ScriptedTurn(f"<search>q{r}-{t}</search>") for t in range(3)]
               + [ScriptedTurn("<answer>x</answer>")] for r in range(4)]
    _, _, retriever, _, info = run(scripts, max_turns=4)
    assert retriever.calls == [[f"q{r}-{t}" for r in range(4)] for t in range(3)]
    assert info.num_turns.tolist() == [4] * 4 and info.has_answer.all()
    assert info.valid_format.all() and info.queries[2] == ["q2-0", "q2-1", "q2-2"]
    assert len(info.doc_ids[0]) == 3 and len(info.doc_ids[0][0]) == 3


def test_final_turn_has_no_search_and_empty_information():
    scripts = [[ScriptedTurn("<search>a</search>"), ScriptedTurn("<search>b</search>")]]
    _, _, retriever, batch, info = run(scripts, max_turns=1)
    assert retriever.calls == [["a"]]
    assert info.response_text[0].endswith("<search>b</search>\n\n<information></information>\n\n")
    assert info.num_turns[0] == 2 and not info.has_answer[0]


def test_answered_rows_stop_others_continue():
    scripts = [[ScriptedTurn("<answer>x</answer>")],
               [ScriptedTurn("no tags"), ScriptedTurn("<answer>y</answer>")]]
    _, _, _, _, info = run(scripts)
    assert info.num_turns.tolist() == [1, 2]
    assert INVALID in info.response_text[1] and not info.valid_format[1]


def test_observation_cut_to_max_obs_length():
    scripts = [[ScriptedTurn("<search>q</search>"), ScriptedTurn("<answer>a</answer>")]]
    _, gen, _, batch, info = run(scripts, max_obs_length=7)
    obs_ids = TOK.encode(info.turns[0][0].observation)
    assert len(obs_ids) == 7 and obs_ids == TOK.encode(
        "\n\n<information>Doc 1(Title: ")[:7]


def test_context_budget_never_cuts_the_question():
    scripts = [[ScriptedTurn("<search>q</search>")] * 10]
    prompts, gen, _, batch, info = run(scripts, max_turns=8, max_prompt_length=60)
    fed = gen.final_states[0]["context"][0]
    assert fed[:len(prompts[0])] == prompts[0]
    assert info.truncated[0] and len(fed) <= 60 + 64
    with pytest.raises(ValueError, match="prompt row 0 has"):
        run(scripts, max_prompt_length=5)


def test_eos_of_a_continuing_turn_is_dropped_final_eos_kept():
    scripts = [[ScriptedTurn("thinking", eos=True), ScriptedTurn("<answer>z</answer>", eos=False),
                ], [ScriptedTurn("<answer>z</answer>")]]
    prompts, gen, _, batch, info = run(scripts, max_turns=1)
    resp = np.asarray(batch.response_tokens[0])
    assert EOS not in resp[np.asarray(batch.response_mask[0]) == 1].tolist()
    scripts = [[ScriptedTurn("a", eos=True), ScriptedTurn("b", eos=True)]]
    _, _, _, batch, info = run(scripts, max_turns=1)
    resp = np.asarray(batch.response_tokens[0])[np.asarray(batch.response_mask[0]) == 1]
    assert resp.tolist().count(EOS) == 1 and resp[-1] == EOS


def test_group_ids_and_padding_layout():
    scripts = [[ScriptedTurn("<answer>a</answer>")], [ScriptedTurn("<answer>bbbbbbbb</answer>")]]
    prompts, _, _, batch, _ = run(scripts)
    pm = np.asarray(batch.prompt_mask)
    assert pm[0, -len(prompts[0]):].all() and batch.group_ids.tolist() == [0, 1]
    prompt_pos, resp_pos = batch.positions()
    assert int(resp_pos[0, 0]) == len(prompts[0])
