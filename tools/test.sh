#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sets up a fresh machine (Debian packages), builds everything and runs the test suite, via CMakePresets.json.
#   tools/test.sh                    preset `release`: Release build in build/
#   SPO_SANITIZE=ON tools/test.sh    preset `asan`: AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
# SPO_JOBS sets the parallelism of the build and of ctest (default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
preset=release
[[ ${SPO_SANITIZE:-OFF} == ON ]] && preset=asan
jobs=${SPO_JOBS:-$(nproc)}
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$jobs"
ctest --preset "$preset" -j "$jobs"
