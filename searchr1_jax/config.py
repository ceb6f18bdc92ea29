"""Config loading and validation: every check runs before anything compiles.

``validate(cfg)`` raises ``ConfigError`` naming the dotted field at fault, e.g.
``ConfigError: rl.algo = 'ppo2': must be one of ['grpo', 'ppo']``.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable

import ml_collections


class ConfigError(ValueError):
    """A config field has a bad value; the message names the field."""


def _one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {sorted(choices)}"


def _positive(v):
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


def _fraction(v):
    return None if 0.0 <= v <= 1.0 else "must be in [0, 1]"


def _positive_or_minus_one(v):
    return None if v > 0 or v == -1 else "must be > 0 or -1"


def _known_algo(v):
    from searchr1_jax.train.algorithms import ALGORITHMS  # lazy: imports jax
    return None if v in ALGORITHMS else f"must be one of {ALGORITHMS.names()}"


_NUM = (int, float)
# dotted field -> (expected type(s), check returning an error string or None)
SCHEMA: dict[str, tuple[type | tuple[type, ...], Callable[[Any], str | None] | None]] = {
    "model.name": (str, lambda v: None if v else "must name a model"),
    "model.dtype": (str, _one_of("float32", "bfloat16", "float16")),
    "model.param_dtype": (str, _one_of("float32", "bfloat16")),
    "model.remat": (bool, None),
    "mesh.data": (int, _positive_or_minus_one),
    "mesh.fsdp": (int, _positive_or_minus_one),
    "mesh.tensor": (int, _positive_or_minus_one),
    "data.prompt_style": (str, _one_of("auto", "chat", "raw")),
    "data.use_file_prompt": (bool, None),
    "data.train_batch_size": (int, _positive),
    "retrieval.kind": (str, _one_of("bm25", "exact", "scann", "http")),
    "retrieval.scann_rescore": (str, _one_of("auto", "fp16", "compact")),
    "retrieval.topk": (int, _positive),
    "retrieval.timeout_s": (_NUM, _positive),
    "retrieval.retries": (int, _non_negative),
    "retrieval.on_error": (str, _one_of("observation", "raise")),
    "retrieval.rerank": (bool, None),
    "retrieval.rerank_candidates": (int, _positive),
    "retrieval.query_max_length": (int, _positive),
    "retrieval.passage_max_length": (int, _positive),
    "retrieval.encoder_dtype": (str, _one_of("float32", "bfloat16", "float16")),
    "retrieval.encode_batch_size": (int, _positive),
    "retrieval.shard_size": (int, _positive),
    "retrieval.port": (int, lambda v: None if 0 <= v < 65536 else "must be a TCP port (0-65535)"),
    "retrieval.max_queries": (int, _positive),
    "retrieval.max_topk": (int, _positive),
    "rollout.max_turns": (int, _positive),
    "rollout.max_response_length": (int, _positive),
    "rollout.max_obs_length": (int, _non_negative),
    "rollout.max_prompt_length": (int, _positive),
    "rollout.temperature": (_NUM, _non_negative),
    "rollout.top_p": (_NUM, lambda v: None if 0.0 < v <= 1.0 else "must be in (0, 1]"),
    "rollout.top_k": (int, _non_negative),
    "rollout.pipeline_groups": (int, _positive),
    "rollout.log_trajectories": (bool, None),
    "rollout.weights_dtype": (str, _one_of("", "float32", "bfloat16")),
    "rl.algo": (str, _known_algo),
    "rl.n_samples": (int, _positive),
    "rl.mask_retrieved_tokens": (bool, None),
    "rl.mask_retrieved_in_critic": (bool, None),
    "rl.kl_reward_mask": (str, _one_of("generated", "policy")),
    "rl.shifted_critic_mask": (bool, None),
    "rl.kl_kind": (str, _one_of("kl", "abs", "mse", "low_var_kl")),
    "rl.kl_coef": (_NUM, _non_negative),
    "rl.use_kl_loss": (bool, None),
    "rl.clip_ratio": (_NUM, _positive),
    "rl.clip_ratio_high": (_NUM, _non_negative),
    "rl.value_clip": (_NUM, _positive),
    "rl.entropy_coef": (_NUM, None),
    "rl.gamma": (_NUM, _fraction),
    "rl.lam": (_NUM, _fraction),
    "rl.loss_agg": (str, _one_of("token_mean", "seq_mean_token_mean", "seq_mean_token_sum")),
    "rl.reward": (str, _one_of("em", "sub_em", "f1", "format", "format_searchr1")),
    "train.steps": (int, _non_negative),
    "train.mini_batch_size": (int, _positive),
    "train.micro_batch_size": (int, _positive),
    "train.ppo_epochs": (int, _positive),
    "train.actor_lr": (_NUM, _non_negative),
    "train.critic_lr": (_NUM, _non_negative),
    "train.actor_warmup_ratio": (_NUM, _fraction),
    "train.critic_warmup_ratio": (_NUM, _fraction),
    "train.grad_clip": (_NUM, _positive),
    "train.keep_checkpoints": (int, _positive),
    "eval.batch_size": (int, _positive),
    "eval.decoding": (str, _one_of("greedy", "sample", "searchr1")),
    "eval.seeds": (int, _positive),
    "eval.methods": (str, lambda v: None if v and all(
        m.strip() in ("direct", "cot", "rag", "search_r1") for m in v.split(",")) else
        "must be a comma list of direct, cot, rag, search_r1"),
    "eval.sources": (str, None),
    "eval.out_dir": (str, None),
    "data.data_dir": (str, None),
    "data.manual_dir": (str, None),
    "output.dir": (str, lambda v: None if v else "must name a directory"),
    "output.wandb_project": (str, None),
    "output.wandb_entity": (str, None),
    "output.wandb_run_name": (str, None),
    "output.wandb_tags": (str, None),
    "output.wandb_mode": (str, _one_of("", "online", "offline", "disabled")),
}


def get_field(cfg: ml_collections.ConfigDict, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if part not in node:
            raise ConfigError(f"{dotted}: missing from the config")
        node = node[part]
    return node


def validate(cfg: ml_collections.ConfigDict, sections: tuple[str, ...] | None = None
             ) -> ml_collections.ConfigDict:
    """Checks types, ranges and cross-field rules; returns ``cfg`` for chaining."""
    for dotted, (types, check) in SCHEMA.items():
        if sections is not None and dotted.split(".")[0] not in sections:
            continue
        value = get_field(cfg, dotted)
        if isinstance(value, bool) and types is not bool and bool not in (
                types if isinstance(types, tuple) else (types,)):
            raise ConfigError(f"{dotted} = {value!r}: expected {_type_name(types)}, got bool")
        if not isinstance(value, types):
            raise ConfigError(
                f"{dotted} = {value!r}: expected {_type_name(types)}, got {type(value).__name__}")
        if check is not None and (err := check(value)):
            raise ConfigError(f"{dotted} = {value!r}: {err}")
    if sections is None or "train" in sections:
        _cross_checks(cfg)
    return cfg


def _cross_checks(cfg):
    from searchr1_jax.train.algorithms import ALGORITHMS, rows_per_step  # lazy: imports jax

    t, rl = cfg.train, cfg.rl
    algo = ALGORITHMS.get(rl.algo)
    rows = rows_per_step(cfg)
    per_prompt = f" x rl.n_samples = {rl.n_samples}" if algo.grouped else ""
    if rows % t.mini_batch_size:
        raise ConfigError(
            f"train.mini_batch_size = {t.mini_batch_size}: must divide the {rows} rows of a step "
            f"(data.train_batch_size = {cfg.data.train_batch_size}{per_prompt}); it counts rows "
            "(responses), as veRL's ppo_mini_batch_size does")
    if t.mini_batch_size % t.micro_batch_size:
        raise ConfigError(
            f"train.micro_batch_size = {t.micro_batch_size}: must divide train.mini_batch_size "
            f"= {t.mini_batch_size} rows")
    if algo.grouped and rl.n_samples < algo.min_samples:
        raise ConfigError(f"rl.n_samples = {rl.n_samples}: rl.algo = {rl.algo!r} needs at least "
                          f"{algo.min_samples} responses per prompt (a group of one has zero "
                          "advantage)")
    if 0 < rl.clip_ratio_high < rl.clip_ratio:
        raise ConfigError(f"rl.clip_ratio_high = {rl.clip_ratio_high}: must be 0 (symmetric) or "
                          f">= rl.clip_ratio = {rl.clip_ratio} (DAPO's clip-higher)")
    if rl.shifted_critic_mask and rl.mask_retrieved_in_critic:
        raise ConfigError("rl.shifted_critic_mask = True: Search-R1's shifted mask is its "
                          "response mask moved by one; it cannot be combined with "
                          "rl.mask_retrieved_in_critic = True")


def _type_name(types):
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(t.__name__ for t in types)


def load_config_file(path: str, overrides: dict[str, Any] | None = None
                     ) -> ml_collections.ConfigDict:
    """Loads ``get_config()`` from a config file (for code paths without absl flags)."""
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location("_searchr1_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    return apply_overrides(module.get_config(), overrides, path)


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: dict[str, Any] | None,
                    source: str = "the config") -> ml_collections.ConfigDict:
    """Sets ``{"section.field": value}`` in place; an unknown field names itself and ``source``."""
    for dotted, value in (overrides or {}).items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for part in parents:
            if part not in node:
                raise ConfigError(f"{dotted}: no such field in {source}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"{dotted}: no such field in {source}")
        node[leaf] = value
    return cfg
