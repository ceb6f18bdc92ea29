"""launch/ablate.py: run configs differ from the baseline in exactly their switch; figures
and the final EM table come out of the runs' files."""
import importlib.util
import json
import os

import pytest

from searchr1_jax.eval import aggregate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ablate():
    spec = importlib.util.spec_from_file_location("ablate", os.path.join(REPO, "launch",
                                                                         "ablate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_runs_share_the_baseline(ablate):
    assert ablate.runs_for(["mask", "algo"]) == [ablate.BASELINE, "no_mask", "ppo"]
    with pytest.raises(ValueError, match="unknown pair 'lr'"):
        ablate.runs_for(["lr"])


def test_each_run_changes_only_its_switch(ablate, tmp_path):
    args = ablate.parse_args([f"--out={tmp_path}", "--steps=3", "--base_model=/some/base"])
    base = _flat(ablate.run_config(args, ablate.BASELINE).to_dict())
    assert base["train.steps"] == 3
    expected = {"no_mask": {"rl.mask_retrieved_tokens"},
                "ppo": {"rl.algo", "rl.n_samples", "rl.use_kl_loss", "train.mini_batch_size",
                        "train.micro_batch_size"},
                "base": {"model.name", "data.prompt_style"}}
    for name, keys in expected.items():
        cfg = _flat(ablate.run_config(args, name).to_dict())
        diff = {k for k in cfg if cfg[k] != base[k] and k != "output.dir"}
        assert diff and diff <= keys, (name, diff)
        assert cfg["train.seed"] == base["train.seed"]
        assert cfg["data.shuffle_seed"] == base["data.shuffle_seed"]
        assert cfg["output.dir"] == os.path.join(str(tmp_path), name)
    assert ablate.run_config(args, "base").data.prompt_style == "auto"  # Search-R1's rule
    ppo = ablate.run_config(args, "ppo")
    assert ppo.rl.algo == "ppo" and ppo.rl.n_samples == 1 and not ppo.rl.use_kl_loss
    no_base = ablate.parse_args([f"--out={tmp_path}"])
    with pytest.raises(ValueError, match="--base_model"):
        ablate.run_config(no_base, "base")


def _fake_run(out, name, rewards, em_by_source):
    os.makedirs(os.path.join(out, name, "eval"))
    with open(os.path.join(out, name, "metrics.jsonl"), "w") as f:
        for step, r in enumerate(rewards, 1):
            f.write(json.dumps({"step": float(step), "reward/mean": r,
                                "response/length": 100.0 + step,
                                "response/num_searches": 0.5 * step}) + "\n")
    rows = [dict(method="search_r1", seed=0, data_source=src, em=e, sub_em=e, f1=e)
            for src, ems in em_by_source.items() for e in ems]
    with open(os.path.join(out, name, "eval", "results.json"), "w") as f:
        json.dump(aggregate(rows), f)


def test_figures_and_final_table_from_run_files(ablate, tmp_path):
    out = str(tmp_path)
    _fake_run(out, ablate.BASELINE, [0.1, 0.2, 0.4], {"nq": [1, 0], "hotpotqa": [1, 1]})
    _fake_run(out, "no_mask", [0.1, 0.1, 0.15], {"nq": [0, 0], "hotpotqa": [1, 0]})
    _fake_run(out, "ppo", [0.0, 0.3, 0.35], {"nq": [1, 1], "hotpotqa": [0, 0]})
    paths = ablate.write_figures(out, ["mask", "algo"])
    for key in ("reward_mask", "reward_algo", "response_dynamics", "final_em_png"):
        with open(paths[key], "rb") as f:
            assert f.read(8) == PNG_MAGIC, key
    md = open(paths["final_em_md"]).read()
    assert "| Method | NQ | HotpotQA | Avg. |" in md
    assert "| GRPO, mask, instruct | 0.500 | 1.000 | 0.750 |" in md
    assert "| no retrieved-token mask | 0.000 | 0.500 | 0.250 |" in md
    assert "| PPO | 1.000 | 0.000 | 0.500 |" in md
    csv_lines = open(paths["final_em_csv"]).read().splitlines()
    assert csv_lines[0] == "run,nq,hotpotqa,avg" and len(csv_lines) == 4


def test_missing_evaluation_is_named(ablate, tmp_path):
    _fake_run(str(tmp_path), ablate.BASELINE, [0.1], {"nq": [1]})
    _fake_run(str(tmp_path), "no_mask", [0.1], {"nq": [1]})
    os.remove(os.path.join(str(tmp_path), "no_mask", "eval", "results.json"))
    with pytest.raises(FileNotFoundError, match="run 'no_mask' has no evaluation"):
        ablate.write_figures(str(tmp_path), ["mask"])
