"""Shared test setup: 8 fake CPU devices (sharding tests) and the embedded real data."""
import os

# Must be set before jax initialises its backends: sharding tests build 4 x 2 meshes on CPU.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from searchr1_jax import ASSETS_DIR  # noqa: E402


@pytest.fixture(scope="session")
def assets_dir() -> str:
    return ASSETS_DIR


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A 2-step GRPO run of a tiny random HF model (tests/train/_tiny_run.py), shared by the
    export and ask tests: they only read it."""
    from tests.train._tiny_run import train_tiny_run
    return train_tiny_run(str(tmp_path_factory.mktemp("tiny_run")), steps=2)
