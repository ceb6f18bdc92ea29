"""The RL step loop (PPO, GRPO and the other algorithms of ``algorithms.ALGORITHMS``).

The algorithm's parts (estimator, critic or not, rows per prompt, where the KL goes, masks)
come from ``algorithms.resolve(cfg.rl)`` once, in ``__init__``; nothing below compares names.
One RL step: next prompts from the data iterator (grouped algorithms: each repeated
``rl.n_samples`` times, one group per prompt) -> rollout with the actor's *current* parameters
(the sampler module is ``nnx.merge`` of the actor's graph and the very arrays in
``actor_state.params``: no copy) -> outcome rewards -> the train batch with its masks resolved
(prepare.py) -> old / reference log-probs and values (frozen, jitted, micro-batched) ->
advantages (prepare.py) -> ``train.ppo_epochs`` x updates over mini-batches of
``train.mini_batch_size`` rows (responses, as veRL counts them) of actor (and critic) -> metrics. ``Trainer.state_tree()`` / ``load_state_tree()`` expose everything a checkpoint needs
(params, optimizer states, step, data position); the rollout seed is a function of
``(train.seed, step)`` so a resumed run samples exactly what the uninterrupted one did.
"""
from __future__ import annotations

import gc
import resource
import time
from typing import Any, Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax import rewards
from searchr1_jax.parallel import DECODER_RULES, tree_shardings
from searchr1_jax.train import algorithms, prepare, step as step_lib
from searchr1_jax.train.critic import copy_module, make_critic
from searchr1_jax.train.state import TrainBatch, TrainState, make_optimizer, warmup_steps


class RolloutFn(Protocol):
    def __call__(self, model: nnx.Module, rows: Sequence[Any], group_ids: np.ndarray,
                 seed: int) -> tuple[Any, Any]:
        """-> (RolloutBatch, RolloutInfo) for ``rows`` (QaExample-like: question, answers)."""


def _bucket(n: int, minimum: int) -> int:
    """Smallest power of two >= max(n, minimum): few distinct shapes, so few compiles."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def score_rollouts(info, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``(reward, exact_match)`` per row from the decoded responses and gold answers.

    Answers are read from the model's own turns only: the invalid-action observation spells
    ``<answer> and </answer>``, which must never be scored as the model's answer.
    """
    prompts = getattr(info, "prompt_text", None) or [None] * len(info.response_text)
    rows = list(zip(info.response_text, info.generated_text, info.golden_answers, prompts))
    reward = np.array([rewards.score(r, g, kind, generated=own, prompt=p)
                       for r, own, g, p in rows], np.float32)
    em = np.array([rewards.score(r, g, "em", generated=own) for r, own, g, _ in rows],
                  np.float32)
    return reward, em


class Trainer:
    """Holds actor / critic / reference state and runs RL steps (see module doc)."""

    def __init__(self, cfg, actor: nnx.Module, rollout_fn: RolloutFn, data_iter, *,
                 mesh=None, rules=DECODER_RULES, min_width: int = 64,
                 reward_fn: Callable[[Any], tuple[np.ndarray, np.ndarray]] | None = None,
                 trajectory_path: str | None = None):
        self.cfg, self.rollout_fn, self.data_iter = cfg, rollout_fn, data_iter
        self.trajectory_path = trajectory_path
        self.mesh, self.min_width = mesh, min_width
        self.reward_fn = reward_fn or (lambda info: score_rollouts(info, cfg.rl.reward))
        rl, t = cfg.rl, cfg.train
        self.spec = algorithms.resolve(rl)
        self.n = self.spec.n_samples
        self.rows = algorithms.rows_per_step(cfg)
        self.mini_rows = int(t.mini_batch_size)  # rows (responses), as veRL counts them
        self.n_mini = self.rows // self.mini_rows
        n_micro = self.mini_rows // t.micro_batch_size
        self.updates_per_step = algorithms.updates_per_step(cfg)
        temperature = float(cfg.rollout.temperature) or 1.0
        self.step_count = 0

        self.graphdef, params, self.rest = nnx.split(actor, nnx.Param, ...)
        self.actor_tx = make_optimizer(
            float(t.actor_lr), num_warmup_steps=warmup_steps(t.actor_warmup_ratio, t.steps),
            updates_per_step=self.updates_per_step, weight_decay=float(t.weight_decay),
            grad_clip=float(t.grad_clip))
        self.actor_state, actor_sh = self._init_state(params, self.actor_tx, rules)
        # One update per step: old policy == current policy, so the old log-probs need no
        # forward pass of their own unless the KL-in-reward needs them before the update.
        self.on_policy = self.updates_per_step == 1
        self.need_old_logprobs = not self.on_policy or self.spec.kl == "reward"
        self.actor_update = step_lib.make_update_fn(
            step_lib.actor_loss_fn(self.graphdef, self.rest, rl, temperature=temperature,
                                   on_policy=self.on_policy),
            step_lib.actor_total_fn(rl), self.actor_tx, n_micro, mesh=mesh,
            state_shardings=actor_sh)
        self.logp_fn = step_lib.make_forward_fn(self.graphdef, self.rest, n_micro,
                                                kind="logprobs", temperature=temperature,
                                                mesh=mesh)
        # The frozen reference: its own buffers (the actor's are donated to the update step).
        self.ref_params = (jax.tree.map(jnp.copy, self.actor_state.params)
                           if self.spec.needs_reference else None)
        self.critic_state = self.critic_update = self.values_fn = None
        if self.spec.critic:
            critic = make_critic(actor, actor.cfg.hidden_size, seed=int(t.seed))
            self.critic_graphdef, c_params, self.critic_rest = nnx.split(critic, nnx.Param, ...)
            self.critic_tx = make_optimizer(
                float(t.critic_lr),
                num_warmup_steps=warmup_steps(t.critic_warmup_ratio, t.steps),
                updates_per_step=self.updates_per_step, weight_decay=float(t.weight_decay),
                grad_clip=float(t.grad_clip))
            self.critic_state, critic_sh = self._init_state(c_params, self.critic_tx, rules)
            self.critic_update = step_lib.make_update_fn(
                step_lib.critic_loss_fn(self.critic_graphdef, self.critic_rest, rl),
                step_lib.critic_total_fn(rl), self.critic_tx, n_micro, mesh=mesh,
                state_shardings=critic_sh)
            self.values_fn = step_lib.make_forward_fn(
                self.critic_graphdef, self.critic_rest, n_micro, kind="values", mesh=mesh)
        self._prepare = jax.jit(lambda batch, scores, group_ids, values: prepare.prepare_batch(
            batch, scores, group_ids, values, self.spec, cfg.rl))

    # ------------------------------------------------------------------ state
    def _init_state(self, params, tx, rules):
        state = TrainState.create(params, tx)
        if self.mesh is None:
            return state, None
        shardings = tree_shardings(state, self.mesh, rules)
        return jax.device_put(state, shardings), shardings

    def actor_model(self) -> nnx.Module:
        """The sampler's view of the actor: same graph, the current parameter arrays."""
        return nnx.merge(self.graphdef, self.actor_state.params, self.rest)

    def state_tree(self) -> dict[str, Any]:
        """Device state for a checkpoint (params + optimizer states + step counters)."""
        tree = {"actor": self.actor_state}
        if self.critic_state is not None:
            tree["critic"] = self.critic_state
        if self.ref_params is not None:
            tree["ref"] = self.ref_params
        return tree

    def host_state(self) -> dict[str, Any]:
        """Host state for a checkpoint: the RL step and the data iterator position."""
        out = {"step": int(self.step_count)}
        if hasattr(self.data_iter, "state"):
            out["data"] = self.data_iter.state.to_dict()
        return out

    def load_state(self, tree: dict[str, Any], host: dict[str, Any]) -> None:
        self.actor_state = tree["actor"]
        if "critic" in tree:
            self.critic_state = tree["critic"]
        if "ref" in tree:
            self.ref_params = tree["ref"]
        self.step_count = int(host["step"])
        if "data" in host and hasattr(self.data_iter, "restore"):
            from searchr1_jax.data import IteratorState
            self.data_iter.restore(IteratorState.from_dict(host["data"]))

    # ------------------------------------------------------------------ one RL step
    def _next_rows(self) -> tuple[list[Any], np.ndarray]:
        prompts = next(self.data_iter)
        rows = [x for x in prompts for _ in range(self.n)]
        return rows, np.repeat(np.arange(len(prompts), dtype=np.int32), self.n)

    def _to_device(self, batch: TrainBatch) -> TrainBatch:
        if self.mesh is None:
            return batch
        return jax.device_put(batch, step_lib.batch_shardings(batch, self.mesh))

    def train_step(self) -> dict[str, float]:
        """Runs one RL step and returns its metrics (floats)."""
        t_start = time.perf_counter()
        rows, group_ids = self._next_rows()
        seed = int(self.cfg.train.seed) * 1_000_003 + self.step_count
        rb, info = self.rollout_fn(self.actor_model(), rows, group_ids, seed)
        t_rollout = time.perf_counter()
        scores, em = self.reward_fn(info)
        if self.trajectory_path:
            from searchr1_jax.rollout.trajectory_log import write_trajectories
            write_trajectories(self.trajectory_path, info, rewards={"reward": scores, "em": em},
                               step=self.step_count + 1, group_ids=group_ids)
        base = self._to_device(prepare.train_batch(
            rb, self.spec, _bucket(rb.prompt_tokens.shape[1], self.min_width),
            _bucket(rb.response_tokens.shape[1], self.min_width)))
        fields = (base.prompt_tokens, base.prompt_mask, base.response_tokens, base.response_mask)
        old = (self.logp_fn(self.actor_state.params, *fields) if self.need_old_logprobs
               else base.old_logprobs)
        ref = self.logp_fn(self.ref_params, *fields) if self.ref_params is not None else None
        values = (self.values_fn(self.critic_state.params, *fields)
                  if self.values_fn is not None else None)
        base = base.replace(old_logprobs=old, ref_logprobs=ref)
        batch, prep_metrics = self._prepare(base, jnp.asarray(scores),
                                            jnp.asarray(prepare.dense_group_ids(group_ids)),
                                            values)
        t_prepare = time.perf_counter()
        update_metrics = self._update(batch)
        jax.block_until_ready(self.actor_state.params)
        t_end = time.perf_counter()
        self.step_count += 1
        # nnx modules merged for the rollout sit in reference cycles that keep a whole copy of
        # the previous step's parameters (and KV caches) alive until the cyclic GC happens to
        # run; collect now so memory stays flat across steps.
        gc.collect()
        return self._metrics(rb, info, scores, em, prep_metrics, update_metrics,
                             dict(rollout=t_rollout - t_start, prepare=t_prepare - t_rollout,
                                  train=t_end - t_prepare, step=t_end - t_start))

    def _update(self, batch: TrainBatch) -> list[dict[str, jax.Array]]:
        out = []
        for _ in range(int(self.cfg.train.ppo_epochs)):
            for i in range(self.n_mini):
                sl = slice(i * self.mini_rows, (i + 1) * self.mini_rows)
                mini = self._to_device(jax.tree.map(lambda x: x[sl], batch))
                metrics = {}
                if self.critic_update is not None:
                    self.critic_state, cm = self.critic_update(self.critic_state, mini)
                    metrics.update({f"critic/{k}" if "/" not in k else k: v
                                    for k, v in cm.items()})
                self.actor_state, am = self.actor_update(self.actor_state, mini)
                metrics.update({f"actor/{k}" if "/" not in k else k: v for k, v in am.items()})
                out.append(metrics)
        return out

    def _metrics(self, rb, info, scores, em, prep, updates, times) -> dict[str, float]:
        resp = np.asarray(rb.response_mask)
        gen = np.asarray(rb.loss_mask)
        tokens = float(np.asarray(rb.prompt_mask).sum() + resp.sum())
        m = {
            "step": float(self.step_count),
            "reward/mean": float(scores.mean()), "reward/em": float(em.mean()),
            "response/length": float(resp.sum(-1).mean()),
            "response/generated_tokens": float(gen.sum(-1).mean()),
            "response/num_searches": float(np.mean(info.num_searches)),
            "response/valid_format": float(np.mean(info.valid_format)),
            "response/has_answer": float(np.mean(info.has_answer)),
            "time/rollout_s": times["rollout"], "time/prepare_s": times["prepare"],
            "time/train_s": times["train"], "time/step_s": times["step"],
            "time/retrieval_s": float(getattr(self.rollout_fn, "last_retrieval_s", 0.0)),
            "perf/tokens_per_s": tokens / max(times["step"], 1e-9),
            "perf/train_tokens_per_s": tokens / max(times["prepare"] + times["train"], 1e-9),
            "perf/rollout_generated_tokens_per_s": float(gen.sum()) / max(times["rollout"], 1e-9),
            "actor/skipped_total": float(self.actor_state.skipped),
            "perf/max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        }
        m.update({k: float(v) for k, v in prep.items()})
        for key in updates[0] if updates else ():
            m[key] = float(np.mean([float(u[key]) for u in updates]))
        return m
