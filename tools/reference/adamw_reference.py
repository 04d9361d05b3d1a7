#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints torch.optim.AdamW trajectories as C++ literals for tests/unit/optim/adamw.cpp.

A 4-element parameter p0 = [0.5, -1, 2, 0] takes 3 steps with fixed gradients (below) under two hyperparameter
sets, in float64 and float32; the parameter after every step and the final exp_avg / exp_avg_sq are printed with
17 significant digits. Run: python tools/reference/adamw_reference.py
"""
import torch

P0 = [0.5, -1.0, 2.0, 0.0]
GRADS = [[0.1, -0.2, 0.3, 0.0], [-0.05, 0.4, 1e-3, 0.0], [1.0, -1.0, 0.0, 5.0]]
CONFIGS = {"custom": dict(lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05),
           "defaults": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)}


def lit(values):
    return "{" + ", ".join("%.17g" % v for v in values) + "}"


for dtype in (torch.float64, torch.float32):
    for name, cfg in CONFIGS.items():
        p = torch.nn.Parameter(torch.tensor(P0, dtype=dtype))
        opt = torch.optim.AdamW([p], foreach=False, **cfg)
        print(f"// {name}, {dtype}")
        for g in GRADS:
            p.grad = torch.tensor(g, dtype=dtype)
            opt.step()
            print("  " + lit(p.detach().tolist()) + ",")
        st = opt.state[p]
        print("  exp_avg " + lit(st["exp_avg"].tolist()))
        print("  exp_avg_sq " + lit(st["exp_avg_sq"].tolist()))
