"""The algorithm table: each rl.algo resolves to its parts once; the trainer runs every one."""
import ast
import os

import numpy as np
import pytest

from searchr1_jax import rl
from searchr1_jax.data import BatchIterator
from searchr1_jax.train import algorithms
from searchr1_jax.train.trainer import Trainer
from tests.train._scripted import ScriptedRollout, hit_reward
from tests.train._tiny import REPO, base_config, tiny_model
from tests.train.test_trainer import tiny_config


@pytest.mark.parametrize("algo,estimator,critic,n", [
    ("ppo", "gae", True, 1), ("grpo", "grpo", False, 5), ("drgrpo", "drgrpo", False, 5),
    ("rloo", "rloo", False, 5), ("reinforce_pp", "reinforce_pp", False, 5)])
def test_table_resolves_each_algorithm(algo, estimator, critic, n):
    cfg = base_config()
    cfg.rl.algo = algo
    spec = algorithms.resolve(cfg.rl)
    assert spec.advantage is rl.ADVANTAGE_ESTIMATORS.get(estimator)
    assert spec.critic is critic and spec.n_samples == n


def test_kl_placement_follows_verl():
    cfg = base_config()
    assert algorithms.resolve(cfg.rl).kl == "loss"            # use_kl_loss (GRPO preset)
    cfg.rl.use_kl_loss = False
    assert algorithms.resolve(cfg.rl).kl == "reward"          # PPO preset: in the reward
    cfg.rl.kl_coef = 0.0
    spec = algorithms.resolve(cfg.rl)
    assert spec.kl == "none" and not spec.needs_reference
    cfg.rl.algo = "a2c"
    with pytest.raises(ValueError, match=r"unknown RL algorithm 'a2c'.*'drgrpo', 'grpo'"):
        algorithms.resolve(cfg.rl)


def test_trainer_has_no_algorithm_name_comparisons():
    """Everything the trainer branches on comes from the AlgoSpec (tunix style)."""
    path = os.path.join(REPO, "searchr1_jax", "train", "trainer.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set(algorithms.ALGORITHMS.names())
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert not names & literals
    assert "rl.algo" not in open(path, encoding="utf-8").read()


@pytest.mark.parametrize("algo", ["reinforce_pp", pytest.param("rloo", marks=pytest.mark.slow),
                                  pytest.param("drgrpo", marks=pytest.mark.slow)])
def test_critic_free_algorithms_train(algo):
    cfg = tiny_config("grpo", 2)
    cfg.rl.algo, cfg.rl.loss_agg = algo, "seq_mean_token_sum"
    cfg.rl.clip_ratio_high = 0.28
    trainer = Trainer(cfg, tiny_model(0, num_layers=1), ScriptedRollout(),
                      BatchIterator(list(range(64)), cfg.data.train_batch_size, seed=0),
                      reward_fn=hit_reward, min_width=8)
    assert trainer.critic_update is None and trainer.updates_per_step == 2
    hist = [trainer.train_step() for _ in range(2)]
    assert all(np.isfinite(m["actor/loss"]) and m["actor/update_skipped"] == 0.0 for m in hist)
    assert "critic/loss" not in hist[0]
