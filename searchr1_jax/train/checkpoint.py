"""Resumable training checkpoints on orbax, and a preemption flag for the train loop.

One checkpoint (directory ``<dir>/<step>/``) holds four items:
  * ``state``: the device pytree (``Trainer.state_tree()``: ``TrainState`` dataclasses with
    nnx ``State`` params, optax optimizer state, step counters), sharded arrays written by
    every host (orbax/tensorstore, OCDBT);
  * ``rngs``: PRNG keys as raw key data (``jax.random.key_data``; typed keys cannot be
    serialised) with their implementation names in ``host``;
  * ``host``: JSON with the RL step, the data iterator position and anything else host-side;
  * ``metadata``: free-form JSON (config, versions, wall time) for humans and tools.

Saves are asynchronous (the train loop goes on while tensorstore writes; ``wait()`` blocks),
only the last ``keep`` checkpoints are kept, and ``restore`` places arrays straight onto the
target shardings (``jax.ShapeDtypeStruct`` with ``.sharding``, or concrete arrays whose
sharding is reused), so a run resumes at the exact step on any mesh with the same devices.

``PreemptionFlag`` turns SIGTERM/SIGINT into a flag that the loop polls at a safe point (after
an update): save, wait, exit. The handler itself only sets the flag.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from typing import Any, Mapping

import jax
import numpy as np

log = logging.getLogger(__name__)

_ITEMS = ("state", "rngs", "host", "metadata")


def _ocp():
    import orbax.checkpoint as ocp  # heavy; only when a manager is built
    return ocp


@dataclasses.dataclass(frozen=True)
class Restored:
    """What ``CheckpointManager.restore`` returns."""
    step: int
    state: Any                      # the device pytree, on the target shardings
    host: dict[str, Any]            # JSON host state (data position, RL step, ...)
    rngs: dict[str, jax.Array]      # PRNG keys, re-wrapped to their saved implementation
    metadata: dict[str, Any]


def keys_to_data(rngs: Mapping[str, jax.Array]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Typed or raw (uint32) keys -> (raw key data, implementation names; '' for raw keys)."""
    data, impls = {}, {}
    for name, key in rngs.items():
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            data[name] = np.asarray(jax.random.key_data(key))
            impls[name] = str(jax.random.key_impl(key))
        elif np.issubdtype(np.dtype(key.dtype), np.unsignedinteger):
            data[name] = np.asarray(key)
            impls[name] = ""
        else:
            raise TypeError(f"rngs[{name!r}]: expected a PRNG key, got dtype {key.dtype}")
    return data, impls


def data_to_keys(data: Mapping[str, Any], impls: Mapping[str, str]) -> dict[str, jax.Array]:
    """Inverse of ``keys_to_data``: typed keys where an implementation was recorded."""
    out = {}
    for name, raw in data.items():
        impl = impls.get(name, "")
        raw = jax.numpy.asarray(raw, dtype=jax.numpy.uint32)
        out[name] = jax.random.wrap_key_data(raw, impl=impl) if impl else raw
    return out


def abstract_like(tree: Any) -> Any:
    """``jax.ShapeDtypeStruct`` (keeping ``.sharding``) for every array leaf of ``tree``."""
    def one(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)
    return jax.tree.map(one, tree)


class CheckpointManager:
    """Keep-last-N, asynchronous orbax checkpoints of a training run (see module doc)."""

    def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True,
                 save_interval_steps: int = 1):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints = {keep}: must be >= 1")
        ocp = _ocp()
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save,
            save_interval_steps=save_interval_steps, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=_ITEMS)

    # ---------------------------------------------------------------- saving
    def save(self, step: int, state: Any, *, host: Mapping[str, Any] | None = None,
             rngs: Mapping[str, jax.Array] | None = None,
             metadata: Mapping[str, Any] | None = None, force: bool = False) -> bool:
        """Starts saving ``step`` (returns at once when async); False if skipped by interval.

        ``host`` and ``metadata`` must be JSON-serialisable (checked here, before any write).
        A step that is already saved is not written again (a preemption save right after the
        periodic save of the same step is a no-op) and returns False.
        """
        ocp = _ocp()
        if int(step) in self._manager.all_steps():
            log.info("checkpoint step %d already saved in %s", step, self.directory)
            return False
        rng_data, impls = keys_to_data(rngs or {})
        host_json = {"step": int(step), **dict(host or {}), "_rng_impls": impls}
        meta_json = {"saved_at_unix": time.time(), "jax_version": jax.__version__,
                     **dict(metadata or {})}
        for name, obj in (("host", host_json), ("metadata", meta_json)):
            try:
                json.dumps(obj)
            except TypeError as e:
                raise TypeError(f"checkpoint {name} for step {step} is not JSON: {e}") from e
        items = dict(state=ocp.args.StandardSave(state), host=ocp.args.JsonSave(host_json),
                     metadata=ocp.args.JsonSave(meta_json))
        if rng_data:  # orbax rejects empty trees
            items["rngs"] = ocp.args.StandardSave(rng_data)
        saved = self._manager.save(int(step), args=ocp.args.Composite(**items), force=force)
        if saved:
            log.info("checkpoint step %d: save started in %s", step, self.directory)
        return bool(saved)

    def wait(self) -> None:
        """Blocks until every pending asynchronous save is committed."""
        self._manager.wait_until_finished()

    # ---------------------------------------------------------------- restoring
    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def restore(self, target: Any, step: int | None = None) -> Restored:
        """Restores ``step`` (default: the latest) into the structure/shardings of ``target``.

        ``target`` is the live state pytree (e.g. a freshly initialised ``state_tree()``) or
        its ``abstract_like`` version; arrays land on each leaf's ``.sharding``.
        """
        ocp = _ocp()
        step = self.latest_step() if step is None else int(step)
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step not in self.all_steps():
            raise FileNotFoundError(
                f"checkpoint step {step} not in {self.directory} (have {self.all_steps()})")
        host = self._manager.restore(step, args=ocp.args.Composite(
            host=ocp.args.JsonRestore())).host
        impls = host.pop("_rng_impls", {})
        items = dict(state=ocp.args.StandardRestore(abstract_like(target)),
                     metadata=ocp.args.JsonRestore())
        if impls:  # keys were saved (one implementation name per key)
            items["rngs"] = ocp.args.StandardRestore()
        out = self._manager.restore(step, args=ocp.args.Composite(**items))
        rngs = data_to_keys(out.rngs, impls) if impls else {}
        return Restored(step=step, state=out.state, host=host, rngs=rngs,
                        metadata=dict(out.metadata or {}))

    def restore_subtree(self, target: Any, step: int | None = None) -> Any:
        """Restores only the leaves of ``target`` (a nested dict naming a part of the saved
        state, e.g. ``{"actor": {"params": abstract_params}}``) from ``step`` (default: the
        latest); the rest of the checkpoint (optimizer state, critic, reference) is not read.
        Returns the restored subtree, arrays on the target leaves' shardings."""
        ocp = _ocp()
        step = self.latest_step() if step is None else int(step)
        if step is None or step not in self.all_steps():
            raise FileNotFoundError(f"checkpoint step {step} not in {self.directory} "
                                    f"(have {self.all_steps()})")
        abstract = abstract_like(target)
        args = ocp.args.PyTreeRestore(item=abstract, partial_restore=True,
                                      restore_args=ocp.checkpoint_utils.construct_restore_args(
                                          abstract))
        # The "state" item is a standard PyTree checkpoint: read it with a PyTree handler,
        # which (unlike the manager's standard handler) can restore a part of the tree.
        with ocp.PyTreeCheckpointer() as reader:
            return reader.restore(os.path.join(self.directory, str(step), "state"), args=args)

    def close(self) -> None:
        """Waits for pending saves and releases orbax's threads."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "CheckpointManager":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PreemptionFlag:
    """SIGTERM/SIGINT -> ``requested`` flag; the loop saves at its next safe point and exits.

    The handler only records the signal (no I/O, no locks: a handler may run between any two
    bytecodes of the loop). A second signal of the same kind goes to the previous handler,
    so a second Ctrl-C still interrupts a stuck run. Use as a context manager; handlers can
    only be installed from the main thread (elsewhere the flag works via ``request()``).
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Sets the flag by hand (tests, or a host-side time limit)."""
        self.signum = signum

    def _handle(self, signum, frame):
        if self.signum == signum:  # second time: let the previous behaviour happen
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                # SIG_DFL (e.g. SIGTERM's default: terminate) is not callable: restore it and
                # re-deliver the signal so a stuck run still dies on the second SIGTERM.
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        self.signum = signum

    def install(self) -> "PreemptionFlag":
        if threading.current_thread() is not threading.main_thread():
            log.warning("PreemptionFlag: not the main thread, signal handlers not installed")
            return self
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def uninstall(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def should_stop(self) -> bool:
        """True when any process got a signal (all hosts agree, so all save the same step)."""
        local = self.requested
        if jax.process_count() == 1:
            return local
        from jax.experimental import multihost_utils
        flags = multihost_utils.process_allgather(np.asarray([local], np.int32))
        return bool(np.any(flags))

    def __enter__(self) -> "PreemptionFlag":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()
