"""notebooks/*.ipynb: committed without outputs, opened by a Colab badge (also in the README),
and executed top to bottom through a real Jupyter kernel (nbclient) with small settings
(``SEARCHR1_NOTEBOOK_SMALL=1``, read by each notebook's first code cell)."""
import json
import os
import re

import pytest

from tests.train._tiny import REPO

NOTEBOOKS = os.path.join(REPO, "notebooks")
NAMES = ("quickstart", "retrieval", "train_grpo")
BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/"
                   r"colab-badge\.svg\)\]\(https://colab\.research\.google\.com/github/"
                   r"([\w.-]+/[\w.-]+)/blob/main/notebooks/(\w+)\.ipynb\)")


def load(name):
    with open(os.path.join(NOTEBOOKS, f"{name}.ipynb"), encoding="utf-8") as f:
        return json.load(f)


def test_every_notebook_is_listed():
    assert sorted(f[:-6] for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = load(name)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name}.ipynb cell {i} has outputs: strip them"
            assert cell["execution_count"] is None, f"{name}.ipynb cell {i} has an execution count"
        assert "attachments" not in cell or not cell["attachments"], (name, i)


@pytest.mark.parametrize("name", NAMES)
def test_badge_parameters_and_install_cells(name):
    nb = load(name)
    first = "".join(nb["cells"][0]["source"])
    (repo, target), = BADGE.findall(first)
    assert target == name
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert 'os.environ.get("SEARCHR1_NOTEBOOK_SMALL"' in code[0]  # parameters come first
    assert f'REPO_URL = "https://github.com/{repo}"' in code[1]  # one URL constant, as the badge
    assert 'find_spec("searchr1_jax") is None' in code[1]       # a no-op where it imports
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    assert any(t == name and r == repo for r, t in BADGE.findall(readme)), \
        f"README has no Colab badge for notebooks/{name}.ipynb"


def execute(name, tmp_path, monkeypatch, timeout=900):
    """Runs the notebook in a fresh kernel (cwd: a scratch dir) with small settings."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("SEARCHR1_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    nb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb


def outputs(nb, kind="text"):
    """All text (stream + text/plain) or HTML outputs, in order."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if kind == "text" and o.output_type == "stream":
                out.append(o.text)
            elif o.output_type in ("display_data", "execute_result", "update_display_data"):
                data = o.get("data", {})
                key = "text/html" if kind == "html" else "image/png" if kind == "png" else \
                    "text/plain"
                if key in data:
                    out.append(data[key])
    return out


def test_quickstart_runs(tmp_path, monkeypatch):
    nb = execute("quickstart", tmp_path, monkeypatch)
    text = "".join(outputs(nb))
    assert "smollm2-135m-instruct: 30 layers" in text
    assert "turn 1: action=" in text
    assert re.search(r"\{'em': [01]\.0, 'sub_em': [01]\.0, 'f1': [\d.]+, 'format': [\d.]+\}", text)
    html = "".join(outputs(nb, "html"))
    assert 'title="loss_mask=1"' in html  # the coloured trajectory rendered
    assert re.search(r"\d+ of \d+ response tokens are trained on", text)


def test_retrieval_runs(tmp_path, monkeypatch):
    nb = execute("retrieval", tmp_path, monkeypatch)
    text = "".join(outputs(nb))
    assert "200 passages -> (200, 384) float32" in text
    recall = re.search(r"recall@3 vs exact over \d+ questions: \{'hashing only': ([\d.]+), "
                       r"'re-scored \(default\)': ([\d.]+)\}", text)
    assert recall and float(recall.group(2)) >= 0.95, text[-1500:]
    assert re.search(r"serving on http://127\.0\.0\.1:\d+", text)
    assert "Doc 1(Title: " in text


@pytest.mark.slow
def test_train_grpo_runs(tmp_path, monkeypatch):
    nb = execute("train_grpo", tmp_path, monkeypatch, timeout=1800)
    text = "".join(outputs(nb))
    assert "cpu x 1: smollm2-135m-instruct" in text and "warm start skipped" in text
    assert re.search(r"EM: [\d.]+ at step 0 -> [\d.]+ at step 1", text)
    assert outputs(nb, "png")  # the live plot
    assert os.path.isfile(next(tmp_path.glob("runs/notebook_grpo/*/notebook_curves.png")))
