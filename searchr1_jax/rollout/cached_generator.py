"""``CachedGenerator``: the device side of the rollout (model + live KV cache + sampler).

Cache layout: every row's context starts at slot 0 / position 0 (right-aligned rows need no
left padding); ``DeviceState.last_token`` is the row's last context token, *not yet* in the
cache (the sampler feeds it first: docs/architecture.md "Sampling"), so the cache holds
``context[:-1]`` between calls.

Appending an observation ``c`` after a turn that sampled ``n`` tokens of which the last ``d``
leave the context (``extend(.., drop)``) is one incremental prefill:
  * ``d == 0``: feed ``[last_token] + c[:-1]``;
  * ``d >= 1``: rewind ``end`` by ``d - 1`` slots (the sampler did not feed the last sampled
    token) and feed ``c[:-1]``;
then ``last_token = c[-1]``. Chunks are right-padded to a bucket (``bucket_length``) and written at
each row's own offset with ``advance = real length``, so pad slots are overwritten later.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax.rollout.generator import TurnOutput
from searchr1_jax.sampling.sampler import attention_window, bucket_length


@flax.struct.dataclass
class DeviceState:
    cache: Any                 # searchr1_jax.models.KVCache
    last_token: jax.Array      # int32[B]  last context token, not yet in the cache
    last_pos: jax.Array        # int32[B]  its position (= context length - 1)


@dataclasses.dataclass
class GeneratorState:
    device: DeviceState
    key: jax.Array
    context_len: np.ndarray    # int[B] host copy: tokens in the context (incl. last_token)
    turn_len: np.ndarray       # int[B] tokens sampled in the row's last turn


def bucket(n: int, minimum: int = 8) -> int:
    """Smallest power of two >= max(n, minimum) (bounds the number of compiled shapes)."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def _append(graphdef, params, state: DeviceState, tokens, positions, mask, advance, rewind,
            new_last, new_last_pos, window=None) -> DeviceState:
    """Rewinds each row's cache end by ``rewind[b]``, then writes the chunk at the row's end."""
    cache = state.cache
    end = cache.end - rewind
    slots = jnp.arange(cache.max_len, dtype=jnp.int32)[None, :]
    cache = cache.replace(end=end, valid=cache.valid & (slots < end[:, None]))
    model = nnx.merge(graphdef, params)
    _, cache = model.backbone(tokens, positions, mask, cache, advance, window=window)
    return DeviceState(cache=cache, last_token=new_last, last_pos=new_last_pos)


def _peek_logits(graphdef, params, state: DeviceState, window=None) -> jax.Array:
    """Next-token logits ``[B, V]`` of every row (feeds ``last_token``; the cache is unchanged)."""
    model = nnx.merge(graphdef, params)
    logits, _ = model(state.last_token[:, None], state.last_pos[:, None], None, state.cache,
                      window=window)
    return logits[:, 0]


_append_jit = jax.jit(_append, static_argnums=(0, 10), donate_argnums=2)
_peek_jit = jax.jit(_peek_logits, static_argnums=(0, 3))


class CachedGenerator:
    """``TurnGenerator`` over a Flax NNX ``Transformer`` and the jitted sampler."""

    def __init__(self, model: nnx.Module, *, cache_len: int | None, max_new_tokens: int,
                 eos_ids: Sequence[int], temperature: float = 1.0, top_p: float = 1.0,
                 top_k: int = 0, stop_sequences: Sequence[str] = ("</search>", "</answer>"),
                 cache_dtype: Any = None, episode: Any = None, tokenizer: Any = None,
                 pad_id: int = 0, stop_table: Any = None, weights_dtype: Any = None):
        """``cache_len=None`` sizes the cache per batch from ``episode`` (``EpisodeSettings``):
        ``bucket(min(max_prompt_length, longest prompt + max_turns * (R + max_obs_length))
        + R)`` with ``R = max_new_tokens``: the most any row can hold, far less than
        ``max_prompt_length + R`` for short prompts (a 4096-slot cache per row is most of the
        rollout's memory).

        ``weights_dtype`` (e.g. ``"bfloat16"``): sample from a copy of the model's weight
        matrices in that dtype (``models.with_weight_dtype``), made at each ``start`` so it
        follows the live weights. ``None``: the model as it is."""
        if cache_len is None and episode is None:
            raise ValueError("CachedGenerator: pass cache_len or episode (EpisodeSettings)")
        if stop_sequences and tokenizer is None and stop_table is None:
            raise ValueError("CachedGenerator: stop_sequences need tokenizer= (the sampler "
                             "matches them on token ids through a StopTable built once) or a "
                             "prebuilt stop_table=")
        self.tokenizer, self.pad_id, self._stop_table = tokenizer, int(pad_id), stop_table
        self.model, self.max_new_tokens = model, max_new_tokens
        self.cache_len, self.episode = (None if cache_len is None else int(cache_len)), episode
        self.eos_ids, self.stop_sequences = tuple(int(e) for e in eos_ids), list(stop_sequences)
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.cache_dtype, self.weights_dtype = cache_dtype, weights_dtype
        self._serving = None   # the model ``start`` samples from (see weights_dtype)

    # -- TurnGenerator -------------------------------------------------------------------
    def start(self, prompts: Sequence[Sequence[int]], seed: int) -> GeneratorState:
        from searchr1_jax.models import KVCache, with_weight_dtype
        self._serving = with_weight_dtype(self.model, self.weights_dtype)
        b = len(prompts)
        lengths = np.array([len(p) for p in prompts])
        cache_len = self.cache_len_for(int(lengths.max()))
        if lengths.min() < 1 or lengths.max() > cache_len:
            raise ValueError(f"prompt lengths {lengths.min()}..{lengths.max()} must be in "
                             f"[1, cache_len = {cache_len}]")
        cache = KVCache.init(self.model.cfg, b, cache_len, self.cache_dtype)
        empty = DeviceState(cache=cache, last_token=jnp.zeros((b,), jnp.int32),
                            last_pos=jnp.zeros((b,), jnp.int32))
        state = GeneratorState(device=empty, key=jax.random.key(seed),
                               context_len=np.zeros(b, np.int64), turn_len=np.zeros(b, np.int64))
        return self._feed(state, [list(p) for p in prompts], np.zeros(b, np.int64),
                          first=True)

    def generate(self, state: GeneratorState, active: np.ndarray
                 ) -> tuple[GeneratorState, TurnOutput]:
        from searchr1_jax import sampling
        key, sub = jax.random.split(state.key)
        d = state.device
        out = sampling.generate(
            self._serving, d.cache, d.last_token, d.last_pos, sub,
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k, eos_ids=list(self.eos_ids), stop_sequences=self.stop_table(),
            active=jnp.asarray(active, bool), pad_id=self.pad_id)
        # One device->host transfer per turn: the host needs the tokens to parse them.
        tokens, logprobs, lengths, reasons = jax.device_get(
            (out.tokens, out.logprobs, out.lengths, out.stop_reason))
        lengths = np.where(active, lengths, 0)
        context_len = state.context_len + lengths
        device = DeviceState(cache=out.cache, last_token=out.last_tokens,
                             last_pos=out.last_positions)
        new = GeneratorState(device=device, key=key, context_len=context_len, turn_len=lengths)
        turn = TurnOutput(tokens=[tokens[b, :n].tolist() for b, n in enumerate(lengths)],
                          logprobs=[logprobs[b, :n].tolist() for b, n in enumerate(lengths)],
                          stop_reason=np.asarray(reasons))
        return new, turn

    def extend(self, state: GeneratorState, chunks: Sequence[Sequence[int]], drop: np.ndarray
               ) -> GeneratorState:
        drop = np.asarray(drop, np.int64)
        if np.any(drop > state.turn_len):
            bad = int(np.flatnonzero(drop > state.turn_len)[0])
            raise ValueError(f"extend: row {bad} drops {drop[bad]} tokens but its last turn "
                             f"sampled {state.turn_len[bad]}")
        return self._feed(state, [list(c) for c in chunks], drop, first=False)

    # -- helpers -------------------------------------------------------------------------
    def stop_table(self):
        """The sampler's token-level automaton for the stop strings (built once)."""
        if self._stop_table is None:
            from searchr1_jax.sampling import StopTable
            self._stop_table = (
                StopTable.build(self.tokenizer, self.stop_sequences, self.model.cfg.vocab_size)
                if self.stop_sequences else StopTable.from_token_bytes((), [b""]))
        return self._stop_table

    def cache_len_for(self, longest_prompt: int) -> int:
        """Cache slots per row for a batch whose longest prompt has ``longest_prompt`` tokens."""
        if self.cache_len is not None:
            return self.cache_len
        e, r = self.episode, self.max_new_tokens
        context = min(e.max_prompt_length, longest_prompt + e.max_turns * (r + e.max_obs_length))
        return min(bucket(context + r, 64), e.max_prompt_length + r)

    def next_token_logits(self, state: GeneratorState) -> jax.Array:
        """``[B, V]`` logits the next sampled token would come from (tests, scoring)."""
        graphdef, params = nnx.split(self._serving)
        cache = state.device.cache
        window = attention_window(cache.max_len, int(np.max(np.asarray(cache.end))) + 1)
        return _peek_jit(graphdef, params, state.device, window)

    def _feed(self, state: GeneratorState, chunks: list[list[int]], drop: np.ndarray, *,
              first: bool) -> GeneratorState:
        b = len(chunks)
        old_last = np.asarray(state.device.last_token)
        feeds, starts, rewind = [], np.zeros(b, np.int64), np.zeros(b, np.int64)
        new_len, new_last = state.context_len.copy(), old_last.copy()
        for i, c in enumerate(chunks):
            if not c:
                feeds.append([])
                continue
            kept = state.context_len[i] - drop[i]    # context tokens that stay
            if first:
                feeds.append(c[:-1])
            elif drop[i] == 0:
                feeds.append([int(old_last[i])] + c[:-1])
                kept -= 1                            # last_token is fed again at its slot
            else:
                feeds.append(c[:-1])
                rewind[i] = drop[i] - 1
            starts[i] = kept
            new_len[i] = state.context_len[i] - drop[i] + len(c)
            new_last[i] = c[-1]
        cache_len = state.device.cache.max_len
        if int(new_len.max()) > cache_len:
            row = int(new_len.argmax())
            raise ValueError(f"row {row}: context of {new_len[row]} tokens exceeds cache_len "
                             f"= {cache_len}")
        width = bucket_length(max(len(f) for f in feeds), 8)
        tokens = np.zeros((b, width), np.int32)
        mask = np.zeros((b, width), bool)
        for i, f in enumerate(feeds):
            tokens[i, :len(f)] = f
            mask[i, :len(f)] = True
        positions = starts[:, None] + np.arange(width)[None, :]
        advance = mask.sum(1)
        graphdef, params = nnx.split(self._serving)
        device = _append_jit(graphdef, params, state.device, jnp.asarray(tokens),
                             jnp.asarray(positions, jnp.int32), jnp.asarray(mask),
                             jnp.asarray(advance, jnp.int32), jnp.asarray(rewind, jnp.int32),
                             jnp.asarray(new_last, jnp.int32), jnp.asarray(new_len - 1, jnp.int32),
                             attention_window(cache_len, int(np.max(np.asarray(
                                 state.device.cache.end))) + width))
        return GeneratorState(device=device, key=state.key, context_len=new_len,
                              turn_len=np.zeros(b, np.int64))
