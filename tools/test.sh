#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sets up a fresh machine (Debian packages), builds everything and runs the test suite.
#   tools/test.sh            Release build in build/
#   SPO_SANITIZE=ON tools/test.sh   the same under AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
sanitize=${SPO_SANITIZE:-OFF}
build_dir=build
[[ $sanitize == ON ]] && build_dir=build-asan
jobs=$(nproc)
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPO_SANITIZE="$sanitize" \
      -DSPO_BUILD_TESTS=ON -DSPO_BUILD_BENCH=ON -DSPO_BUILD_EXPERIMENTS=ON
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" --timeout 600
