"""PyTorch eager peer of bench/cuda/bench_unet_cuda.cpp on the same GPU: the same UNet (bench/cuda/torch_sd_unet.py,
equal to diffusers' UNet2DConditionModel), the same configs, batches and benchmark names, forward under no_grad and
forward + backward of sum(y * dy) with every parameter trainable (and, at the SD1.5 size, with rank-4 LoRA on the
attention projections and the base frozen), in strict FP32 (TF32 off for matmul and cuDNN) and
with TF32 allowed; and under torch.autocast in bfloat16 and float16 (FP32 weights, as PyTorch's mixed-precision
training keeps them) at the SD1.5 size and at the SDXL size (1024x1024, batch 2, text_time conditions).
Prints one JSON object per benchmark: {"name", "ms_median", "ms_min", "reps", "parameters", "trainable",
"peak_gib"} (peak_gib: torch.cuda.max_memory_allocated over the benchmark, weights included).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_sd_unet import UNet2DConditionModel  # noqa: E402

DEFAULT = dict(in_channels=1, out_channels=1, block_out_channels=(32, 64, 128), attention=(False, True, True),
               layers_per_block=1, attention_heads=4, cross_attention_dim=64, norm_num_groups=16)
SD15 = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
            attention=(True, True, True, False), layers_per_block=2, attention_heads=8, cross_attention_dim=768,
            norm_num_groups=32)
SDXL = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280), attention=(False, True, True),
            layers_per_block=2, attention_heads=(5, 10, 20), cross_attention_dim=2048, norm_num_groups=32,
            transformer_layers_per_block=(1, 2, 10), use_linear_projection=True, addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
CASES = [("default/8", DEFAULT, 8, 32, 8), ("default/64", DEFAULT, 64, 32, 8), ("sd15/8", SD15, 8, 64, 77)]
HALF_CASES = [("sd15/8", SD15, 8, 64, 77), ("sdxl/2", SDXL, 2, 128, 77)]
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class LoRALinear(torch.nn.Module):
    """y = base(x) + (alpha / r) B A x with A ~ N(0, 1/r), B = 0 and the base frozen (spo's nn::LoRA)."""

    def __init__(self, base, rank=4, alpha=4.0):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.lora_A = torch.nn.Parameter(torch.randn(rank, base.in_features, device=base.weight.device) / rank)
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))

    def forward(self, x):
        return self.base(x) + self.scale * torch.nn.functional.linear(torch.nn.functional.linear(x, self.lora_A),
                                                                      self.lora_B)


def attach_lora(unet):
    """Freezes every parameter and wraps each attention projection (to_q, to_k, to_v, to_out.0) in LoRALinear."""
    for p in unet.parameters():
        p.requires_grad_(False)
    for module in list(unet.modules()):
        if module.__class__.__name__ == "Attention":
            for key in ("to_q", "to_k", "to_v"):
                setattr(module, key, LoRALinear(getattr(module, key)))
            module.to_out[0] = LoRALinear(module.to_out[0])


def timed(fn, reps, min_time):
    """Median and minimum over reps of the mean time per call (ms), each repetition >= min_time seconds, synchronised."""
    fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            torch.cuda.synchronize()
            n += 1
            if time.perf_counter() - t0 >= min_time:
                break
        samples.append(1e3 * (time.perf_counter() - t0) / n)
    return statistics.median(samples), min(samples)


def measure(name, cfg, batch, size, tokens, backward, lora, args, autocast=None):
    """Builds the UNet on the GPU and times forward (no_grad) or forward + backward of sum(y * dy), under
    torch.autocast(autocast) when given."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    with torch.device(dev):  # parameters created on the GPU (no host initialisation of 860M weights)
        unet = UNet2DConditionModel(**cfg)
        if lora:
            attach_lora(unet)
    x = torch.randn(batch, cfg["in_channels"], size, size, device=dev)
    t = torch.tensor([(37 * i) % 1000 for i in range(batch)], device=dev)
    c = torch.randn(batch, tokens, cfg["cross_attention_dim"], device=dev)
    dy = torch.randn(batch, cfg["out_channels"], size, size, device=dev)
    added = {}
    if cfg.get("addition_time_embed_dim"):
        pooled = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        added = {"text_embeds": torch.randn(batch, pooled, device=dev),
                 "time_ids": torch.tensor([[8.0 * size, 8.0 * size, 0, 0, 8.0 * size, 8.0 * size]] * batch, device=dev)}
    cast = torch.autocast("cuda", dtype=autocast, enabled=autocast is not None)

    def fwd():
        with torch.no_grad(), cast:
            unet(x, t, c, **added)

    def fwd_bwd():
        unet.zero_grad(set_to_none=False)
        with cast:
            y = unet(x, t, c, **added)
        (y.float() * dy).sum().backward()

    try:
        torch.cuda.reset_peak_memory_stats()
        med, best = timed(fwd_bwd if backward else fwd, args.reps, args.min_time)
        return {"name": name, "ms_median": med, "ms_min": best, "reps": args.reps,
                "parameters": sum(p.numel() for p in unet.parameters()),
                "trainable": sum(p.numel() for p in unet.parameters() if p.requires_grad),
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    except torch.OutOfMemoryError as e:
        return {"name": name, "error": str(e)[:200]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = False
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "cudnn": torch.backends.cudnn.version()}), flush=True)
    runs = [(case, cfg, batch, size, tokens, tf32, backward, False) for case, cfg, batch, size, tokens in CASES
            for tf32 in (False, True) for backward in (False, True)]
    runs += [("sd15/8", SD15, 8, 64, 77, tf32, True, True) for tf32 in (False, True)]
    runs = [r + (None,) for r in runs]
    runs += [(case, cfg, batch, size, tokens, False, backward, lora, dtype) for dtype in AUTOCAST
             for case, cfg, batch, size, tokens in HALF_CASES
             for backward, lora in ((False, False), (True, False), (True, True))]
    for case, cfg, batch, size, tokens, tf32, backward, lora, dtype in runs:
        kind = "UNetForwardBackwardLoRA/" if lora else ("UNetForwardBackward/" if backward else "UNetForward/")
        name = kind + case + "/" + (dtype or ("tf32" if tf32 else "fp32"))
        if args.filter and args.filter not in name:
            continue
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        print(json.dumps(measure(name, cfg, batch, size, tokens, backward, lora, args, AUTOCAST.get(dtype))),
              flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
