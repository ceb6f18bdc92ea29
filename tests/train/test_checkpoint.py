"""Checkpoints: exact save/restore (params, optimizer state, RNG, data position), keep-last-N,
asynchronous saves, restore onto new shardings, and the preemption flag."""
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from searchr1_jax.parallel import make_mesh
from searchr1_jax.train.checkpoint import (CheckpointManager, PreemptionFlag, abstract_like,
                                           data_to_keys, keys_to_data)
from searchr1_jax.train.state import TrainState, make_optimizer


class TinyMLP(nnx.Module):
    def __init__(self, rngs):
        self.up = nnx.Linear(8, 16, rngs=rngs)
        self.down = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, x):
        return self.down(jax.nn.relu(self.up(x)))


def _trained_state(seed=0, updates=3):
    """A TrainState after a few real AdamW updates (non-trivial mu/nu/counts)."""
    model = TinyMLP(nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = make_optimizer(1e-2, num_warmup_steps=0)
    state = TrainState.create(params, tx)
    x = jax.random.normal(jax.random.key(1), (5, 8))

    @jax.jit
    def update(state):
        grads = jax.grad(lambda p: jnp.mean(nnx.merge(graphdef, p)(x) ** 2))(state.params)
        upd, opt = tx.update(grads, state.opt_state, state.params)
        return state.replace(params=optax.apply_updates(state.params, upd), opt_state=opt,
                             step=state.step + 1)
    for _ in range(updates):
        state = update(state)
    return state, update


def _assert_trees_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_restore_exact_and_resume_matches(tmp_path):
    state, update = _trained_state()
    rngs = {"rollout": jax.random.key(42), "legacy": jax.random.PRNGKey(7),
            "rbg": jax.random.key(3, impl="rbg")}
    host = {"data": {"epoch": 1, "index": 37, "seed": 0}}
    with CheckpointManager(str(tmp_path), keep=2, async_save=True) as mgr:
        assert mgr.save(3, {"actor": state}, host=host, rngs=rngs, metadata={"cfg": {"lr": .01}})
        mgr.wait()
        fresh, *_ = _trained_state(seed=9, updates=0)  # different values, same structure
        out = mgr.restore({"actor": fresh})
    assert out.step == 3 and out.host["step"] == 3 and out.host["data"] == host["data"]
    assert out.metadata["cfg"] == {"lr": .01} and "saved_at_unix" in out.metadata
    _assert_trees_equal(out.state["actor"], state)
    assert isinstance(out.state["actor"], TrainState)
    assert isinstance(out.state["actor"].params, nnx.State)
    for name, key in rngs.items():
        restored = out.rngs[name]
        assert restored.dtype == key.dtype
        np.testing.assert_array_equal(jax.random.key_data(restored) if name != "legacy"
                                      else restored,
                                      jax.random.key_data(key) if name != "legacy" else key)
        # the restored key draws the same numbers
        np.testing.assert_array_equal(jax.random.uniform(restored, (3,)),
                                      jax.random.uniform(key, (3,)))
    # resuming continues bit-identically: one more update from both states
    _assert_trees_equal(update(out.state["actor"]), update(state))


def test_keep_last_n_and_latest(tmp_path):
    state, *_ = _trained_state(updates=1)
    mgr = CheckpointManager(str(tmp_path), keep=2, async_save=True)
    for step in (10, 20, 30, 40):
        mgr.save(step, state.params, host={"i": step})
    mgr.wait()
    assert mgr.all_steps() == [30, 40] and mgr.latest_step() == 40
    assert not mgr.save(40, state.params, force=True)  # already saved: no-op, no error
    assert sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit()) == [30, 40]
    old = mgr.restore(state.params, step=30)
    assert old.host["i"] == 30
    with pytest.raises(FileNotFoundError, match=r"checkpoint step 10 not in .* \[30, 40\]"):
        mgr.restore(state.params, step=10)
    mgr.close()
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        CheckpointManager(str(tmp_path / "empty")).restore(state.params)


def test_async_save_completes(tmp_path):
    big = {"w": jnp.arange(4_000_000, dtype=jnp.float32).reshape(2000, 2000)}
    mgr = CheckpointManager(str(tmp_path), keep=1, async_save=True)
    assert mgr.save(1, big)
    mgr.wait()
    assert os.path.exists(tmp_path / "1" / "state")
    assert mgr.latest_step() == 1
    np.testing.assert_array_equal(mgr.restore(big).state["w"], big["w"])
    mgr.close()


def test_restore_onto_target_shardings(tmp_path):
    mesh = make_mesh(data=1, fsdp=4, tensor=2)
    w = jnp.arange(64 * 8, dtype=jnp.float32).reshape(64, 8)
    saved = jax.device_put(w, NamedSharding(mesh, P("fsdp", "tensor")))
    mgr = CheckpointManager(str(tmp_path), keep=1, async_save=False)
    mgr.save(5, {"w": saved, "b": jnp.ones(3)})
    target_sharding = NamedSharding(mesh, P(None, ("fsdp", "tensor")))
    target = {"w": jax.ShapeDtypeStruct(w.shape, w.dtype, sharding=target_sharding),
              "b": jax.ShapeDtypeStruct((3,), jnp.float32,
                                        sharding=NamedSharding(mesh, P()))}
    out = mgr.restore(target)
    assert out.state["w"].sharding == target_sharding
    np.testing.assert_array_equal(out.state["w"], w)
    assert out.state["b"].sharding.is_fully_replicated
    mgr.close()


def test_bad_inputs_name_the_field(tmp_path):
    mgr = CheckpointManager(str(tmp_path), keep=1, async_save=False)
    with pytest.raises(TypeError, match="checkpoint host for step 1 is not JSON"):
        mgr.save(1, {"a": jnp.ones(2)}, host={"bad": object()})
    with pytest.raises(TypeError, match=r"rngs\['x'\]: expected a PRNG key"):
        mgr.save(1, {"a": jnp.ones(2)}, rngs={"x": jnp.ones(2)})
    with pytest.raises(ValueError, match="keep_checkpoints = 0"):
        CheckpointManager(str(tmp_path / "k"), keep=0)
    mgr.close()


def test_key_data_round_trip():
    keys = {"a": jax.random.key(0), "b": jax.random.PRNGKey(1)}
    data, impls = keys_to_data(keys)
    assert data["a"].dtype == np.uint32 and impls["b"] == ""
    back = data_to_keys(json.loads(json.dumps({k: v.tolist() for k, v in data.items()})), impls)
    np.testing.assert_array_equal(jax.random.key_data(back["a"]), jax.random.key_data(keys["a"]))
    np.testing.assert_array_equal(back["b"], keys["b"])
    assert abstract_like({"x": jnp.ones((2, 3))})["x"].shape == (2, 3)


def test_preemption_flag_sigterm_and_second_signal():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionFlag(signals=(signal.SIGTERM, signal.SIGUSR1)) as flag:
        assert not flag.requested and not flag.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)   # would kill the test process without the flag
        assert flag.requested and flag.signum == signal.SIGTERM and flag.should_stop()
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored on exit
    # a second SIGINT goes to the previous handler (KeyboardInterrupt by default). Set that
    # default first: a shell starting pytest in the background (`&`) hands it SIGINT ignored.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with PreemptionFlag(signals=(signal.SIGINT,)) as flag:
            os.kill(os.getpid(), signal.SIGINT)
            assert flag.requested
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_second_sigterm_terminates_a_stuck_run():
    """SIGTERM's default action (SIG_DFL, not callable) must still happen on the second signal."""
    import subprocess
    import sys
    code = (
        "import os, signal, time\n"
        "from searchr1_jax.train.checkpoint import PreemptionFlag\n"
        "flag = PreemptionFlag(signals=(signal.SIGTERM,)).install()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "assert flag.requested\n"
        "print('first signal recorded', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
        "print('still alive')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "first signal recorded" in proc.stdout
    assert "still alive" not in proc.stdout
    assert proc.returncode == -signal.SIGTERM


def test_preemption_save_at_safe_point(tmp_path):
    """The loop pattern: poll, save the current step, wait, stop; a resume gets that step."""
    state, *_ = _trained_state(updates=1)
    mgr = CheckpointManager(str(tmp_path), keep=3, async_save=True)
    flag = PreemptionFlag(signals=(signal.SIGTERM,)).install()
    done = None
    try:
        for step in range(100):
            state = state.replace(step=state.step + 1)
            if step == 4:
                os.kill(os.getpid(), signal.SIGTERM)
            if flag.should_stop():
                mgr.save(step, state, host={"reason": "preempted"}, force=True)
                mgr.wait()
                done = step
                break
    finally:
        flag.uninstall()
    assert done == 4
    out = mgr.restore(state)
    assert out.step == 4 and int(out.state.step) == int(state.step) and \
        out.host["reason"] == "preempted"
    mgr.close()


def test_restore_subtree_reads_only_the_actor_params(tmp_path):
    """evaluate.py restores the actor's parameters alone (no trainer, optimizer, critic or
    reference is built): the subtree comes back exactly, on the target's structure."""
    state, _ = _trained_state(seed=3)
    ref = jax.tree.map(lambda x: x * 0 + 7.0, state.params)
    with CheckpointManager(str(tmp_path / "ckpt"), async_save=False) as mgr:
        mgr.save(5, {"actor": state, "ref": ref}, host={"data": {}})
        mgr.wait()
        fresh = nnx.split(TinyMLP(nnx.Rngs(9)), nnx.Param)[1]
        step, out = mgr.restore_subtree({"actor": {"params": fresh}})
    assert step == 5
    assert set(out) == {"actor"} and set(out["actor"]) == {"params"}
    assert jax.tree.structure(out["actor"]["params"]) == jax.tree.structure(state.params)
    _assert_trees_equal(out["actor"]["params"], state.params)
    with CheckpointManager(str(tmp_path / "ckpt"), async_save=False) as mgr:
        with pytest.raises(FileNotFoundError, match="step 6 not in"):
            mgr.restore_subtree({"actor": {"params": fresh}}, step=6)
