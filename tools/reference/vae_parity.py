"""Generates tests/data/vae/*.safetensors: tiny diffusers AutoencoderKL configs with random weights, inputs and
outputs in float64, for spo's AutoencoderKL parity tests.

For each config NAME it writes NAME.safetensors holding every parameter under its diffusers state-dict key, plus
  `input.image` [B, 3, S, S]          -> `output.mean`, `output.logvar` (clamped), `output.std` of the posterior;
  `input.noise` (like the mean)       -> `output.sample` = mean + std * noise;
                                          `output.latents_mode` = (mean - shift) * scaling,
                                          `output.latents_sample` = (sample - shift) * scaling;
  `input.latents` [B, Cl, s, s]       -> `output.decoded` = decode(latents / scaling + shift);
and, for the configs in TILED,
  `input.tiled_latents` (larger)      -> `output.tiled_decoded` = tiled_decode (enable_tiling with the small tile
                                          sizes below set on the reference object);
  `input.tiled_image` (larger)        -> `output.tiled_mean`, `output.tiled_logvar` from tiled_encode.
Parameters and inputs are float32 numbers (stored as float32); the model runs in float64, outputs are float64.
The attentions' upcast_softmax (a float32 softmax, i.e. a downcast in float64) is switched off.
The __metadata__ block holds "config" (the vae/config.json diffusers writes, with the newer keys shift_factor,
latents_mean/std, use_quant_conv, use_post_quant_conv and mid_block_add_attention added where listed below; their
values are the ones diffusers 0.26.1 implies, except shift_factor, which the pipeline applies: here it is applied by
this script as above) and "tiling" (tile_sample_min_size, tile_latent_min_size, tile_overlap_factor).

    python tools/reference/vae_parity.py tests/data/vae
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL
from diffusers.models.attention_processor import Attention
from safetensors.torch import save_file

CONFIGS = {
    # Two levels, one resnet per encoder level (two per decoder level), batch 2, no shift.
    "tiny_a": dict(block_out_channels=(4, 8), layers_per_block=1, batch=2, scaling_factor=0.18215,
                   extra=dict(shift_factor=None, latents_mean=None, latents_std=None, use_quant_conv=True,
                              use_post_quant_conv=True, mid_block_add_attention=True)),
    # Two levels, two resnets per encoder level, a shift factor.
    "tiny_b": dict(block_out_channels=(4, 8), layers_per_block=2, batch=1, scaling_factor=0.5,
                   extra=dict(shift_factor=0.0625)),
    # Three levels (conv_shortcut on the first decoder resnet of level 1 only), keys of diffusers 0.26.1 only.
    "tiny_c": dict(block_out_channels=(4, 8, 8), layers_per_block=1, batch=1, scaling_factor=0.13025, extra={}),
}
IMAGE_SIZE = 16
TILE_SAMPLE = 16
TILED_IMAGE = (24, 32)
TILED = {"tiny_a", "tiny_c"}


def randn32(*shape):
    """Standard normal numbers rounded to float32, as float64."""
    return torch.randn(*shape).double()


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for i, (name, c) in enumerate(CONFIGS.items()):
        torch.manual_seed(200 + i)
        levels = len(c["block_out_channels"])
        cfg = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * levels,
                   up_block_types=["UpDecoderBlock2D"] * levels, block_out_channels=list(c["block_out_channels"]),
                   layers_per_block=c["layers_per_block"], act_fn="silu", latent_channels=4, norm_num_groups=2,
                   sample_size=IMAGE_SIZE, scaling_factor=c["scaling_factor"], force_upcast=True)
        vae = AutoencoderKL(**cfg).double().eval()
        # The mid-block attentions have upcast_softmax=True, which casts float64 scores to float32 before the softmax;
        # in float64 that is a downcast (errors ~1e-8), so it is switched off (a no-op for float32 models).
        for m in vae.modules():
            if isinstance(m, Attention):
                m.upcast_softmax = False
        # torch's default init for convolutions and linears; non-trivial group-norm affines. Weights and inputs are
        # rounded to float32 and stored so (the model still runs in float64 on exactly those values).
        with torch.no_grad():
            for k, p in vae.named_parameters():
                if "norm" in k:
                    p.copy_((1.0 if k.endswith("weight") else 0.0) + 0.2 * torch.randn_like(p))
                p.copy_(p.float().double())
        scale = cfg["scaling_factor"]
        shift = c["extra"].get("shift_factor") or 0.0
        factor = 2 ** (levels - 1)
        b = c["batch"]
        t = {k: v.detach().clone().contiguous() for k, v in vae.state_dict().items()}
        with torch.no_grad():
            image = randn32(b, 3, IMAGE_SIZE, IMAGE_SIZE)
            post = vae.encode(image).latent_dist
            noise = randn32(*post.mean.shape)
            sample = post.mean + post.std * noise
            latents = randn32(b, 4, IMAGE_SIZE // factor, IMAGE_SIZE // factor)
            decoded = vae.decode(latents / scale + shift).sample
            t.update({"input.image": image, "output.mean": post.mean, "output.logvar": post.logvar,
                      "output.std": post.std, "input.noise": noise, "output.sample": sample,
                      "output.latents_mode": (post.mean - shift) * scale,
                      "output.latents_sample": (sample - shift) * scale, "input.latents": latents,
                      "output.decoded": decoded})
        if name in TILED:
            with torch.no_grad():
                tiled_latents = randn32(1, 4, TILED_IMAGE[0] // factor, TILED_IMAGE[1] // factor)
                tiled_image = randn32(1, 3, TILED_IMAGE[0], TILED_IMAGE[1])
                vae.enable_tiling()
                vae.tile_sample_min_size = TILE_SAMPLE
                vae.tile_latent_min_size = TILE_SAMPLE // factor
                t["input.tiled_latents"] = tiled_latents
                t["output.tiled_decoded"] = vae.decode(tiled_latents).sample
                tiled_post = vae.encode(tiled_image).latent_dist
                t["input.tiled_image"] = tiled_image
                t["output.tiled_mean"] = tiled_post.mean
                t["output.tiled_logvar"] = tiled_post.logvar
        t = {k: (v.float() if k.startswith("input.") or not k.startswith("output.") else v).contiguous()
             for k, v in t.items()}
        config = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.26.1", **cfg, **c["extra"]}
        tiling = {"tile_sample_min_size": vae.tile_sample_min_size,
                  "tile_latent_min_size": vae.tile_latent_min_size, "tile_overlap_factor": vae.tile_overlap_factor}
        path = os.path.join(out_dir, name + ".safetensors")
        save_file(t, path, metadata={"config": json.dumps(config), "tiling": json.dumps(tiling)})
        n_params = sum(p.numel() for p in vae.parameters())
        print(f"wrote {path}: {n_params} parameters, decoded {tuple(decoded.shape)}"
              + (f", tiled {tuple(t['output.tiled_decoded'].shape)}, tiled moments {tuple(tiled_post.mean.shape)}"
                 if name in TILED else ""))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/vae")
