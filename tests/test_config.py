"""Config validation names the bad field; absl config flags override fields."""
import os

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from searchr1_jax.config import ConfigError, load_config_file, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "configs", "base.py")


def test_base_config_is_valid():
    validate(load_config_file(BASE))


@pytest.mark.parametrize("field,value,message", [
    ("rl.algo", "ppo2",
     r"rl\.algo = 'ppo2': must be one of \['drgrpo', 'grpo', 'ppo', 'reinforce_pp', 'rloo'\]"),
    ("rl.loss_agg", "seq_sum", r"rl\.loss_agg = 'seq_sum': must be one of"),
    ("rl.kl_reward_mask", "info", r"rl\.kl_reward_mask = 'info': must be one of"),
    ("rl.clip_ratio_high", -0.1, r"rl\.clip_ratio_high = -0\.1: must be >= 0"),
    ("rl.reward", "format2", r"rl\.reward = 'format2'"),
    ("eval.decoding", "beam", r"eval\.decoding = 'beam': must be one of"),
    ("data.use_file_prompt", "yes", r"data\.use_file_prompt = 'yes': expected bool"),
    ("rl.kl_kind", "k3", r"rl\.kl_kind = 'k3'"),
    ("rollout.top_p", 0.0, r"rollout\.top_p = 0\.0: must be in \(0, 1\]"),
    ("rollout.max_turns", 0, r"rollout\.max_turns = 0: must be > 0"),
    ("train.actor_lr", "1e-6", r"train\.actor_lr = '1e-6': expected int or float, got str"),
    ("rl.mask_retrieved_tokens", 1, r"rl\.mask_retrieved_tokens = 1: expected bool, got int"),
    ("mesh.fsdp", -2, r"mesh\.fsdp = -2"),
    ("retrieval.kind", "faiss", r"retrieval\.kind = 'faiss'"),
])
def test_bad_field_is_named(field, value, message):
    cfg = load_config_file(BASE)
    section, leaf = field.split(".")
    # Rebuild the section: ConfigDict refuses type-changing assignment, but a config *file* can
    # still hold a wrong type, which is what validate() must catch.
    fields = cfg[section].to_dict()
    fields[leaf] = value
    cfg[section] = ml_collections.ConfigDict(fields)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_cross_field_checks():
    cfg = load_config_file(BASE)
    cfg.train.micro_batch_size = 7  # does not divide the 256-row mini-batch
    with pytest.raises(ConfigError, match=r"train\.micro_batch_size = 7: must divide "
                                          r"train\.mini_batch_size = 256 rows"):
        validate(cfg)
    cfg = load_config_file(BASE)
    cfg.rl.n_samples = 1
    with pytest.raises(ConfigError, match=r"rl\.n_samples = 1: rl\.algo = 'grpo' needs"):
        validate(cfg)
    cfg = load_config_file(BASE)
    cfg.rl.clip_ratio_high = 0.1  # below clip_ratio 0.2
    with pytest.raises(ConfigError, match=r"rl\.clip_ratio_high = 0\.1: must be 0"):
        validate(cfg)
    cfg.rl.clip_ratio_high = 0.28  # DAPO
    validate(cfg)
    cfg.rl.algo, cfg.rl.shifted_critic_mask, cfg.rl.mask_retrieved_in_critic = "ppo", True, True
    cfg.train.mini_batch_size = 256
    with pytest.raises(ConfigError, match=r"rl\.shifted_critic_mask = True"):
        validate(cfg)


def test_mini_batch_counts_rows():
    """veRL's ppo_mini_batch_size counts responses: 2,560 GRPO rows / 256 = 10 updates."""
    from searchr1_jax.train.algorithms import rows_per_step, updates_per_step

    cfg = load_config_file(BASE)  # GRPO, 512 prompts x 5
    assert (rows_per_step(cfg), updates_per_step(cfg)) == (2560, 10)
    cfg.train.mini_batch_size = 300
    with pytest.raises(ConfigError, match=r"train\.mini_batch_size = 300: must divide the 2560 "
                                          r"rows of a step \(data\.train_batch_size = 512 x "
                                          r"rl\.n_samples = 5\)"):
        validate(cfg)
    cfg.train.mini_batch_size = 1280  # a mini-batch larger than the prompts is fine in rows
    assert updates_per_step(validate(cfg)) == 2
    cfg.rl.algo = "ppo"  # one row per prompt: 512 rows
    with pytest.raises(ConfigError, match=r"must divide the 512 rows of a step "
                                          r"\(data\.train_batch_size = 512\)"):
        validate(cfg)
    cfg.train.mini_batch_size = 256
    assert updates_per_step(validate(cfg)) == 2


def test_missing_field_is_named():
    cfg = load_config_file(BASE)
    del cfg.rl["kl_coef"]
    with pytest.raises(ConfigError, match=r"rl\.kl_coef: missing"):
        validate(cfg)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.py"):
        load_config_file(str(tmp_path / "nope.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="bad.py: defines no get_config"):
        load_config_file(str(bad))
    with pytest.raises(ConfigError, match="rl.nope: no such field"):
        load_config_file(BASE, {"rl.nope": 1})


def _parse(argv):
    # config_flags discovers override flags from the argv it is given at definition time.
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=fv, sys_argv=argv)
    fv(argv)
    return fv.config


def test_absl_flag_overrides():
    cfg = _parse(["prog", f"--config={BASE}", "--config.rl.algo=ppo", "--config.rollout.max_turns=2"])
    assert cfg.rl.algo == "ppo" and cfg.rollout.max_turns == 2
    validate(cfg)
    with pytest.raises(AttributeError, match=r"Did you mean \"algo\""):
        _parse(["prog", f"--config={BASE}", "--config.rl.algoo=ppo"])


def test_apply_overrides_names_the_unknown_field():
    from searchr1_jax.config import apply_overrides
    cfg = load_config_file(BASE)
    apply_overrides(cfg, {"rl.algo": "ppo", "rollout.max_turns": 2})
    assert cfg.rl.algo == "ppo" and cfg.rollout.max_turns == 2
    with pytest.raises(ConfigError, match=r"nope\.x: no such field in demo.py"):
        apply_overrides(cfg, {"nope.x": 1}, "demo.py")
    with pytest.raises(ConfigError, match=r"rl\.nope: no such field"):
        apply_overrides(cfg, {"rl.nope": 1})
