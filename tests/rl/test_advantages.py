"""GAE, GRPO advantages and PPO token rewards vs independent numpy/torch references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from searchr1_jax import rl


def _verl_gae(rewards, values, mask, gamma, lam):
    """Search-R1/veRL loop: recursion over every position, mask only in whitening."""
    b, t = rewards.shape
    adv = np.zeros((b, t), np.float64)
    last = np.zeros(b)
    for i in reversed(range(t)):
        nxt = values[:, i + 1] if i < t - 1 else 0.0
        delta = rewards[:, i] + gamma * nxt - values[:, i]
        last = delta + gamma * lam * last
        adv[:, i] = last
    returns = adv + values
    sel = adv[mask > 0]
    mean, var = sel.mean(), sel.var(ddof=1)
    return (adv - mean) / np.sqrt(var + 1e-8), returns


def _right_padded(lengths, t):
    return (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype(np.float32)


def test_gae_matches_search_r1_on_right_padded_batch():
    r = np.random.default_rng(1)
    mask = _right_padded([5, 3, 7, 1], 7)
    values = (r.normal(size=mask.shape) * mask).astype(np.float32)  # critic zeroes padding
    rewards = (r.normal(size=mask.shape) * 0.01 * mask).astype(np.float32)
    for gamma, lam in [(1.0, 1.0), (0.99, 0.95), (0.9, 1.0)]:
        adv, ret = rl.gae_advantages(rewards, values, mask, gamma, lam)
        ref_adv, ref_ret = _verl_gae(rewards.astype(np.float64), values.astype(np.float64), mask,
                                     gamma, lam)
        np.testing.assert_allclose(np.asarray(adv)[mask > 0], ref_adv[mask > 0], atol=2e-5)
        np.testing.assert_allclose(np.asarray(ret)[mask > 0], ref_ret[mask > 0], atol=2e-5)
        assert np.all(np.asarray(adv)[mask == 0] == 0) and np.all(np.asarray(ret)[mask == 0] == 0)


def test_gae_hand_values_unwhitened():
    # one row, rewards [0, 0, 1], values [.5, .2, .4], gamma .9, lam .5
    # delta2 = 1 - .4 = .6                       A2 = .6
    # delta1 = 0 + .9*.4 - .2 = .16              A1 = .16 + .45*.6 = .43
    # delta0 = 0 + .9*.2 - .5 = -.32             A0 = -.32 + .45*.43 = -.1265
    adv, ret = rl.gae_advantages(np.array([[0, 0, 1.0]]), np.array([[.5, .2, .4]]),
                                 np.ones((1, 3)), 0.9, 0.5, whiten=False)
    np.testing.assert_allclose(adv, [[-.1265, .43, .6]], atol=1e-6)
    np.testing.assert_allclose(ret, [[.3735, .63, 1.0]], atol=1e-6)


def test_gae_masked_positions_do_not_influence():
    r = np.random.default_rng(2)
    mask = _right_padded([4, 6, 2], 6)
    rewards = r.normal(size=mask.shape).astype(np.float32)
    values = r.normal(size=mask.shape).astype(np.float32)
    base = rl.gae_advantages(rewards * mask, values * mask, mask, 0.95, 0.9)
    junk = np.where(mask > 0, 0, 1e6).astype(np.float32)
    pert = rl.gae_advantages(rewards * mask + junk, values * mask - junk, mask, 0.95, 0.9)
    for a, b in zip(base, pert):
        np.testing.assert_array_equal(a, b)


def test_gae_skips_holes_like_concatenating_the_real_tokens():
    # A row with observation tokens masked out in the middle equals the same row with them cut.
    r = np.random.default_rng(3)
    mask = np.array([[1, 1, 0, 0, 1, 1, 0]], np.float32)
    rewards = r.normal(size=(1, 7)).astype(np.float32)
    values = r.normal(size=(1, 7)).astype(np.float32)
    adv, ret = rl.gae_advantages(rewards, values, mask, 0.9, 0.8, whiten=False)
    keep = mask[0] > 0
    ref_adv, ref_ret = rl.gae_advantages(rewards[:, keep], values[:, keep], np.ones((1, 4)),
                                         0.9, 0.8, whiten=False)
    np.testing.assert_allclose(np.asarray(adv)[:, keep], ref_adv, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ret)[:, keep], ref_ret, atol=1e-6)


def test_ppo_token_rewards_search_r1_convention():
    response_mask = _right_padded([4, 2], 5)
    loss_mask = response_mask.copy()
    loss_mask[0, 1:3] = 0  # retrieved tokens: no KL penalty there
    old = np.array([[-1., -2, -3, -1, 9], [-.5, -.1, 7, 7, 7]], np.float32)
    ref = np.array([[-1.5, -1, -1, -2, 0], [-.5, -.3, 0, 0, 0]], np.float32)
    rewards, metrics = rl.ppo_token_rewards(np.array([1.0, 0.0]), old, ref, response_mask,
                                            loss_mask, kl_coef=0.1)
    expect = np.zeros((2, 5), np.float32)
    for b in range(2):
        for t in range(5):
            expect[b, t] = -0.1 * (old[b, t] - ref[b, t]) * loss_mask[b, t]
    expect[0, 3] += 1.0  # score on the last real token of the response mask
    np.testing.assert_allclose(rewards, expect, atol=1e-6)
    row_kl = [np.sum((old - ref)[b] * loss_mask[b]) / loss_mask[b].sum() for b in range(2)]
    np.testing.assert_allclose(metrics["kl"], np.mean(row_kl), rtol=1e-6)


def test_scores_at_last_token_with_holes_and_empty_rows():
    mask = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    out = np.asarray(rl.scores_at_last_token(np.array([2., 3., 4.]), mask))
    np.testing.assert_array_equal(out, [[0, 0, 2, 0], [0, 0, 0, 0], [0, 0, 0, 4]])


def _torch_grpo(scores, ids, eps=1e-6):
    """veRL compute_grpo_outcome_advantage, re-done with torch.std (unbiased) per group."""
    out = torch.zeros(len(scores), dtype=torch.float64)
    s = torch.tensor(scores, dtype=torch.float64)
    for g in set(ids):
        idx = [i for i in range(len(ids)) if ids[i] == g]
        if len(idx) == 1:
            mean, std = 0.0, 1.0
        else:
            mean, std = s[idx].mean(), s[idx].std()
        out[idx] = (s[idx] - mean) / (std + eps)
    return out.numpy()


def test_grpo_groups_including_singletons_and_all_equal():
    scores = np.array([1, 0, 0, 1, 1, 0.5, 0.5, 0.5, 0.7, 1, 0], np.float32)
    ids = np.array([0, 0, 0, 0, 0, 3, 3, 3, 5, 7, 7], np.int32)  # group 5: one response
    mask = _right_padded([3, 4, 1, 2, 5, 5, 3, 2, 4, 1, 5], 5)
    adv = np.asarray(rl.grpo_advantages(scores, ids, mask))
    ref = _torch_grpo(scores.tolist(), ids.tolist())
    np.testing.assert_allclose(adv, ref[:, None] * mask, rtol=1e-5, atol=1e-6)
    assert np.all(adv[5:8] == 0)                       # all-equal group: zero advantage
    np.testing.assert_allclose(adv[8, :4], 0.7 / (1 + 1e-6), rtol=1e-6)  # singleton: mean 0 std 1
    # hand value: group 7 = {1, 0}: mean .5, unbiased std sqrt(.5)
    np.testing.assert_allclose(adv[9, 0], 0.5 / (np.sqrt(.5) + 1e-6), rtol=1e-6)


def test_grpo_token_rewards_input_large_ids_and_jit():
    ids = np.array([10**6, 10**6, -3, -3], np.int32)  # any ints name groups
    mask = np.ones((4, 3), np.float32)
    token_rewards = np.zeros((4, 3), np.float32)
    token_rewards[:, -1] = [1, 0, 0.3, 0.1]
    adv = jax.jit(rl.grpo_advantages)(token_rewards, ids, mask)
    ref = _torch_grpo([1, 0, 0.3, 0.1], ids.tolist())
    np.testing.assert_allclose(adv, ref[:, None] * mask, rtol=1e-5)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 40), min_size=8, max_size=8), st.integers(0, 1000))
def test_grpo_property_vs_torch(ids, seed):
    scores = np.random.default_rng(seed).integers(0, 3, size=len(ids)).astype(np.float32) / 2
    adv = np.asarray(rl.grpo_advantages(scores, np.array(ids, np.int32),
                                        np.ones((len(ids), 2), np.float32)))
    np.testing.assert_allclose(adv[:, 0], _torch_grpo(scores.tolist(), ids), rtol=1e-4,
                               atol=1e-4)


def test_registry():
    names = ["drgrpo", "gae", "grpo", "reinforce_pp", "rloo"]
    assert rl.ADVANTAGE_ESTIMATORS.names() == names
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'vtrace'.*'gae', 'grpo'"):
        rl.ADVANTAGE_ESTIMATORS.get("vtrace")
    # One call signature for all; each adapter gives its function's numbers.
    r = np.array([[0, 0, 1.0], [0, .5, 0]], np.float32)
    m = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    v = np.array([[.5, .2, .4], [.1, .3, 0]], np.float32)
    ids = np.array([3, 3], np.int32)
    adv, ret = rl.ADVANTAGE_ESTIMATORS.get("gae")(r, m, values=v, gamma=.9, lam=.5)
    ref = rl.gae_advantages(r, v, m, .9, .5)
    np.testing.assert_allclose(adv, ref[0]) and np.testing.assert_allclose(ret, ref[1])
    adv, ret = rl.ADVANTAGE_ESTIMATORS.get("grpo")(r, m, group_ids=ids)
    np.testing.assert_allclose(adv, rl.grpo_advantages(r, ids, m))
    np.testing.assert_allclose(ret, adv)
    with pytest.raises(ValueError, match="needs the critic's values"):
        rl.ADVANTAGE_ESTIMATORS.get("gae")(r, m)
    with pytest.raises(ValueError, match="needs group_ids"):
        rl.ADVANTAGE_ESTIMATORS.get("rloo")(r, m)
    jitted = jax.jit(rl.gae_advantages, static_argnames=("gamma", "lam", "whiten"))
    m = jnp.ones((2, 3))
    np.testing.assert_allclose(jitted(m, m * .5, m, gamma=1.0, lam=1.0)[1],
                               rl.gae_advantages(m, m * .5, m)[1])


# Hand-computed group advantages: scores [1, 0, 0 | 1, 1 | .5], groups [7, 7, 7, 2, 2, 9].
GROUP_SCORES = np.array([1, 0, 0, 1, 1, .5], np.float32)
GROUP_IDS = np.array([7, 7, 7, 2, 2, 9], np.int32)


def test_drgrpo_is_score_minus_group_mean_without_std():
    # group 7: mean 1/3 -> [2/3, -1/3, -1/3]; group 2: mean 1 -> [0, 0]; lone row: mean 0 -> .5
    mask = np.ones((6, 2), np.float32)
    mask[1, 1] = 0  # a padding token gets 0
    adv = np.asarray(rl.drgrpo_advantages(GROUP_SCORES, GROUP_IDS, mask))
    want = np.array([2 / 3, -1 / 3, -1 / 3, 0, 0, .5])
    np.testing.assert_allclose(adv[:, 0], want, atol=1e-6)
    assert adv[1, 1] == 0.0
    adv, ret = rl.ADVANTAGE_ESTIMATORS.get("drgrpo")(GROUP_SCORES[:, None] * 1.0,
                                                     np.ones((6, 1)), group_ids=GROUP_IDS)
    np.testing.assert_allclose(np.asarray(adv)[:, 0], want, atol=1e-6)


def test_rloo_is_score_minus_mean_of_the_others():
    # group 7: [1 - (0+0)/2, 0 - (1+0)/2, 0 - (1+0)/2] = [1, -.5, -.5]; group 2: [1-1, 1-1];
    # a lone row keeps its score (veRL: its baseline is 0).
    adv = np.asarray(rl.rloo_advantages(GROUP_SCORES, GROUP_IDS, np.ones((6, 3))))
    np.testing.assert_allclose(adv[:, 2], [1, -.5, -.5, 0, 0, .5], atol=1e-6)
    # Token rewards are summed over time first: [.25, .75] -> score 1.
    tok = np.zeros((6, 2), np.float32)
    tok[:, 1] = GROUP_SCORES
    tok[0] = [.25, .75]
    np.testing.assert_allclose(np.asarray(rl.rloo_advantages(tok, GROUP_IDS, np.ones((6, 2))))
                               [:, 0], [1, -.5, -.5, 0, 0, .5], atol=1e-6)


def test_reinforce_pp_discounted_returns_whitened_over_the_batch():
    # row 0 rewards [0, 0, 1] (3 tokens), row 1 [0, .5] (2 tokens), gamma 1:
    # G = [1, 1, 1 | .5, .5]; mean .8, unbiased var (3 * .04 + 2 * .09) / 4 = .075
    r = np.array([[0, 0, 1, 0], [0, .5, 0, 0]], np.float32)
    m = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)
    adv, ret = rl.reinforce_pp_advantages(r, m, gamma=1.0)
    np.testing.assert_allclose(ret, [[1, 1, 1, 0], [.5, .5, 0, 0]], atol=1e-6)
    hi, lo = .2 / np.sqrt(.075 + 1e-8), -.3 / np.sqrt(.075 + 1e-8)
    np.testing.assert_allclose(adv, [[hi, hi, hi, 0], [lo, lo, 0, 0]], atol=1e-5)
    # gamma .5: row 0 returns [.25, .5, 1]; row 1 [.25, .5]
    _, ret = rl.ADVANTAGE_ESTIMATORS.get("reinforce_pp")(r, m, gamma=.5)
    np.testing.assert_allclose(ret, [[.25, .5, 1, 0], [.25, .5, 0, 0]], atol=1e-6)


def test_gae_whiten_mask_separates_recursion_from_statistics():
    # Search-R1's shifted critic mask: recurse over [1, 1, 1] but whiten over [1, 1, 0].
    adv_raw, _ = rl.gae_advantages(np.array([[0, 1.0, 0]]), np.array([[.5, .2, .4]]),
                                   np.ones((1, 3)), 1.0, 0.5, whiten=False)
    # delta2 = -.4, A2 = -.4; delta1 = 1 + .4 - .2 = 1.2, A1 = 1.2 - .2 = 1.0;
    # delta0 = .2 - .5 = -.3, A0 = -.3 + .5 = .2
    np.testing.assert_allclose(adv_raw, [[.2, 1.0, -.4]], atol=1e-6)
    adv, _ = rl.gae_advantages(np.array([[0, 1.0, 0]]), np.array([[.5, .2, .4]]),
                               np.ones((1, 3)), 1.0, 0.5, whiten_mask=np.array([[1, 1, 0.]]))
    mean, std = .6, np.sqrt(.32 + 1e-8)  # over [.2, 1.0]: unbiased var .32
    np.testing.assert_allclose(adv, [[(.2 - mean) / std, (1 - mean) / std, (-.4 - mean) / std]],
                               atol=1e-5)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.lists(st.integers(1, 6), min_size=3, max_size=3), st.floats(0.5, 1.0),
       st.floats(0.5, 1.0), st.integers(0, 1000))
def test_gae_property_vs_search_r1_loop(lengths, gamma, lam, seed):
    r = np.random.default_rng(seed)
    mask = _right_padded(lengths, 6)
    values = (r.normal(size=mask.shape) * mask).astype(np.float32)
    rewards = (r.normal(size=mask.shape) * mask).astype(np.float32)
    adv, ret = jax.jit(rl.gae_advantages)(rewards, values, mask, gamma, lam)
    ref_adv, ref_ret = _verl_gae(rewards.astype(np.float64), values.astype(np.float64), mask,
                                 gamma, lam)
    np.testing.assert_allclose(np.asarray(ret)[mask > 0], ref_ret[mask > 0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(adv)[mask > 0], ref_adv[mask > 0], atol=1e-4,
                               rtol=1e-4)
