#!/usr/bin/env bash
# Runs a training config on GPU nodes: one process per node, all local GPUs in one mesh.
#
# Single node:  bash launch/gpu_node.sh configs/qwen2.5-3b_grpo.py [--config.field=value ...]
# SLURM:        sbatch --nodes=2 --gpus-per-node=8 --wrap "srun bash launch/gpu_node.sh CONFIG"
#
# Under SLURM (or Open MPI) jax.distributed.initialize() auto-detects the coordinator; elsewhere set
# JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i on each node.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:?usage: gpu_node.sh CONFIG [--config.field=value ...]}; shift
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null \
  || pip install -q "jax[cuda12]" -e ".[all]"
# Let XLA take most of the GPU memory up front (the rollout's KV cache and the train step share it).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec python -m searchr1_jax.train --config="$CONFIG" "$@"
