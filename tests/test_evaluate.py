"""The evaluation harness on a scripted model: known EM per dataset, nothing dropped, greedy."""
import json
import os

import numpy as np
import pytest

from searchr1_jax import ASSETS_DIR
from searchr1_jax.data.mini import TEST_SETS
from searchr1_jax.data.records import assign_uids, read_flashrag_jsonl
from searchr1_jax.eval import EvalSettings, aggregate, evaluate_all, evaluate_method
from searchr1_jax.eval import write_results
from searchr1_jax.rollout import EpisodeSettings
from tests.eval.fakes import CharTokenizer, FakeRetriever, ScriptedGenerator

# Examples per dataset and how many of them the scripted model answers correctly.
SIZES = {"nq": 7, "triviaqa": 5, "popqa": 4, "hotpotqa": 6, "2wikimultihopqa": 3,
         "musique": 5, "bamboogle": 2}
KNOWN = {"nq": 3, "triviaqa": 5, "popqa": 0, "hotpotqa": 2, "2wikimultihopqa": 1,
         "musique": 4, "bamboogle": 1}


@pytest.fixture(scope="module")
def examples():
    out = []
    for source, fname in TEST_SETS.items():
        out.extend(read_flashrag_jsonl(os.path.join(ASSETS_DIR, "qa", fname), source)
                   [:SIZES[source]])
    return assign_uids(out)


@pytest.fixture(scope="module")
def answers(examples):
    """question? -> the text the scripted model answers."""
    out, seen = {}, {}
    for ex in examples:
        k = seen[ex.data_source] = seen.get(ex.data_source, 0) + 1
        q = ex.question if ex.question.endswith("?") else ex.question + "?"
        out[q] = ex.golden_answers[0] if k <= KNOWN[ex.data_source] else "zzz wrong"
    return out


def _question(prompt: str) -> str:
    return prompt.rsplit("Question: ", 1)[1].split("\n")[0]


def make_script(answers):
    def script(prompt, turn, context):
        q = _question(prompt)
        if "retrieved documents" in prompt:  # RAG: answers only when the passages are in the prompt
            ok = f"about {q.rstrip('?')}" in prompt  # the retriever got the raw question
            return f"<answer> {answers[q] if ok else 'no docs'} </answer>"
        if "step by step" in prompt:
            return f"<think>thinking about {q}</think> <answer> {answers[q]} </answer>"
        if "<search> query </search>" not in prompt:  # direct
            return f"<answer> {answers[q]} </answer>"
        if turn == 0:
            return f"<think>I need to look this up.</think>\n<search> {q} </search>"
        ok = f"about {q}" in context  # the retrieved block reached the model's context
        return f"<think>found it</think>\n<answer> {answers[q] if ok else 'no info'} </answer>"
    return script


def _run(examples, answers, methods, batch_size, seeds=(0,)):
    tok = CharTokenizer()
    gen = ScriptedGenerator(make_script(answers), tok, max_new_tokens=400)
    settings = EvalSettings(batch_size=batch_size, prompt_style="auto",
                            episode=EpisodeSettings(max_turns=4, max_obs_length=2000,
                                                    max_prompt_length=8000))
    return evaluate_all(methods, examples, gen, tok, FakeRetriever(), settings, seeds,
                        progress=False)


@pytest.mark.parametrize("method", ["direct", "cot", "rag", "search_r1"])
def test_known_em_per_dataset(examples, answers, method):
    rows = _run(examples, answers, [method], batch_size=4)
    table = aggregate(rows)[method]
    for source in SIZES:
        want = KNOWN[source] / SIZES[source]
        assert table[source]["em"] == pytest.approx(want), source
        assert table[source]["n"] == SIZES[source]
    assert table["avg"]["em"] == pytest.approx(np.mean([KNOWN[s] / SIZES[s] for s in SIZES]))
    assert table["avg"]["n"] == sum(SIZES.values())
    if method == "search_r1":
        assert all(r["num_searches"] == 1 and r["num_turns"] == 2 for r in rows)
        assert all("<information>Doc 1(Title: \"Title 0\") about" in r["response"] for r in rows)


@pytest.mark.parametrize("batch_size", [1, 3, 8, 33, 64])
def test_no_example_dropped_for_any_batch_size(examples, answers, batch_size):
    rows = _run(examples, answers, ["search_r1"], batch_size)
    assert [r["uid"] for r in rows] == [ex.uid for ex in examples]
    assert [r["em"] for r in rows] == [r["em"] for r in _run(examples, answers, ["search_r1"], 5)]


def test_results_files_and_seeds(examples, answers, tmp_path):
    rows = _run(examples, answers, ["direct", "search_r1"], batch_size=6, seeds=(0, 1))
    summary = aggregate(rows)
    assert summary["direct"]["nq"]["em_std"] == 0.0  # deterministic scripted model
    paths = write_results(str(tmp_path), rows, summary, with_std=True)
    md = open(paths["md"]).read()
    assert ("| Method | NQ | TriviaQA | PopQA | HotpotQA | 2wiki | Musique | Bamboogle | Avg. |"
            in md)
    assert "| direct | 0.429 ± 0.000 | 1.000 ± 0.000 | 0.000 ± 0.000 |" in md
    lines = open(paths["trajectories"]).read().splitlines()
    assert len(lines) == 2 * 2 * len(examples)
    assert json.load(open(paths["json"]))["search_r1"]["musique"]["em"] == pytest.approx(0.8)
    csv_rows = open(paths["csv"]).read().splitlines()
    assert csv_rows[0].startswith("method,dataset,n,em,em_std")
    assert len(csv_rows) == 1 + 2 * 8


def test_aggregate_mean_and_std_over_seeds():
    rows = [dict(method="m", seed=s, data_source=d, em=e, sub_em=e, f1=e)
            for s, d, e in [(0, "nq", 1.0), (0, "nq", 0.0), (1, "nq", 1.0), (1, "nq", 1.0),
                            (0, "popqa", 0.0), (1, "popqa", 1.0)]]
    t = aggregate(rows)["m"]
    assert t["nq"]["em"] == pytest.approx(0.75) and t["nq"]["em_std"] == pytest.approx(0.25)
    # avg per seed: seed0 (0.5 + 0)/2 = 0.25, seed1 (1 + 1)/2 = 1 -> mean 0.625, std 0.375
    assert t["avg"]["em"] == pytest.approx(0.625) and t["avg"]["em_std"] == pytest.approx(0.375)
    assert t["nq"]["n"] == 2 and t["avg"]["n"] == 3


def test_unknown_method_and_missing_retriever(examples):
    tok = CharTokenizer()
    gen = ScriptedGenerator(lambda p, t, c: "", tok)
    with pytest.raises(ValueError, match="eval method 'nope'"):
        evaluate_method("nope", examples, gen, tok, None, EvalSettings())
    with pytest.raises(ValueError, match="needs a retriever"):
        evaluate_method("search_r1", examples, gen, tok, None, EvalSettings())


def test_eval_config_is_greedy_by_default_and_refuses_identical_seeds():
    from searchr1_jax.config import ConfigError, load_config_file
    from searchr1_jax.evaluate import check_eval_config

    cfg = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs",
                                        "eval_mini.py"))
    assert cfg.eval.greedy is True
    check_eval_config(cfg)
    cfg.eval.seeds = 3
    with pytest.raises(ConfigError, match="eval.seeds = 3: greedy decoding is deterministic"):
        check_eval_config(cfg)
    cfg.eval.greedy = False
    check_eval_config(cfg)
    cfg.eval.methods = "direct,oracle"
    with pytest.raises(ConfigError, match="eval.methods"):
        check_eval_config(cfg)


def test_observation_text_is_never_read_as_the_answer(examples):
    """The invalid-action message contains '<answer> and </answer>': it must not score."""
    tok = CharTokenizer()
    gen = ScriptedGenerator(lambda p, t, c: "I am not sure.", tok)
    ex = [e for e in examples if e.data_source == "nq"][:2]
    settings = EvalSettings(batch_size=2, episode=EpisodeSettings(max_turns=2))
    rows = evaluate_method("search_r1", ex, gen, tok, FakeRetriever(), settings, progress=False)
    for r in rows:
        assert "<answer> and </answer>" in r["response"]
        assert r["pred"] is None and r["em"] == r["sub_em"] == r["f1"] == 0.0
        assert r["num_turns"] == 3 and r["num_searches"] == 0


def test_generator_is_greedy_unless_asked():
    from searchr1_jax.config import load_config_file
    from searchr1_jax.eval.backend import eos_ids_of, make_generator
    from tests.train._tiny import tiny_model

    class Tok(CharTokenizer):
        def get_vocab(self):
            return {"<|im_end|>": 7, "x": 20}

    cfg = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs",
                                        "eval_mini.py"))
    tok = Tok()
    assert eos_ids_of(tok) == [1, 7]
    gen = make_generator(tiny_model(), tok, cfg, greedy=cfg.eval.greedy)
    assert gen.temperature == 0.0 and gen.max_new_tokens == cfg.rollout.max_response_length
    cfg.rollout.temperature = 0.7
    assert make_generator(tiny_model(), tok, cfg, greedy=False).temperature == 0.7
