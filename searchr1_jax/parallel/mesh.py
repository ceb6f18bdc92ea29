"""Device mesh construction and multi-host initialisation.

The mesh has three named axes:
  * ``data``   - pure data parallelism (params replicated),
  * ``fsdp``   - data parallelism with parameters and optimizer state sharded (ZeRO-3 style),
  * ``tensor`` - tensor (model) parallelism inside a layer (heads / MLP columns).

Sizes come from the config; ``-1`` on one axis means "all remaining devices". Nothing here
hard-codes a device count, so the same config runs on a laptop CPU, a GPU node or a TPU pod.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES: tuple[str, ...] = ("data", "fsdp", "tensor")
BATCH_AXES: tuple[str, ...] = ("data", "fsdp")  # the batch dimension is split over both


def resolve_axis_sizes(sizes: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replaces a single ``-1`` by the remaining factor; checks the product equals the devices."""
    sizes = [int(s) for s in sizes]
    if len(sizes) != len(AXES):
        raise ValueError(f"mesh needs {len(AXES)} sizes for axes {AXES}, got {sizes}")
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {dict(zip(AXES, sizes))}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh axis sizes must be positive or -1, got {dict(zip(AXES, sizes))}")
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        if num_devices % known:
            raise ValueError(
                f"{num_devices} devices cannot be split into mesh {dict(zip(AXES, sizes))}")
        sizes[sizes.index(-1)] = num_devices // known
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices, "
            f"but {num_devices} are available")
    return tuple(sizes)


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a ``Mesh`` over ``devices`` (default: all global devices).

    Uses ``jax.experimental.mesh_utils`` so the physical layout follows the interconnect
    (ICI rings on TPU, NVLink islands on GPU) where it can, and a plain reshape otherwise.
    """
    devices = list(devices) if devices is not None else jax.devices()
    shape = resolve_axis_sizes((data, fsdp, tensor), len(devices))
    try:
        from jax.experimental import mesh_utils
        arr = mesh_utils.create_device_mesh(shape, devices=devices)
    except Exception:  # CPU / odd topologies: a plain reshape is fine there.
        arr = np.asarray(devices).reshape(shape)
    return Mesh(arr, AXES)


def mesh_from_config(mesh_cfg) -> Mesh:
    """``mesh_cfg`` has fields ``data``, ``fsdp``, ``tensor`` (one of them may be -1)."""
    return make_mesh(int(mesh_cfg.data), int(mesh_cfg.fsdp), int(mesh_cfg.tensor))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Sharding for a ``[batch, ...]`` array: batch over (data, fsdp), the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Multi-host wiring: calls ``jax.distributed.initialize`` once, before any device use.

    On Cloud TPU and SLURM/Open MPI GPU clusters every argument is auto-detected, so a plain
    call is right. Explicit arguments (or the ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
    ``JAX_PROCESS_ID`` environment variables) cover other launchers. A single process with no
    cluster environment is left alone so the same entry point runs on a laptop.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAX_PROCESS_ID"])
    cluster_env = any(v in os.environ for v in (
        "TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "MEGASCALE_COORDINATOR_ADDRESS"))
    if coordinator_address is None and not cluster_env:
        return  # single host
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
