"""Generates tests/data/unet/*.safetensors: tiny diffusers UNet2DConditionModel configs with random weights, inputs,
outputs and (for some configs) gradients, for spo's UNet parity tests.

For each config NAME it writes NAME.safetensors holding every parameter under its diffusers state-dict key, plus
`input.sample` [B, C, H, W], `input.timestep` [B] (float), `input.encoder_hidden_states` [B, M, D],
`output.sample`, and, when gradients are requested, `upstream` (a random cotangent of the output) and
`grad.<key>` / `grad.input.sample` / `grad.input.encoder_hidden_states` of sum(output * upstream). The model runs
in float64; its sinusoidal timestep projection (which diffusers evaluates in float32 whatever the model dtype) is
replaced by the same formula in float64, so that a float64 implementation can be matched to ~1e-12. The config itself is stored as JSON in the __metadata__ block under "config".

The SD-family configs (sd15_like, sd2_like, sdxl_like) also write NAME.config.json, the model's config as diffusers'
save_config writes it (unet/config.json of a pipeline), and store their parameters as F32 (values drawn in float32,
so the float64 model uses exactly the stored numbers) to keep the files small. The text_time config (sdxl_like) also
stores `input.text_embeds` [B, P] and `input.time_ids` [B, 6] (diffusers' added_cond_kwargs), with their gradients
`grad.input.text_embeds` / `grad.input.time_ids`; its add_time_proj is evaluated in float64 as well.

    python tools/reference/unet_parity.py tests/data/unet [NAME ...]   (no NAME: every config)
"""
import json
import os
import shutil
import sys
import tempfile

import math

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
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
    # SD 1.5's pattern (CrossAttnDown x3 + DownBlock2D) at 4 levels, heads given per level. The time projection uses
    # the non-default sin-first order and shift 1 so that flip_sin_to_cos / freq_shift are exercised (C0 = 4: with
    # shift 1 a width-2 projection would divide by zero).
    "sd15_like": dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(4, 4, 4, 4), layers_per_block=1,
                      down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                        "DownBlock2D"),
                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                      cross_attention_dim=6, attention_head_dim=[1, 2, 4, 2], norm_num_groups=2,
                      flip_sin_to_cos=False, freq_shift=1),
    # SD 2.x: linear projections, per-level heads ([5, 10, 20, 20] at head width 64), upcast_attention, default
    # time projection.
    "sd2_like": dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(2, 4, 4, 4), layers_per_block=1,
                     down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                       "DownBlock2D"),
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                     cross_attention_dim=5, attention_head_dim=[1, 4, 2, 4], norm_num_groups=2,
                     use_linear_projection=True, upcast_attention=True),
    # SDXL: DownBlock2D then CrossAttnDownBlock2D, 2 transformer blocks at the attention level and in the mid block,
    # per-level heads, linear projections, text_time added conditioning. Context = concat of two text encoders'
    # hidden states (4 + 6 wide); text_embeds = the second encoder's pooled projection (6 wide); 6 time ids. One norm
    # group (as diffusers' own tiny SDXL test): with one channel per group a per-channel bias before a norm would have
    # an exactly zero gradient, which leaves nothing to compare.
    "sdxl_like": dict(sample_size=4, in_channels=2, out_channels=2, block_out_channels=(2, 4), layers_per_block=1,
                      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=10,
                      attention_head_dim=[1, 2], transformer_layers_per_block=[1, 2], norm_num_groups=1,
                      use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=4,
                      projection_class_embeddings_input_dim=6 * 4 + 6),
}
GRADS = {"tiny_a", "sdxl_like"}
SD_FAMILY = {"sd15_like", "sd2_like", "sdxl_like"}
TEXT_EMBEDS = {"sdxl_like": 6}


_baddbmm = torch.baddbmm


def baddbmm_beta0(input, batch1, batch2, *, beta=1, alpha=1):
    """torch.baddbmm, except that beta = 0 ignores `input`: diffusers passes an uninitialised (torch.empty) input with
    beta = 0, and torch 1.13's CPU baddbmm then sometimes returns NaN at these tiny double-precision sizes."""
    if beta == 0:
        return alpha * torch.bmm(batch1, batch2)
    return _baddbmm(input, batch1, batch2, beta=beta, alpha=alpha)


torch.baddbmm = baddbmm_beta0


def time_proj_f64(dim, flip_sin_to_cos=True, shift=0):
    """diffusers' Timesteps(dim, flip_sin_to_cos, downscale_freq_shift=shift) evaluated in float64 (even dim)."""
    half = dim // 2

    def forward(timesteps):
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - shift)
        emb = timesteps.to(torch.float64)[:, None] * torch.exp(exponent)[None, :]
        parts = [torch.cos(emb), torch.sin(emb)] if flip_sin_to_cos else [torch.sin(emb), torch.cos(emb)]
        return torch.cat(parts, dim=-1)

    return forward


def main(out_dir, names):
    os.makedirs(out_dir, exist_ok=True)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        if names and name not in names:
            continue
        torch.manual_seed(100 + i)
        model = UNet2DConditionModel(**cfg).double()
        flip, shift = model.config.flip_sin_to_cos, model.config.freq_shift
        model.time_proj.forward = time_proj_f64(cfg["block_out_channels"][0], flip, shift)
        if cfg.get("addition_embed_type") == "text_time":
            model.add_time_proj.forward = time_proj_f64(cfg["addition_time_embed_dim"], flip, shift)
        sd_family = name in SD_FAMILY
        # upcast_attention computes q.k^T in float32, a down-cast in this float64 model; the golden keeps float64
        # (the config still says upcast_attention: true, which a float32/float64 implementation meets as is).
        for module in model.modules():
            if isinstance(module, Attention):
                module.upcast_attention = False
        # Random weights everywhere (diffusers zero-initialises nothing here, but make norms non-trivial too).
        with torch.no_grad():
            for p in model.parameters():
                if sd_family:
                    p.copy_((torch.randn_like(p) * 0.3).float().double())
                else:
                    p.copy_(torch.randn_like(p) * 0.3)
        b, m = 2, 3
        sample = torch.randn(b, cfg["in_channels"], cfg["sample_size"], cfg["sample_size"], dtype=torch.float64)
        timestep = torch.tensor([17.0, 803.0], dtype=torch.float64)
        context = torch.randn(b, m, cfg["cross_attention_dim"], dtype=torch.float64)
        sample.requires_grad_(True)
        context.requires_grad_(True)
        added = None
        if name in TEXT_EMBEDS:
            text_embeds = torch.randn(b, TEXT_EMBEDS[name], dtype=torch.float64, requires_grad=True)
            # (orig_h, orig_w, crop_top, crop_left, target_h, target_w), as SDXL's pipeline builds them.
            time_ids = torch.tensor([[32.0, 32.0, 0.0, 0.0, 32.0, 32.0], [24.0, 40.0, 3.0, 5.0, 32.0, 32.0]],
                                    dtype=torch.float64, requires_grad=True)
            added = {"text_embeds": text_embeds, "time_ids": time_ids}
        out = model(sample, timestep, encoder_hidden_states=context, added_cond_kwargs=added).sample
        assert torch.isfinite(out).all(), name
        tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        if sd_family:
            tensors = {k: v.float() for k, v in tensors.items()}
        tensors["input.sample"] = sample.detach().clone()
        tensors["input.timestep"] = timestep.clone()
        tensors["input.encoder_hidden_states"] = context.detach().clone()
        if added is not None:
            tensors["input.text_embeds"] = added["text_embeds"].detach().clone()
            tensors["input.time_ids"] = added["time_ids"].detach().clone()
        tensors["output.sample"] = out.detach().clone()
        if name in GRADS:
            upstream = torch.randn_like(out)
            (out * upstream).sum().backward()
            tensors["upstream"] = upstream
            tensors["grad.input.sample"] = sample.grad.clone()
            tensors["grad.input.encoder_hidden_states"] = context.grad.clone()
            if added is not None:
                tensors["grad.input.text_embeds"] = added["text_embeds"].grad.clone()
                tensors["grad.input.time_ids"] = added["time_ids"].grad.clone()
            for k, p in model.named_parameters():
                tensors["grad." + k] = p.grad.clone()
        if sd_family:
            with tempfile.TemporaryDirectory() as tmp:
                model.save_config(tmp)
                shutil.copyfile(os.path.join(tmp, "config.json"), os.path.join(out_dir, name + ".config.json"))
        meta = {"config": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()})}
        path = os.path.join(out_dir, name + ".safetensors")
        save_file(tensors, path, metadata=meta)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"wrote {path}: {n_params} parameters, output {tuple(out.shape)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/unet", set(sys.argv[2:]))
