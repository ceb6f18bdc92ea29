"""Shared retrieval fixtures: the HotpotQA dev corpus/questions and a MiniLM encoder."""
import json
import os

import numpy as np
import pytest

from searchr1_jax.retrieval.corpus import PassageStore, iter_passages

SUBSET_PASSAGES = 400  # default (fast) dense tests: the first 400 passages of the corpus


def load_qa(assets_dir, name="hotpotqa_dev500"):
    with open(os.path.join(assets_dir, "qa", f"{name}.jsonl")) as f:
        return [json.loads(line) for line in f]


def recall_at(hits, questions, k):
    """(fraction of questions with >= 1 gold passage in the top k, mean gold recall@k)."""
    any_gold, recall = [], []
    for row, q in zip(hits, questions):
        got = {h["id"] for h in row[:k]} & set(q["supporting_ids"])
        any_gold.append(bool(got))
        recall.append(len(got) / len(q["supporting_ids"]))
    return float(np.mean(any_gold)), float(np.mean(recall))


@pytest.fixture(scope="session")
def hotpot_store():
    return PassageStore.from_passages(iter_passages("hotpotqa_dev500"))


@pytest.fixture(scope="session")
def hotpot_qa(assets_dir):
    return load_qa(assets_dir)


@pytest.fixture(scope="session")
def hotpot_subset(hotpot_store, hotpot_qa):
    """First 400 passages and the questions whose gold passages all lie among them."""
    passages = [hotpot_store[r] for r in range(SUBSET_PASSAGES)]
    ids = {p.id for p in passages}
    questions = [q for q in hotpot_qa if set(q["supporting_ids"]) <= ids]
    return PassageStore.from_passages(passages), questions


@pytest.fixture(scope="session")
def minilm_encoder():
    from searchr1_jax.retrieval.encoder import TextEncoder
    return TextEncoder("minilm", batch_size=64)


@pytest.fixture(scope="session")
def subset_embeddings(minilm_encoder, hotpot_subset):
    store, questions = hotpot_subset
    passages = minilm_encoder.encode_passages(list(store.iter_contents()))
    queries = minilm_encoder.encode_queries([q["question"] for q in questions])
    return passages, queries


@pytest.fixture(scope="session")
def full_embeddings(minilm_encoder, hotpot_store, hotpot_qa):
    """All 4,858 passages and 500 questions (slow tests only: ~10+ min on 2 shared cores)."""
    passages = minilm_encoder.encode_passages(list(hotpot_store.iter_contents()))
    queries = minilm_encoder.encode_queries([q["question"] for q in hotpot_qa])
    return passages, queries
