"""Generates tests/data/unet/*.safetensors: tiny diffusers UNet2DConditionModel configs with random weights, inputs,
outputs and (for the first config) gradients, for spo's UNet parity tests.

For each config NAME it writes NAME.safetensors holding every parameter under its diffusers state-dict key, plus
`input.sample` [B, C, H, W], `input.timestep` [B] (float), `input.encoder_hidden_states` [B, M, D],
`output.sample`, and, when gradients are requested, `upstream` (a random cotangent of the output) and
`grad.<key>` / `grad.input.sample` / `grad.input.encoder_hidden_states` of sum(output * upstream). The model runs
in float64; its sinusoidal timestep projection (which diffusers evaluates in float32 whatever the model dtype) is
replaced by the same formula in float64, so that a float64 implementation can be matched to ~1e-12. The config itself is stored as JSON in the __metadata__ block under "config".

    python tools/reference/unet_parity.py tests/data/unet
"""
import json
import os
import sys

import math

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

CONFIGS = {
    # Two levels, attention on the first (as SD: CrossAttnDown ... DownBlock2D), conv projections.
    "tiny_a": dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
                   attention_head_dim=2, norm_num_groups=4, use_linear_projection=False),
    # Three levels, two resnets per block, attention on the two finest levels, linear projections, 4 heads.
    "tiny_b": dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16, 16), layers_per_block=2,
                   down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=6,
                   attention_head_dim=4, norm_num_groups=4, use_linear_projection=True),
}
GRADS = {"tiny_a"}


def time_proj_f64(dim):
    """diffusers' Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0) evaluated in float64."""
    half = dim // 2

    def forward(timesteps):
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float64) / half
        emb = timesteps.to(torch.float64)[:, None] * torch.exp(exponent)[None, :]
        return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)

    return forward


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(100 + i)
        model = UNet2DConditionModel(**cfg).double()
        model.time_proj.forward = time_proj_f64(cfg["block_out_channels"][0])
        # Random weights everywhere (diffusers zero-initialises nothing here, but make norms non-trivial too).
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
        b, m = 2, 3
        sample = torch.randn(b, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"], dtype=torch.float64)
        timestep = torch.tensor([17.0, 803.0], dtype=torch.float64)
        context = torch.randn(b, m, cfg["cross_attention_dim"], dtype=torch.float64)
        sample.requires_grad_(True)
        context.requires_grad_(True)
        out = model(sample, timestep, encoder_hidden_states=context).sample
        tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        tensors["input.sample"] = sample.detach().clone()
        tensors["input.timestep"] = timestep.clone()
        tensors["input.encoder_hidden_states"] = context.detach().clone()
        tensors["output.sample"] = out.detach().clone()
        if name in GRADS:
            upstream = torch.randn_like(out)
            (out * upstream).sum().backward()
            tensors["upstream"] = upstream
            tensors["grad.input.sample"] = sample.grad.clone()
            tensors["grad.input.encoder_hidden_states"] = context.grad.clone()
            for k, p in model.named_parameters():
                tensors["grad." + k] = p.grad.clone()
        meta = {"config": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()})}
        path = os.path.join(out_dir, name + ".safetensors")
        save_file(tensors, path, metadata=meta)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"wrote {path}: {n_params} parameters, output {tuple(out.shape)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/unet")
