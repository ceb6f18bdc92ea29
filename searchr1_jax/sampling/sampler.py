"""Jitted sampler: bucketed prefill, then a ``lax.while_loop`` decode over a donated KV cache.

Cache convention (shared with ``rollout.CachedGenerator``): between calls the cache holds a
row's context *except its last token*, the "pending" token (``last_tokens``, at
``last_positions``). Decode step ``i`` feeds the pending token of every live row (writing it at
the row's own cache end), samples the next token from its logits, and that token becomes
pending. So after ``n`` sampled tokens the cache grew by exactly ``n`` slots (the old pending
token + the first ``n - 1`` samples) and the last sample is pending again. Rows that are
inactive or finished feed a masked token with ``advance = 0``: their cache is unchanged.

A row stops on an EOS id (reason 1), when a stop string has occurred in its sampled text
(reason 2, exact on token ids: ``stop.StopTable``), or at ``max_new_tokens`` (reason 0). The
stopping token is included in ``tokens``/``lengths``. The loop exits as soon as every row is
done.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from searchr1_jax.sampling.filters import sample_tokens
from searchr1_jax.sampling.stop import StopTable, step_stop_state

STOP_BUDGET, STOP_EOS, STOP_SEQUENCE = 0, 1, 2


@struct.dataclass
class SampleOutput:
    tokens: jax.Array          # int32[B, N]  sampled tokens, pad_id after each row's length
    logprobs: jax.Array        # float32[B, N] log-prob of each sampled token (0 after length)
    lengths: jax.Array         # int32[B]     sampled tokens per row (stopping token included)
    stop_reason: jax.Array     # int32[B]     STOP_BUDGET | STOP_EOS | STOP_SEQUENCE
    cache: object              # KVCache: context + all sampled tokens but the last
    last_tokens: jax.Array     # int32[B]     the pending token (last sample, or the input one)
    last_positions: jax.Array  # int32[B]     its position


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-aligns token rows for ``prefill`` -> (tokens int32[B,T], mask bool[B,T],
    positions int32[B,T]); positions are ``cumsum(mask) - 1`` (HF's), pads get 0 (never
    attended)."""
    width = max(len(p) for p in prompts)
    tokens = np.full((len(prompts), width), pad_id, np.int32)
    mask = np.zeros((len(prompts), width), bool)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
        mask[i, width - len(p):] = True
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    return tokens, mask, positions


def bucket_length(n: int, minimum: int = 16) -> int:
    """Smallest of ``minimum * {1, 1.5, 2, 3, 4, 6, ...}`` that is ``>= n``: two shapes per
    octave, so prefill recompiles rarely and pads at most a third (44-token chat prompts pad
    to 48, not 64: prefill is most of a short rollout's compute)."""
    size = minimum
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


def attention_window(max_len: int, needed: int) -> int | None:
    """Static attention window for a cached call whose rows reach at most slot ``needed``
    (cache end + chunk, or + tokens to sample): ``bucket_length(needed)``, or None (every
    slot) when that is not shorter than the cache. A rollout's cache is sized for its longest
    episode; attending to the empty tail was most of a turn's time (docs/benchmarks.md)."""
    window = bucket_length(max(int(needed), 1))
    return window if window < max_len else None


# ------------------------------------------------------------------------------------ prefill
def _prefill(graphdef, params, cache, tokens, positions, token_mask, window=None):
    """Writes every real token but each row's last one; returns (cache, pending tok, pos)."""
    model = nnx.merge(graphdef, params)
    width = tokens.shape[1]
    cols = jnp.arange(width, dtype=jnp.int32)[None, :]
    last = jnp.max(jnp.where(token_mask, cols, -1), axis=1)               # [B]
    rows = jnp.arange(tokens.shape[0])
    write_mask = token_mask & (cols != last[:, None])
    # slots [end, end + last) hold columns 0..last-1; the pending token's slot is reused later.
    _, cache = model.backbone(tokens, positions, write_mask, cache, advance=last,
                              window=window)
    return cache, tokens[rows, last], positions[rows, last]


_prefill_jit = jax.jit(_prefill, static_argnums=(0, 6), donate_argnums=2)


def prefill(model: nnx.Module, cache, tokens, positions, token_mask, *, min_bucket: int = 16):
    """Feeds a (left- or right-padded) chunk into ``cache``: ``(cache, last_tokens, last_pos)``.

    The chunk's width is padded on the right to a bucket (``bucket_length``). Every row
    needs at least one real token. ``cache`` is donated.
    """
    tokens, positions, token_mask = (np.asarray(a) for a in (tokens, positions, token_mask))
    if tokens.ndim != 2 or tokens.shape != positions.shape or tokens.shape != token_mask.shape:
        raise ValueError(f"prefill: tokens {tokens.shape}, positions {positions.shape} and "
                         f"token_mask {token_mask.shape} must be equal [B, T] shapes")
    empty = np.flatnonzero(~token_mask.astype(bool).any(axis=1))
    if empty.size:
        raise ValueError(f"prefill: row {int(empty[0])} has no real token (token_mask all False)")
    b, t = tokens.shape
    last_col = t - 1 - np.argmax(token_mask[:, ::-1].astype(bool), axis=1)
    over = np.flatnonzero(np.asarray(cache.end) + last_col + 1 > cache.max_len)
    if over.size:
        r = int(over[0])
        raise ValueError(f"prefill: row {r} needs {int(last_col[r]) + 1} slots after its cache "
                         f"end {int(np.asarray(cache.end)[r])}, but the cache has "
                         f"{cache.max_len} slots")
    width = bucket_length(t, min_bucket)
    pad = ((0, 0), (0, width - t))
    graphdef, params = nnx.split(model)
    window = attention_window(cache.max_len, int(np.max(np.asarray(cache.end))) + width)
    return _prefill_jit(graphdef, params, cache,
                        jnp.asarray(np.pad(tokens, pad), jnp.int32),
                        jnp.asarray(np.pad(positions, pad), jnp.int32),
                        jnp.asarray(np.pad(token_mask.astype(bool), pad)), window)


# ------------------------------------------------------------------------------------- decode
@struct.dataclass
class _LoopState:
    step: jax.Array
    cache: object
    pending: jax.Array       # int32[B]
    pending_pos: jax.Array   # int32[B]
    alive: jax.Array         # bool[B]
    stop_state: jax.Array    # int32[B, n_stop]
    tokens: jax.Array        # int32[B, N]
    logprobs: jax.Array      # float32[B, N]
    lengths: jax.Array       # int32[B]
    reason: jax.Array        # int32[B]
    key: jax.Array


def _decode(graphdef, params, cache, pending, pending_pos, key, temperature, top_p, eos_ids,
            stop_next, stop_match, active, *, max_new_tokens: int, greedy: bool, top_k: int,
            use_top_p: bool, pad_id: int, window: int | None = None) -> SampleOutput:
    model = nnx.merge(graphdef, params)
    b = pending.shape[0]

    def body(s: _LoopState) -> _LoopState:
        logits, cache = model(s.pending[:, None], s.pending_pos[:, None], s.alive[:, None],
                              s.cache, advance=s.alive.astype(jnp.int32), window=window)
        key, sub = jax.random.split(s.key)
        tok, logp = sample_tokens(logits[:, 0], sub, greedy=greedy, temperature=temperature,
                                  top_k=top_k, top_p=top_p if use_top_p else None)
        tok = jnp.where(s.alive, tok, pad_id)
        stop_state, seq_hit = step_stop_state(stop_next, stop_match, s.stop_state, tok)
        eos_hit = jnp.any(tok[:, None] == eos_ids[None, :], axis=-1)
        reason = jnp.where(eos_hit, STOP_EOS, jnp.where(seq_hit, STOP_SEQUENCE, STOP_BUDGET))
        return _LoopState(
            step=s.step + 1, cache=cache,
            pending=jnp.where(s.alive, tok, s.pending),
            pending_pos=s.pending_pos + s.alive.astype(jnp.int32),
            alive=s.alive & ~eos_hit & ~seq_hit,
            stop_state=jnp.where(s.alive[:, None], stop_state, s.stop_state),
            tokens=s.tokens.at[:, s.step].set(tok),
            logprobs=s.logprobs.at[:, s.step].set(jnp.where(s.alive, logp, 0.0)),
            lengths=s.lengths + s.alive.astype(jnp.int32),
            reason=jnp.where(s.alive, reason, s.reason),
            key=key)

    def cond(s: _LoopState) -> jax.Array:
        return (s.step < max_new_tokens) & jnp.any(s.alive)

    init = _LoopState(
        step=jnp.zeros((), jnp.int32), cache=cache, pending=pending.astype(jnp.int32),
        pending_pos=pending_pos.astype(jnp.int32), alive=active,
        stop_state=jnp.zeros((b, stop_match.shape[0]), jnp.int32),
        tokens=jnp.full((b, max_new_tokens), pad_id, jnp.int32),
        logprobs=jnp.zeros((b, max_new_tokens), jnp.float32),
        lengths=jnp.zeros((b,), jnp.int32), reason=jnp.zeros((b,), jnp.int32), key=key)
    s = jax.lax.while_loop(cond, body, init)
    return SampleOutput(tokens=s.tokens, logprobs=s.logprobs, lengths=s.lengths,
                        stop_reason=s.reason, cache=s.cache, last_tokens=s.pending,
                        last_positions=s.pending_pos)


_decode_jit = jax.jit(
    _decode, static_argnums=0, donate_argnums=2,
    static_argnames=("max_new_tokens", "greedy", "top_k", "use_top_p", "pad_id", "window"))


def generate(model: nnx.Module, cache, last_tokens, last_positions, key, *,
             max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
             eos_ids: Sequence[int] = (), stop_sequences: StopTable | Sequence[str] = (),
             tokenizer=None, active=None, pad_id: int = 0) -> SampleOutput:
    """Samples up to ``max_new_tokens`` per row from the pending tokens; ``cache`` is donated.

    ``stop_sequences``: a prebuilt ``StopTable`` (build it once: ``StopTable.build(tokenizer,
    strings)``) or strings plus ``tokenizer=``. Greedy when ``temperature == 0``. ``active``
    (bool[B], default all): rows with False sample nothing and keep their cache.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got "
                         f"temperature={temperature}, top_p={top_p}, top_k={top_k}")
    b = int(np.shape(last_tokens)[0])
    if not isinstance(stop_sequences, StopTable):
        if stop_sequences and tokenizer is None:
            raise ValueError("stop_sequences given as strings need tokenizer= (or pass a "
                             "prebuilt sampling.StopTable)")
        vocab = getattr(getattr(model, "cfg", None), "vocab_size", None)
        stop_sequences = (StopTable.build(tokenizer, stop_sequences, vocab) if stop_sequences
                          else StopTable.from_token_bytes((), [b""]))
    end = np.asarray(cache.end)
    over = np.flatnonzero(end + max_new_tokens > cache.max_len)
    if over.size:
        r = int(over[0])
        raise ValueError(f"row {r}: cache end {int(end[r])} + max_new_tokens {max_new_tokens} "
                         f"exceeds the cache's {cache.max_len} slots")
    active = jnp.ones((b,), bool) if active is None else jnp.asarray(active, bool)
    eos = jnp.asarray(list(eos_ids) or [-1], jnp.int32)
    graphdef, params = nnx.split(model)
    return _decode_jit(
        graphdef, params, cache, jnp.asarray(last_tokens, jnp.int32),
        jnp.asarray(last_positions, jnp.int32), key, jnp.float32(temperature or 1.0),
        jnp.float32(top_p), eos, jnp.asarray(stop_sequences.next_state),
        jnp.asarray(stop_sequences.match_state), active,
        max_new_tokens=int(max_new_tokens), greedy=temperature == 0, top_k=int(top_k),
        use_top_p=top_p < 1.0, pad_id=int(pad_id),
        window=attention_window(cache.max_len, int(end.max()) + max_new_tokens))
