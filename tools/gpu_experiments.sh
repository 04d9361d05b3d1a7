#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs SPO experiments on the GPU with the `spo_cuda` binary of a bundle (tools/gpu_bundle.sh with
# SPO_BUNDLE_EXPERIMENTS=1): first one timed run of configs/spo.json, then a list of (config, seed) runs, several at
# once on the one GPU, until a deadline. Each finished run's folder (results, metrics, LoRA; no checkpoint) is packed
# into <out>/gpu_runs.tar.gz; tools/results_tables.py reads them like the CPU runs.
#   tools/gpu_experiments.sh --bundle ARCHIVE --out DIR --deadline SECONDS [--parallel N] [--data DIR] CONFIG:SEED...
# The configs' data_dir must exist on the GPU machine (copy the Fashion-MNIST IDX files there first, or pass --data
# to rewrite data_dir).
set -uo pipefail
cd "$(dirname "$0")/.."
bundle="" out="" deadline=500 parallel=4 data=""
runs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) bundle=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) runs+=("$1"); shift ;;
  esac
done
[[ -n $bundle && -n $out ]] || { echo "usage: $0 --bundle ARCHIVE --out DIR [--deadline S] [--parallel N] CONFIG:SEED..."; exit 2; }
start=$(date +%s)
mkdir -p "$out"
root=$(mktemp -d)
tar -C "$root" -xJf "$bundle" || { echo "cannot unpack $bundle"; exit 1; }
exe=$root/bin/spo_cuda
[[ -x $exe ]] || { echo "the bundle has no spo_cuda (build it with SPO_BUNDLE_EXPERIMENTS=1)"; exit 1; }
libs=$root/lib
for d in /usr/local/cuda/lib64 $(python3 -c 'import glob, site; print(" ".join(sorted({p for s in site.getsitepackages() for p in glob.glob(s + "/nvidia/*/lib")})))' 2>/dev/null); do
  [[ -d $d ]] && libs=$libs:$d
done
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} OMP_WAIT_POLICY=PASSIVE
work=$(mktemp -d)
config_for() {  # config -> a copy with data_dir rewritten when --data is given
  if [[ -z $data ]]; then echo "$1"; return; fi
  local c=$work/$(basename "$1")
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["data_dir"]=sys.argv[2]; json.dump(c, open(sys.argv[3],"w"), indent=2)' "$1" "$data" "$c"
  echo "$c"
}
run_one() {  # config seed -> runs/gpu/<name>/seed<k>
  local cfg=$1 seed=$2 name
  name=$(basename "$cfg" .json)
  local dir=$work/runs/$name/seed$seed
  mkdir -p "$dir"
  local t0=$(date +%s)
  SPO_NUM_THREADS=${SPO_RUN_THREADS:-2} "$exe" "$(config_for "$cfg")" --seed="$seed" --output="$dir" >"$dir/log.txt" 2>&1
  local rc=$?
  echo "$name seed$seed: exit $rc, $(($(date +%s) - t0)) s" | tee -a "$out/gpu_experiments.txt"
  rm -f "$dir/checkpoint.safetensors"
}
nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | sed 's/^/gpu: /' | tee -a "$out/gpu_experiments.txt"
for r in "${runs[@]}"; do
  cfg=${r%:*} seed=${r##*:}
  while [[ $(jobs -rp | wc -l) -ge $parallel ]]; do sleep 1; done
  if (($(date +%s) - start > deadline / 2)); then
    echo "not started (deadline): $r" | tee -a "$out/gpu_experiments.txt"
    continue
  fi
  run_one "$cfg" "$seed" &
done
# Wait until the deadline, then stop what is still running (its folder has no results.json).
while [[ $(jobs -rp | wc -l) -gt 0 ]] && (($(date +%s) - start < deadline)); do sleep 2; done
for p in $(jobs -rp); do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
wait 2>/dev/null
(cd "$work" && tar -czf "$out/gpu_runs.tar.gz" runs)
echo "finished runs: $(find "$work/runs" -name results.json | wc -l) of ${#runs[@]}" | tee -a "$out/gpu_experiments.txt"
