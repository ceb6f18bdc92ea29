"""Flax NNX decoder (Qwen2/Llama), KV cache, HF safetensors import/export."""
from searchr1_jax.models.config import ModelConfig, ModelConfigError, preset_names
from searchr1_jax.models.hf_io import (export_hf, load_hf_checkpoint, model_from_state_dict,
                                       state_dict_from_model)
from searchr1_jax.models.kv_cache import KVCache
from searchr1_jax.models.loader import ModelResolveError, ModelSource, load_model, resolve_model
from searchr1_jax.models.safetensors_io import CheckpointError
from searchr1_jax.models.transformer import Transformer, with_weight_dtype
