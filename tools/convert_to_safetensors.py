"""Converts pickle checkpoints (.bin, .ckpt, .pt, .pth) to safetensors, which is the only weight format spo reads.

    python tools/convert_to_safetensors.py PATH [PATH ...]

PATH is a file or a folder (every pickle file directly in it is converted, e.g. a diffusers component folder).
Each FILE.EXT becomes the name spo and the reference libraries look for: `pytorch_model.bin` ->
`model.safetensors` (transformers), `diffusion_pytorch_model.bin` -> `diffusion_pytorch_model.safetensors`
(diffusers), anything else -> FILE.safetensors. A `.ckpt` holding {"state_dict": ...} (the original Stable Diffusion
layout) is unwrapped. Tensors keep their dtype; tensors sharing storage are written as separate copies; non-tensor
entries are listed and skipped. Existing outputs are not overwritten. Needs torch and safetensors (a reference
environment, not spo's build); the pickle is loaded with `weights_only=True`, so it cannot run code.
"""
import os
import sys

import torch
from safetensors.torch import save_file

PICKLE = (".bin", ".ckpt", ".pt", ".pth")
RENAME = {"pytorch_model.bin": "model.safetensors",
          "diffusion_pytorch_model.bin": "diffusion_pytorch_model.safetensors"}


def target_name(path):
    base = os.path.basename(path)
    if base in RENAME:
        return os.path.join(os.path.dirname(path), RENAME[base])
    return os.path.splitext(path)[0] + ".safetensors"


def convert(path):
    out = target_name(path)
    if os.path.exists(out):
        print(f"{out}: exists, skipped")
        return
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        sys.exit(f"{path}: not a state dict (a {type(obj).__name__})")
    tensors, skipped = {}, []
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            tensors[k] = v.detach().clone().contiguous()
        else:
            skipped.append(k)
    save_file(tensors, out, metadata={"format": "pt"})
    print(f"{path} -> {out}: {len(tensors)} tensors" + (f", skipped non-tensors {skipped}" if skipped else ""))


def main(paths):
    if not paths:
        sys.exit(__doc__)
    for p in paths:
        if os.path.isdir(p):
            for f in sorted(os.listdir(p)):
                if f.endswith(PICKLE):
                    convert(os.path.join(p, f))
        elif os.path.isfile(p):
            convert(p)
        else:
            sys.exit(f"{p}: no such file or folder")


if __name__ == "__main__":
    main(sys.argv[1:])
