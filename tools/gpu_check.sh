#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds and runs the CUDA tests (tests/cuda, CTest label `cuda`) on a machine with an NVIDIA GPU and writes a
# summary. Only the CUDA test targets are built (target spo_cuda_tests), so it takes about a minute on 16 cores.
#   tools/gpu_check.sh [build-dir]          default build dir: build-gpu
# Environment:
#   SPO_JOBS            build parallelism (default: nproc)
#   SPO_CUDA_ARCH       CMAKE_CUDA_ARCHITECTURES (default 90: H100 / H200)
#   SPO_GPU_CHECK_OUT   where gpu_check_summary.txt and gpu_check_ctest.log go (default: the build dir)
#   CUDACXX             nvcc to use (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc)
# Exit status 0 only when every CUDA test ran and passed: a skipped test (no usable device) fails the check.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${1:-build-gpu}
jobs=${SPO_JOBS:-$(nproc)}
arch=${SPO_CUDA_ARCH:-90}
out=${SPO_GPU_CHECK_OUT:-$build}
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
mkdir -p "$build" "$out"
summary=$out/gpu_check_summary.txt
log=$out/gpu_check_ctest.log

say() { echo "$*" | tee -a "$summary"; }
fail() {
  say "RESULT: FAIL ($1)"
  exit 1
}

: >"$summary"
say "# spo GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
if command -v nvidia-smi >/dev/null; then
  say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
else
  say "gpu: nvidia-smi not found"
fi
say "nvcc: $("$nvcc" --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' || echo "not found at $nvcc")"
say "host: $(nproc) cores, build jobs $jobs, CUDA architectures $arch"

t0=$(date +%s)
if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" \
     -DCMAKE_CUDA_ARCHITECTURES="$arch" -DSPO_WITH_CUDA=ON -DSPO_BUILD_TESTS=ON -DSPO_BUILD_BENCH=OFF \
     -DSPO_BUILD_EXPERIMENTS=OFF >"$out/gpu_check_configure.log" 2>&1; then
  tail -n 30 "$out/gpu_check_configure.log" | tee -a "$summary"
  fail "configure failed; the project's dependencies (tools/setup.sh) and the CUDA toolkit must be installed"
fi
t1=$(date +%s)
say "configure: $((t1 - t0)) s"

if ! cmake --build "$build" --target spo_cuda_tests -j "$jobs" >"$out/gpu_check_build.log" 2>&1; then
  grep -E "error|FAILED" "$out/gpu_check_build.log" | head -n 40 | tee -a "$summary"
  fail "build failed (full log: gpu_check_build.log)"
fi
t2=$(date +%s)
say "build (spo_cuda_tests): $((t2 - t1)) s"

(cd "$build" && ctest -L cuda --timeout 300 -V) >"$log" 2>&1
t3=$(date +%s)
say "tests: $((t3 - t2)) s"
say ""
say "## CTest (label cuda)"
grep -E "^ *[0-9]+/[0-9]+ Test +#" "$log" | sed 's/^ *//' | tee -a "$summary"
say ""
say "## Device and measured error / bound ratios"
grep -E "CUDA device 0:|no CUDA device|MESSAGE: " "$log" | sed 's/^[0-9]*: //' | sort | uniq -c | tee -a "$summary"

total=$(grep -cE "^ *[0-9]+/[0-9]+ Test +#" "$log")
passed=$(grep -E "^ *[0-9]+/[0-9]+ Test +#" "$log" | grep -c " Passed ")
skipped=$(grep -E "^ *[0-9]+/[0-9]+ Test +#" "$log" | grep -c "Skipped")
failed=$((total - passed - skipped))
say ""
say "tests: $total, passed $passed, skipped $skipped, failed $failed (full output: gpu_check_ctest.log)"
[[ $total -gt 0 ]] || fail "no CUDA tests found"
[[ $failed -eq 0 ]] || fail "$failed CUDA test(s) failed"
[[ $skipped -eq 0 ]] || fail "$skipped CUDA test(s) skipped: no usable CUDA device"
say "RESULT: PASS"
