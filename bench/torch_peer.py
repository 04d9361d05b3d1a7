#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch CPU peer of spo's microbenchmarks (bench_gemm, bench_conv2d, bench_norm, bench_attention).

Times the same problems in PyTorch (float32, CPU) and writes Google-Benchmark-style JSON
({"benchmarks": [{"name", "real_time", "time_unit": "ms", "GFLOPS"?}]}) to stdout or --out.
Names follow the C++ benchmarks so that bench/run_all.sh can pair the rows; each entry also carries
"family", "pass" ("forward" / "forward_backward") and "dims" for pairing by shape.

FLOP formulas (identical to the C++ benchmarks):
  GEMM n x n x n:            2 n^3
  Conv2d, one pass:          2 B Cout Ho Wo Cin k k; forward+backward (dx, dW, db) = 3 passes
  Attention (diffusers Attention: to_q/to_k/to_v/to_out.0 projections and the plain q k^T softmax v core),
    proj = 2 B N C inner + 2 * 2 B M Cc inner + 2 B N inner C, core = 4 B H N M d;
    forward = proj + core, forward+backward = 3 proj + 2.5 core (bench/bench_attention.cpp's convention)
  GroupNorm and SiLU are memory-bound: time only.

Run it as bench/run_all.sh does: 2 threads, OPENBLAS_NUM_THREADS=1, MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ raised (glibc otherwise returns freed activations to the OS and re-faults their pages).
Torch 1.13 has no fused scaled_dot_product_attention, so attention is written as plain math as in diffusers'
AttnProcessor.
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

BATCH = 64
GEMM_SIZES = [256, 512, 1024, 2048]
CONV_SHAPES = [(32, 32, 32, 32, 3), (64, 64, 16, 16, 3), (128, 128, 8, 8, 3), (64, 128, 16, 16, 1)]
NORM_SHAPES = [(64, 32, 32, 32, 32), (64, 64, 16, 16, 32)]  # (B, C, H, W, groups)
# (B, tokens N, query_dim C, heads H, context tokens M, context dim Cc); M = 0: self-attention; d = C / H
ATTENTION_SHAPES = [(64, 256, 64, 2, 0, 0), (64, 64, 128, 4, 0, 0), (64, 256, 64, 2, 8, 64)]


class Timing:
    """Median wall and process-CPU seconds per call over the repetitions, and the wall samples."""

    def __init__(self, wall, cpu, samples):
        self.wall, self.cpu, self.samples = wall, cpu, samples


def measure(fn, min_time, repetitions):
    """Mean per-call time of a loop lasting at least min_time, repeated `repetitions` times."""
    for _ in range(2):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    iters = max(1, int(min_time / one))
    walls, cpus = [], []
    for _ in range(repetitions):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            fn()
        walls.append((time.perf_counter() - t0) / iters)
        cpus.append((time.process_time() - c0) / iters)
    return Timing(statistics.median(walls), statistics.median(cpus), walls)


def entry(name, family, pass_, dims, timing, flops=None):
    seconds, samples = timing.wall, timing.samples
    e = {"name": name, "family": family, "pass": pass_, "dims": list(dims), "real_time": seconds * 1e3,
         "cpu_time": timing.cpu * 1e3, "time_unit": "ms", "repetitions": len(samples),
         "cv": statistics.pstdev(samples) / statistics.mean(samples) if len(samples) > 1 else 0.0}
    if flops is not None:
        e["GFLOPS"] = flops / seconds * 1e-9
        e["flops"] = flops
    return e


def bench_gemm(args):
    out = []
    for n in GEMM_SIZES:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        tm = measure(lambda: torch.mm(a, b, out=c), args.min_time, args.repetitions)
        out.append(entry(f"BM_Tensor_Gemm_Torch/{n}", "Gemm", "forward", (n,), tm, 2.0 * n ** 3))
    return out


def bench_conv(args):
    out = []
    for cin, cout, h, w, k in CONV_SHAPES:
        conv = torch.nn.Conv2d(cin, cout, k, stride=1, padding=k // 2)
        x = torch.randn(BATCH, cin, h, w)
        flops = 2.0 * BATCH * cout * h * w * cin * k * k
        suffix = f"cin:{cin}/cout:{cout}/h:{h}/w:{w}/k:{k}"
        dims = (cin, cout, h, w, k)

        def fwd():
            with torch.no_grad():
                conv(x)

        tm = measure(fwd, args.min_time, args.repetitions)
        out.append(entry(f"BM_Nn_Conv2d_Forward/{suffix}", "Conv2d", "forward", dims, tm, flops))

        xg = x.clone().requires_grad_(True)
        dy = torch.randn(BATCH, cout, h, w)

        def fwd_bwd():
            y = conv(xg)
            conv.zero_grad(set_to_none=False)
            xg.grad = None
            y.backward(dy)

        tm = measure(fwd_bwd, args.min_time, args.repetitions)
        out.append(entry(f"BM_Nn_Conv2d_ForwardBackward/{suffix}", "Conv2d", "forward_backward", dims, tm,
                         3.0 * flops))
    return out


def bench_norm(args):
    out = []
    for b, c, h, w, groups in NORM_SHAPES:
        norm = torch.nn.GroupNorm(groups, c)
        x = torch.randn(b, c, h, w)
        dims = (b, c, h, w, groups)
        suffix = f"b:{b}/c:{c}/h:{h}/w:{w}/groups:{groups}"
        for family, fn in (("GroupNorm", norm), ("SiLU", F.silu)):
            def fwd():
                with torch.no_grad():
                    fn(x)

            tm = measure(fwd, args.min_time, args.repetitions)
            fam_dims = dims if family == "GroupNorm" else dims[:4]
            name_suffix = suffix if family == "GroupNorm" else f"b:{b}/c:{c}/h:{h}/w:{w}"
            out.append(entry(f"BM_Nn_{family}_Forward/{name_suffix}", family, "forward", fam_dims, tm))
            xg = x.clone().requires_grad_(True)
            dy = torch.randn_like(x)

            def fwd_bwd():
                y = fn(xg)
                xg.grad = None
                y.backward(dy)

            tm = measure(fwd_bwd, args.min_time, args.repetitions)
            out.append(entry(f"BM_Nn_{family}_ForwardBackward/{name_suffix}", family, "forward_backward", fam_dims,
                             tm))
    return out


class Attention(torch.nn.Module):
    """diffusers 0.26 Attention with AttnProcessor: to_q/to_k/to_v (no bias), to_out.0 (bias), plain softmax core."""

    def __init__(self, query_dim, heads, dim_head, context_dim):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = torch.nn.Linear(query_dim, inner, bias=False)
        self.to_k = torch.nn.Linear(context_dim, inner, bias=False)
        self.to_v = torch.nn.Linear(context_dim, inner, bias=False)
        self.to_out = torch.nn.Linear(inner, query_dim)

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, _ = x.shape
        m = context.shape[1]
        h = self.heads
        q = self.to_q(x).view(b, n, h, -1).transpose(1, 2)        # [B, h, N, d]
        k = self.to_k(context).view(b, m, h, -1).transpose(1, 2)  # [B, h, M, d]
        v = self.to_v(context).view(b, m, h, -1).transpose(1, 2)  # [B, h, M, d]
        p = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)  # [B, h, N, M]
        o = torch.matmul(p, v).transpose(1, 2).reshape(b, n, -1)  # [B, N, inner]
        return self.to_out(o)


def bench_attention(args):
    out = []
    for b, n, c, heads, m_ctx, c_ctx in ATTENTION_SHAPES:
        cross = m_ctx > 0
        m, cc = (m_ctx, c_ctx) if cross else (n, c)
        inner = c
        attn = Attention(c, heads, c // heads, cc)
        x = torch.randn(b, n, c)
        ctx = torch.randn(b, m, cc) if cross else None
        proj = 2.0 * b * n * c * inner + 4.0 * b * m * cc * inner + 2.0 * b * n * inner * c
        core = 4.0 * b * n * m * inner
        suffix = f"B:{b}/N:{n}/C:{c}/H:{heads}/M:{m_ctx}/Cc:{c_ctx}"
        dims = (b, n, c, heads, m_ctx, c_ctx)

        def fwd():
            with torch.no_grad():
                attn(x, ctx)

        tm = measure(fwd, args.min_time, args.repetitions)
        out.append(entry(f"BM_Nn_AttentionForward/{suffix}", "Attention", "forward", dims, tm, proj + core))
        xg = x.clone().requires_grad_(True)
        cg = ctx.clone().requires_grad_(True) if cross else None
        dy = torch.randn(b, n, c)

        def fwd_bwd():
            y = attn(xg, cg)
            attn.zero_grad(set_to_none=False)
            xg.grad = None
            if cg is not None:
                cg.grad = None
            y.backward(dy)

        tm = measure(fwd_bwd, args.min_time, args.repetitions)
        out.append(entry(f"BM_Nn_AttentionForwardBackward/{suffix}", "Attention", "forward_backward", dims, tm,
                         3.0 * proj + 2.5 * core))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per repetition")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--only", default="gemm,conv,norm,attention", help="comma-separated families")
    parser.add_argument("--out", default="-", help="JSON output file ('-' = stdout)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    families = {"gemm": bench_gemm, "conv": bench_conv, "norm": bench_norm, "attention": bench_attention}
    results = []
    for fam in args.only.split(","):
        results += families[fam.strip()](args)
        print(f"torch_peer: {fam} done", file=sys.stderr)
    doc = {"context": {"library": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
                       "mkldnn": torch.backends.mkldnn.is_available()},
           "benchmarks": results}
    text = json.dumps(doc, indent=1)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
