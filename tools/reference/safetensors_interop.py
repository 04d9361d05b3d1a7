#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Cross-checks spo's safetensors reader and writer against the Python `safetensors` package.

  make [out_dir]   writes <out_dir>/from_python.safetensors (default tests/data/safetensors/) with F32, F16, BF16,
                   F64, I64, I32 and U8 tensors of known values -- subnormals, +-inf, NaN, negative zero, rounding
                   ties, a 0-d tensor and an empty tensor -- plus a __metadata__ block, and the sidecar
                   from_python.expected.json. For F16/BF16 tensors the sidecar also lists the float32 `source`
                   values the stored ones were rounded from (by numpy / torch, round to nearest even), so spo's own
                   float -> half conversion can be checked against them.
  check <file>     loads a file spo wrote and compares it with `<file>.expected.json` (written by spo's test beside
                   it); exits 1 on any mismatch, 0 when everything matches.

Values in the sidecar are strings (Python float repr, "inf", "-inf", "nan", "-0.0") so JSON can carry them exactly.
Needs numpy, safetensors and torch (for bfloat16).
"""
import json
import math
import os
import sys

import numpy as np

NAME = "from_python"


def _repr(x):
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))


def _tensors():
    import torch

    f32 = np.array([0.0, -0.0, 1.0, -2.5, 0.1, math.pi, 3.4028234663852886e38, 1.1754943508222875e-38,
                    1.401298464324817e-45, -5.877471754111438e-39, math.inf, -math.inf, math.nan],
                   dtype=np.float32)
    # float32 sources for F16: exact values, ties at 1 (+-half ulp), overflow boundary 65504/65520, subnormals.
    f16_src = np.array([0.0, -0.0, 1.0, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 65504.0, 65519.99, 65520.0,
                        2.0**-14, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 0.333333, -1e-6, math.inf, -math.inf],
                       dtype=np.float32).reshape(4, 4)
    f16 = f16_src.astype(np.float16)
    bf16_src = torch.tensor([1.0, -0.0, math.pi, 1e-40, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 3.3895313892515355e38,
                             3.4e38, math.inf, -math.inf], dtype=torch.float32)
    bf16 = bf16_src.to(torch.bfloat16)
    f64 = np.array([[0.1, -0.0, 5e-324], [1.7976931348623157e308, math.inf, 1.0 / 3.0]], dtype=np.float64)
    tensors = {
        "f32": (torch.from_numpy(f32), None),
        "f16": (torch.from_numpy(f16), f16_src),
        "bf16": (bf16, bf16_src.numpy()),
        "f64": (torch.from_numpy(f64), None),
        "scalar": (torch.tensor(42.5, dtype=torch.float32), None),
        "empty": (torch.zeros((0, 3), dtype=torch.float32), None),
        "nested.i64": (torch.tensor([-1, 7, 2**53 + 1], dtype=torch.int64), None),
        "nested.i32": (torch.tensor([[-5], [2**31 - 1]], dtype=torch.int32), None),
        "nested.u8": (torch.tensor([0, 255, 17], dtype=torch.uint8), None),
    }
    return tensors


DTYPE_NAMES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16", "torch.float64": "F64",
               "torch.int64": "I64", "torch.int32": "I32", "torch.uint8": "U8"}


def _values(t):
    import torch

    if t.dtype in (torch.int64, torch.int32, torch.uint8):
        return [_repr(v) for v in t.reshape(-1).tolist()]
    return [_repr(v) for v in t.to(torch.float64).reshape(-1).tolist()]


def make(out_dir):
    from safetensors.torch import save_file

    tensors = _tensors()
    metadata = {"format": "pt", "producer": "safetensors_interop.py", "note": "unicode \u00e9 and \"quotes\""}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, NAME + ".safetensors")
    save_file({k: v for k, (v, _) in tensors.items()}, path, metadata=metadata)
    expected = {"metadata": metadata, "tensors": {}}
    for name, (t, src) in tensors.items():
        e = {"dtype": DTYPE_NAMES[str(t.dtype)], "shape": list(t.shape), "values": _values(t)}
        if src is not None:
            e["source"] = [_repr(v) for v in np.asarray(src, dtype=np.float64).reshape(-1)]
        expected["tensors"][name] = e
    with open(os.path.join(out_dir, NAME + ".expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


def _same(a, b):
    fa, fb = float(a), float(b)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    return fa == fb and math.copysign(1.0, fa) == math.copysign(1.0, fb)


def check(path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with open(path + ".expected.json") if os.path.exists(path + ".expected.json") else \
            open(os.path.splitext(path)[0] + ".expected.json") as f:
        expected = json.load(f)
    loaded = load_file(path)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    errors = []
    if metadata != expected.get("metadata", {}):
        errors.append(f"metadata {metadata!r} != expected {expected.get('metadata')!r}")
    if set(loaded) != set(expected["tensors"]):
        errors.append(f"tensor names {sorted(loaded)} != expected {sorted(expected['tensors'])}")
    for name, e in expected["tensors"].items():
        if name not in loaded:
            continue
        t = loaded[name]
        dtype = DTYPE_NAMES.get(str(t.dtype), str(t.dtype))
        if dtype != e["dtype"]:
            errors.append(f"{name}: dtype {dtype} != {e['dtype']}")
        if list(t.shape) != e["shape"]:
            errors.append(f"{name}: shape {list(t.shape)} != {e['shape']}")
            continue
        got = _values(t)
        if len(got) != len(e["values"]):
            errors.append(f"{name}: {len(got)} values != {len(e['values'])}")
            continue
        for i, (g, x) in enumerate(zip(got, e["values"])):
            if not _same(g, x):
                errors.append(f"{name}[{i}]: {g} != expected {x}")
    for err in errors:
        print("MISMATCH", err)
    print(f"{path}: {len(expected['tensors'])} tensors, {len(errors)} mismatches")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "make":
        here = os.path.dirname(os.path.abspath(__file__))
        make(sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "..", "tests", "data", "safetensors"))
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    else:
        print(__doc__)
        sys.exit(2)
