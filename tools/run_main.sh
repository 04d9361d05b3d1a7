#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job, on the embedded default (Fashion-MNIST): sets up the machine (Debian packages), configures the
# `release` preset (build/), builds the experiments, then evaluates the committed base text-to-image model
# (models/base/) with the committed training judge (models/judge_train/): samples per class prompt with fixed seeds
# (DDIM 20 steps, eta 1, classifier-free guidance as configured), prints the class-accuracy table and writes it
# with a sample grid to runs/main/. Until the SPO experiment lands, this is the job that runs end to end.
#   tools/run_main.sh [samples_per_class]      (default 32)
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
jobs=${SPO_JOBS:-$(nproc)}
per_class=${1:-32}
cmake --preset release
cmake --build --preset release -j "$jobs" --target evaluate_base sample quickstart
./build/bin/evaluate_base configs/pretrain_base.json models/base/base.safetensors \
  configs/judge_train.json models/judge_train/judge.safetensors "$per_class" runs/main
echo "main: wrote runs/main/class_accuracy.md and runs/main/samples_by_class.png"
