#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SPO hot-loop benchmarks of spo (bench/bench_spo.cpp) and PyTorch + diffusers (bench/torch_spo_peer.py), run back to
# back on the same threads; prints a markdown table (medians) and the load average before and after.
#   bench/run_spo.sh [--threads N] [--build-dir DIR] [--python PY] [--jobs N] [--reps N] [--min-time S] [--no-round]
#                    [--cpu-time]
# --jobs limits the build's parallelism (use 1 on a shared machine); --no-round skips the whole-round benchmark
# (seconds per call on each side); --cpu-time compares process CPU time instead of wall time (meaningful with
# --threads 1 while other jobs share the machine; with more threads, spinning idle OpenMP workers count as CPU time).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
threads=2
build_dir="$root/build-bench"
python="${PYTHON:-python3}"
jobs=""
reps=3
min_time=2
round=1
clock=real_time
peer_clock=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --min-time) min_time="$2"; shift 2 ;;
    --no-round) round=0; shift ;;
    --cpu-time) clock=cpu_time; peer_clock=--cpu-time; shift ;;
    *) echo "run_spo.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPO_BUILD_BENCH=ON -DSPO_BUILD_TESTS=OFF \
      -DSPO_BUILD_EXPERIMENTS=OFF >&2
cmake --build "$build_dir" --target bench_spo ${jobs:+-j "$jobs"} >&2
export OMP_NUM_THREADS=$threads SPO_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1
export MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
unset OPENBLAS_CORETYPE
filter='BM_Spo_'
only=''
if [[ $round == 0 ]]; then filter='BM_Spo_(ResamplerStep|Minibatch)'; only='ResamplerStep,Minibatch'; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"$build_dir/bench/bench_spo" --benchmark_filter="$filter" --benchmark_repetitions="$reps" \
  --benchmark_min_time="$min_time" --benchmark_report_aggregates_only=true --benchmark_format=json > "$tmp/spo.json"
load_mid=$(cut -d' ' -f1-3 /proc/loadavg)
"$python" "$root/bench/torch_spo_peer.py" --threads "$threads" --reps "$reps" --min-time "$min_time" \
  ${only:+--only "$only"} $peer_clock > "$tmp/torch.jsonl"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
"$python" - "$tmp/spo.json" "$tmp/torch.jsonl" "$threads" "$clock" <<'PY'
import json, re, sys
unit = {"ms": 1, "us": 1e-3, "ns": 1e-6, "s": 1e3}
spo, lora = {}, {"spo": None}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name", "median") == "median":  # a single repetition reports no aggregates
        name = re.sub(r"/(iterations:\d+|process_time|real_time)", "", b["run_name"])
        spo[name] = b[sys.argv[4]] * unit[b["time_unit"]]
        if "lora_parameters" in b:
            lora["spo"] = int(b["lora_parameters"])
rows = list(map(json.loads, open(sys.argv[2])))
peer = {r["name"]: r["ms_median"] for r in rows}
lora["peer"] = rows[0]["lora_parameters"] if rows else None
clock = {"real_time": "wall clock", "cpu_time": "process CPU time"}[sys.argv[4]]
print(f"| benchmark ({sys.argv[3]} threads, {clock}) | spo ms | PyTorch + diffusers ms | speed-up |")
print("|---|---:|---:|---:|")
for name, ms in spo.items():
    p = peer.get(name)
    print(f"| {name} | {ms:.1f} | {p:.1f} | {p / ms:.2f}x |" if p else f"| {name} | {ms:.1f} | - | - |")
print(f"\ntrainable LoRA parameters: spo {lora['spo']}, peer {lora['peer']}")
PY
echo "load average (1, 5, 15 min): before $load_before; between the two sides $load_mid; after $load_after"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc --all) CPUs"
