#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds spo's microbenchmarks, runs them and the PyTorch peer (bench/torch_peer.py) back to back on the same
# number of threads, and prints side-by-side markdown tables to stdout (progress goes to stderr).
#
#   bench/run_all.sh [--threads N] [--repetitions R] [--min-time S] [--build-dir DIR] [--python PY] [--no-build]
#                    [--only gemm,conv,norm,attention] [--keep DIR] [--cpu-time]
#
# --cpu-time compares process CPU time instead of wall time; meaningful with --threads 1 only, as a cross-check
# when other jobs share the cores (wall times then include waiting for a core).
# Benchmarks included when their binary exists: bench_gemm, bench_conv2d, bench_norm (BM_Nn_GroupNorm, BM_Nn_SiLU),
# bench_attention (BM_Nn_Attention). Numbers are medians over R repetitions; "spread" is (max - min) / median.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
threads=2
reps=5
min_time=0.5
build_dir="$root/build-bench"
python="${PYTHON:-}"
build=1
only="gemm,conv,norm,attention"
keep=""
clock=wall
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --repetitions) reps="$2"; shift 2 ;;
    --min-time) min_time="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --only) only="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --cpu-time) clock=cpu; shift ;;
    -h|--help) sed -n '3,10p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [[ -z "$python" ]]; then
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c "import torch" 2>/dev/null; then python="$candidate"; break; fi
  done
  [[ -n "$python" ]] || { echo "run_all.sh: no python with torch found; pass --python" >&2; exit 1; }
fi

declare -A bench_of=([gemm]=bench_gemm [conv]=bench_conv2d [norm]=bench_norm [attention]=bench_attention)
families=()
IFS=',' read -ra families <<< "$only"

if [[ $build -eq 1 ]]; then
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPO_BUILD_BENCH=ON -DSPO_BUILD_TESTS=OFF \
        -DSPO_BUILD_EXPERIMENTS=OFF >&2
  targets=()
  for f in "${families[@]}"; do
    [[ -f "$root/bench/${bench_of[$f]}.cpp" ]] && targets+=("${bench_of[$f]}")
  done
  [[ ${#targets[@]} -gt 0 ]] && cmake --build "$build_dir" --target "${targets[@]}" -j "$threads" >&2
fi

out="${keep:-$(mktemp -d)}"
mkdir -p "$out"
[[ -z "$keep" ]] && trap 'rm -rf "$out"' EXIT

# One OpenMP pool of `threads` workers for spo (Eigen, oneDNN and spo share it); OpenBLAS single-threaded inside
# torch (it otherwise starts its own pool and oversubscribes the cores); glibc never returns freed blocks to the OS.
# OPENBLAS_CORETYPE is dropped so OpenBLAS uses its AVX-512 kernel (the machine image pins Haswell = AVX2).
common_env=(env -u OPENBLAS_CORETYPE OMP_NUM_THREADS="$threads" SPO_NUM_THREADS="$threads" OMP_PROC_BIND=false
            MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824)

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for f in "${families[@]}"; do
  bin="$build_dir/bench/${bench_of[$f]}"
  if [[ -x "$bin" ]]; then
    echo "running ${bench_of[$f]}" >&2
    "${common_env[@]}" "$bin" --benchmark_repetitions="$reps" --benchmark_min_time="$min_time" \
      --benchmark_report_aggregates_only=true --benchmark_format=json --benchmark_out_format=json \
      --benchmark_out="$out/spo_$f.json" > /dev/null
  else
    echo "skipping ${bench_of[$f]} (not built)" >&2
  fi
done
echo "running torch_peer.py" >&2
"${common_env[@]}" OPENBLAS_NUM_THREADS=1 "$python" "$here/torch_peer.py" --threads "$threads" \
  --repetitions "$reps" --min-time "$min_time" --only "$only" --out "$out/torch.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$python" - "$out" "$threads" "$clock" <<'PY'
import glob, json, os, re, sys

out, threads, clock = sys.argv[1], sys.argv[2], sys.argv[3]
time_key = "cpu_time" if clock == "cpu" else "real_time"
spo = {}
for path in sorted(glob.glob(os.path.join(out, "spo_*.json"))):
    doc = json.load(open(path))
    rows = {}
    for b in doc["benchmarks"]:
        if b.get("run_type") != "aggregate":
            continue
        rows.setdefault(b["run_name"], {})[b["aggregate_name"]] = b
    for name, agg in rows.items():
        med = agg.get("median")
        if med is None:
            continue
        unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[med["time_unit"]]
        ms = med[time_key] * unit
        spread = 0.0
        if "stddev" in agg and "mean" in agg and agg["mean"][time_key] > 0:
            spread = agg["stddev"][time_key] / agg["mean"][time_key]
        rate = med.get("GFLOPS", med.get("GFLOP/s"))
        if clock == "cpu" and rate is not None:
            rate *= med["real_time"] / med["cpu_time"]
        spo[re.sub(r"/real_time$", "", name)] = {"ms": ms, "gflops": rate, "cv": spread}
torch_doc = json.load(open(os.path.join(out, "torch.json")))
torch = {b["name"]: b for b in torch_doc["benchmarks"]}
for b in torch.values():
    b["ms"] = b[time_key]
    if "flops" in b:
        b["GFLOPS"] = b["flops"] / b["ms"] * 1e-6


def gflops(row):
    return row.get("gflops") if row else None  # the C++ benches' GFLOPS counter is already in GFLOP/s


print(f"Threads: {threads}; clock: {'process CPU time' if clock == 'cpu' else 'wall time'}. Medians of repeated "
      f"runs; cv = stddev / mean over the repetitions. Peer: {torch_doc['context']['library']}.\n")

# GEMM
sizes = sorted({int(k.split("/")[1]) for k in spo if k.startswith("BM_Tensor_Gemm_")})
if sizes:
    cols = [("spo", "BM_Tensor_Gemm_Spo"), ("Eigen", "BM_Tensor_Gemm_Eigen"),
            ("oneDNN matmul", "BM_Tensor_Gemm_DnnlMatmul"), ("OpenBLAS", "BM_Tensor_Gemm_OpenBLAS")]
    print("### GEMM (float32, n x n x n, GFLOP/s)\n")
    print("| n | " + " | ".join(c for c, _ in cols) + " | torch.mm |")
    print("|---:|" + "---:|" * (len(cols) + 1))
    for n in sizes:
        cells = []
        for _, prefix in cols:
            r = spo.get(f"{prefix}/{n}")
            cells.append(f"{gflops(r):.0f}" if r and gflops(r) else "n/a")
        t = torch.get(f"BM_Tensor_Gemm_Torch/{n}")
        cells.append(f"{t['GFLOPS']:.0f}" if t else "n/a")
        print(f"| {n} | " + " | ".join(cells) + " |")
    peak = spo.get("BM_Tensor_FmaPeak")
    if peak:
        print(f"\nAVX-512 FMA peak ({threads} threads): {gflops(peak):.0f} GFLOP/s\n")


def dims_of(name):
    return sorted(int(x) for x in re.findall(r"(?<![A-Za-z])(\d+)", name.split("/", 1)[1])) if "/" in name else []


def family_pass(name):
    m = re.match(r"BM_Nn_([A-Za-z0-9]+?)(?:_(Self|Cross))?_?(ForwardBackward|Forward|Backward)\b", name)
    if not m:
        m2 = re.match(r"BM_Nn_([A-Za-z0-9]+)", name)
        fam = m2.group(1) if m2 else name
        return fam, None, ("forward_backward" if "Backward" in name else "forward")
    return m.group(1), m.group(2), ("forward_backward" if "Backward" in m.group(3) else "forward")


# Everything else: pair spo rows with torch rows of the same family, pass and multiset of shape numbers.
used = set()
sections = {}
for name, row in spo.items():
    if not name.startswith("BM_Nn_"):
        continue
    fam, sub, pas = family_pass(name)
    d = dims_of(name)
    match = name if name in torch else None
    for tname, t in torch.items():
        if match:
            break
        if tname in used or t["family"].lower() != fam.lower() or t["pass"] != pas:
            continue
        if sorted(t["dims"]) == d and (sub is None or f"_{sub}_" in tname):
            match = tname
            break
    if match:
        used.add(match)
    sections.setdefault(fam, []).append((name, row, torch.get(match) if match else None))
for tname, t in torch.items():
    if t["family"] not in ("Gemm",) and tname not in used:
        sections.setdefault(t["family"], []).append((None, None, t))

for fam, rows in sections.items():
    print(f"### {fam} (float32; ratio = torch time / spo time, > 1 means spo is faster)\n")
    print("| benchmark | spo ms | spo GFLOP/s | spo cv | torch ms | torch GFLOP/s | torch cv | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r, t in rows:
        label = name or t["name"]
        s_ms = f"{r['ms']:.3f}" if r else "-"
        s_gf = f"{gflops(r):.0f}" if r and gflops(r) else "-"
        s_cv = f"{r['cv']:.1%}" if r else "-"
        t_ms = f"{t['ms']:.3f}" if t else "-"
        t_gf = f"{t['GFLOPS']:.0f}" if t and "GFLOPS" in t else "-"
        t_cv = f"{t['cv']:.1%}" if t else "-"
        ratio = f"{t['ms'] / r['ms']:.2f}" if r and t else "-"
        print(f"| {label} | {s_ms} | {s_gf} | {s_cv} | {t_ms} | {t_gf} | {t_cv} | {ratio} |")
    print()
PY
