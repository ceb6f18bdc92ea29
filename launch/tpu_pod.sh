#!/usr/bin/env bash
# Runs a training config on every host of a Cloud TPU pod slice (v4/v5e/v5p/v6e).
#
#   TPU_NAME=my-pod ZONE=us-central2-b bash launch/tpu_pod.sh configs/qwen2.5-3b_grpo.py \
#       --config.train.steps=1005
#
# Each host installs the project (jax[tpu]) into ./.venv on first use, then all hosts start the same
# command; jax.distributed.initialize() auto-detects the pod (searchr1_jax.parallel), the mesh spans
# every chip. Checkpoints must go to storage all hosts share (e.g. a gs:// bucket):
# --config.output.dir=gs://bucket/run. A preempted run resumes from its last checkpoint when relaunched.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
CONFIG=${1:?usage: tpu_pod.sh CONFIG [--config.field=value ...]}; shift
ARGS=$(printf ' %q' "$@")
cd "$(dirname "$0")/.."
# Copy this checkout (without the local venv and runs) to every host.
tar --exclude=.venv --exclude=runs --exclude=.git -czf /tmp/searchr1_jax_src.tgz .
gcloud compute tpus tpu-vm scp /tmp/searchr1_jax_src.tgz "$TPU_NAME":/tmp/ --zone "$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
  set -e
  mkdir -p searchr1-jax && tar -xzf /tmp/searchr1_jax_src.tgz -C searchr1-jax
  cd searchr1-jax
  [ -x .venv/bin/python ] || python3 -m venv .venv
  . .venv/bin/activate
  pip install -q 'jax[tpu]' -e '.[all]'
  python -m searchr1_jax.train --config=$CONFIG $ARGS
"
