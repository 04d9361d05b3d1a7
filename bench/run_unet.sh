#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# UNet and DDIM-step benchmarks of spo (bench/bench_unet.cpp) and PyTorch + diffusers (bench/torch_unet_peer.py),
# run back to back on the same threads; prints a markdown table.
#   bench/run_unet.sh [--threads N] [--build-dir DIR] [--python PY]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
threads=2
build_dir="$root/build-bench"
python="${PYTHON:-python3}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    *) echo "run_unet.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPO_BUILD_BENCH=ON -DSPO_BUILD_TESTS=OFF \
      -DSPO_BUILD_EXPERIMENTS=OFF >&2
cmake --build "$build_dir" --target bench_unet >&2
export OMP_NUM_THREADS=$threads SPO_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1
export MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
unset OPENBLAS_CORETYPE
tmp=$(mktemp -d)
"$build_dir/bench/bench_unet" --benchmark_repetitions=3 --benchmark_min_time=2 --benchmark_report_aggregates_only=true \
  --benchmark_format=json > "$tmp/spo.json"
"$python" "$root/bench/torch_unet_peer.py" --threads "$threads" > "$tmp/torch.jsonl"
"$python" - "$tmp/spo.json" "$tmp/torch.jsonl" "$threads" <<'PY'
import json, sys
spo = {b["run_name"].replace("/real_time", ""): b["real_time"] * {"ms": 1, "us": 1e-3}[b["time_unit"]]
       for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
peer = {r["name"]: r["ms_median"] for r in map(json.loads, open(sys.argv[2]))}
print(f"| benchmark ({sys.argv[3]} threads) | spo ms | PyTorch + diffusers ms | speed-up |")
print("|---|---:|---:|---:|")
for name, ms in spo.items():
    p = peer.get(name)
    print(f"| {name} | {ms:.2f} | {p:.2f} | {p / ms:.2f}x |" if p else f"| {name} | {ms:.2f} | - | - |")
PY
rm -rf "$tmp"
