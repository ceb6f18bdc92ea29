"""Named partition rules: parameter path (regex) -> PartitionSpec over the mesh axes.

A rule list is ordered; the first regex that matches ``"/".join(path)`` wins. Specs name mesh
axes (``fsdp`` shards a parameter's large dimension across data-parallel replicas, ``tensor``
splits heads / MLP columns). Model files document their parameter names and shapes; the rules
below follow them:

  embed/embedding               [V, H]
  layers/*/attn/q_proj/kernel   [H, N, D]   k_proj, v_proj [H, K, D]   o_proj [N, D, H]
  layers/*/attn/*_proj/bias     [N, D] / [K, D] (q/k/v), [H] (o_proj, replicated)
  layers/*/mlp/gate_proj/kernel [H, F]  up_proj [H, F]  down_proj [F, H]
  *norm/scale                   [H]
  lm_head_proj/kernel           [H, V]   (untied models only)
  value_head                    [H, 1]
(see searchr1_jax/models/transformer.py).
Stacked per-layer params (a leading ``L`` axis) get ``None`` for that axis automatically.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

Rules = Sequence[tuple[str, P]]

# FSDP x tensor rules for the decoder (Megatron-style column/row split over `tensor`).
DECODER_RULES: Rules = (
    (r"embed.*embedding", P("tensor", "fsdp")),
    (r"attn/(q_proj|k_proj|v_proj).*kernel", P("fsdp", "tensor", None)),
    (r"attn/(q_proj|k_proj|v_proj).*bias", P("tensor", None)),
    (r"attn/o_proj.*kernel", P("tensor", None, "fsdp")),
    (r"mlp/(gate_proj|up_proj).*kernel", P("fsdp", "tensor")),
    (r"mlp/down_proj.*kernel", P("tensor", "fsdp")),
    (r"lm_head.*kernel", P("fsdp", "tensor")),
    (r"value_head.*kernel", P("fsdp", None)),
    (r"norm.*scale", P(None)),
    (r".*", P()),  # anything else (scalars, small vectors): replicated
)

# Encoder (BERT/e5) rules: small model, shard only over fsdp.
ENCODER_RULES: Rules = ((r".*kernel", P("fsdp", None)), (r".*", P()))


def path_to_str(path: Sequence[Any]) -> str:
    parts = []
    for p in path:
        for attr in ("key", "name", "idx"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
        else:
            parts.append(str(p))
    return "/".join(parts)


def spec_for(name: str, shape: Sequence[int], rules: Rules, mesh: Mesh | None = None) -> P:
    """First matching rule's spec, fitted to ``shape``.

    Leading dims beyond the spec's length (stacked layers) are left unsharded, and an axis
    whose mesh size does not divide the dimension is dropped (replicated) rather than failing:
    e.g. 2 KV heads on a 4-way tensor axis.
    """
    for pattern, spec in rules:
        if re.search(pattern, name):
            break
    else:
        return P()
    spec = tuple(spec)
    if len(spec) > len(shape):
        spec = spec[len(spec) - len(shape):] if len(shape) else ()
    spec = (None,) * (len(shape) - len(spec)) + spec
    if mesh is not None:
        fitted = []
        for dim, axis in zip(shape, spec):
            names = (axis,) if isinstance(axis, str) else tuple(axis or ())
            size = 1
            for n in names:
                size *= mesh.shape[n]
            fitted.append(axis if axis is None or dim % size == 0 else None)
        spec = tuple(fitted)
    return P(*spec)


def tree_specs(tree: Any, rules: Rules, mesh: Mesh | None = None) -> Any:
    """PartitionSpecs for every leaf of ``tree`` (arrays or ShapeDtypeStructs)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: spec_for(path_to_str(path), getattr(x, "shape", ()), rules, mesh), tree)


def tree_shardings(tree: Any, mesh: Mesh, rules: Rules) -> Any:
    specs = tree_specs(tree, rules, mesh)
    return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s), specs,
                                  is_leaf=lambda x: isinstance(x, P))
