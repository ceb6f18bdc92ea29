"""CI-sized demo: the real pipeline (data, BM25 over the mini corpus, rollouts, GRPO steps,
evaluation, table, plots) on a tiny random Llama with SmolLM2's real tokenizer."""
import json
import os

import pytest

from searchr1_jax.demo import demo_config, run_demo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    from searchr1_jax.models.gguf_io import load_gguf_tokenizer
    from searchr1_jax.models.loader import resolve_model
    from tests.models.hf_tiny import make_hf_model

    out = str(tmp_path_factory.mktemp("tiny_llama"))
    tok = load_gguf_tokenizer(resolve_model("smollm2-135m-instruct").path)
    assert tok.chat_template  # instruct: the demo's prompts go through the chat template
    tok.save_pretrained(out)
    model = make_hf_model("llama", vocab=len(tok), hidden_size=32, intermediate_size=64,
                          num_attention_heads=4, num_key_value_heads=2,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          tie_word_embeddings=True)
    model.save_pretrained(out, safe_serialization=True)
    return out


def test_demo_writes_table_and_plots(tiny_llama_dir, tmp_path):
    out = str(tmp_path / "demo")
    cfg = demo_config(steps=2, eval_examples=1, out_dir=out,
                      overrides={"model.name": tiny_llama_dir, "rollout.max_response_length": 16,
                                 "rollout.max_obs_length": 32, "rollout.max_turns": 1,
                                 # 8 rows per micro-batch: one per fake device
                                 "data.train_batch_size": 2, "rl.n_samples": 4,
                                 "train.mini_batch_size": 8, "train.micro_batch_size": 8,
                                 "data.data_dir": str(tmp_path / "tfds")})
    result = run_demo(cfg, progress=False)

    md = open(os.path.join(out, "results.md")).read()
    assert ("| Method | NQ | TriviaQA | PopQA | HotpotQA | 2wiki | Musique | Bamboogle | Avg. |"
            in md)
    assert "| before |" in md and "| after 2 steps |" in md
    for png in ("training_curves.png", "em_before_after.png"):
        with open(os.path.join(out, png), "rb") as f:
            assert f.read(8) == PNG_MAGIC
    metrics = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert [m["step"] for m in metrics] == [1.0, 2.0]
    for tag in ("before", "after"):
        rows = [json.loads(x) for x in open(os.path.join(out, f"eval_{tag}", "trajectories.jsonl"))]
        assert len(rows) == 7 and len({r["data_source"] for r in rows}) == 7  # none dropped
        assert result[tag]["search_r1"]["avg"]["n"] == 7
    assert len(result["history"]) == 2

    # The saved checkpoint evaluates to exactly the demo's "after" rows (restore + greedy).
    from searchr1_jax.evaluate import run_evaluation
    cfg.eval.out_dir = os.path.join(out, "eval_restored")
    summary, _, rows = run_evaluation(cfg, checkpoint=out, progress=False)
    after = [json.loads(x) for x in open(os.path.join(out, "eval_after", "trajectories.jsonl"))]
    assert [r["response"] for r in rows] == [r["response"] for r in after]
    assert summary == result["after"]


def test_demo_refuses_a_used_output_dir(tmp_path):
    os.makedirs(tmp_path / "checkpoints")
    cfg = demo_config(steps=1, out_dir=str(tmp_path))
    with pytest.raises(FileExistsError, match="fresh output directory"):
        run_demo(cfg, progress=False)
