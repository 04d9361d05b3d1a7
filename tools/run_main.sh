#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job: sets up the machine (Debian packages), configures the `release` preset (build/), builds the
# experiments and runs them. For now the only experiment is experiments/quickstart (an MLP fitted to sin(x)).
# Extra arguments go to the experiment: tools/run_main.sh [steps] [learning_rate]
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
jobs=${SPO_JOBS:-$(nproc)}
cmake --preset release
cmake --build --preset release -j "$jobs" --target quickstart
./build/bin/quickstart "$@"
