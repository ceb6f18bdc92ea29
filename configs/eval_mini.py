"""Evaluation on the embedded mini suite with the real small model, sized for a CPU.

  python -m searchr1_jax.evaluate --config=configs/eval_mini.py --methods=direct,search_r1
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base  # noqa: E402


def get_config():
    c = base.get_config()
    c.model.name = "smollm2-135m-instruct"
    c.model.dtype = "float32"
    c.data.eval = "mini:test"
    c.data.max_eval_examples = 20          # per dataset: 7 x 20 = 140 questions
    c.retrieval.kind = "bm25"
    c.retrieval.corpus = "mini"
    c.rollout.max_turns = 2
    c.rollout.max_response_length = 96
    c.rollout.max_obs_length = 256
    c.rollout.max_prompt_length = 1024
    c.eval.batch_size = 16
    c.eval.methods = "direct,rag,search_r1"
    c.output.dir = "runs/eval_mini"
    return c
