"""Short GRPO and PPO runs on a tiny random model learn a scripted reward."""
import numpy as np
import pytest

from searchr1_jax.data import BatchIterator
from searchr1_jax.train.trainer import Trainer
from tests.train._scripted import ScriptedRollout, hit_reward
from tests.train._tiny import base_config, tiny_model


def tiny_config(algo: str, steps: int):
    cfg = base_config()
    cfg.rl.algo = algo
    cfg.rl.n_samples = 8 if algo == "grpo" else 1
    cfg.data.train_batch_size = 4 if algo == "grpo" else 32
    cfg.train.mini_batch_size = 16  # rows: two updates per step (32 rows) for both
    cfg.train.micro_batch_size = 8
    cfg.train.steps = steps
    cfg.train.actor_lr, cfg.train.critic_lr = 3e-3, 3e-3
    cfg.train.actor_warmup_ratio = cfg.train.critic_warmup_ratio = 0.0
    cfg.rl.kl_kind = "low_var_kl" if algo == "grpo" else "kl"
    cfg.rl.use_kl_loss = algo == "grpo"
    return cfg


def run(algo: str, steps: int, seed: int = 0):
    cfg = tiny_config(algo, steps)
    trainer = Trainer(cfg, tiny_model(seed), ScriptedRollout(),
                      BatchIterator(list(range(64)), cfg.data.train_batch_size, seed=seed),
                      reward_fn=hit_reward, min_width=8)
    return [trainer.train_step() for _ in range(steps)]


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_short_run_raises_reward(algo):
    hist = run(algo, 24)
    rewards = np.array([m["reward/mean"] for m in hist])
    first, last = rewards[:4].mean(), rewards[-4:].mean()
    print(algo, np.round(rewards, 2))
    assert last > first + 0.25, (first, last)
    assert all(np.isfinite(m["actor/loss"]) for m in hist)
    assert all(m["actor/update_skipped"] == 0.0 for m in hist)
    if algo == "ppo":
        assert all(np.isfinite(m["critic/loss"]) for m in hist)
