"""Flax NNX decoder (Qwen2/Llama), KV cache, HF safetensors import/export."""
from searchr1_jax.models.config import ModelConfig, ModelConfigError, preset_names
from searchr1_jax.models.kv_cache import KVCache
from searchr1_jax.models.transformer import Transformer
