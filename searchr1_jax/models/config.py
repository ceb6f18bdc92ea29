"""Decoder hyper-parameters (`ModelConfig`), HF `config.json` conversion and real presets.

One config covers the two supported families: ``qwen2`` (Qwen2 / Qwen2.5: q/k/v biases) and
``llama`` (Llama 3.x, SmolLM2: optional llama3 RoPE scaling). Presets copy the published
Hugging Face ``config.json`` values.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from flax.core import FrozenDict

_ARCHITECTURES = {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}
_FAMILY_TO_ARCH = {v: k for k, v in _ARCHITECTURES.items()}
_SUPPORTED_ROPE_TYPES = ("default", "llama3", "linear")


class ModelConfigError(ValueError):
    """A HF config.json (or a preset name) that this decoder cannot represent."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a Qwen2/Llama decoder (field names follow HF where they exist)."""
    family: str                       # "qwen2" | "llama"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: Mapping[str, Any] | None = None  # None or {"rope_type": "llama3", "factor": ..}
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False      # bias on q/k/v (always on for Qwen2)
    o_proj_bias: bool = False         # Llama's `attention_bias` also puts a bias on o_proj
    max_position_embeddings: int = 32768
    dtype: str = "float32"            # compute dtype
    param_dtype: str = "float32"      # storage dtype of the parameters
    remat: bool = False               # rematerialise each decoder layer (training)
    attention_query_chunk: int = 1024  # >0: attend in blocks of this many queries (memory)
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.family not in _FAMILY_TO_ARCH:
            raise ModelConfigError(f"ModelConfig.family must be one of {sorted(_FAMILY_TO_ARCH)}, "
                                   f"got {self.family!r}")
        if self.num_heads % self.num_kv_heads:
            raise ModelConfigError(f"num_heads={self.num_heads} is not a multiple of "
                                   f"num_kv_heads={self.num_kv_heads}")
        if self.head_dim % 2:
            raise ModelConfigError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default"))
            if kind not in _SUPPORTED_ROPE_TYPES:
                raise ModelConfigError(f"rope_scaling type {kind!r} is not supported "
                                       f"(supported: {_SUPPORTED_ROPE_TYPES})")
        object.__setattr__(self, "eos_token_ids", tuple(int(i) for i in self.eos_token_ids))
        if self.rope_scaling is not None:  # hashable, so the config can be a static jit argument
            object.__setattr__(self, "rope_scaling", FrozenDict(self.rope_scaling))

    @property
    def num_groups(self) -> int:
        """Query heads per KV head (GQA ratio)."""
        return self.num_heads // self.num_kv_heads

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------- HF conversion
    @classmethod
    def from_hf_config(cls, hf: Mapping[str, Any], **overrides) -> "ModelConfig":
        """Builds a config from a HF ``config.json`` dict (Qwen2ForCausalLM / LlamaForCausalLM)."""
        archs = list(hf.get("architectures") or [])
        family = next((_ARCHITECTURES[a] for a in archs if a in _ARCHITECTURES), None)
        if family is None:
            model_type = hf.get("model_type")
            family = {"qwen2": "qwen2", "llama": "llama"}.get(model_type) if not archs else None
        if family is None:
            raise ModelConfigError(
                f"unsupported architecture {archs or hf.get('model_type')!r} in config.json "
                f"(supported: {sorted(_ARCHITECTURES)})")
        for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                      "num_attention_heads"):
            if field not in hf:
                raise ModelConfigError(f"config.json lacks required field {field!r}")
        if hf.get("use_sliding_window"):
            raise ModelConfigError("config.json field 'use_sliding_window' = true is not supported")
        if hf.get("mlp_bias"):
            raise ModelConfigError("config.json field 'mlp_bias' = true is not supported")
        num_heads = int(hf["num_attention_heads"])
        # transformers >= 5 folds rope_theta/rope_scaling into `rope_parameters`.
        rope = dict(hf.get("rope_parameters") or {})
        scaling = hf.get("rope_scaling") or None
        theta = hf.get("rope_theta", rope.get("rope_theta", 10000.0))
        if scaling is None and rope.get("rope_type", "default") != "default":
            scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        if scaling is not None:
            scaling = dict(scaling)
            scaling.setdefault("rope_type", scaling.pop("type", "default"))
            scaling.pop("type", None)
            if scaling["rope_type"] == "default":
                scaling = None
        eos = hf.get("eos_token_id")
        eos = () if eos is None else (tuple(eos) if isinstance(eos, (list, tuple)) else (eos,))
        qkv_bias = True if family == "qwen2" else bool(hf.get("attention_bias", False))
        kwargs = dict(
            family=family,
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or num_heads),
            head_dim=int(hf.get("head_dim") or hf["hidden_size"] // num_heads),
            rope_theta=float(theta),
            rope_scaling=scaling,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=qkv_bias,
            o_proj_bias=family == "llama" and bool(hf.get("attention_bias", False)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 32768)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos,
            pad_token_id=hf.get("pad_token_id"),
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_hf_config(self) -> dict[str, Any]:
        """The ``config.json`` dict that transformers loads into the equivalent HF model."""
        eos = list(self.eos_token_ids)
        hf: dict[str, Any] = {
            "architectures": [_FAMILY_TO_ARCH[self.family]],
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": dict(self.rope_scaling) if self.rope_scaling else None,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
            "pad_token_id": self.pad_token_id,
            "torch_dtype": self.param_dtype,
            "use_cache": True,
        }
        if self.family == "llama":
            hf["attention_bias"] = self.attention_bias
            hf["mlp_bias"] = False
        else:
            hf["use_sliding_window"] = False
        return hf

    # ----------------------------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """A published model's hyper-parameters, e.g. ``"qwen2.5-3b"`` or ``"llama3.2-1b"``."""
        key = name.lower().removesuffix("-instruct")
        if key not in _PRESETS:
            raise ModelConfigError(f"unknown model preset {name!r}; known: {preset_names()}")
        kwargs = dict(_PRESETS[key])
        if name.lower().endswith("-instruct"):
            kwargs.update(_INSTRUCT_CHANGES.get(key, {}))
        kwargs.update(overrides)
        return cls(**kwargs)


_LLAMA3_SCALING = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def _qwen25(vocab, hidden, inter, layers, heads, kv, tie, max_pos, eps=1e-6):
    return dict(family="qwen2", vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                num_layers=layers, num_heads=heads, num_kv_heads=kv, head_dim=hidden // heads,
                rope_theta=1000000.0, rms_norm_eps=eps, tie_word_embeddings=tie,
                attention_bias=True, max_position_embeddings=max_pos,
                bos_token_id=151643, eos_token_ids=(151643,), pad_token_id=None)


def _llama32(hidden, layers, heads, head_dim):
    return dict(family="llama", vocab_size=128256, hidden_size=hidden, intermediate_size=8192,
                num_layers=layers, num_heads=heads, num_kv_heads=8, head_dim=head_dim,
                rope_theta=500000.0, rope_scaling=_LLAMA3_SCALING, rms_norm_eps=1e-5,
                tie_word_embeddings=True, max_position_embeddings=131072,
                bos_token_id=128000, eos_token_ids=(128001,))


_PRESETS: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": _qwen25(151936, 896, 4864, 24, 14, 2, True, 32768),
    "qwen2.5-1.5b": _qwen25(151936, 1536, 8960, 28, 12, 2, True, 131072),
    "qwen2.5-3b": _qwen25(151936, 2048, 11008, 36, 16, 2, True, 32768),
    "qwen2.5-7b": _qwen25(152064, 3584, 18944, 28, 28, 4, False, 131072),
    "qwen2.5-14b": _qwen25(152064, 5120, 13824, 48, 40, 8, False, 131072, eps=1e-5),
    "llama3.2-1b": _llama32(2048, 16, 32, 64),
    "llama3.2-3b": _llama32(3072, 28, 24, 128),
    "smollm2-135m": dict(family="llama", vocab_size=49152, hidden_size=576,
                         intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3,
                         head_dim=64, rope_theta=100000.0, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, max_position_embeddings=8192,
                         bos_token_id=1, eos_token_ids=(2,), pad_token_id=2),
}
# The instruct checkpoints differ only in special ids and the advertised context.
_QWEN_INSTRUCT = dict(eos_token_ids=(151645,), pad_token_id=151643, max_position_embeddings=32768)
_INSTRUCT_CHANGES: dict[str, dict[str, Any]] = {
    **{k: _QWEN_INSTRUCT for k in _PRESETS if k.startswith("qwen2.5")},
    **{k: dict(eos_token_ids=(128001, 128008, 128009)) for k in _PRESETS if k.startswith("llama")},
}


def preset_names() -> list[str]:
    names = sorted(_PRESETS)
    return names + sorted(n + "-instruct" for n in names)
