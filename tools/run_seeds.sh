#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs an SPO experiment binary over several seeds and summarises the evaluations (mean and 95% t interval over
# seeds, beside the base model): runs/<name>/seed<k>/ per seed, runs/<name>/summary.{md,json}.
#   tools/run_seeds.sh <experiment binary> <config.json> <name> [seeds...]      (default seeds: 1 2 3)
# Example: tools/run_seeds.sh spo configs/spo.json spo 1 2 3
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$1 config=$2 name=$3
shift 3
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(1 2 3)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
dirs=()
for s in "${seeds[@]}"; do
  out="runs/$name/seed$s"
  ./build/bin/"$binary" "$config" --seed="$s" --output="$out" --resume
  dirs+=("$out")
done
./build/bin/summarize_runs "runs/$name" "${dirs[@]}"
