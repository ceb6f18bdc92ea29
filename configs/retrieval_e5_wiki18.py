"""Search-R1's retriever: e5-base-v2 over wiki-18 (21M passages), ScaNN instead of a flat index.

  python -m searchr1_jax.retrieval.build_index --config=configs/retrieval_e5_wiki18.py \
      --config.retrieval.corpus=/data/wiki-18.jsonl --out_dir=/data/index_wiki18_e5
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base  # noqa: E402


def get_config():
    c = base.get_config()
    c.retrieval.kind = "scann"
    c.retrieval.corpus = "wiki-18.jsonl"
    c.retrieval.encoder = "intfloat/e5-base-v2"
    c.retrieval.index_dir = "runs/index_wiki18_e5"
    c.retrieval.encoder_dtype = "bfloat16"
    c.retrieval.encode_batch_size = 512
    return c
