"""Reads a llama.cpp GGUF checkpoint as Hugging Face tensors, config and tokenizer.

A GGUF file holds (a) metadata key/values (architecture hyper-parameters, the tokenizer and its
chat template) and (b) tensors, possibly block-quantised (Q4_0, Q4_1, Q8_0, K-quants ...).
This module turns them into what ``hf_io.model_from_state_dict`` consumes: an HF ``config.json``
style dict and a lazy ``get_tensor(hf_name) -> np.float32 array`` keyed by HF tensor names
(``model.layers.3.self_attn.q_proj.weight`` ...). Dequantisation is ``gguf.quants.dequantize``
(exact: ``value = scale * q + min`` per block), done one tensor at a time so peak memory stays
near one fp32 tensor plus the memory-mapped file.

llama.cpp's converter permutes the rows of ``attn_q``/``attn_k`` for the ``llama`` architecture
(RoPE pairs ``(i, i + D/2)`` become adjacent rows ``(2i, 2i+1)``); we undo it exactly like
transformers' ``LlamaTensorProcessor`` does. Qwen2 GGUFs are not permuted.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable

import numpy as np

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")

# llama.cpp tensor name (without the trailing ``.weight``/``.bias``) -> HF module name.
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_GLOBAL_RE = re.compile(r"^([a-z_]+)\.(weight|bias)$")


class GGUFError(ValueError):
    """A GGUF file is missing, corrupt or holds something this loader cannot map."""


def gguf_to_hf_name(name: str, path: str = "<gguf>") -> str:
    """Maps a llama.cpp tensor name to its HF name.

    ``token_embd.weight -> model.embed_tokens.weight``,
    ``blk.N.attn_q.weight -> model.layers.N.self_attn.q_proj.weight`` (see ``_BLOCK_NAMES``).
    """
    if m := _BLOCK_RE.match(name):
        layer, part, suffix = m.groups()
        if part in _BLOCK_NAMES:
            return f"model.layers.{layer}.{_BLOCK_NAMES[part]}.{suffix}"
    elif m := _GLOBAL_RE.match(name):
        part, suffix = m.groups()
        if part in _GLOBAL_NAMES:
            return f"{_GLOBAL_NAMES[part]}.{suffix}"
    raise GGUFError(f"{path}: tensor {name!r} has no Hugging Face equivalent in this loader "
                    f"(supported architectures: {SUPPORTED_ARCHITECTURES})")


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's ``permute`` for Q/K projections.

    llama.cpp: ``w.reshape(n, 2, D/2, ...).swapaxes(1, 2)``; inverse:
    ``w.reshape(n, D/2, 2, ...).swapaxes(1, 2).reshape(w.shape)`` with ``D = rows / n``.
    """
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field_value(field: Any) -> Any:
    """Decodes a ``gguf.ReaderField`` into a Python scalar, string or list."""
    return field.contents()


def _open_reader(path: str):
    import gguf  # lazy: only GGUF users need it

    if not os.path.isfile(path):
        raise GGUFError(f"GGUF file not found: {path}")
    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # the gguf package raises ValueError/struct.error/... on bad bytes
        raise GGUFError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from e


def config_from_metadata(meta: dict[str, Any], tensor_names: list[str],
                         path: str = "<gguf>") -> dict[str, Any]:
    """Builds an HF ``config.json`` dict from GGUF metadata.

    ``{arch}.embedding_length -> hidden_size``, ``block_count -> num_hidden_layers``,
    ``attention.head_count(_kv) -> num_attention_heads / num_key_value_heads``,
    ``rope.freq_base -> rope_theta``; ``tie_word_embeddings`` iff ``output.weight`` is absent;
    ``attention_bias`` iff ``attn_q.bias`` tensors exist.
    """
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{path}: general.architecture={arch!r} is not supported "
                        f"(supported: {SUPPORTED_ARCHITECTURES})")
    if "rope_freqs.weight" in tensor_names:
        raise GGUFError(f"{path}: holds 'rope_freqs.weight' (Llama-3.1+ RoPE scaling), which GGUF "
                        "does not describe in metadata; load the Hugging Face directory instead")

    def need(key: str) -> Any:
        full = f"{arch}.{key}"
        if full not in meta:
            raise GGUFError(f"{path}: metadata field {full!r} is missing")
        return meta[full]

    hidden = int(need("embedding_length"))
    heads = int(need("attention.head_count"))
    kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
    head_dim = int(meta.get(f"{arch}.rope.dimension_count", hidden // heads))
    if arch == "qwen2":
        head_dim = hidden // heads
    vocab = meta.get(f"{arch}.vocab_size")
    if vocab is None:
        vocab = len(meta.get("tokenizer.ggml.tokens", []))
    if not vocab:
        raise GGUFError(f"{path}: cannot tell the vocabulary size (no {arch}.vocab_size, no tokens)")
    cfg = {
        "model_type": arch,
        "architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"],
        "hidden_size": hidden,
        "intermediate_size": int(need("feed_forward_length")),
        "num_hidden_layers": int(need("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": float(need("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(meta.get(f"{arch}.context_length", 2048)),
        "vocab_size": int(vocab),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "attention_bias": "blk.0.attn_q.bias" in tensor_names,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }
    for key, hf_key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                        ("padding_token_id", "pad_token_id")):
        if f"tokenizer.ggml.{key}" in meta:
            cfg[hf_key] = int(meta[f"tokenizer.ggml.{key}"])
    return cfg


@dataclasses.dataclass(frozen=True)
class GGUFCheckpoint:
    """A GGUF file opened for import: HF config dict and lazily dequantised HF-named tensors."""

    path: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    names: tuple[str, ...]  # HF tensor names
    _tensors: dict[str, Any]  # HF name -> gguf.ReaderTensor

    def get_tensor(self, hf_name: str) -> np.ndarray:
        """Dequantised float32 array in HF layout (``[out, in]`` for linear weights)."""
        from gguf import quants

        if hf_name not in self._tensors:
            raise KeyError(f"{self.path}: no tensor maps to {hf_name!r}")
        t = self._tensors[hf_name]
        try:
            w = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        except NotImplementedError as e:
            raise GGUFError(f"{self.path}: tensor {t.name!r} has quantisation "
                            f"{t.tensor_type.name}, which gguf cannot dequantise: {e}") from e
        expected = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims innermost first
        if w.size != int(np.prod(expected)):
            raise GGUFError(f"{self.path}: tensor {t.name!r} is truncated or corrupt "
                            f"(got {w.size} values, shape says {expected})")
        w = w.reshape(expected)
        if self.config["model_type"] == "llama":
            if ".self_attn.q_proj." in hf_name:
                w = unpermute_rope_rows(w, self.config["num_attention_heads"])
            elif ".self_attn.k_proj." in hf_name:
                w = unpermute_rope_rows(w, self.config["num_key_value_heads"])
        return w

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every tensor dequantised (fp32): memory is the full fp32 model."""
        return {n: self.get_tensor(n) for n in self.names}

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")


def read_gguf(path: str) -> GGUFCheckpoint:
    """Opens ``path`` (memory-mapped), parses metadata and maps tensor names to HF names."""
    path = os.fspath(path)
    reader = _open_reader(path)
    meta: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                   "tokenizer.ggml.scores"):
            meta[key] = field  # large lists: decoded only on demand
            continue
        try:
            meta[key] = _field_value(field)
        except Exception as e:
            raise GGUFError(f"{path}: metadata field {key!r} is corrupt ({e})") from e
    gguf_names = [t.name for t in reader.tensors]
    if "tokenizer.ggml.tokens" in meta and f"{meta.get('general.architecture')}.vocab_size" not in meta:
        meta["tokenizer.ggml.tokens"] = _field_value(meta["tokenizer.ggml.tokens"])
    config = config_from_metadata(meta, gguf_names, path)
    tensors = {gguf_to_hf_name(t.name, path): t for t in reader.tensors}
    if "model.embed_tokens.weight" not in tensors:
        raise GGUFError(f"{path}: has no 'token_embd.weight' tensor")
    return GGUFCheckpoint(path=path, config=config, metadata=meta, names=tuple(tensors),
                          _tensors=tensors)


def load_gguf_tokenizer(path: str):
    """HF tokenizer (with the GGUF's chat template) via ``AutoTokenizer(dir, gguf_file=name)``."""
    from transformers import AutoTokenizer

    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise GGUFError(f"GGUF file not found: {path}")
    try:
        return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    except Exception as e:
        raise GGUFError(f"{path}: transformers could not build a tokenizer from it ({e})") from e


TensorGetter = Callable[[str], np.ndarray]
