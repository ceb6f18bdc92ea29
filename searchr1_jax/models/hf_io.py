"""Hugging Face safetensors <-> our decoder: import (optionally sharded) and export.

HF stores ``nn.Linear`` weights as ``[out, in]``; our kernels are ``[in, ...out]`` with the head
axis split out (``q_proj [H, N, D]``, ``o_proj [N, D, H]``). So ``kernel = W.T.reshape(shape)``
and back ``W = kernel.reshape(in, out).T``; biases, norms and the embedding only reshape.

Import never builds the fp32 model on one host: the module is created abstractly
(``nnx.eval_shape``), then each parameter is read from the memory-mapped file, cast and
placed straight into its ``NamedSharding`` (from the partition rules) one at a time
(``jax.make_array_from_callback``: each host builds only its own shards).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from searchr1_jax.models.config import ModelConfig
from searchr1_jax.models.safetensors_io import (CheckpointError, ShardedCheckpoint,
                                                save_sharded_safetensors, shard_plan)
from searchr1_jax.models.transformer import Transformer
from searchr1_jax.parallel.rules import DECODER_RULES, Rules, path_to_str, spec_for

# HF tensors that carry no parameters of ours (buffers some old checkpoints still save).
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclasses.dataclass(frozen=True)
class TensorMap:
    """One HF tensor <-> one of our params. ``linear``: HF ``[out, in]`` <-> kernel ``[in, ..]``."""
    hf_name: str
    path: str                      # our param path, e.g. "layers/0/attn/q_proj/kernel"
    hf_shape: tuple[int, ...]
    shape: tuple[int, ...]
    linear: bool

    def to_ours(self, w: np.ndarray) -> np.ndarray:
        return (w.T if self.linear else w).reshape(self.shape)

    def to_hf(self, p: np.ndarray) -> np.ndarray:
        if self.linear:
            return p.reshape(self.hf_shape[1], self.hf_shape[0]).T
        return p.reshape(self.hf_shape)


def tensor_maps(cfg: ModelConfig) -> list[TensorMap]:
    """Every parameter of ``Transformer(cfg)`` with its HF name and both shapes."""
    h, n, k, d, f, v = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                        cfg.intermediate_size, cfg.vocab_size)
    maps = [TensorMap("model.embed_tokens.weight", "embed/embedding", (v, h), (v, h), False)]
    for i in range(cfg.num_layers):
        hf, us = f"model.layers.{i}.", f"layers/{i}/"

        def lin(hf_mod, our_mod, out, in_, shape, hf=hf, us=us):
            maps.append(TensorMap(f"{hf}{hf_mod}.weight", f"{us}{our_mod}/kernel",
                                  (out, in_), shape, True))

        def vec(hf_name, our_path, hf_shape, shape, hf=hf, us=us):
            maps.append(TensorMap(f"{hf}{hf_name}", f"{us}{our_path}", hf_shape, shape, False))

        vec("input_layernorm.weight", "input_norm/scale", (h,), (h,))
        lin("self_attn.q_proj", "attn/q_proj", n * d, h, (h, n, d))
        lin("self_attn.k_proj", "attn/k_proj", k * d, h, (h, k, d))
        lin("self_attn.v_proj", "attn/v_proj", k * d, h, (h, k, d))
        if cfg.attention_bias:
            vec("self_attn.q_proj.bias", "attn/q_proj/bias", (n * d,), (n, d))
            vec("self_attn.k_proj.bias", "attn/k_proj/bias", (k * d,), (k, d))
            vec("self_attn.v_proj.bias", "attn/v_proj/bias", (k * d,), (k, d))
        lin("self_attn.o_proj", "attn/o_proj", h, n * d, (n, d, h))
        if cfg.o_proj_bias:
            vec("self_attn.o_proj.bias", "attn/o_proj/bias", (h,), (h,))
        vec("post_attention_layernorm.weight", "post_attn_norm/scale", (h,), (h,))
        lin("mlp.gate_proj", "mlp/gate_proj", f, h, (h, f))
        lin("mlp.up_proj", "mlp/up_proj", f, h, (h, f))
        lin("mlp.down_proj", "mlp/down_proj", h, f, (f, h))
    maps.append(TensorMap("model.norm.weight", "final_norm/scale", (h,), (h,), False))
    if not cfg.tie_word_embeddings:
        maps.append(TensorMap("lm_head.weight", "lm_head_proj/kernel", (v, h), (h, v), True))
    return maps


def _param_path(path) -> str:
    """Our param path string from a State tree path (drops the trailing ``value`` key)."""
    s = path_to_str(path)
    return s[: -len("/value")] if s.endswith("/value") else s


def model_from_state_dict(cfg: ModelConfig, get_tensor: Callable[[str], np.ndarray],
                          names: Iterable[str], *, mesh: jax.sharding.Mesh | None = None,
                          rules: Rules | None = None, source: str = "checkpoint",
                          progress: bool = True) -> Transformer:
    """Builds ``Transformer(cfg)`` from HF-named tensors, one tensor at a time.

    ``get_tensor(hf_name) -> np.ndarray`` (any float dtype); ``names``: the tensors available,
    checked up front so a missing one fails before anything is loaded. With ``mesh`` each
    param goes straight to ``NamedSharding(mesh, spec_for(path, rules))``.
    """
    names = set(names)
    maps = {m.path: m for m in tensor_maps(cfg)}
    missing = [m.hf_name for m in maps.values() if m.hf_name not in names]
    if missing:
        raise CheckpointError(f"{source} is missing {len(missing)} tensor(s) the config needs, "
                              f"e.g. {missing[:5]} (config: {cfg.family}, {cfg.num_layers} layers, "
                              f"tie_word_embeddings={cfg.tie_word_embeddings})")
    known = {m.hf_name for m in maps.values()} | ({"lm_head.weight"} if cfg.tie_word_embeddings
                                                  else set())
    unexpected = sorted(n for n in names - known if not n.endswith(_IGNORED_SUFFIXES))
    if unexpected:
        raise CheckpointError(f"{source} has {len(unexpected)} tensor(s) the config does not use, "
                              f"e.g. {unexpected[:5]}: does config.json match the weights?")
    rules = DECODER_RULES if rules is None else rules
    param_dtype = jnp.dtype(cfg.param_dtype)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
    bar = tqdm(total=len(maps), desc=f"loading {source}", disable=not progress, leave=False)

    def load(path, leaf: jax.ShapeDtypeStruct) -> jax.Array:
        name = _param_path(path)
        m = maps.get(name)
        if m is None:
            raise CheckpointError(f"internal: param {name!r} has no HF tensor mapping")
        w = np.asarray(get_tensor(m.hf_name))
        if tuple(w.shape) != m.hf_shape:
            raise CheckpointError(f"{source}: tensor {m.hf_name!r} has shape {list(w.shape)}, "
                                  f"but the config expects {list(m.hf_shape)}")
        value = m.to_ours(w).astype(param_dtype)
        bar.update(1)
        if mesh is None:
            return jnp.asarray(value)
        sharding = jax.sharding.NamedSharding(mesh, spec_for(name, value.shape, rules, mesh))
        # Each process builds only its addressable shards (multi-host safe, no global copy).
        return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])

    state = jax.tree_util.tree_map_with_path(load, abstract)
    bar.close()
    return nnx.merge(graphdef, state)


def read_hf_config(model_dir: str) -> dict[str, Any]:
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"config.json not found in {model_dir}")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"corrupt {path}: {e}")


def load_hf_checkpoint(model_dir: str, *, dtype: str | None = None,
                       param_dtype: str | None = None, mesh: jax.sharding.Mesh | None = None,
                       rules: Rules | None = None, **overrides) -> tuple[Transformer, ModelConfig]:
    """Loads a local HF directory (config.json + model.safetensors or sharded index)."""
    if not os.path.isdir(model_dir):
        raise CheckpointError(f"model directory not found: {model_dir}")
    if dtype is not None:
        overrides["dtype"] = dtype
    if param_dtype is not None:
        overrides["param_dtype"] = param_dtype
    cfg = ModelConfig.from_hf_config(read_hf_config(model_dir), **overrides)
    ckpt = ShardedCheckpoint(model_dir)
    model = model_from_state_dict(cfg, ckpt.get, ckpt.names(), mesh=mesh, rules=rules,
                                  source=model_dir)
    return model, cfg


def _host_array(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly sharded, possibly multi-host) array on this host."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)


def _param_leaves(model: Transformer) -> dict[str, jax.Array]:
    return {_param_path(path): leaf for path, leaf in
            jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))}


def _hf_entries(model: Transformer, cfg: ModelConfig, dtype: str | None):
    """``(hf_name, hf_shape, dtype, fetch)`` per parameter; ``fetch`` gathers one tensor."""
    out_dtype = np.dtype(jnp.dtype(dtype or cfg.param_dtype))
    params = _param_leaves(model)
    entries = []
    for m in tensor_maps(cfg):
        if m.path not in params:
            raise CheckpointError(f"model has no parameter {m.path!r} (HF {m.hf_name!r}); "
                                  f"does cfg match the model?")
        if tuple(params[m.path].shape) != m.shape:
            raise CheckpointError(f"param {m.path!r} has shape {list(params[m.path].shape)}, "
                                  f"cfg expects {list(m.shape)}")

        def fetch(m=m, x=params[m.path]) -> np.ndarray:
            return np.ascontiguousarray(m.to_hf(_host_array(x)).astype(out_dtype))

        entries.append((m.hf_name, m.hf_shape, out_dtype, fetch))
    return entries


def state_dict_from_model(model: Transformer, cfg: ModelConfig,
                          dtype: str | None = None) -> list[tuple[str, np.ndarray]]:
    """``(hf_name, array)`` for every parameter (in ``dtype``, default ``cfg.param_dtype``)."""
    return [(name, fetch()) for name, _, _, fetch in _hf_entries(model, cfg, dtype)]


def export_hf(model: Transformer, cfg: ModelConfig, out_dir: str, tokenizer=None,
              dtype: str | None = None, max_shard_size: int | str = "5GB",
              generation_config: dict[str, Any] | None = None) -> str:
    """Writes ``config.json``, safetensors shards of at most ``max_shard_size`` (one file,
    or several with ``model.safetensors.index.json``: ``safetensors_io.shard_plan``), the
    tokenizer files and ``generation_config.json`` (when given) that
    ``transformers.AutoModelForCausalLM.from_pretrained(out_dir)`` loads. Returns ``out_dir``.

    Tensors are gathered and written one at a time (host memory: one tensor). On several hosts
    every process must call this (sharded tensors are all-gathered); process 0 writes.
    """
    entries = _hf_entries(model, cfg, dtype)
    if jax.process_index() != 0:
        plan, _ = shard_plan(entries, max_shard_size)
        for _, shard in plan:  # take part in the all-gathers, in process 0's order
            for *_, fetch in shard:
                fetch()
        return out_dir
    os.makedirs(out_dir, exist_ok=True)
    hf_cfg = cfg.to_hf_config()
    hf_cfg["torch_dtype"] = hf_cfg["dtype"] = str(jnp.dtype(dtype or cfg.param_dtype))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
    save_sharded_safetensors(out_dir, entries, max_shard_size, progress=True)
    if generation_config is not None:
        with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
            json.dump(generation_config, f, indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return out_dir


__all__: Sequence[str] = ("CheckpointError", "TensorMap", "tensor_maps", "model_from_state_dict",
                          "load_hf_checkpoint", "read_hf_config", "state_dict_from_model",
                          "export_hf")
