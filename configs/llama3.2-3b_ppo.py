"""Search-R1 paper preset: llama3.2-3b trained with PPO (shared settings in configs/paper.py).

  python -m searchr1_jax.train --config=configs/llama3.2-3b_ppo.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paper  # noqa: E402


def get_config():
    return paper.paper_config("llama3.2-3b", "ppo")
