"""The decoder's key/value cache: explicit state that crosses ``jax.jit`` (and can be donated).

Layout (``L`` layers, ``B`` rows, ``S`` slots, ``K`` KV heads, ``D`` head dim):
  k, v   [L, B, S, K, D]  RoPE'd keys and values
  pos    int32[B, S]      position of the token in each slot (drives the causal rule)
  valid  bool[B, S]       slot holds a real token
  end    int32[B]         next write slot of each row

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
    k: jax.Array
    v: jax.Array
    pos: jax.Array
    valid: jax.Array
    end: jax.Array

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> "KVCache":
        """An empty cache for ``batch`` rows of ``max_len`` slots (dtype: the compute dtype)."""
        dtype = jnp.dtype(dtype or cfg.dtype)
        shape = (cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim)
        return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                   pos=jnp.zeros((batch, max_len), jnp.int32),
                   valid=jnp.zeros((batch, max_len), bool),
                   end=jnp.zeros((batch,), jnp.int32))

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

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
    def partition_specs(batch_axes=("data", "fsdp"), head_axis: str | None = "tensor") -> "KVCache":
        """PartitionSpecs: rows over the batch axes, KV heads over ``tensor``."""
        kv = P(None, batch_axes, None, head_axis, None)
        return KVCache(k=kv, v=kv, pos=P(batch_axes, None), valid=P(batch_axes, None),
                       end=P(batch_axes))


def write_layer_kv(k_all: jax.Array, v_all: jax.Array, layer: int, slots: jax.Array,
                   k: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Scatters a chunk's ``k, v [B,T,K,D]`` into layer ``layer`` of ``[L,B,S,K,D]`` at ``slots``."""
    rows = jnp.arange(slots.shape[0])[:, None]
    k_all = k_all.at[layer, rows, slots].set(k.astype(k_all.dtype), mode="drop")
    v_all = v_all.at[layer, rows, slots].set(v.astype(v_all.dtype), mode="drop")
    return k_all, v_all
