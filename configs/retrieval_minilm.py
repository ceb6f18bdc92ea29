"""Offline dense retrieval preset: all-MiniLM-L6-v2 (shipped on PyPI) over the embedded corpora.

  python -m searchr1_jax.retrieval.build_index --config=configs/retrieval_minilm.py \
      --out_dir=runs/index_mini --kinds=bm25,scann
  python -m searchr1_jax.retrieval.serve --config=configs/retrieval_minilm.py \
      --config.retrieval.index_dir=runs/index_mini
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base  # noqa: E402


def get_config():
    c = base.get_config()
    c.retrieval.kind = "scann"
    c.retrieval.corpus = "mini"
    c.retrieval.encoder = "minilm"
    c.retrieval.index_dir = "runs/index_mini"
    return c
