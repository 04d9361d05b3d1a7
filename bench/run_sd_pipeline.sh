#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Stable Diffusion text to image, spo against diffusers (bench/diffusers_sd_peer.py) on the same pipeline folder and
# threads, back to back: the microbenchmarks of bench/bench_sd_pipeline.cpp (medians), then one whole image per side
# (DDIM, --steps steps, guidance 5, the checkpoint's size) with its phase times and the peak RSS (/usr/bin/time).
# --device cuda: the same on the GPU (bench/cuda/bench_sd_pipeline_cuda, generate --device cuda, the peer with
# --device cuda; a build with SPO_WITH_CUDA). Prints markdown tables. Full-size folders with random weights:
# tools/reference/full_size_pipelines.py.
#   bench/run_sd_pipeline.sh FOLDER [--threads N] [--build-dir DIR] [--python PY] [--reps N] [--steps N]
#                                   [--no-micro] [--no-generate] [--device cpu|cuda] [--only BENCHMARK]...
#                                   [--conv-algorithm winograd|direct]
# --only (repeatable) runs only the named microbenchmarks (BM_SD_EncodePrompt, BM_SD_UNetStepCFG, BM_SD_VaeDecode).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
folder="$1"
shift
threads=2
build_dir="$root/build"
python="${PYTHON:-python3}"
reps=3
steps=20
micro=1
whole=1
device=cpu
only=()
conv_algorithm=winograd
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --no-micro) micro=0; shift ;;
    --no-generate) whole=0; shift ;;
    --device) device="$2"; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --conv-algorithm) conv_algorithm="$2"; shift 2 ;;
    *) echo "run_sd_pipeline.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$device" in
  cpu) bench="$build_dir/bench/bench_sd_pipeline" ;;
  cuda) bench="$build_dir/bench/cuda/bench_sd_pipeline_cuda" ;;
  *) echo "run_sd_pipeline.sh: --device cpu or cuda, got $device" >&2; exit 2 ;;
esac
cmake --build "$build_dir" --target "$(basename "$bench")" generate >&2
export OMP_NUM_THREADS=$threads SPO_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
unset OPENBLAS_CORETYPE
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "pipeline: $folder; $threads threads; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); device: $device"
if [[ $micro == 1 ]]; then
  filter=() peer_only=()
  if [[ ${#only[@]} -gt 0 ]]; then
    filter=(--benchmark_filter="^($(IFS='|'; echo "${only[*]}"))/")
    peer_only=(--only "${only[@]}")
  fi
  SPO_BENCH_SD_PIPELINE="$folder" "$bench" --benchmark_repetitions="$reps" "${filter[@]}" \
    --benchmark_min_time=0 --benchmark_report_aggregates_only=true --benchmark_format=json > "$tmp/spo.json"
  "$python" "$root/bench/diffusers_sd_peer.py" "$folder" --micro --threads "$threads" --reps "$reps" \
    --device "$device" "${peer_only[@]}" > "$tmp/peer.jsonl"
  "$python" - "$tmp/spo.json" "$tmp/peer.jsonl" <<'PY'
import json, re, sys
unit = {"ms": 1, "us": 1e-3, "ns": 1e-6, "s": 1e3}
spo = {}
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name", "median") == "median":
        spo[re.sub(r"/(iterations:\d+|real_time)", "", b["run_name"])] = b["real_time"] * unit[b["time_unit"]]
peer = {r["name"]: r["ms_median"] for r in map(json.loads, open(sys.argv[2]))}
print("\n| benchmark (median, wall clock) | spo ms | diffusers ms | speed-up |\n|---|---:|---:|---:|")
for name, ms in spo.items():
    p = peer.get(name) or peer.get(name.split("/")[0])  # BM_SD_VaeDecode/winograd against diffusers' one decode
    print(f"| {name} | {ms:.0f} | {p:.0f} | {p / ms:.2f}x |" if p else f"| {name} | {ms:.0f} | - | - |")
PY
fi
if [[ $whole == 1 ]]; then
  /usr/bin/time -f "%e %M" -o "$tmp/spo.time" "$build_dir/bin/generate" --model "$folder" --prompt \
    "a photo of an astronaut riding a horse on the moon" --scheduler ddim --steps "$steps" --guidance 5 --seed 0 \
    --device "$device" --conv-algorithm "$conv_algorithm" --out "$tmp/spo.png" 2> "$tmp/spo.err" > /dev/null
  /usr/bin/time -f "%e %M" -o "$tmp/peer.time" "$python" "$root/bench/diffusers_sd_peer.py" "$folder" --generate \
    --threads "$threads" --steps "$steps" --device "$device" > "$tmp/peer.json"
  "$python" - "$tmp/spo.err" "$tmp/spo.time" "$tmp/peer.json" "$tmp/peer.time" "$steps" <<'PY'
import json, re, sys
line = [l for l in open(sys.argv[1]) if l.startswith("timing:")][-1]
v = [float(x) for x in re.findall(r"([\d.]+) s", line)]
spo = {"load_s": v[0], "encode_s": v[1], "denoise_s": v[2], "decode_s": v[4]}
spo_wall, spo_rss = open(sys.argv[2]).read().split()
peer = json.load(open(sys.argv[3]))
peer_wall, peer_rss = open(sys.argv[4]).read().split()
steps = int(sys.argv[5])
print(f"\n| whole image ({steps} DDIM steps, guidance 5) | spo | diffusers | speed-up |\n|---|---:|---:|---:|")
for key, label in (("load_s", "load s"), ("encode_s", "encode prompt s"), ("denoise_s", "denoise s"),
                   ("decode_s", "VAE decode s")):
    print(f"| {label} | {spo[key]:.1f} | {peer[key]:.1f} | {peer[key] / spo[key]:.2f}x |")
gen_spo = spo["encode_s"] + spo["denoise_s"] + spo["decode_s"]
gen_peer = peer["encode_s"] + peer["denoise_s"] + peer["decode_s"]
print(f"| image (encode + denoise + decode) s | {gen_spo:.1f} | {gen_peer:.1f} | {gen_peer / gen_spo:.2f}x |")
print(f"| process wall s (with load) | {float(spo_wall):.1f} | {float(peer_wall):.1f} | "
      f"{float(peer_wall) / float(spo_wall):.2f}x |")
print(f"| peak RSS GB | {int(spo_rss) / 1e6:.2f} | {int(peer_rss) / 1e6:.2f} | |")
gpu = [l for l in open(sys.argv[1]) if l.startswith("memory: device peak")]
if gpu or "peak_gpu_gb" in peer:
    spo_gpu = float(re.findall(r"([\d.]+) GB", gpu[-1])[0]) if gpu else float("nan")
    print(f"| peak device memory GB (tensors in use) | {spo_gpu:.2f} | {peer.get('peak_gpu_gb', float('nan')):.2f} | |")
PY
fi
