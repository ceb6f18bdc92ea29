"""RL trainers (PPO, GRPO; also Dr. GRPO, RLOO, REINFORCE++): train state, optimizer, losses,
sharded train step, the step loop.

Modules (import them directly; this package imports nothing heavy on purpose so that
``python -m searchr1_jax.train`` and ``searchr1_jax.train.checkpoint`` stay cheap):
  logprobs.py  sequence layout and memory-aware per-token log-probs / entropy / values
  losses.py    actor and critic loss assembly with exact micro-batch weighting
  state.py     ``TrainState`` and the AdamW + warmup + clipping optimizer
  step.py      jitted, sharded mini-batch update with gradient accumulation and a NaN guard
  critic.py    the PPO critic (backbone copy + scalar value head)
  algorithms.py  the algorithm table keyed by rl.algo (estimator, critic, KL place, masks)
  prepare.py   the step's TrainBatch (masks resolved once) and its advantages / returns
  trainer.py   one RL step (rollout -> rewards -> advantages -> updates -> metrics)
  search_rollout.py  the real rollout function (Search-R1 episodes with the live actor weights)
  loop.py      the run loop: metrics logging, checkpoints, SIGTERM, resume
  build.py     a Trainer from a config (mesh, model, data, retriever)
  checkpoint.py / metrics.py  orbax checkpoints / metrics logging and guards
  __main__.py  the command line entry point
"""
