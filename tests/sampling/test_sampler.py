"""Sampler vs transformers ``generate`` (greedy, left-padded batches), cache contract, sharding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from searchr1_jax import sampling
from searchr1_jax.models import KVCache
from searchr1_jax.parallel import make_mesh
from searchr1_jax.sampling import left_pad
from tests.sampling.helpers import hf_greedy, ours_from_hf, tiny_qwen2


def ours_generate(model, cfg, prompts, n_new, *, eos_ids=(), cache_len=None, **kw):
    tokens, mask, positions = left_pad(prompts)
    cache_len = cache_len or sampling.bucket_length(tokens.shape[1]) + n_new
    cache = KVCache.init(cfg, len(prompts), cache_len)
    cache, last, last_pos = sampling.prefill(model, cache, tokens, positions, mask)
    kw.setdefault("temperature", 0.0)
    return sampling.generate(model, cache, last, last_pos, kw.pop("key", jax.random.key(0)),
                             max_new_tokens=n_new, eos_ids=eos_ids, **kw)


def rows_of(out) -> list[list[int]]:
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    return [tokens[i, :n].tolist() for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def tiny():
    hf_model, hf_cfg = tiny_qwen2()
    model, cfg = ours_from_hf(hf_model, hf_cfg)
    return hf_model, model, cfg


PROMPTS = [[5, 17, 99, 3, 250], [7] * 3 + list(range(40, 49)), [300, 2, 11, 64, 64, 8, 1, 9, 200]]


def test_tiny_qwen2_greedy_matches_transformers(tiny):
    hf_model, model, cfg = tiny
    n_new = 24
    ref = hf_greedy(hf_model, PROMPTS, n_new, eos_id=None)
    out = ours_generate(model, cfg, PROMPTS, n_new)
    assert rows_of(out) == ref
    assert np.asarray(out.stop_reason).tolist() == [sampling.STOP_BUDGET] * 3
    # Greedy log-prob = log_softmax(logits)[token] <= 0, and the argmax is the likeliest token.
    lp = np.asarray(out.logprobs)
    assert np.all(lp <= 0) and np.all(lp > -np.log(cfg.vocab_size) - 1e-4)


def test_tiny_qwen2_per_row_eos_matches_transformers(tiny):
    hf_model, model, cfg = tiny
    n_new = 24
    free = hf_greedy(hf_model, PROMPTS, n_new, eos_id=None)
    eos = free[1][6]  # row 1 stops at step 7 (or earlier if the token occurs before)
    ref = hf_greedy(hf_model, PROMPTS, n_new, eos_id=eos)
    out = ours_generate(model, cfg, PROMPTS, n_new, eos_ids=[eos])
    assert rows_of(out) == ref
    reasons = np.asarray(out.stop_reason)
    for r, row in enumerate(ref):
        assert reasons[r] == (sampling.STOP_EOS if row[-1] == eos else sampling.STOP_BUDGET)
    assert len(ref[1]) <= 7 and reasons[1] == sampling.STOP_EOS
    tokens = np.asarray(out.tokens)
    assert np.all(tokens[1, len(ref[1]):] == 0)  # pad after the stop
    assert np.all(np.asarray(out.logprobs)[1, len(ref[1]):] == 0)


def test_cache_contract_continuation_equals_one_shot(tiny):
    """Two generate calls (8 + 16 tokens) on the live cache == one 24-token call; inactive row
    keeps its cache; the cache grows by exactly the sampled count."""
    _, model, cfg = tiny
    one = ours_generate(model, cfg, PROMPTS, 24)
    tokens, mask, positions = left_pad(PROMPTS)
    cache = KVCache.init(cfg, 3, 64)
    cache, last, last_pos = sampling.prefill(model, cache, tokens, positions, mask)
    end0 = np.asarray(cache.end)
    first = sampling.generate(model, cache, last, last_pos, jax.random.key(1), max_new_tokens=8,
                              temperature=0.0)
    assert np.asarray(first.cache.end).tolist() == (end0 + 8).tolist()
    active = np.array([True, False, True])
    end1 = np.asarray(first.cache.end)
    second = sampling.generate(model, first.cache, first.last_tokens, first.last_positions,
                               jax.random.key(2), max_new_tokens=16, temperature=0.0,
                               active=active)
    assert np.asarray(second.cache.end).tolist() == (end1 + 16 * active).tolist()
    assert np.asarray(second.lengths).tolist() == [16, 0, 16]
    full = np.asarray(one.tokens)
    np.testing.assert_array_equal(np.asarray(first.tokens), full[:, :8])
    np.testing.assert_array_equal(np.asarray(second.tokens)[[0, 2]], full[[0, 2], 8:])
    np.testing.assert_allclose(np.asarray(second.logprobs)[[0, 2]],
                               np.asarray(one.logprobs)[[0, 2], 8:], atol=1e-5)


def test_cache_overflow_is_refused(tiny):
    _, model, cfg = tiny
    with pytest.raises(ValueError, match="exceeds the cache"):
        ours_generate(model, cfg, PROMPTS, 24, cache_len=20)
    with pytest.raises(ValueError, match="prefill: row 0 needs 12 slots"):
        ours_generate(model, cfg, PROMPTS, 24, cache_len=10)


@pytest.mark.slow  # 135M model, both loaders, 30-layer compile: minutes on 2 shared cores
def test_smollm2_greedy_batch_matches_transformers():
    import os

    import torch
    from transformers import AutoModelForCausalLM

    from searchr1_jax.models import load_model, resolve_model

    model, tok, cfg = load_model("smollm2-135m-instruct")
    questions = ["What is the capital of France?",
                 "Name three primary colors and explain briefly why they are called primary.",
                 "Hi"]
    prompts = []
    for q in questions:
        ids = tok.apply_chat_template([{"role": "user", "content": q}],
                                      add_generation_prompt=True, tokenize=True)
        prompts.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    assert len({len(p) for p in prompts}) == 3
    path = resolve_model("smollm2-135m-instruct").path
    hf_model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
    n_new = 32
    ref = hf_greedy(hf_model, prompts, n_new, eos_id=tok.eos_token_id, pad_id=tok.eos_token_id)
    out = ours_generate(model, cfg, prompts, n_new, eos_ids=[tok.eos_token_id],
                        pad_id=tok.eos_token_id)
    for r in range(3):
        print(repr(tok.decode(ref[r])))
    assert rows_of(out) == ref
    assert any(row[-1] == tok.eos_token_id for row in ref)  # at least one row stopped on EOS


def test_sharded_4x2_equals_unsharded(tiny):
    hf_model, model, cfg = tiny
    mesh = make_mesh(data=1, fsdp=4, tensor=2, devices=jax.devices()[:8])
    sharded, _ = ours_from_hf(hf_model, cfg.to_hf_config() | {"initializer_range": 0.2},
                              mesh=mesh)
    prompts = PROMPTS + [[1, 2, 3]]
    for kw in (dict(temperature=0.0), dict(temperature=1.0, top_p=0.9, top_k=50)):
        ref = ours_generate(model, cfg, prompts, 16, key=jax.random.key(7), **kw)
        tokens, mask, positions = left_pad(prompts)
        cache = KVCache.init(cfg, 4, 48)
        specs = KVCache.partition_specs(cfg.num_layers)
        cache = jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), cache, specs)
        cache, last, last_pos = sampling.prefill(sharded, cache, tokens, positions, mask)
        out = sampling.generate(sharded, cache, last, last_pos, jax.random.key(7),
                                max_new_tokens=16, **kw)
        assert len(out.cache.k[0].sharding.device_set) == 8
        np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
        np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs),
                                   atol=1e-4)


def test_bucket_length_two_shapes_per_octave():
    sizes = [sampling.bucket_length(n) for n in range(1, 1025)]
    assert sizes[:16] == [16] * 16 and sizes[16] == 24 and sizes[43] == 48     # n = 17, 44
    assert all(s >= n for n, s in enumerate(sizes, 1))
    assert all(s <= max(16, 1.5 * n) for n, s in enumerate(sizes, 1))            # <= 1/3 pad
    assert sorted(set(sizes)) == [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
