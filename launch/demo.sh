#!/usr/bin/env bash
# Installs (first run) and runs the main job on the embedded default: a short search-augmented
# RL training on CPU with a real small model and the embedded corpus, then an evaluation table.
source "$(dirname "$0")/_env.sh"
exec python -m searchr1_jax.demo "$@"
