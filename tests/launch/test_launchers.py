"""Commands the docs and launchers print name real configs, and evaluation pairs a training
run with the config it was trained with."""
import glob
import os
import re

import pytest

from searchr1_jax.config import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = sorted(glob.glob(os.path.join(REPO, "launch", "*.sh")) + [os.path.join(REPO, "README.md")])


@pytest.mark.parametrize("path", DOCS, ids=os.path.basename)
def test_named_configs_exist(path):
    names = re.findall(r"configs/[A-Za-z0-9._-]+\.py", open(path, encoding="utf-8").read())
    for name in names:
        assert os.path.exists(os.path.join(REPO, name)), f"{path} names {name}"


def test_launcher_usage_lines_name_a_preset():
    for name in ("gpu_node.sh", "tpu_pod.sh"):
        text = open(os.path.join(REPO, "launch", name), encoding="utf-8").read()
        assert re.search(r"launch/%s configs/qwen2\.5-3b_grpo\.py" % name, text), name


def test_readme_evaluates_a_run_with_its_own_config():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    pairs = re.findall(r"searchr1_jax\.evaluate --config=(configs/\S+\.py) --checkpoint=(\S+)",
                       text)
    assert pairs
    for config, run in pairs:
        assert load_config_file(os.path.join(REPO, config)).output.dir == run, (config, run)
