"""PPO and GRPO trainers: train state, optimizer, losses, sharded train step, the step loop.

Modules (import them directly; this package imports nothing heavy on purpose so that
``python -m searchr1_jax.train`` and ``searchr1_jax.train.checkpoint`` stay cheap):
  logprobs.py  sequence layout and memory-aware per-token log-probs / entropy / values
  losses.py    actor and critic loss assembly with exact micro-batch weighting
  state.py     ``TrainState`` and the AdamW + warmup + clipping optimizer
  step.py      jitted, sharded mini-batch update with gradient accumulation and a NaN guard
  critic.py    the PPO critic (backbone copy + scalar value head)
  grpo.py / ppo.py   per-algorithm batch preparation (advantages, returns)
  trainer.py   the step loop (rollout -> rewards -> advantages -> updates -> metrics -> checkpoint)
  __main__.py  the command line entry point
"""
