"""Shared settings of the Search-R1 paper runs (imported by the per-model presets).

Only what differs from ``configs/base.py`` (which already holds Search-R1's defaults: batch 512
prompts, mini-batch 256 rows, actor lr 1e-6 with warm-up ratio 0.285, critic lr 1e-5 (0.015),
1005 steps, 4 turns, 500 tokens per turn / observation, temperature 1.0, KL coefficient 0.001,
retrieved-token loss masking, the chat template whenever the tokenizer has one). From
Search-R1's ``scripts/nq_hotpotqa/v0.2/train_{grpo,ppo}.sh`` and ``verl/trainer/config/
ppo_trainer.yaml``: NQ + HotpotQA train, wiki-18 with e5-base-v2 top-3 retrieval served over
HTTP (``python -m searchr1_jax.retrieval.serve``); GRPO samples with top-p 0.95 (the yaml's
default, which its GRPO scripts keep), PPO with top-p 1.0 (its scripts set it), n = 1 and the KL
in the reward.
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
    """``model``: a key of HUB_IDS; ``algo``: ppo | grpo."""
    c = base.get_config()
    c.model.name = HUB_IDS[model]
    c.data.train = "searchr1/nq_hotpotqa_train:train"  # Search-R1's own NQ+HotpotQA mix
    c.data.eval = "searchr1/nq:test+searchr1/triviaqa:test+searchr1/popqa:test+" \
                  "searchr1/hotpotqa:dev+searchr1/2wikimultihopqa:dev+searchr1/musique:dev+" \
                  "searchr1/bamboogle:test"
    c.retrieval.kind = "http"
    if algo == "grpo":     # base.py's rl section is GRPO's (n = 5, KL as a low_var_kl loss)
        c.rollout.top_p = 0.95
    else:
        c.rl.algo, c.rl.n_samples = "ppo", 1
        c.rl.use_kl_loss, c.rl.kl_kind = False, "kl"          # KL in the token reward
    c.output.dir = f"runs/{model}_{algo}"
    return c
