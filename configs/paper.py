"""Shared settings of the Search-R1 paper runs (imported by the per-model presets).

Search-R1 (arXiv 2503.09516) and its v0.2 training scripts: NQ + HotpotQA train, wiki-18 with
e5-base-v2 top-3 retrieval (served over HTTP by ``python -m searchr1_jax.retrieval.serve``),
batch 512 prompts, PPO mini-batch 256, actor lr 1e-6 (warm-up ratio 0.285), critic lr 1e-5
(0.015), 1005 steps, max 4 turns, 500 tokens per turn / observation, temperature 1.0, top-p 1.0,
KL coefficient 0.001, retrieved-token loss masking on.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import base  # noqa: E402

HUB_IDS = {
    "qwen2.5-3b": "Qwen/Qwen2.5-3B", "qwen2.5-3b-instruct": "Qwen/Qwen2.5-3B-Instruct",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B", "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    "llama3.2-3b": "meta-llama/Llama-3.2-3B",
    "llama3.2-3b-instruct": "meta-llama/Llama-3.2-3B-Instruct",
}


def paper_config(model: str, algo: str):
    """``model``: a key of HUB_IDS (``-instruct`` picks the chat prompt); ``algo``: ppo | grpo."""
    c = base.get_config()
    c.model.name = HUB_IDS[model]
    c.model.dtype, c.model.param_dtype, c.model.remat = "bfloat16", "float32", True
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1
    c.data.train = "searchr1/nq_hotpotqa_train:train"  # Search-R1's own NQ+HotpotQA mix
    c.data.eval = "searchr1/nq:test+searchr1/triviaqa:test+searchr1/popqa:test+" \
                  "searchr1/hotpotqa:dev+searchr1/2wikimultihopqa:dev+searchr1/musique:dev+" \
                  "searchr1/bamboogle:test"
    c.data.prompt_style = "chat" if model.endswith("-instruct") else "raw"
    c.data.train_batch_size = 512
    c.retrieval.kind = "http"
    c.retrieval.encoder = "intfloat/e5-base-v2"
    c.retrieval.topk = 3
    c.rollout.max_turns = 4
    c.rollout.max_response_length = 500
    c.rollout.max_obs_length = 500
    c.rollout.max_prompt_length = 4096
    c.rollout.temperature, c.rollout.top_p = 1.0, 1.0
    c.rl.algo = algo
    c.rl.kl_coef = 0.001
    c.rl.mask_retrieved_tokens = True
    c.rl.mask_retrieved_in_critic = False
    if algo == "grpo":
        c.rl.n_samples = 5
        c.rl.use_kl_loss, c.rl.kl_kind = True, "low_var_kl"   # KL as a loss term
    else:
        c.rl.n_samples = 1
        c.rl.use_kl_loss, c.rl.kl_kind = False, "kl"          # KL in the token reward
    c.rl.entropy_coef = 0.001
    c.train.steps = 1005
    c.train.mini_batch_size = 256
    c.train.micro_batch_size = 8
    c.train.ppo_epochs = 1
    c.train.actor_lr, c.train.critic_lr = 1e-6, 1e-5
    c.train.actor_warmup_ratio, c.train.critic_warmup_ratio = 0.285, 0.015
    c.train.grad_clip = 1.0
    c.output.dir = f"runs/{model}_{algo}"
    return c
