#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every CUDA test (tests/cuda: kernel and layer/model parity against the CPU) and the GPU benchmarks against
# PyTorch on a machine with an NVIDIA GPU, and writes a summary.
#   tools/gpu_check.sh [--bundle ARCHIVE] [--no-bench] [build-dir]
# Without --bundle it configures and builds the CUDA tests and benchmark here (the project's dependencies from
# tools/setup.sh and nvcc must be installed; build dir default build-gpu). With --bundle it runs the executables of an
# archive made by tools/gpu_bundle.sh on a machine that has only the GPU driver, the CUDA runtime/cuBLAS/cuDNN
# (system or PyTorch's wheels) and python3 with torch.
# Environment: SPO_JOBS (build parallelism), SPO_CUDA_ARCH (default 90), SPO_GPU_CHECK_OUT (summary and logs; default
# the build dir), SPO_BENCH_FILTER (a benchmark name filter), SPO_TEST_TIMEOUT (seconds per test, default 300).
# Exit status 0 only when every CUDA test ran and passed: a skipped test (no usable device) fails the check.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle="" bench=1 build=build-gpu
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) bundle=$2; shift 2 ;;
    --no-bench) bench=0; shift ;;
    *) build=$1; shift ;;
  esac
done
out=${SPO_GPU_CHECK_OUT:-$build}
mkdir -p "$out"
summary=$out/gpu_check_summary.txt
say() { echo "$*" | tee -a "$summary"; }
fail() {
  say "RESULT: FAIL ($1)"
  exit 1
}
: >"$summary"
say "# spo GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
command -v nvidia-smi >/dev/null && say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"

if [[ -n "$bundle" ]]; then
  root=$(mktemp -d)
  tar -C "$root" -xJf "$bundle" || fail "cannot unpack $bundle"
  bins=$root/bin bench_exe=$root/bin/bench_unet_cuda
  say "bundle: $bundle (built from commit $(cat "$root/commit"))"
  # CUDA libraries: the toolkit's and those of PyTorch's nvidia-* wheels (cuDNN 9, cuBLAS).
  libs=$root/lib
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [[ -d $d ]] && libs=$libs:$d; done
  for d in $(python3 -c 'import glob, site; print(" ".join(sorted({p for s in site.getsitepackages() for p in glob.glob(s + "/nvidia/*/lib")})))' 2>/dev/null); do
    libs=$libs:$d
  done
  export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
  nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  say "nvcc: $("$nvcc" --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' || echo "not found at $nvcc")"
  t0=$(date +%s)
  if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" \
       -DCMAKE_CUDA_ARCHITECTURES="${SPO_CUDA_ARCH:-90}" -DSPO_WITH_CUDA=ON -DSPO_BUILD_TESTS=ON \
       -DSPO_BUILD_BENCH=$([[ $bench == 1 ]] && echo ON || echo OFF) -DSPO_BUILD_EXPERIMENTS=OFF >"$out/gpu_check_configure.log" 2>&1; then
    tail -n 30 "$out/gpu_check_configure.log" | tee -a "$summary"
    fail "configure failed; the project's dependencies (tools/setup.sh) and the CUDA toolkit must be installed"
  fi
  targets=(spo_cuda_tests)
  [[ $bench == 1 ]] && targets+=(bench_unet_cuda)
  if ! cmake --build "$build" --target "${targets[@]}" -j "${SPO_JOBS:-$(nproc)}" >"$out/gpu_check_build.log" 2>&1; then
    grep -E "error|FAILED" "$out/gpu_check_build.log" | head -n 40 | tee -a "$summary"
    fail "build failed (full log: gpu_check_build.log)"
  fi
  say "build: $(($(date +%s) - t0)) s"
  bins=$build/tests/cuda bench_exe=$build/bench/cuda/bench_unet_cuda
fi

export SPO_TEST_DATA_DIR=$PWD/tests/data  # tests that read committed data (the tiny pipelines) find this checkout's
say ""
say "## CUDA tests"
total=0 passed=0 skipped=0 failed=0
for exe in "$bins"/test_cuda_*; do
  [[ -x $exe ]] || continue
  name=$(basename "$exe")
  t0=$(date +%s%N)
  OMP_WAIT_POLICY=PASSIVE timeout "${SPO_TEST_TIMEOUT:-300}" "$exe" >"$out/$name.log" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  dt=$((ms / 1000)).$(((ms % 1000) / 100))
  total=$((total + 1))
  status=FAILED
  if [[ $rc == 0 ]]; then status=passed; passed=$((passed + 1));
  elif [[ $rc == 77 ]]; then status=SKIPPED; skipped=$((skipped + 1));
  else failed=$((failed + 1)); fi
  say "$name: $status (exit $rc, ${dt} s) $(grep -E '^\[doctest\] (test cases|assertions)' "$out/$name.log" | tr '\n' ' ')"
  [[ $status == FAILED ]] && grep -E "ERROR|CHECK|REQUIRE|error|what\(\)" "$out/$name.log" | head -n 12 | sed 's/^/    /' | tee -a "$summary"
done
grep -h "CUDA device 0:" "$out"/test_cuda_*.log 2>/dev/null | sort -u | tee -a "$summary"
say "tests: $total, passed $passed, skipped $skipped, failed $failed"

if [[ $bench == 1 ]]; then
  say ""
  say "## Benchmarks (bench/cuda/run_gpu.sh)"
  if [[ -x $bench_exe ]]; then
    bash bench/cuda/run_gpu.sh "$bench_exe" "$out" "${SPO_BENCH_FILTER:-}" 2>&1 | tee -a "$summary"
  else
    say "bench_unet_cuda not built"
  fi
fi
[[ $total -gt 0 ]] || fail "no CUDA tests found"
[[ $failed -eq 0 ]] || fail "$failed CUDA test(s) failed"
[[ $skipped -eq 0 ]] || fail "$skipped CUDA test(s) skipped: no usable CUDA device"
say "RESULT: PASS"
