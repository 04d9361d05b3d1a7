#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# spo's CUDA UNet benchmark (bench_unet_cuda) and its PyTorch eager peer (torch_unet_gpu_peer.py) on the same GPU,
# back to back; prints a markdown table (medians of 3 repetitions, and each side's peak device memory).
#   bench/cuda/run_gpu.sh <bench_unet_cuda executable> [output dir] [benchmark filter]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exe=$1
out=${2:-$(mktemp -d)}
filter=${3:-}
python=${PYTHON:-python3}
mkdir -p "$out"
"$exe" --benchmark_repetitions=3 --benchmark_min_time=0.3s --benchmark_report_aggregates_only=true \
  ${filter:+--benchmark_filter="$filter"} --benchmark_format=json --benchmark_out="$out/spo_gpu.json" \
  --benchmark_out_format=json >"$out/spo_gpu.log" 2>&1 || echo "bench_unet_cuda exited with $?" >&2
"$python" "$here/torch_unet_gpu_peer.py" ${filter:+--filter "$filter"} >"$out/torch_gpu.jsonl" 2>"$out/torch_gpu.log" ||
  echo "torch peer exited with $?" >&2
"$python" - "$out/spo_gpu.json" "$out/torch_gpu.jsonl" <<'PY'
import json, sys
spo, errors, spo_peak, peer_peak, recipe = {}, {}, {}, {}, {}
try:
    doc = json.load(open(sys.argv[1]))
    print(f"spo: {doc['context'].get('executable', '')}, {doc['context'].get('date', '')}")
    for b in doc["benchmarks"]:
        name = b["run_name"].replace("/real_time", "")
        if b.get("error_occurred"):
            errors[name] = b.get("error_message", "error")
        elif b.get("aggregate_name") == "median":
            spo[name] = b["real_time"] * {"ms": 1, "us": 1e-3, "s": 1e3}[b["time_unit"]]
            spo_peak[name] = b.get("peak_gib")
            if "fits_40gb" in b:
                recipe[name] = (b.get("peak_gb"), b["fits_40gb"])
except Exception as e:  # noqa: BLE001
    print(f"spo results unreadable: {e}")
peer, info = {}, {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    if "device" in r:
        info = r
    elif "ms_median" in r:
        peer[r["name"]] = r["ms_median"]
        peer_peak[r["name"]] = r.get("peak_gib")
    else:
        peer[r["name"]] = None
print(f"PyTorch: {info}")
print("| benchmark | spo ms | PyTorch eager ms | PyTorch / spo | spo peak GiB | PyTorch peak GiB |")
print("|---|---:|---:|---:|---:|---:|")
gib = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
for name in sorted(set(spo) | set(peer) | set(errors)):
    s, p = spo.get(name), peer.get(name)
    fs = f"{s:.2f}" if s else errors.get(name, "-")[:60]
    fp = f"{p:.2f}" if p else "-"
    ratio = f"{p / s:.2f}x" if s and p else "-"
    print(f"| {name} | {fs} | {fp} | {ratio} | {gib(spo_peak.get(name))} | {gib(peer_peak.get(name))} |")
for name, (gb, fits) in sorted(recipe.items()):
    print(f"\n{name}: peak {gb:.2f} GB of device memory, {'within' if fits else 'ABOVE'} 40 GB")
PY
