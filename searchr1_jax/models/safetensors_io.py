"""Memory-mapped safetensors reading and writing with numpy (bf16 included, via ml_dtypes).

The format: ``u64 little-endian header length | JSON header | raw bytes``; the header maps each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
byte after the header). ``safetensors.safe_open(..., "np")`` cannot return bfloat16 (numpy has
no such dtype), so tensors are read here as zero-copy views of an ``np.memmap``.
"""
from __future__ import annotations

import json
import os
import re
import struct
from typing import Any, Callable, Iterable, Mapping, Sequence

import ml_dtypes
import numpy as np
from tqdm.auto import tqdm

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A weight file is missing or corrupt, or its tensors do not fit the model config."""


class SafetensorsFile:
    """One ``.safetensors`` file: ``names()``, ``shape(name)``, ``get(name) -> np.ndarray`` view."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isfile(path):
            raise CheckpointError(f"weight file not found: {path}")
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(f"corrupt safetensors file {path}: shorter than 8 bytes")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(size - 8, _MAX_HEADER):
                raise CheckpointError(f"corrupt safetensors file {path}: header length "
                                      f"{header_len} exceeds the file size {size}")
            try:
                header = json.loads(f.read(header_len))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CheckpointError(f"corrupt safetensors file {path}: bad JSON header ({e})")
        header.pop("__metadata__", None)
        self._entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
        data_start, data_len = 8 + header_len, size - 8 - header_len
        for name, e in header.items():
            try:
                dtype = np.dtype(_DTYPES[e["dtype"]])
                shape = tuple(int(s) for s in e["shape"])
                begin, end = (int(o) for o in e["data_offsets"])
            except (KeyError, TypeError, ValueError) as err:
                raise CheckpointError(f"corrupt safetensors file {path}: tensor {name!r} has a "
                                      f"bad header entry {e!r} ({err!r})")
            if end > data_len or end - begin != dtype.itemsize * int(np.prod(shape)):
                raise CheckpointError(
                    f"corrupt safetensors file {path}: tensor {name!r} ({e['dtype']}{list(shape)}) "
                    f"has byte range [{begin}, {end}) but the data section holds {data_len} bytes")
            self._entries[name] = (dtype, shape, data_start + begin, data_start + end)
        self._mmap = np.memmap(path, dtype=np.uint8, mode="r") if size > data_start else None

    def names(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def get(self, name: str) -> np.ndarray:
        """A read-only view of tensor ``name`` (no copy until the caller casts it)."""
        if name not in self._entries:
            raise CheckpointError(f"tensor {name!r} not found in {self.path}")
        dtype, shape, begin, end = self._entries[name]
        if begin == end:
            return np.zeros(shape, dtype)
        return self._mmap[begin:end].view(dtype).reshape(shape)


class ShardedCheckpoint:
    """All ``*.safetensors`` of a HF model directory (single file or ``.index.json`` shards)."""

    def __init__(self, model_dir: str):
        index = os.path.join(model_dir, "model.safetensors.index.json")
        single = os.path.join(model_dir, "model.safetensors")
        if os.path.isfile(index):
            try:
                with open(index) as f:
                    weight_map: Mapping[str, str] = json.load(f)["weight_map"]
            except (json.JSONDecodeError, KeyError) as e:
                raise CheckpointError(f"corrupt shard index {index}: {e!r}")
            files = {fn: SafetensorsFile(os.path.join(model_dir, fn))
                     for fn in sorted(set(weight_map.values()))}
            self._where = {}
            for name, fn in weight_map.items():
                if name not in files[fn]._entries:
                    raise CheckpointError(f"{index} maps tensor {name!r} to {fn}, "
                                          f"which does not contain it")
                self._where[name] = files[fn]
        elif os.path.isfile(single):
            f = SafetensorsFile(single)
            self._where = {name: f for name in f.names()}
        else:
            raise CheckpointError(f"no model.safetensors or model.safetensors.index.json "
                                  f"in {model_dir}")

    def names(self) -> list[str]:
        return list(self._where)

    def get(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise CheckpointError(f"tensor {name!r} not found in the checkpoint")
        return self._where[name].get(name)


def save_safetensors(path: str, tensors: Iterable[tuple[str, np.ndarray]],
                     metadata: Mapping[str, str] | None = None) -> None:
    """Writes ``(name, array)`` pairs to ``path``."""
    tensors = [(n, np.asarray(a)) for n, a in tensors]
    save_safetensors_lazy(path, [(n, a.shape, a.dtype, lambda a=a: a) for n, a in tensors],
                          metadata)


def save_safetensors_lazy(path: str, entries: Sequence[tuple[str, Sequence[int], Any,
                                                              Callable[[], np.ndarray]]],
                          metadata: Mapping[str, str] | None = None,
                          progress: bool = False) -> None:
    """Writes ``(name, shape, dtype, fetch)`` entries, calling ``fetch()`` one tensor at a time.

    The header needs only shapes and dtypes, so peak host memory is one tensor, not the model.
    """
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, shape, dtype, _ in entries:
        dtype = np.dtype(dtype)
        if dtype not in _NAMES:
            raise CheckpointError(f"cannot write tensor {name!r} of dtype {dtype} to {path}")
        nbytes = dtype.itemsize * int(np.prod(shape))
        header[name] = {"dtype": _NAMES[dtype], "shape": [int(d) for d in shape],
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype, fetch in tqdm(entries, desc=f"writing {path}", leave=False,
                                              disable=not progress):
            arr = np.ascontiguousarray(fetch())
            if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise CheckpointError(f"tensor {name!r} for {path}: expected {np.dtype(dtype)}"
                                      f"{list(shape)}, got {arr.dtype}{list(arr.shape)}")
            f.write(arr.tobytes())



SHARD_INDEX = "model.safetensors.index.json"
# Names of an earlier export that a new one replaces (a smaller export leaves no stale shard).
_STALE_RE = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$")
Entry = tuple[str, Sequence[int], Any, Callable[[], np.ndarray]]  # name, shape, dtype, fetch


def shard_plan(entries: Sequence[Entry], max_shard_size: int | str = "5GB"
               ) -> tuple[list[tuple[str, list[Entry]]], dict[str, Any] | None]:
    """``([(filename, entries)], index or None)``: Hugging Face's split of ``entries``.

    The split is ``huggingface_hub``'s (``split_state_dict_into_shards_factory``: tensors in
    order, a new shard when the next would pass ``max_shard_size``, e.g. ``"5GB"``; a tensor
    larger than the limit gets a shard of its own), so names and index match what
    ``transformers.save_pretrained`` writes: ``model.safetensors`` for one shard, else
    ``model-0000i-of-0000n.safetensors`` plus the index
    ``{"metadata": {"total_size"}, "weight_map": {tensor: file}}``. Deterministic, so every
    host of a multi-host export walks the tensors in the same order.
    """
    from huggingface_hub import split_state_dict_into_shards_factory

    by_name = {e[0]: e for e in entries}
    if len(by_name) != len(entries):
        raise CheckpointError("shard_plan: duplicate tensor names")
    if isinstance(max_shard_size, str) and max_shard_size.strip().isdigit():
        max_shard_size = int(max_shard_size)  # bytes
    split = split_state_dict_into_shards_factory(
        by_name, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size,
        get_storage_size=lambda e: np.dtype(e[2]).itemsize * int(np.prod(e[1])))
    plan = [(fn, [by_name[n] for n in names]) for fn, names in split.filename_to_tensors.items()]
    index = ({"metadata": dict(split.metadata), "weight_map": dict(split.tensor_to_filename)}
             if split.is_sharded else None)
    return plan, index


def save_sharded_safetensors(out_dir: str, entries: Sequence[Entry],
                             max_shard_size: int | str = "5GB",
                             metadata: Mapping[str, str] | None = None,
                             progress: bool = False) -> list[str]:
    """Writes ``entries`` as the shards of ``shard_plan`` (+ ``model.safetensors.index.json``
    when there are several); returns the files written. Files of an earlier export in
    ``out_dir`` are removed first. Host memory stays at one tensor."""
    plan, index = shard_plan(entries, max_shard_size)
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        if _STALE_RE.match(name):
            os.remove(os.path.join(out_dir, name))
    files = []
    for filename, shard in plan:
        path = os.path.join(out_dir, filename)
        save_safetensors_lazy(path, shard, metadata, progress=progress)
        files.append(path)
    if index is not None:
        with open(os.path.join(out_dir, SHARD_INDEX), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, sort_keys=True)
        files.append(os.path.join(out_dir, SHARD_INDEX))
    return files
