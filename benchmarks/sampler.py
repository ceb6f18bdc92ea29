"""Decode throughput: our jitted sampler vs transformers ``generate`` on the same model.

    python benchmarks/sampler.py [--model smollm2-135m-instruct] [--batches 1 16] [--new 128]
                                 [--dtypes float32 bfloat16] [--temperature 1.0]

Same chat-templated NQ questions, greedy (``--temperature 1``: sampled at top-p 1, top-k 0, as
Search-R1's rollouts), exactly ``--new`` tokens per row (EOS ignored on both
sides), one process. Per weight dtype: ours stores the weight matrices in it
(``models.with_weight_dtype``; fp32 compute and cache, bf16 x bf16 matmuls accumulate in fp32),
transformers runs the whole model in it. Prints tokens/s (prefill + decode, and decode alone
for ours), the ratio to transformers in the same dtype and to transformers fp32 (its default),
how many rows' tokens equal transformers fp32's greedy tokens up to the row's first EOS
(ours samples through EOS, transformers' ``min_new_tokens`` bans it), and the fraction of the
memory-bandwidth roofline: bytes a decode step must read (every weight once, the tied embedding
counted once, plus the K/V cache slots attended) divided by the measured step time, over a
measured ``memcpy`` bandwidth. "floor ms" (fp32 weights): the step's weight matmuls alone
through XLA, in a loop as the decode runs them (``weight_matmul_floor``); "ratio at floor": the
ratio to transformers had everything else in a decode step cost nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from searchr1_jax.sampling import left_pad


def memcpy_bandwidth(nbytes: int = 512 << 20, repeats: int = 5) -> float:
    """Bytes/s moved by ``np.copyto`` (read + write counted), best of ``repeats``."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best


def chat_prompts(tokenizer, n: int) -> list[list[int]]:
    from searchr1_jax import ASSETS_DIR

    with open(os.path.join(ASSETS_DIR, "qa", "nq_test1000.jsonl"), encoding="utf-8") as fh:
        questions = [json.loads(line)["question"] for _, line in zip(range(n), fh)]
    out = []
    for q in questions:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": q}],
                                            add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def run_ours(model, cfg, prompts, n_new: int, pad_id: int, temperature: float = 0.0
             ) -> tuple[float, float, int, np.ndarray]:
    """(total s, decode s, cache slots, tokens [B, n_new]); compiled by a warm-up call first."""
    import jax

    from searchr1_jax import sampling
    from searchr1_jax.models import KVCache

    tokens, mask, positions = left_pad(prompts, pad_id)
    slots = sampling.bucket_length(tokens.shape[1]) + n_new
    t0 = time.perf_counter()
    cache = KVCache.init(cfg, len(prompts), slots)
    cache, last, last_pos = sampling.prefill(model, cache, tokens, positions, mask)
    jax.block_until_ready(cache.k)
    t1 = time.perf_counter()
    out = sampling.generate(model, cache, last, last_pos, jax.random.key(0),
                            max_new_tokens=n_new, temperature=temperature, pad_id=pad_id)
    jax.block_until_ready(out.tokens)
    t2 = time.perf_counter()
    assert int(np.asarray(out.lengths).min()) == n_new
    return t2 - t0, t2 - t1, slots, np.asarray(out.tokens)


def run_hf(hf_model, prompts, n_new: int, pad_id: int, temperature: float = 0.0
           ) -> tuple[float, np.ndarray]:
    import torch

    tokens, mask, _ = left_pad(prompts, pad_id)
    t = time.perf_counter()
    with torch.no_grad():
        out = hf_model.generate(torch.tensor(tokens, dtype=torch.long),
                                attention_mask=torch.tensor(mask, dtype=torch.long),
                                max_new_tokens=n_new, min_new_tokens=n_new,
                                pad_token_id=pad_id, **sampling_kwargs(temperature))
    dt = time.perf_counter() - t
    assert out.shape[1] - tokens.shape[1] == n_new
    return dt, out[:, tokens.shape[1]:].numpy()


def sampling_kwargs(temperature: float) -> dict:
    """transformers ``generate`` settings for our ``temperature`` (0: greedy), top-p 1, top-k 0
    (Search-R1's rollout sampling)."""
    if temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}


def until_eos(tokens: np.ndarray, eos_ids) -> list[int]:
    """Per row, the number of tokens before its first EOS (all of them if none). transformers'
    ``min_new_tokens`` bans EOS, so it continues differently exactly there; the rows are
    compared up to that point."""
    hit = np.isin(tokens, list(eos_ids))
    return [int(np.argmax(h)) if h.any() else len(h) for h in hit]


def decode_step_bytes(cfg, batch: int, slots: int, weight_bytes: int = 4) -> float:
    """Weights (embedding once) + fp32 K and V of every attended slot, per decode step."""
    h, f, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * f + 2 * h
    weights = L * per_layer + cfg.vocab_size * h * (1 if cfg.tie_word_embeddings else 2) + h
    cache = 2 * L * batch * slots * kv
    return float(weight_bytes * weights + 4 * cache)


def weight_matmul_floor(model, batch: int, repeats: int = 3) -> float:
    """Seconds of one decode step's weight matmuls alone, at ``batch`` rows of one token: the
    model's own ``Dense`` modules (q/k/v/o, the MLP) and ``lm_head``, chained as in the model
    (each layer's input depends on the last), with nothing else (no norms, RoPE, attention,
    KV cache or sampling).

    No decode step of this model can be faster on this machine with XLA's dot kernels, so
    ``hf_time / (prefill + n_new * floor)`` bounds the ratio any sampler could reach here.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = nnx.split(model)

    def step(m, x):                                      # x [B, 1, H]
        for layer in m.layers:
            attn = layer.attn
            q = attn.q_proj(x).reshape(x.shape[0], 1, -1)
            kv = jnp.sum(attn.k_proj(x)) + jnp.sum(attn.v_proj(x))   # k, v feed the output
            x = x + attn.o_proj(q + kv)
            x = x + layer.mlp(x)
        return x + 1e-6 * jnp.max(m.lm_head(x))

    def steps(state, x):
        # In a loop, as the decode runs them: XLA may move loop-invariant work out of a
        # loop, and a standalone call would pay for what the decode loop does not.
        m = nnx.merge(graphdef, state)
        return jax.lax.fori_loop(0, n_steps, lambda _, x: step(m, x), x)

    n_steps = 8
    fn = jax.jit(steps)
    x = jnp.full((batch, 1, model.cfg.hidden_size), 0.01, jnp.dtype(model.cfg.dtype))
    jax.block_until_ready(fn(state, x))
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(state, x))
        best = min(best, time.perf_counter() - t)
    return best / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0: greedy (rows compared with transformers); > 0: sampled, as in "
                             "RL rollouts (top-p 1, top-k 0; no token comparison)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16"])
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from searchr1_jax.eval.backend import eos_ids_of
    from searchr1_jax.models import load_model, resolve_model, with_weight_dtype

    model, tokenizer, cfg = load_model(args.model)
    source = resolve_model(args.model)

    def load_hf(dtype):
        if source.kind == "gguf":
            return AutoModelForCausalLM.from_pretrained(
                os.path.dirname(source.path), gguf_file=os.path.basename(source.path),
                dtype=dtype).eval()
        return AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype).eval()

    hf = {d: load_hf(getattr(torch, d)) for d in sorted(set(args.dtypes) | {"float32"})}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos_ids = eos_ids_of(tokenizer)
    bandwidth = memcpy_bandwidth()
    print(f"model {args.model}  compute fp32  torch threads {torch.get_num_threads()}  "
          f"cpus {os.cpu_count()}  memcpy {bandwidth / 1e9:.1f} GB/s")
    print(f"{'batch':>5} {'weights':>8} {'ours tok/s':>11} {'ours decode':>12} {'hf tok/s':>9} "
          f"{'ratio':>6} {'vs hf fp32':>10} {'= hf fp32':>9} {'ms/step':>8} {'GB/step':>8} "
          f"{'roofline':>9} {'floor ms':>9} {'ratio at floor':>14}")
    T = args.temperature
    for batch in args.batches:
        prompts = chat_prompts(tokenizer, batch)
        run_hf(hf["float32"], prompts[:1], 4, pad_id)                       # warm torch
        hf32_time, hf32_tokens = min((run_hf(hf["float32"], prompts, args.new, pad_id, T)
                                      for _ in range(args.repeats)), key=lambda r: r[0])
        for dtype in args.dtypes:
            ours_model = with_weight_dtype(model, dtype)
            run_ours(ours_model, cfg, prompts, args.new, pad_id, T)            # compile
            ours = [run_ours(ours_model, cfg, prompts, args.new, pad_id, T)
                    for _ in range(args.repeats)]
            total, decode, slots, tokens = min(ours, key=lambda r: r[0])
            if dtype == "float32":
                hf_time = hf32_time
            else:
                run_hf(hf[dtype], prompts[:1], 4, pad_id)
                hf_time = min(run_hf(hf[dtype], prompts, args.new, pad_id, T)[0]
                              for _ in range(args.repeats))
            same = "sampled" if T else "{}/{}".format(sum(
                np.array_equal(a[:n], b[:n])
                for a, b, n in zip(tokens, hf32_tokens, until_eos(tokens, eos_ids))), batch)
            n_tok = batch * args.new
            step = decode / args.new
            # fp32 only: with bf16 weights XLA picks different dot paths for a standalone
            # chain than inside the decode (at batch 1 the chain ran 2x slower than the whole
            # decode step), so such a chain bounds nothing.
            floor = weight_matmul_floor(ours_model, batch) if dtype == "float32" else None
            best_ratio = floor and hf_time / (total - decode + args.new * floor)
            nbytes = decode_step_bytes(cfg, batch, slots, 2 if dtype == "bfloat16" else 4)
            print(f"{batch:>5} {dtype[:8]:>8} {n_tok / total:>11.1f} {n_tok / decode:>12.1f} "
                  f"{n_tok / hf_time:>9.1f} {hf_time / total:>6.2f} {hf32_time / total:>10.2f} "
                  f"{same:>9} {1e3 * step:>8.2f} {nbytes / 1e9:>8.3f} "
                  f"{nbytes / step / bandwidth:>9.1%} "
                  + (f"{1e3 * floor:>9.2f} {best_ratio:>14.2f}" if floor
                     else f"{'-':>9} {'-':>14}"),
                  flush=True)


if __name__ == "__main__":
    main()
