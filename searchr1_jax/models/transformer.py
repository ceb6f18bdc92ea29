"""Flax NNX decoder for Qwen2/Qwen2.5 and Llama 3.x (and SmolLM2, a Llama).

Parameter names and shapes (``H`` hidden, ``N`` query heads, ``K`` KV heads, ``D`` head dim,
``F`` MLP width, ``V`` vocab); ``searchr1_jax.parallel.rules.DECODER_RULES`` shards them:
  embed/embedding                        [V, H]
  layers/{i}/input_norm/scale            [H]
  layers/{i}/attn/q_proj/kernel          [H, N, D]   bias [N, D]   (k_proj, v_proj: [H, K, D])
  layers/{i}/attn/o_proj/kernel          [N, D, H]   bias [H]      (Llama attention_bias only)
  layers/{i}/post_attn_norm/scale        [H]
  layers/{i}/mlp/gate_proj/kernel        [H, F]      up_proj [H, F]   down_proj [F, H]
  final_norm/scale                       [H]
  lm_head_proj/kernel                    [H, V]      (absent when embeddings are tied)

Attention rule: query i attends key j iff key j is real and ``pos[j] <= pos[i]``; positions are
explicit so left- and right-padded rows both work. Softmax runs in fp32; logits are fp32.
"""
from __future__ import annotations

import math
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax.models.config import ModelConfig
from searchr1_jax.models.kv_cache import KVCache, write_kv

_MASKED = float(np.finfo(np.float32).min)  # finite: a row with no visible key stays NaN-free
_init = nnx.initializers.normal(stddev=0.02)
KV = tuple[jax.Array, jax.Array]
_ModuleList = getattr(nnx, "List", list)  # flax >= 0.12 needs nnx.List; older takes a list


# --------------------------------------------------------------------------------------- RoPE
def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """``inv_freq[i] = theta^(-2i/D)``, rescaled per ``cfg.rope_scaling`` -> float32[D/2].

    llama3 scaling (HF ``_compute_llama3_parameters``): with ``wl = 2*pi/inv_freq`` and
    ``Lo = original_max_position_embeddings``: ``wl > Lo/low`` -> ``inv_freq/factor``;
    ``wl < Lo/high`` -> unchanged; else ``(1-s)*inv_freq/factor + s*inv_freq`` with
    ``s = (Lo/wl - low)/(high - low)``. linear scaling: ``inv_freq/factor``.
    """
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    scaling = cfg.rope_scaling
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif kind == "llama3":
        factor, low, high = (float(scaling[k]) for k in ("factor", "low_freq_factor",
                                                         "high_freq_factor"))
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv_freq = np.where(medium, smoothed, scaled)
    return inv_freq.astype(np.float32)


def rope_sin_cos(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """``angle[b,t] = pos[b,t] * concat(inv_freq, inv_freq)`` -> (sin, cos) float32[B, T, D]."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.sin(angles), jnp.cos(angles)


def apply_rope(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
    """HF rotate-half RoPE: ``x*cos + rotate_half(x)*sin``, ``rotate_half([a, b]) = [-b, a]``.

    ``x`` [B, T, heads, D]; sin/cos [B, T, D]; computed in fp32, returned in x's dtype.
    """
    xf = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    out = xf * cos[:, :, None, :] + rotated * sin[:, :, None, :]
    return out.astype(x.dtype)


def attention_mask(query_pos: jax.Array, key_pos: jax.Array, key_valid: jax.Array) -> jax.Array:
    """``mask[b,i,j] = key_valid[b,j] & (key_pos[b,j] <= query_pos[b,i])`` -> bool[B, T, S]."""
    return key_valid[:, None, :] & (key_pos[:, None, :] <= query_pos[:, :, None])


def dot_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                  heads_first: bool = False) -> jax.Array:
    """``softmax(q.k / sqrt(D) masked) . v`` (scores/softmax in fp32).

    q [B,T,K,G,D] (query head ``k*G + g`` uses KV head ``k``), k/v [B,S,K,D] (or [B,K,S,D]
    with ``heads_first``, the cache's layout), mask bool[B,T,S] -> [B,T,K,G,D] in v's dtype.
    """
    kv = "BKSD" if heads_first else "BSKD"
    scores = jnp.einsum(f"BTKGD,{kv}->BKGTS", q, k, preferred_element_type=jnp.float32)
    scores = scores * (q.shape[-1] ** -0.5)
    scores = jnp.where(mask[:, None, None, :, :], scores, _MASKED)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    if heads_first:
        # [G*T, S] x [S, D] per (B, K): a plain matmul. Asking for BTKGD directly made XLA
        # compute V^T.P^T, a transposed-operand dot that CPU runs 10x slower.
        out = jnp.einsum("BKGTS,BKSD->BKGTD", probs, v, preferred_element_type=jnp.float32)
        return out.transpose(0, 3, 1, 2, 4).astype(v.dtype)
    return jnp.einsum(f"BKGTS,{kv}->BTKGD", probs, v, preferred_element_type=jnp.float32
                      ).astype(v.dtype)


def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                      chunk: int, heads_first: bool = False) -> jax.Array:
    """``dot_attention`` over blocks of ``chunk`` queries (``lax.map`` + ``jax.checkpoint``).

    Same result; peak memory ``O(B*N*chunk*S)`` instead of ``O(B*N*T*S)`` in the forward and
    the backward (each block's probabilities are recomputed, not stored). ``chunk <= 0`` or
    ``T <= chunk``: one block.
    """
    b, t = q.shape[:2]
    if chunk <= 0 or t <= chunk:
        return dot_attention(q, k, v, mask, heads_first)
    pad = -t % chunk
    n = (t + pad) // chunk
    q = jnp.pad(q, ((0, 0), (0, pad)) + ((0, 0),) * 3)
    mask = jnp.pad(mask, ((0, 0), (0, pad), (0, 0)))
    q_blocks = jnp.moveaxis(q.reshape(b, n, chunk, *q.shape[2:]), 1, 0)   # [n,B,C,K,G,D]
    m_blocks = jnp.moveaxis(mask.reshape(b, n, chunk, -1), 1, 0)          # [n,B,C,S]
    block = jax.checkpoint(lambda qm: dot_attention(qm[0], k, v, qm[1], heads_first))
    out = jax.lax.map(block, (q_blocks, m_blocks))                        # [n,B,C,K,G,D]
    return jnp.moveaxis(out, 0, 1).reshape(b, n * chunk, *q.shape[2:])[:, :t]


# ------------------------------------------------------------------------------------ modules
def matmul_dtype(compute_dtype, weight_dtype):
    """Dtype a matmul's inputs are cast to: the weight's when it is narrower than the compute
    dtype (bf16 serving weights under fp32 compute: bf16 x bf16 with fp32 accumulation, half
    the bytes read per decode step), else the compute dtype."""
    compute_dtype, weight_dtype = jnp.dtype(compute_dtype), jnp.dtype(weight_dtype)
    return weight_dtype if weight_dtype.itemsize < compute_dtype.itemsize else compute_dtype


class Dense(nnx.Module):
    """``y = einsum(eqn, x, kernel) (+ bias)`` in the compute dtype (inputs: ``matmul_dtype``).

    ``kernel_view``: the shape the kernel is reshaped to for the einsum (o_proj keeps its
    ``[N, D, H]`` parameter but contracts one flat ``N*D`` dim, so XLA never transposes the
    weight to match the activation's layout).
    """

    def __init__(self, eqn: str, kernel_shape: tuple[int, ...], bias_shape: tuple[int, ...] | None,
                 *, dtype, param_dtype, rngs: nnx.Rngs, kernel_view: tuple[int, ...] | None = None):
        self.eqn = eqn
        self.dtype = dtype
        self.kernel_view = kernel_view
        self.kernel = nnx.Param(_init(rngs.params(), kernel_shape, param_dtype))
        self.bias = nnx.Param(jnp.zeros(bias_shape, param_dtype)) if bias_shape else None

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.kernel_view is not None:
            kernel = kernel.reshape(self.kernel_view)
        in_dtype = matmul_dtype(self.dtype, kernel.dtype)
        y = jnp.einsum(self.eqn, x.astype(in_dtype), kernel.astype(in_dtype),
                       preferred_element_type=self.dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class RMSNorm(nnx.Module):
    """``y = scale * x / sqrt(mean(x^2) + eps)`` (statistics in fp32, HF order of casts)."""

    def __init__(self, size: int, eps: float, *, dtype, param_dtype):
        self.eps = eps
        self.dtype = dtype
        self.scale = nnx.Param(jnp.ones((size,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * xf.astype(self.dtype)


class Embed(nnx.Module):
    """Token embedding ``embedding [V, H]``; ``attend`` is the tied output projection."""

    def __init__(self, vocab: int, hidden: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.dtype = dtype
        self.embedding = nnx.Param(_init(rngs.params(), (vocab, hidden), param_dtype))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        # "clip": an out-of-range pad id (e.g. -1) must not turn into NaN, which would leak
        # into real rows through 0 * NaN in the attention of masked keys.
        return jnp.take(self.embedding[...], tokens, axis=0, mode="clip").astype(self.dtype)

    def attend(self, hidden: jax.Array) -> jax.Array:
        """``logits = einsum("BTH,VH->BTV")`` in fp32."""
        table = self.embedding[...]
        in_dtype = matmul_dtype(self.dtype, table.dtype)
        return jnp.einsum("BTH,VH->BTV", hidden.astype(in_dtype), table.astype(in_dtype),
                          preferred_element_type=jnp.float32)


class Attention(nnx.Module):
    """Grouped-query attention over explicit positions, optionally through the KV cache."""

    def __init__(self, cfg: ModelConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        h, n, k, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        qkv_bias = cfg.attention_bias
        self.q_proj = Dense("BTH,HND->BTND", (h, n, d), (n, d) if qkv_bias else None, **kw)
        self.k_proj = Dense("BTH,HKD->BTKD", (h, k, d), (k, d) if qkv_bias else None, **kw)
        self.v_proj = Dense("BTH,HKD->BTKD", (h, k, d), (k, d) if qkv_bias else None, **kw)
        self.o_proj = Dense("BTX,XH->BTH", (n, d, h), (h,) if cfg.o_proj_bias else None,
                            kernel_view=(n * d, h), **kw)
        self.num_kv_heads, self.head_dim, self.dtype = k, d, dtype
        self.query_chunk = cfg.attention_query_chunk

    def __call__(self, x: jax.Array, sin: jax.Array, cos: jax.Array, mask: jax.Array,
                 kv: KV | None = None, slots: jax.Array | None = None,
                 window: int | None = None) -> tuple[jax.Array, KV | None]:
        """x [B,T,H], mask bool[B,T,W]; with ``kv`` (this layer's cached k/v, [B,K,S,D]) the
        chunk is written at ``slots`` first and attention runs over the first ``W = window``
        slots (default all S)."""
        b, t, _ = x.shape
        q = apply_rope(self.q_proj(x), sin, cos)       # [B,T,N,D]
        k = apply_rope(self.k_proj(x), sin, cos)       # [B,T,K,D]
        v = self.v_proj(x)                             # [B,T,K,D]
        q = q.reshape(b, t, self.num_kv_heads, -1, self.head_dim)               # [B,T,K,G,D]
        if kv is None:
            out = chunked_attention(q, k, v, mask, self.query_chunk)
        else:
            kv = write_kv(kv[0], kv[1], slots, k, v)
            # A bf16 cache under fp32 compute is read as is (bf16 x bf16, fp32 accumulation):
            # upcasting it would copy every layer's cache on every decode step.
            in_dtype = matmul_dtype(self.dtype, kv[0].dtype)
            k_seen, v_seen = (c[:, :, :window] for c in kv)
            out = chunked_attention(q.astype(in_dtype), k_seen.astype(in_dtype),
                                    v_seen.astype(in_dtype), mask, self.query_chunk,
                                    heads_first=True)
        return self.o_proj(out.reshape(b, t, -1).astype(self.dtype)), kv


class MLP(nnx.Module):
    """SwiGLU: ``down(silu(x @ gate) * (x @ up))``."""

    def __init__(self, cfg: ModelConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        h, f = cfg.hidden_size, cfg.intermediate_size
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = Dense("BTH,HF->BTF", (h, f), None, **kw)
        self.up_proj = Dense("BTH,HF->BTF", (h, f), None, **kw)
        self.down_proj = Dense("BTF,FH->BTH", (f, h), None, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    """Pre-norm block: ``x += attn(norm(x)); x += mlp(norm(x))``."""

    def __init__(self, cfg: ModelConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.attn = Attention(cfg, rngs=rngs, **kw)
        self.post_attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.mlp = MLP(cfg, rngs=rngs, **kw)

    def __call__(self, x, sin, cos, mask, kv: KV | None = None,
                 slots: jax.Array | None = None, window: int | None = None
                 ) -> tuple[jax.Array, KV | None]:
        attn_out, kv = self.attn(self.input_norm(x), sin, cos, mask, kv, slots, window)
        x = x + attn_out
        x = x + self.mlp(self.post_attn_norm(x))
        return x, kv


def _layer_no_cache(layer: DecoderLayer, x, sin, cos, mask):
    return layer(x, sin, cos, mask)[0]


class Transformer(nnx.Module):
    """Decoder-only LM: embed -> L x DecoderLayer -> final RMSNorm -> lm_head (tied or not)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.cfg = cfg
        self.embed = Embed(cfg.vocab_size, cfg.hidden_size, rngs=rngs, **kw)
        self.layers = _ModuleList([DecoderLayer(cfg, rngs=rngs, **kw)
                                   for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, **kw)
        self.lm_head_proj = None if cfg.tie_word_embeddings else Dense(
            "BTH,HV->BTV", (cfg.hidden_size, cfg.vocab_size), None, rngs=rngs, **kw)

    def backbone(self, tokens: jax.Array, positions: jax.Array,
                 token_mask: jax.Array | None = None, cache: KVCache | None = None,
                 advance: jax.Array | None = None, window: int | None = None
                 ) -> tuple[jax.Array, KVCache | None]:
        """tokens/positions int32[B,T], token_mask bool[B,T] -> (hidden [B,T,H], cache).

        With a cache the chunk is written at slots ``[end_b, end_b+T)`` and attends to the
        cached slots; ``end`` then advances by T (or ``advance[b]``). ``window`` (static): attend
        to the first ``window`` slots only. The caller guarantees ``end_b + T <= window`` (see
        ``sampling.attention_window``): a rollout's cache is sized for its longest episode, and
        attending to the empty tail cost most of a turn's time.
        """
        b, t = tokens.shape
        if token_mask is None:
            token_mask = jnp.ones((b, t), bool)
        token_mask = token_mask.astype(bool)
        positions = positions.astype(jnp.int32)
        x = self.embed(tokens)
        sin, cos = rope_sin_cos(positions, rope_inv_freq(self.cfg))
        if cache is None:
            mask = attention_mask(positions, positions, token_mask)
            run = nnx.remat(_layer_no_cache) if self.cfg.remat else _layer_no_cache
            for layer in self.layers:
                x = run(layer, x, sin, cos, mask)
        else:
            slots = cache.chunk_slots(t)
            cache = cache.write_meta(slots, positions, token_mask)
            mask = attention_mask(positions, cache.pos[:, :window], cache.valid[:, :window])
            ks, vs = [], []
            for layer, k, v in zip(self.layers, cache.k, cache.v):
                x, (k, v) = layer(x, sin, cos, mask, (k, v), slots, window)
                ks.append(k)
                vs.append(v)
            cache = cache.replace(k=tuple(ks), v=tuple(vs)).advanced(t, advance)
        return self.final_norm(x), cache

    def lm_head(self, hidden: jax.Array) -> jax.Array:
        """hidden [B,T,H] -> float32 logits [B,T,V]."""
        if self.cfg.tie_word_embeddings:
            return self.embed.attend(hidden)
        if self.lm_head_proj is None:
            raise ValueError("this model's untied lm_head_proj was removed (a critic backbone?); "
                             "it cannot produce logits")
        kernel = self.lm_head_proj.kernel[...]
        in_dtype = matmul_dtype(self.lm_head_proj.dtype, kernel.dtype)
        return jnp.einsum("BTH,HV->BTV", hidden.astype(in_dtype), kernel.astype(in_dtype),
                          preferred_element_type=jnp.float32)

    def __call__(self, tokens: jax.Array, positions: jax.Array,
                 token_mask: jax.Array | None = None, cache: KVCache | None = None,
                 advance: jax.Array | None = None, window: int | None = None
                 ) -> tuple[jax.Array, KVCache | None]:
        """(logits float32[B,T,V], cache) = lm_head(backbone(...))."""
        hidden, cache = self.backbone(tokens, positions, token_mask, cache, advance, window)
        return self.lm_head(hidden), cache


def with_weight_dtype(model: nnx.Module, dtype) -> nnx.Module:
    """A copy of ``model`` whose weight matrices (every ``kernel`` and the ``embedding``) are
    stored in ``dtype``; norms, biases and the compute dtype are unchanged.

    For serving: bf16 weights under fp32 compute halve the bytes each decode step reads and run
    bf16 x bf16 matmuls with fp32 accumulation (``matmul_dtype``), as vLLM serves Search-R1's
    rollouts in bf16. ``None`` (or weights already in ``dtype``) returns ``model`` itself.
    """
    if dtype is None:
        return model
    dtype = jnp.dtype(dtype)
    graphdef, state = nnx.split(model)

    def is_weight(path) -> bool:
        names = [getattr(k, "key", None) for k in path]
        return "kernel" in names[-2:] or "embedding" in names[-2:]

    leaves = jax.tree_util.tree_leaves_with_path(state)
    if all(a.dtype == dtype for p, a in leaves if is_weight(p)):
        return model
    cast = jax.tree_util.tree_map_with_path(
        lambda p, a: a.astype(dtype) if is_weight(p) else a, state)
    return nnx.merge(graphdef, cast)
