"""Mesh construction over the 8 fake CPU devices set up in tests/conftest.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from searchr1_jax import parallel


def test_fake_devices_present():
    assert jax.device_count() == 8, "tests/conftest.py should force 8 host devices"


@pytest.mark.parametrize("sizes,expected", [
    ((1, -1, 1), (1, 8, 1)),
    ((1, 4, 2), (1, 4, 2)),
    ((2, -1, 2), (2, 2, 2)),
    ((-1, 1, 1), (8, 1, 1)),
])
def test_resolve_axis_sizes(sizes, expected):
    assert parallel.resolve_axis_sizes(sizes, 8) == expected


@pytest.mark.parametrize("sizes,match", [
    ((1, 3, 1), "needs 3 devices"),
    ((-1, -1, 1), "at most one"),
    ((1, -1, 3), "cannot be split"),
    ((0, 1, 8), "positive"),
    ((1, 8), "needs 3 sizes"),
])
def test_resolve_axis_sizes_errors(sizes, match):
    with pytest.raises(ValueError, match=match):
        parallel.resolve_axis_sizes(sizes, 8)


def test_make_mesh_axes_and_batch_sharding():
    mesh = parallel.make_mesh(1, 4, 2)
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 2}
    x = jax.device_put(jnp.arange(16 * 3).reshape(16, 3), parallel.batch_sharding(mesh, 2))
    # batch split 4 ways (data x fsdp), replicated over tensor: each shard holds 4 rows.
    assert {s.data.shape for s in x.addressable_shards} == {(4, 3)}
    np.testing.assert_array_equal(np.asarray(x), np.arange(48).reshape(16, 3))


def test_mesh_from_config():
    import ml_collections
    mesh = parallel.mesh_from_config(ml_collections.ConfigDict(dict(data=2, fsdp=-1, tensor=1)))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}


def test_initialize_distributed_is_noop_on_single_host(monkeypatch):
    for v in ("JAX_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID",
              "OMPI_COMM_WORLD_SIZE", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(v, raising=False)
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: called.append(kw))
    parallel.initialize_distributed()
    assert called == []
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "2")
    parallel.initialize_distributed()
    assert called == [dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=2)]
