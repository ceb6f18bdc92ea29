"""The decoder's key/value cache: explicit state that crosses ``jax.jit`` (and can be donated).

Layout (``L`` layers, ``B`` rows, ``S`` slots, ``K`` KV heads, ``D`` head dim):
  k, v   L-tuples of [B, K, S, D]  RoPE'd keys and values, one buffer per layer
  pos    int32[B, S]               position of the token in each slot (drives the causal rule)
  valid  bool[B, S]                slot holds a real token (only ever below ``end``)
  end    int32[B]                  next write slot of each row

Why one buffer per layer, heads before slots: attention contracts over ``D`` with ``(B, K)`` as
batch dims, so ``[B, K, S, D]`` feeds both attention matmuls as is. A stacked ``[L, ...]``
array (or slots before heads) made XLA copy and transpose every layer's slice on every decode
step: 25 ms of a 70 ms step for SmolLM2-135M at batch 16 on CPU (docs/benchmarks.md).

A chunk of ``T`` tokens goes to slots ``[end_b, end_b + T)`` of row ``b`` (per-row offsets);
``end_b`` then advances by ``T`` or by ``advance[b]``. Writes past ``S`` are dropped, never
wrapped or clamped onto earlier slots.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import PartitionSpec as P

from searchr1_jax.models.config import ModelConfig


@struct.dataclass
class KVCache:
    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    pos: jax.Array
    valid: jax.Array
    end: jax.Array

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> "KVCache":
        """An empty cache for ``batch`` rows of ``max_len`` slots (dtype: the compute dtype)."""
        dtype = jnp.dtype(dtype or cfg.dtype)
        shape = (batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        zeros = lambda: tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_layers))
        return cls(k=zeros(), v=zeros(),
                   pos=jnp.zeros((batch, max_len), jnp.int32),
                   valid=jnp.zeros((batch, max_len), bool),
                   end=jnp.zeros((batch,), jnp.int32))

    @property
    def num_layers(self) -> int:
        return len(self.k)

    @property
    def batch_size(self) -> int:
        return self.pos.shape[0]

    @property
    def max_len(self) -> int:
        return self.pos.shape[1]

    @property
    def dtype(self):
        return self.k[0].dtype

    def chunk_slots(self, chunk_len: int) -> jax.Array:
        """Slots a ``T``-token chunk goes to: ``slots[b, t] = end[b] + t`` -> int32[B, T]."""
        return self.end[:, None] + jnp.arange(chunk_len, dtype=jnp.int32)[None, :]

    def write_meta(self, slots: jax.Array, positions: jax.Array,
                   token_mask: jax.Array) -> "KVCache":
        """Records the chunk's positions/validity at ``slots`` (out-of-range slots are dropped)."""
        rows = jnp.arange(slots.shape[0])[:, None]
        pos = self.pos.at[rows, slots].set(positions.astype(jnp.int32), mode="drop")
        valid = self.valid.at[rows, slots].set(token_mask, mode="drop")
        return self.replace(pos=pos, valid=valid)

    def advanced(self, chunk_len: int, advance: jax.Array | None = None) -> "KVCache":
        """``end += advance`` (default ``T`` for every row)."""
        step = jnp.full_like(self.end, chunk_len) if advance is None else advance.astype(jnp.int32)
        return self.replace(end=self.end + step)

    @staticmethod
    def partition_specs(num_layers: int, batch_axes=("data", "fsdp"),
                        head_axis: str | None = "tensor") -> "KVCache":
        """PartitionSpecs (a KVCache of them): rows over the batch axes, KV heads over
        ``tensor``."""
        kv = tuple(P(batch_axes, head_axis, None, None) for _ in range(num_layers))
        return KVCache(k=kv, v=kv, pos=P(batch_axes, None), valid=P(batch_axes, None),
                       end=P(batch_axes))


def write_kv(k_cache: jax.Array, v_cache: jax.Array, slots: jax.Array, k: jax.Array,
             v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Scatters a chunk's ``k, v [B,T,K,D]`` into one layer's ``[B,K,S,D]`` at ``slots[B,T]``."""
    rows = jnp.arange(slots.shape[0])[:, None]
    # Advanced indices (rows, slots) split by the ':' over K: the indexed dims [B,T] go first,
    # so the update is [B, T, K, D] in the chunk's own layout.
    k_cache = k_cache.at[rows, :, slots].set(k.astype(k_cache.dtype), mode="drop")
    v_cache = v_cache.at[rows, :, slots].set(v.astype(v_cache.dtype), mode="drop")
    return k_cache, v_cache
