#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generates tests/data/frechet_golden.json: Frechet distances between Gaussian fits of synthetic feature sets.

Features are not stored: each set is regenerated bit-exactly by the test from a splitmix64 stream (seed below).
For a set of N rows and F features, U [N, F] is drawn (row-major) from the stream of `seed` and the mixing matrix
W [F, F] from the stream of `mix_seed`, as uniform doubles u = (z >> 11) * 2^-53, and
X = scale * (U - 0.5) @ W + shift * (j + 1) / F for column j (two sets with equal mix_seed, scale and shift are
samples of one distribution). Each set records checks
of the generator (sum of X, X[0, 0]) and of the statistics (numpy.cov with ddof = 1, as the FID reference).

The distance d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)) is given two ways:
  - "distance": tr((S_a S_b)^(1/2)) as the nuclear norm of A B^T, where S_a = A^T A with A = (X_a - mu_a) / sqrt(N_a - 1)
    (the nonzero eigenvalues of S_a S_b are the squared singular values of A B^T); exact also for rank-deficient
    covariances (N < F), since no square root of a rounding-level eigenvalue enters;
  - "distance_fid_eig": the FID formula with sqrtm(S_a S_b) from numpy.linalg.eig (sum of the square roots of the
    eigenvalues of S_a S_b, real part), as pytorch-fid's scipy.linalg.sqrtm would; it agrees with "distance" to
    ~1e-12 for full-rank cases and only to ~1e-7 when a covariance is singular.
Run with any Python that has numpy:

    python3 tools/reference/frechet_golden.py tests/data/frechet_golden.json
"""
import json
import sys

import numpy as np

MASK = (1 << 64) - 1

# (name, set a, set b); a set is (seed, mix_seed, n, f, scale, shift).
CASES = [
    ("f4_n50_n60", (11, 101, 50, 4, 1.0, 0.0), (12, 102, 60, 4, 1.5, 0.5)),
    ("f16_n120_n100", (21, 201, 120, 16, 2.0, 0.0), (22, 202, 100, 16, 1.0, -1.0)),
    ("f32_same_distribution", (31, 301, 200, 32, 1.0, 0.25), (32, 301, 200, 32, 1.0, 0.25)),
    ("f64_n300_n250", (41, 401, 300, 64, 1.0, 0.0), (42, 402, 250, 64, 0.7, 2.0)),
    ("f64_rank_deficient_n40_n30", (51, 501, 40, 64, 1.0, 0.0), (52, 502, 30, 64, 1.2, 0.3)),
]


def uniforms(seed, count):
    state, out = seed & MASK, np.empty(count)
    for i in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        out[i] = (z >> 11) * 2.0**-53
    return out


def features(seed, mix_seed, n, f, scale, shift):
    U, W = uniforms(seed, n * f).reshape(n, f), uniforms(mix_seed, f * f).reshape(f, f)
    return scale * (U - 0.5) @ W + shift * (np.arange(f) + 1.0) / f


def distance_nuclear(xa, xb):
    a = (xa - xa.mean(0)) / np.sqrt(len(xa) - 1)
    b = (xb - xb.mean(0)) / np.sqrt(len(xb) - 1)
    sa, sb = a.T @ a, b.T @ b
    dmu = xa.mean(0) - xb.mean(0)
    return float(dmu @ dmu + np.trace(sa) + np.trace(sb) - 2.0 * np.linalg.svd(a @ b.T, compute_uv=False).sum())


def distance_fid_eig(xa, xb):
    sa, sb = np.cov(xa, rowvar=False), np.cov(xb, rowvar=False)
    dmu = xa.mean(0) - xb.mean(0)
    w = np.linalg.eigvals(sa @ sb).astype(complex)
    return float(dmu @ dmu + np.trace(sa) + np.trace(sb) - 2.0 * np.sqrt(w).real.sum())


def describe(params, x):
    seed, mix_seed, n, f, scale, shift = params
    cov = np.cov(x, rowvar=False)
    return {"seed": seed, "mix_seed": mix_seed, "n": n, "f": f, "scale": scale, "shift": shift, "sum": float(x.sum()),
            "x00": float(x[0, 0]), "mean0": float(x[:, 0].mean()), "cov_trace": float(np.trace(cov)),
            "cov00": float(cov[0, 0]), "cov01": float(cov[0, 1])}


def main(path):
    cases = []
    for name, pa, pb in CASES:
        xa, xb = features(*pa), features(*pb)
        exact, fid = distance_nuclear(xa, xb), distance_fid_eig(xa, xb)
        if min(pa[2], pb[2]) > pa[3]:
            assert abs(exact - fid) <= 1e-10 * abs(exact), (name, exact, fid)
        cases.append({"name": name, "a": describe(pa, xa), "b": describe(pb, xb), "distance": exact,
                      "distance_fid_eig": fid})
    with open(path, "w") as f:
        json.dump({"generator": "splitmix64; see tools/reference/frechet_golden.py", "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/frechet_golden.json")
