"""Search-R1 paper preset: qwen2.5-7b-instruct trained with GRPO (shared settings in configs/paper.py).

  python -m searchr1_jax.train --config=configs/qwen2.5-7b-instruct_grpo.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paper  # noqa: E402


def get_config():
    return paper.paper_config("qwen2.5-7b-instruct", "grpo")
