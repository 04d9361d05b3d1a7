#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Time per training round on this machine: one process with 2 OpenMP threads against 2 MPI ranks with 1 thread each,
# on the same global round (SPO: prompts_per_round and batch_size split over the ranks; Diffusion-DPO: batch_size
# split), for the embedded default's SPO and Diffusion-DPO. Prints a Markdown table (seconds per round from each
# run's metrics.jsonl: sample_s + train_s, the slowest rank's; the first round, which also warms up, is left out).
#   tools/dist_scaling.sh [rounds]          (default 4; runs in runs/dist_scaling/)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
root=runs/dist_scaling
mkdir -p "$root"
export OMP_WAIT_POLICY=PASSIVE OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

# <config> <ranks> <out config>: the config with the per-rank share of the round and a minimal final evaluation.
derive() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
src, ranks, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = json.load(open(src))
t = c["train"]
for key in ("prompts_per_round", "batch_size"):
    if key in t:
        assert t[key] % ranks == 0, f"{key} {t[key]} is not a multiple of {ranks}"
        t[key] //= ranks
c["evaluation"]["progress_every_rounds"] = 0
c["evaluation"]["seeds_per_prompt"] = 2
json.dump(c, open(dst, "w"), indent=2)
PY
}

# <metrics.jsonl>: mean seconds per round after the first.
per_round() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
s = [r["sample_s"] + r["train_s"] for r in rows[1:]]
print(f"{sum(s) / len(s):.2f}")
PY
}

echo "| method | 1 rank x 2 threads (s/round) | 2 ranks x 1 thread (s/round) | speed-up |"
echo "|---|---|---|---|"
for m in "spo configs/spo.json" "diffusion_dpo configs/baselines/diffusion_dpo.json"; do
  set -- $m
  binary=$1 config=$2
  derive "$config" 1 "$root/$binary.1.json"
  derive "$config" 2 "$root/$binary.2.json"
  rm -rf "$root/$binary.1" "$root/$binary.2"
  OMP_NUM_THREADS=2 ./build/bin/"$binary" "$root/$binary.1.json" --rounds="$rounds" --output="$root/$binary.1" \
    > "$root/$binary.1.log" 2>&1
  OMP_NUM_THREADS=1 mpirun -np 2 --bind-to none ./build/bin/"$binary" "$root/$binary.2.json" --rounds="$rounds" \
    --output="$root/$binary.2" > "$root/$binary.2.log" 2>&1
  a=$(per_round "$root/$binary.1/metrics.jsonl")
  b=$(per_round "$root/$binary.2/metrics.jsonl")
  echo "| $binary | $a | $b | $(python3 -c "print(f'{$a / $b:.2f}x')") |"
done
