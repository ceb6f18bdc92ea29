"""Base config: every field the project reads, with Search-R1's paper defaults.

Presets import this and override fields. Use from the command line with absl flags:
  python -m searchr1_jax.train --config=configs/base.py --config.rl.algo=ppo
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    c.model = dict(
        name="qwen2.5-3b",        # HF dir, hub id, .gguf path or "smollm2-135m-instruct"
        dtype="bfloat16",         # compute dtype
        param_dtype="float32",    # master weights
        remat=True,               # rematerialise each decoder layer in the train step
    )
    c.mesh = dict(data=1, fsdp=-1, tensor=1)  # -1: all remaining devices

    c.data = dict(
        train="mini:train",       # "mini:train", a Search-R1 parquet or a FlashRAG jsonl
        eval="mini:test",
        # auto: the chat template whenever the tokenizer has one, base models included (Search-R1
        # verl/utils/dataset/rl_dataset.py __getitem__; Qwen2.5 base tokenizers have one) | chat | raw
        prompt_style="auto",
        # A Search-R1 parquet's own `prompt` column (chat messages) is used as written; False
        # rebuilds every prompt from the question with the project's template.
        use_file_prompt=True,
        train_batch_size=512,     # prompts per step
        max_train_examples=-1,    # -1: all
        max_eval_examples=-1,     # per data source (-1: all)
        shuffle_seed=0,
        data_dir="",              # TFDS dir ("": $SEARCHR1_DATA_DIR or ~/.cache/searchr1_jax)
        manual_dir="",            # user Search-R1/FlashRAG files: {manual_dir}/{dataset}/{split}.*
    )
    c.retrieval = dict(
        kind="bm25",              # bm25 | exact | scann | http
        corpus="mini",            # "mini" (embedded) or a jsonl(.gz) path
        index_dir="",             # prebuilt index directory (empty: build in memory)
        encoder="intfloat/e5-base-v2",
        url="http://127.0.0.1:8000/retrieve",
        topk=3,
        timeout_s=30.0,
        retries=3,
        on_error="observation",   # observation (tell the model) | raise (fail the batch)
        # ScaNN's re-scoring of its candidates: "fp16" (exact vs an fp16 copy: recall@3 0.998,
        # index 0.63 of flat fp32) | "compact" (within 1/8 of flat, recall@3 0.965 at 1M
        # synthetic) | "auto" (compact from 200k vectors): docs/benchmarks.md.
        scann_rescore="auto",
        rerank=False,
        reranker="cross-encoder/ms-marco-MiniLM-L-6-v2",
        rerank_candidates=10,
        # Dense encoder ("minilm" = the all-MiniLM-L6-v2 copy shipped on PyPI, for offline work).
        query_prefix="auto",      # "auto": "query: " for e5 models, "" otherwise
        passage_prefix="auto",    # "auto": "passage: " for e5 models, "" otherwise
        query_max_length=256,
        passage_max_length=256,
        encoder_dtype="float32",  # float32 | bfloat16 | float16 (compute dtype)
        encode_batch_size=64,     # rounded up to a multiple of the local batch shards
        shard_size=100_000,       # passages per embedding shard (resume granularity)
        # Server (python -m searchr1_jax.retrieval.serve): loopback unless told otherwise.
        host="127.0.0.1",
        port=8000,
        max_queries=1024,         # per request
        max_topk=100,
    )
    c.rollout = dict(
        max_turns=4,
        max_response_length=500,  # tokens generated per turn
        max_obs_length=500,       # tokens of retrieved text kept per observation
        max_prompt_length=4096,
        temperature=1.0,
        top_p=1.0,                # Search-R1's GRPO runs: 0.95 (veRL default), PPO: 1.0 (presets)
        top_k=0,                  # 0: off
        pipeline_groups=1,        # row groups run in threads so host work overlaps device work
        log_trajectories=True,    # append every rollout row to <output.dir>/trajectories.jsonl
        # Sample from a copy of the weight matrices in this dtype, made once per rollout batch
        # ("": the params as they are). With bf16 compute the result is identical and decode
        # stops re-casting fp32 master weights at every step; with fp32 compute it is vLLM-style
        # bf16 serving (faster on CPU too: docs/benchmarks.md) at a small log-prob mismatch.
        weights_dtype="bfloat16",
    )
    c.rl = dict(
        # grpo | ppo (Search-R1's two) | drgrpo | rloo | reinforce_pp (critic-free estimators,
        # train/algorithms.py: which estimator, critic or not, responses per prompt)
        algo="grpo",
        n_samples=5,              # responses per prompt (grouped algorithms; PPO uses 1)
        mask_retrieved_tokens=True,       # policy/entropy/KL loss only on generated tokens
        mask_retrieved_in_critic=False,   # Search-R1: value loss/GAE on all response tokens
        # Mask of the KL-in-reward term: "generated" (Search-R1: its info mask, generated
        # tokens only, even when mask_retrieved_tokens=False) | "policy" (the policy's mask).
        kl_reward_mask="generated",
        # Search-R1's critic mask attention_mask[:, -R-1:-1] (shifted right by one: the value
        # at the first padding position is trained towards 0 and bootstraps GAE when lam < 1).
        shifted_critic_mask=False,
        kl_kind="low_var_kl",     # kl | abs | mse | low_var_kl
        kl_coef=0.001,
        use_kl_loss=True,         # GRPO: KL as loss term; PPO (Search-R1): KL in the reward
        clip_ratio=0.2,
        clip_ratio_high=0.0,      # 0: clip_ratio; DAPO's clip-higher (e.g. 0.28) when larger
        value_clip=0.5,
        entropy_coef=0.001,
        gamma=1.0,
        lam=1.0,
        # token_mean (Search-R1) | seq_mean_token_mean | seq_mean_token_sum (Dr. GRPO)
        loss_agg="token_mean",
        # em | sub_em | f1 | format (Search-R1 v0.3, read on the response) | format_searchr1
        # (Search-R1's qa_em_format.py exactly: prompt + response, rewards_searchr1.py)
        reward="em",
    )
    c.train = dict(
        steps=1005,
        # ROWS (responses) per optimizer update, as veRL's ppo_mini_batch_size counts them:
        # Search-R1's GRPO makes 512 x 5 / 256 = 10 updates per step, its PPO 512 / 256 = 2.
        mini_batch_size=256,
        # Global rows per gradient-accumulation step (Search-R1: ppo_micro_batch_size=64 over
        # 8 GPUs, 8 per GPU); only memory depends on it, the accumulated gradient is exact.
        micro_batch_size=64,
        ppo_epochs=1,
        actor_lr=1e-6,
        critic_lr=1e-5,
        actor_warmup_ratio=0.285,
        critic_warmup_ratio=0.015,
        weight_decay=0.01,
        grad_clip=1.0,
        seed=0,
        checkpoint_every=100,
        keep_checkpoints=3,
        async_checkpoint=True,
        log_every=1,
    )
    c.eval = dict(
        batch_size=64,
        # greedy | sample (rollout.temperature/top_p) | searchr1 (temperature 1, top-p 0.95:
        # what Search-R1's published validation ran, its do_sample=False being lost)
        decoding="greedy",
        every=100,                # steps between evaluations during training (0: never)
        seeds=1,                  # > 1 (sampling decodings): mean and spread over seeds
        methods="search_r1",      # comma list of direct | cot | rag | search_r1
        sources="",               # comma list of data sources to evaluate ("": all)
        out_dir="",               # "": {output.dir}/eval
    )
    c.output = dict(
        dir="runs/default",
        # Weights & Biases (pip install "searchr1-jax[wandb]"), beside metrics.jsonl and
        # TensorBoard; off while wandb_project is empty. The run's files go to {dir}/wandb/.
        wandb_project="",
        wandb_entity="",          # "": your default entity
        wandb_run_name="",        # "": the basename of output.dir
        wandb_tags="",            # comma list, e.g. "grpo,qwen2.5-3b"
        wandb_mode="",            # "" (wandb decides, e.g. $WANDB_MODE) | online | offline | disabled
    )
    return c
