"""The evaluation harness on a scripted model: known EM per dataset, nothing dropped, greedy."""
import dataclasses
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
    assert cfg.eval.decoding == "greedy"
    check_eval_config(cfg)
    cfg.eval.seeds = 3
    with pytest.raises(ConfigError, match="eval.seeds = 3: greedy decoding is deterministic"):
        check_eval_config(cfg)
    cfg.eval.decoding = "searchr1"
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


def test_generator_decoding():
    """greedy by default; "searchr1" samples as Search-R1's published validation did
    (scripts/nq_hotpotqa/evaluate.sh: temperature 1, ppo_trainer.yaml's top_p 0.95, top_k off)
    whatever the run's own rollout settings; "sample" uses those."""
    from searchr1_jax.config import load_config_file
    from searchr1_jax.eval.backend import eos_ids_of, make_generator
    from searchr1_jax.eval.decoding import decoding_label, sampling_params
    from tests.train._tiny import tiny_model

    class Tok(CharTokenizer):
        def get_vocab(self):
            return {"<|im_end|>": 7, "x": 20}

    cfg = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs",
                                        "eval_mini.py"))
    tok = Tok()
    assert eos_ids_of(tok) == [1, 7]
    gen = make_generator(tiny_model(), tok, cfg, sampling=sampling_params(cfg))
    assert gen.temperature == 0.0 and gen.max_new_tokens == cfg.rollout.max_response_length
    assert decoding_label(cfg) == "greedy"
    cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.top_k = 0.7, 1.0, 5
    cfg.eval.decoding, cfg.eval.seeds = "searchr1", 3
    gen = make_generator(tiny_model(), tok, cfg, sampling=sampling_params(cfg))
    assert (gen.temperature, gen.top_p, gen.top_k) == (1.0, 0.95, 0)
    assert decoding_label(cfg) == "searchr1 (sampled: temperature 1, top-p 0.95; 3 seeds)"
    cfg.eval.decoding = "sample"
    gen = make_generator(tiny_model(), tok, cfg, sampling=sampling_params(cfg))
    assert (gen.temperature, gen.top_p, gen.top_k) == (0.7, 1.0, 5)
    assert make_generator(tiny_model(), tok, cfg, greedy=False).temperature == 0.7


def test_results_table_names_its_decoding(examples, answers, tmp_path):
    rows = _run(examples, answers, ["direct"], batch_size=8, seeds=(0, 1))
    label = "searchr1 (sampled: temperature 1, top-p 0.95; 2 seeds)"
    paths = write_results(str(tmp_path), rows, aggregate(rows), with_std=True, decoding=label)
    md = open(paths["md"]).read()
    assert f"### em, decoding: {label}\n" in md and f"### f1, decoding: {label}\n" in md


class LongRetriever(FakeRetriever):
    """Three 400-character passages per query (passage 1 still names the query)."""

    def search(self, queries, k):
        return [[dict(h, contents=h["contents"] + " " + "x" * 400) for h in hits]
                for hits in super().search(queries, k)]


@pytest.mark.parametrize("method", ["rag", "search_r1", "direct"])
def test_long_rows_never_crash_and_every_example_is_scored(examples, answers, method):
    """RAG passages are cut to rollout.max_prompt_length (instructions and question kept whole);
    a row whose question alone is too long is scored as unanswered, its batch still runs."""
    from searchr1_jax.data.prompts import build_prompt

    long_q = "what " + "very " * 200 + "long question is this"
    tail = [dataclasses.replace(examples[0], question=long_q, uid=999)]
    exs = list(examples[:5]) + tail
    answers = dict(answers, **{long_q + "?": "no"})
    budget = max(len(build_prompt(ex.question, None, "raw", method)) for ex in exs[:5]) + 150
    seen = []
    script = make_script(answers)

    def recording(prompt, turn, context):
        seen.append(prompt)
        return script(prompt, turn, context)

    tok = CharTokenizer()
    gen = ScriptedGenerator(recording, tok, max_new_tokens=400)
    settings = EvalSettings(batch_size=3, episode=EpisodeSettings(
        max_turns=2, max_obs_length=50, max_prompt_length=budget))
    rows = evaluate_method(method, exs, gen, tok, LongRetriever(), settings, progress=False)
    assert [r["uid"] for r in rows] == [ex.uid for ex in exs]          # none dropped
    assert [r["too_long"] for r in rows] == [False] * 5 + [True]
    assert rows[-1]["response"] == "" and rows[-1]["em"] == 0.0
    assert all(len(p) <= budget for p in seen)                         # what was fed fits
    if method == "rag":
        for ex, r in zip(exs[:5], rows[:5]):
            fed = next(p for p in seen if f"Question: {ex.question}" in p)
            assert fed.startswith("Answer the given question using the retrieved documents")
            assert fed.endswith(f"</information>\n\nQuestion: {ex.question.rstrip('?')}?\n")
            assert f"about {ex.question}" in fed  # the top passage's start survives the cut
            assert r["em"] == (1.0 if answers[ex.question.rstrip("?") + "?"] in
                               ex.golden_answers else 0.0)


@pytest.fixture(scope="module")
def tiny_llama_smollm2_dir(tmp_path_factory):
    """A random 2-layer Llama with SmolLM2's real tokenizer (and its chat template)."""
    from searchr1_jax.models.gguf_io import load_gguf_tokenizer
    from searchr1_jax.models.loader import resolve_model
    from tests.models.hf_tiny import make_hf_model

    out = str(tmp_path_factory.mktemp("tiny_llama_eval"))
    tok = load_gguf_tokenizer(resolve_model("smollm2-135m-instruct").path)
    tok.save_pretrained(out)
    make_hf_model("llama", vocab=len(tok), hidden_size=32, intermediate_size=64,
                  num_attention_heads=4, num_key_value_heads=2, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, tie_word_embeddings=True
                  ).save_pretrained(out, safe_serialization=True)
    return out


@pytest.mark.slow
def test_readme_evaluation_runs_every_method_on_the_longest_mini_rows(tiny_llama_smollm2_dir,
                                                                      tmp_path):
    """configs/eval_mini.py's methods on the mini suite's longest questions with a small
    prompt budget: real BM25 passages overflow it, so RAG must cut them; nothing crashes and
    every example of every method is scored."""
    from searchr1_jax.config import load_config_file
    from searchr1_jax.data.prompts import encode_prompts
    from searchr1_jax.eval.harness import method_prompts
    from searchr1_jax.evaluate import run_evaluation
    from searchr1_jax.retrieval import build_retriever

    cfg = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs",
                                        "eval_mini.py"))
    cfg.model.name = tiny_llama_smollm2_dir
    cfg.eval.methods = "direct,cot,rag,search_r1"
    cfg.rollout.max_prompt_length, cfg.rollout.max_response_length = 320, 8
    cfg.rollout.max_turns, cfg.rollout.max_obs_length = 1, 48
    cfg.eval.batch_size, cfg.eval.out_dir = 4, str(tmp_path / "eval")
    pool = [ex for source, fname in TEST_SETS.items()
            for ex in read_flashrag_jsonl(os.path.join(ASSETS_DIR, "qa", fname), source)]
    longest = assign_uids(sorted(pool, key=lambda ex: -len(ex.question))[:5])
    retriever = build_retriever(cfg.retrieval)
    summary, paths, rows = run_evaluation(cfg, retriever=retriever, examples=longest,
                                          progress=False)
    assert [r["method"] for r in rows] == [m for m in ("direct", "cot", "rag", "search_r1")
                                           for _ in longest]
    for method in ("direct", "cot", "rag", "search_r1"):
        assert summary[method]["avg"]["n"] == len(longest)
    from searchr1_jax.models import load_model
    _, tok, _ = load_model(tiny_llama_smollm2_dir)
    uncut = method_prompts("rag", longest, tok, "auto", retriever, 3)
    assert max(len(ids) for ids in encode_prompts(tok, uncut, "auto")) > 320  # it would crash
    cut = method_prompts("rag", longest, tok, "auto", retriever, 3, budget=320)
    assert max(len(ids) for ids in encode_prompts(tok, cut, "auto")) <= 320
    assert all(f"Question: {ex.question.rstrip('?')}?" in p for ex, p in zip(longest, cut))
