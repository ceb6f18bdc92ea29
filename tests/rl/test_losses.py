"""KL estimators, PPO policy/value losses, entropy and log-probs vs numpy loops / torch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from searchr1_jax import rl

R = np.random.default_rng(7)


def test_kl_estimators_hand_values():
    logp = np.array([[-1.0, -2.0, -0.5]], np.float32)
    ref = np.array([[-1.5, -1.0, -30.0]], np.float32)
    d = logp - ref  # [.5, -1, 29.5]
    np.testing.assert_allclose(rl.kl_penalty(logp, ref, "kl"), d, rtol=1e-6)
    np.testing.assert_allclose(rl.kl_penalty(logp, ref, "abs"), np.abs(d), rtol=1e-6)
    np.testing.assert_allclose(rl.kl_penalty(logp, ref, "mse"), 0.5 * d ** 2, rtol=1e-6)
    k3 = [np.exp(-x) + x - 1 for x in (0.5, -1.0)]  # exp(ref-logp) - (ref-logp) - 1
    lv = np.asarray(rl.kl_penalty(logp, ref, "low_var_kl"))
    np.testing.assert_allclose(lv[0, :2], k3, rtol=1e-6)
    assert lv[0, 2] == 10.0  # exp(-29.5) + 29.5 - 1 = 28.5, clamped to 10
    big = np.asarray(rl.kl_penalty(np.array([0.0]), np.array([20.0]), "low_var_kl"))
    assert big[0] == 10.0  # exp(20) - 21 clamped
    with pytest.raises(ValueError, match="unknown KL estimator 'k9'"):
        rl.kl_penalty(logp, ref, "k9")


def test_kl_loss_masked_mean():
    logp = R.normal(size=(2, 4)).astype(np.float32)
    ref = R.normal(size=(2, 4)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
    vals = [np.exp(ref[b, t] - logp[b, t]) - (ref[b, t] - logp[b, t]) - 1
            for b in range(2) for t in range(4) if mask[b, t]]
    np.testing.assert_allclose(rl.kl_loss(logp, ref, mask), np.mean(vals), rtol=1e-5)
    poisoned = np.where(mask > 0, ref, 1e4).astype(np.float32)  # exp(1e4) would overflow
    np.testing.assert_allclose(rl.kl_loss(logp, poisoned, mask), np.mean(vals), rtol=1e-5)


def _ref_policy_loss(logp, old, adv, mask, eps_lo, eps_hi):
    losses, clipped_count, kl = [], 0, []
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if not mask[b, t]:
                continue
            ratio = np.exp(logp[b, t] - old[b, t])
            l1 = -adv[b, t] * ratio
            l2 = -adv[b, t] * min(max(ratio, 1 - eps_lo), 1 + eps_hi)
            losses.append(max(l1, l2))
            clipped_count += l2 > l1
            kl.append(old[b, t] - logp[b, t])
    n = len(losses)
    return sum(losses) / n, clipped_count / n, sum(kl) / n


def _policy_batch():
    # ratios chosen to hit both clip sides with both advantage signs
    log_ratio = np.log(np.array([[1.5, 0.5, 1.1, 0.9, 1.0],
                                 [1.5, 0.5, 1.3, 0.7, 2.0]], np.float64))
    old = R.normal(size=(2, 5)) - 2
    logp = old + log_ratio
    adv = np.array([[1.0, 1.0, -1.0, -1.0, 2.0], [-1.0, -1.0, 0.5, -0.5, 3.0]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], np.float32)
    return [x.astype(np.float32) for x in (logp, old, adv)] + [mask]


def test_policy_loss_clipping_both_sides():
    logp, old, adv, mask = _policy_batch()
    loss, m = rl.ppo_policy_loss(logp, old, adv, mask, 0.2)
    ref_loss, ref_clip, ref_kl = _ref_policy_loss(logp, old, adv, mask, 0.2, 0.2)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(m["clipfrac"], ref_clip, rtol=1e-6)
    np.testing.assert_allclose(m["approx_kl"], ref_kl, rtol=1e-5, atol=1e-6)
    # r=1.5,A=1 clipped high; r=.5,A=-1 clipped low (row 1); r=1.5,A=-1 / r=.5,A=1 not clipped
    assert 0 < float(m["clipfrac"]) < 1
    # asymmetric clip range (DAPO "clip-higher")
    loss_hi, _ = rl.ppo_policy_loss(logp, old, adv, mask, 0.2, clip_ratio_high=0.28)
    np.testing.assert_allclose(loss_hi, _ref_policy_loss(logp, old, adv, mask, .2, .28)[0],
                               rtol=1e-5)


def test_policy_gradient_zero_on_masked_tokens_and_perturbation_invariant():
    logp, old, adv, mask = _policy_batch()
    mask[0, 1] = mask[1, 3] = 0  # retrieved tokens
    grad = jax.grad(lambda lp: rl.ppo_policy_loss(lp, old, adv, mask, 0.2)[0])(jnp.asarray(logp))
    grad = np.asarray(grad)
    assert np.all(grad[mask == 0] == 0) and np.all(np.isfinite(grad))
    assert np.any(grad[mask > 0] != 0)
    junk = np.where(mask > 0, 0, 500.0).astype(np.float32)  # exp(500) overflows float32
    l0, m0 = rl.ppo_policy_loss(logp, old, adv, mask, 0.2)
    l1, m1 = rl.ppo_policy_loss(logp + junk, old - junk, adv + junk, mask, 0.2)
    assert float(l0) == float(l1) and float(m0["clipfrac"]) == float(m1["clipfrac"])
    g1 = jax.grad(lambda lp: rl.ppo_policy_loss(lp, old - junk, adv, mask, 0.2)[0])(
        jnp.asarray(logp + junk))
    assert np.all(np.isfinite(g1)) and np.all(np.asarray(g1)[mask == 0] == 0)


def test_retrieved_token_mask_changes_loss_exactly_there():
    """mask on vs off: the loss differs, and only by the retrieved positions' terms."""
    logp, old, adv, response_mask = _policy_batch()
    loss_mask = response_mask.copy()
    loss_mask[0, 2:4] = 0  # an <information> span
    per_token = lambda m: rl.ppo_policy_loss(logp, old, adv, m, 0.2, loss_agg="token_mean")[0]
    with_mask, without = float(per_token(loss_mask)), float(per_token(response_mask))
    assert with_mask != without
    # reconstruct both from per-token terms: they differ exactly by the masked span's terms
    terms = np.zeros_like(logp)
    for b in range(2):
        for t in range(5):
            terms[b, t] = _ref_policy_loss(logp[b:b+1, t:t+1], old[b:b+1, t:t+1],
                                           adv[b:b+1, t:t+1], np.ones((1, 1)), .2, .2)[0]
    np.testing.assert_allclose(with_mask, (terms * loss_mask).sum() / loss_mask.sum(), rtol=1e-5)
    np.testing.assert_allclose(without, (terms * response_mask).sum() / response_mask.sum(),
                               rtol=1e-5)
    # changing logp only on the masked span leaves the masked loss unchanged
    shifted = logp.copy()
    shifted[0, 2:4] += 3.0
    assert float(rl.ppo_policy_loss(shifted, old, adv, loss_mask, .2)[0]) == with_mask
    assert float(rl.ppo_policy_loss(shifted, old, adv, response_mask, .2)[0]) != without


def test_seq_mean_token_mean_policy_loss():
    logp, old, adv, mask = _policy_batch()
    loss, _ = rl.ppo_policy_loss(logp, old, adv, mask, 0.2, loss_agg="seq_mean_token_mean")
    rows = [_ref_policy_loss(logp[b:b+1], old[b:b+1], adv[b:b+1], mask[b:b+1], .2, .2)[0]
            for b in range(2)]
    np.testing.assert_allclose(loss, np.mean(rows), rtol=1e-5)


def test_value_loss_hand_and_loop():
    # v=2, v_old=1, R=0: clip(v)=1.5 -> max(4, 2.25)=4; v=0, v_old=1, R=2: clip=.5 -> max(4, 2.25)
    # v=1.2, v_old=1, R=3: clipped = 1.2 -> (1.8^2) both; v=.2, v_old=1, R=0: clip=.5 -> .25 > .04
    values = np.array([[2.0, 0.0, 1.2, 0.2, 99.0]], np.float32)
    old = np.array([[1.0, 1.0, 1.0, 1.0, 0.0]], np.float32)
    ret = np.array([[0.0, 2.0, 3.0, 0.0, -99.0]], np.float32)
    mask = np.array([[1, 1, 1, 1, 0]], np.float32)
    loss, m = rl.value_loss(values, old, ret, mask, 0.5)
    np.testing.assert_allclose(loss, 0.5 * (4 + 4 + 1.8 ** 2 + 0.25) / 4, rtol=1e-6)
    np.testing.assert_allclose(m["vf_clipfrac"], 0.25, rtol=1e-6)
    g = jax.grad(lambda v: rl.value_loss(v, old, ret, mask, 0.5)[0])(jnp.asarray(values))
    assert float(g[0, 4]) == 0.0 and float(g[0, 3]) == 0.0  # clipped branch: no grad
    assert float(g[0, 0]) != 0.0


def test_entropy_and_logprobs_vs_torch():
    logits = (R.normal(size=(2, 3, 11)) * 4).astype(np.float32)
    logits[0, 0, :5] = -np.inf  # banned vocabulary entries
    logits[1, 2] += 1e4         # huge logits must stay stable
    tokens = R.integers(5, 11, size=(2, 3)).astype(np.int32)
    t_logits = torch.tensor(logits, dtype=torch.float64)
    ref_ent = torch.distributions.Categorical(logits=t_logits).entropy().numpy()
    ref_lp = torch.log_softmax(t_logits, -1).gather(-1, torch.tensor(tokens).long()[..., None])
    np.testing.assert_allclose(rl.entropy_from_logits(logits), ref_ent, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rl.token_logprobs(logits, tokens), ref_lp[..., 0].numpy(),
                               rtol=1e-5, atol=1e-5)
    # temperature (row 0 only: 1e4 / 0.7 is not representable to better than 1e-3 in fp32)
    ref_t = torch.log_softmax(t_logits[:1] / 0.7, -1).gather(
        -1, torch.tensor(tokens[:1]).long()[..., None])
    np.testing.assert_allclose(rl.token_logprobs(logits[:1], tokens[:1], 0.7),
                               ref_t[..., 0].numpy(), rtol=1e-5, atol=1e-5)
    bf16 = jnp.asarray(logits[1:]).astype(jnp.bfloat16)
    assert rl.entropy_from_logits(bf16).dtype == jnp.float32
    assert np.all(np.isfinite(jax.grad(lambda z: rl.entropy_from_logits(z).sum())(
        jnp.asarray(logits[1:]))))


def test_all_jit():
    logp, old, adv, mask = _policy_batch()
    for fn in (lambda: rl.ppo_policy_loss(logp, old, adv, mask, 0.2)[0],
               lambda: rl.value_loss(logp, old, adv, mask, 0.5)[0],
               lambda: rl.kl_loss(logp, old, mask)):
        np.testing.assert_allclose(jax.jit(fn)(), fn(), rtol=1e-6)
    jitted = jax.jit(rl.ppo_policy_loss, static_argnames=("clip_ratio", "loss_agg"))
    np.testing.assert_allclose(jitted(logp, old, adv, mask, clip_ratio=0.2)[0],
                               rl.ppo_policy_loss(logp, old, adv, mask, 0.2)[0], rtol=1e-6)
