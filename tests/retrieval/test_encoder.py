"""Flax BERT encoder vs transformers/PyTorch (the independent reference)."""
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from searchr1_jax.retrieval.bert import resolve_model_dir
from searchr1_jax.retrieval.encoder import bucket_width, default_prefixes

TEXTS = ["Who portrayed Corliss Archer in the film Kiss and Tell?",
         "\"Shirley Temple\"\nShirley Temple Black (April 23, 1928 – February 10, 2014) was an "
         "American actress, singer, dancer, businesswoman, and diplomat.",
         "a", "Ünïcödé text — with dashes and ‘quotes’.",
         "long " + "The quick brown fox jumps over the lazy dog. " * 60]  # > 256 tokens: truncated


def torch_embeddings(texts, max_length=256):
    """sentence-transformers' recipe by hand: mean over the attention mask, then L2-normalise."""
    model_dir = resolve_model_dir("minilm")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_parity_with_transformers(minilm_encoder):
    assert minilm_encoder.mesh.devices.size == 8  # batches are split over the 8 fake devices
    ours = minilm_encoder.encode(TEXTS, "query")
    ref = torch_embeddings(TEXTS)
    cosine = (ours * ref).sum(1)
    print("cosine", cosine, "max abs diff", np.abs(ours - ref).max())
    assert cosine.min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Passages: same model, no prefix for MiniLM, so identical vectors.
    np.testing.assert_allclose(minilm_encoder.encode(TEXTS, "passage"), ours, atol=1e-5)


def test_prefixes_are_prepended():
    from searchr1_jax.retrieval.encoder import TextEncoder
    assert default_prefixes("intfloat/e5-base-v2") == ("query: ", "passage: ")
    assert default_prefixes("minilm") == ("", "")
    enc = TextEncoder("minilm", query_prefix="query: ", passage_prefix="passage: ", batch_size=8)
    ours_q = enc.encode(TEXTS[:2], "query")
    ours_p = enc.encode(TEXTS[:2], "passage")
    np.testing.assert_allclose((ours_q * torch_embeddings(["query: " + t for t in TEXTS[:2]])
                                ).sum(1), 1.0, atol=1e-4)
    np.testing.assert_allclose((ours_p * torch_embeddings(["passage: " + t for t in TEXTS[:2]])
                                ).sum(1), 1.0, atol=1e-4)


def test_order_and_batching_do_not_change_embeddings(minilm_encoder):
    # Length bucketing sorts rows; the output must come back in input order, batch-independent.
    texts = TEXTS * 3
    full = minilm_encoder.encode(texts, "query")
    one_by_one = np.stack([minilm_encoder.encode([t], "query")[0] for t in texts[:5]])
    np.testing.assert_allclose(full[:5], one_by_one, atol=1e-5)
    np.testing.assert_allclose(full[5:10], full[:5], atol=1e-6)
    assert minilm_encoder.encode([], "query").shape == (0, 384)


@pytest.mark.parametrize("length, expected", [(1, 16), (16, 16), (17, 32), (200, 256),
                                              (256, 256), (300, 256)])
def test_bucket_width(length, expected):
    assert bucket_width(length, 256) == expected
