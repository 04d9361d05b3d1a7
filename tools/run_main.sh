#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job, on the embedded default (Fashion-MNIST): sets up the machine (Debian packages), configures the
# `release` preset (build/), builds the `spo` experiment, then runs SPO from the committed base model
# (models/base/) with the committed step-aware preference model (models/spm/) as configured in configs/spo.json,
# evaluates base and SPO-tuned model on the held-out prompts and prints the comparison table. Outputs: runs/spo/
# (results.md/json, reward_vs_time.png, sample grids, metrics.jsonl, lora.safetensors, run.json).
#   tools/run_main.sh [extra arguments for the spo binary, e.g. --seed=1 --output=runs/spo_seed1]
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
jobs=${SPO_JOBS:-$(nproc)}
cmake --preset release
cmake --build --preset release -j "$jobs" --target experiment_spo
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} ./build/bin/spo configs/spo.json "$@"
