"""The train batch of a step: masks resolved once (Search-R1's KL and critic masks written out
by hand), advantages through the algorithm's estimator."""
import jax.numpy as jnp
import numpy as np
import pytest

from searchr1_jax.rollout import RolloutBatch
from searchr1_jax.train import algorithms, prepare
from tests.train._tiny import base_config


def _rollout(response_mask, loss_mask, prompt_len=2):
    response_mask = np.asarray(response_mask, np.float32)
    b, r = response_mask.shape
    return RolloutBatch(
        prompt_tokens=jnp.ones((b, prompt_len), jnp.int32),
        prompt_mask=jnp.ones((b, prompt_len), bool),
        response_tokens=jnp.asarray(np.arange(b * r).reshape(b, r) % 40 + 3, jnp.int32),
        response_mask=jnp.asarray(response_mask),
        loss_mask=jnp.asarray(np.asarray(loss_mask, np.float32)),
        sample_logprobs=jnp.zeros((b, r)), group_ids=jnp.arange(b, dtype=jnp.int32))


def _whiten(adv, mask):
    """veRL masked_whiten: (a - mean) / sqrt(unbiased var + 1e-8) over the masked entries."""
    sel = adv[mask > 0]
    return (adv - sel.mean()) / np.sqrt(sel.var(ddof=1) + 1e-8)


def _ppo_cfg(**rl_fields):
    cfg = base_config()
    cfg.rl.algo, cfg.rl.n_samples, cfg.rl.use_kl_loss, cfg.rl.kl_kind = "ppo", 1, False, "kl"
    for k, v in rl_fields.items():
        cfg.rl[k] = v
    return cfg


# One row: generated, generated, observation, observation, generated, padding.
RESP = [[1, 1, 1, 1, 1, 0]]
GEN = [[1, 1, 0, 0, 1, 0]]
OLD = [[-1.0, -2.0, -3.0, -4.0, -5.0, 0.0]]
REF = [[-1.5, -1.5, -1.5, -1.5, -1.5, 0.0]]  # k1 = old - ref = [.5, -.5, -1.5, -2.5, -3.5]


@pytest.mark.parametrize("kl_reward_mask,token_rewards,kl_metric", [
    # Search-R1 apply_kl_penalty multiplies by info_mask even with state_masking off:
    # r = score(1.0 on the last token) - 0.1 * k1 on generated tokens only.
    ("generated", [-.05, .05, 0, 0, 1 + .35], (.5 - .5 - 3.5) / 3),
    # The switch: the KL follows the policy mask (here all response tokens).
    ("policy", [-.05, .05, .15, .25, 1 + .35], (.5 - .5 - 1.5 - 2.5 - 3.5) / 5),
])
def test_kl_in_reward_mask_in_the_no_mask_arm(kl_reward_mask, token_rewards, kl_metric):
    cfg = _ppo_cfg(mask_retrieved_tokens=False, kl_coef=0.1, kl_reward_mask=kl_reward_mask)
    spec = algorithms.resolve(cfg.rl)
    batch = prepare.train_batch(_rollout(RESP, GEN), spec, 2, 6)
    np.testing.assert_array_equal(batch.policy_mask, RESP)  # no-mask arm: all response tokens
    batch = batch.replace(old_logprobs=jnp.asarray(OLD), ref_logprobs=jnp.asarray(REF))
    out, metrics = prepare.prepare_batch(batch, jnp.asarray([1.0]), jnp.asarray([0]),
                                         jnp.zeros((1, 6)), spec, cfg.rl)
    # values 0, gamma = lam = 1: A_t = sum of the rewards from t on, whitened over the response.
    raw = np.cumsum(np.asarray(token_rewards)[::-1])[::-1]
    want = _whiten(np.append(raw, 0.0), np.asarray(RESP[0], np.float32))
    np.testing.assert_allclose(np.asarray(out.advantages)[0, :5], want[:5], atol=1e-4)
    np.testing.assert_allclose(float(metrics["actor/reward_kl"]), kl_metric, atol=1e-6)


# Row 0: 2 real response tokens of 4 (score 1); row 1: 4 of 4, the batch's longest (score 0).
RESP2 = [[1, 1, 0, 0], [1, 1, 1, 1]]
VALUES = [[.5, .2, .4, .9], [.1, .1, .1, .1]]  # the critic's output at every position


def _shifted_case(shifted):
    cfg = _ppo_cfg(kl_coef=0.0, lam=0.5, shifted_critic_mask=shifted)
    spec = algorithms.resolve(cfg.rl)
    batch = prepare.train_batch(_rollout(RESP2, RESP2), spec, 2, 8)  # bucket-padded to 8
    out, _ = prepare.prepare_batch(batch, jnp.asarray([1.0, 0.0]), jnp.asarray([0, 1]),
                                   jnp.pad(jnp.asarray(VALUES), [(0, 0), (0, 4)]), spec, cfg.rl)
    return batch, out


def test_shifted_critic_mask_reproduces_search_r1():
    """Search-R1 dp_critic: values * attention_mask[:, -R-1:-1] and the value loss over the
    same shifted mask; GAE over every position, whitened over the response mask.
    Row 0 by hand (gamma 1, lam .5, values kept at t = 0, 1, 2):
      t=2: delta = 0 + 0 - .4 = -.4              A2 = -.4
      t=1: delta = 1 + .4 - .2 = 1.2             A1 = 1.2 + .5 * -.4 = 1.0
      t=0: delta = 0 + .2 - .5 = -.3             A0 = -.3 + .5 * 1.0 = .2
      returns = A + V = [.7, 1.2, 0.0]  (the first padding position regresses on 0)
    Row 1 (no padding: Search-R1's batch is as wide as its longest row, so nothing shifts in):
      A = [-.0125, -.025, -.05, -.1], returns = A + .1."""
    batch, out = _shifted_case(True)
    np.testing.assert_array_equal(batch.critic_mask,
                                  [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(batch.policy_mask[:, :4], RESP2)
    raw = np.array([[.2, 1.0, -.4, 0], [-.0125, -.025, -.05, -.1]])
    want = _whiten(raw, np.asarray(RESP2, np.float32))
    np.testing.assert_allclose(np.asarray(out.advantages)[:, :4][np.asarray(RESP2) > 0],
                               want[np.asarray(RESP2) > 0], atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.returns)[0, :3], [.7, 1.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.returns)[1, :4], raw[1] + .1, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.old_values)[0, :4], [.5, .2, .4, 0], atol=1e-7)


def test_default_critic_mask_is_the_response_mask():
    """The default (the off-by-one fixed): row 0's GAE stops at its last real token.
      t=1: delta = 1 - .2 = .8  A1 = .8;  t=0: delta = .2 - .5 = -.3  A0 = -.3 + .5 * .8 = .1"""
    batch, out = _shifted_case(False)
    np.testing.assert_array_equal(batch.critic_mask[:, :4], RESP2)
    raw = np.array([[.1, .8, 0, 0], [-.0125, -.025, -.05, -.1]])
    want = _whiten(raw, np.asarray(RESP2, np.float32))
    m = np.asarray(RESP2) > 0
    np.testing.assert_allclose(np.asarray(out.advantages)[:, :4][m], want[m], atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.returns)[0, :2], [.6, 1.0], atol=1e-6)
    assert float(out.returns[0, 2]) == 0.0 and float(out.old_values[0, 2]) == 0.0


def test_masks_resolved_once_and_unused_fields_are_none():
    cfg = base_config()  # GRPO, KL as a loss term
    spec = algorithms.resolve(cfg.rl)
    batch = prepare.train_batch(_rollout(RESP, GEN), spec, 4, 8)
    np.testing.assert_array_equal(batch.policy_mask[0], GEN[0] + [0, 0])
    assert batch.kl_mask is None and batch.critic_mask is None
    assert batch.returns is None and batch.old_values is None
    assert batch.ref_logprobs is not None
    assert batch.prompt_tokens.shape == (1, 4) and not bool(batch.prompt_mask[0, 0])
    cfg.rl.kl_coef = 0.0  # no KL term at all: no reference model
    assert prepare.train_batch(_rollout(RESP, GEN), algorithms.resolve(cfg.rl), 4, 8
                               ).ref_logprobs is None
    with pytest.raises(ValueError, match="exceed the padded widths"):
        prepare.train_batch(_rollout(RESP, GEN), spec, 1, 8)
