"""Writes tests/data/lora/: one set of LoRA weights on a tiny diffusers UNet2DConditionModel, saved in every layout
users meet, and the UNet output diffusers 0.26.1 gives after loading each file its own way.

Layouts (module M in diffusers naming, e.g. down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q):
  diffusers.safetensors   unet.M.lora.down.weight / unet.M.lora.up.weight (what SPO's training scripts save)
  attn_procs.safetensors  A.processor.to_q_lora.down.weight ... (A = the attention, to_out.0 -> to_out_lora)
  peft.safetensors        unet.M.lora_A.weight / unet.M.lora_B.weight
  kohya.safetensors       lora_unet_<M with _>.lora_down.weight / .lora_up.weight / .alpha (alpha = 1, rank 2)
  kohya_sgm.safetensors   the same with the original UNet's block names (input_blocks_4_1_..., middle_block_1_...,
                          output_blocks_0_1_...), as webui LoRAs of SDXL are written
base.safetensors holds the UNet's weights (float32 values, under diffusers keys), the inputs and, in its metadata,
the diffusers config and the LoRA scale. expected.safetensors holds `<layout>` = the float64 UNet output with the
LoRA loaded by diffusers (lora_state_dict + load_lora_into_unet, or load_attn_procs; the PEFT file through
convert_state_dict_to_diffusers) and run with cross_attention_kwargs={"scale": SCALE}, and `base` = the output without
it. The script checks that every layout's output equals W + scale * (alpha / rank) * up @ down applied by hand.

    .venv/bin/python tools/reference/lora_layouts.py tests/data/lora
"""
import json
import os
import sys

import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders import LoraLoaderMixin
from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
from safetensors.torch import save_file

SCALE = 0.7
RANK = 2
KOHYA_ALPHA = 1.0
CONFIG = dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(4, 8), layers_per_block=2,
              down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
              up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=4, attention_head_dim=2,
              norm_num_groups=2)
PROJ = ("to_q", "to_k", "to_v", "to_out.0")

# diffusers' attention (torch 1.13 has no scaled_dot_product_attention) computes scores as
# baddbmm(torch.empty(...), q, k^T, beta=0, alpha=scale). On this torch, a float64 baddbmm now and then returns NaN
# for finite q and k (seen in about one run of five, with or without a zeroed input), so beta = 0 is evaluated as
# alpha * bmm(q, k^T), which is what it means.
_baddbmm = torch.baddbmm


def _baddbmm_beta0(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    if beta == 0 and out is None:
        return alpha * torch.bmm(batch1, batch2)
    return _baddbmm(input, batch1, batch2, beta=beta, alpha=alpha, out=out)


torch.baddbmm = _baddbmm_beta0


def time_proj_f64(unet):
    """diffusers evaluates the sinusoidal projection in float32; spo's double path evaluates it in float64."""
    import math

    def forward(timesteps):
        half = unet.config.block_out_channels[0] // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float64) / half
        emb = timesteps[:, None].double() * torch.exp(exponent)[None, :]
        return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)  # flip_sin_to_cos=True

    unet.time_proj.forward = forward


def sgm_name(module, layers):
    """diffusers module path -> the original UNet's block path (input_blocks / middle_block / output_blocks)."""
    p = module.split(".")
    if p[0] == "down_blocks":
        return ".".join(["input_blocks", str(1 + int(p[1]) * (layers + 1) + int(p[3])), "1"] + p[4:])
    if p[0] == "mid_block":
        return ".".join(["middle_block", "1"] + p[3:])
    return ".".join(["output_blocks", str(int(p[1]) * (layers + 1) + int(p[3])), "1"] + p[4:])


def fresh_unet(weights):
    unet = UNet2DConditionModel(**CONFIG).double()
    unet.load_state_dict(weights)
    time_proj_f64(unet)
    return unet


def main(out_dir):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**CONFIG)
    weights = {k: v.float().clone() for k, v in unet.state_dict().items()}
    sample = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    t = torch.tensor([417.0], dtype=torch.float64)
    ctx = torch.randn(1, 3, 4, dtype=torch.float64)

    modules = [n for n, m in unet.named_modules() if n.endswith(PROJ) and ".attn" in n]
    lora = {}
    for m in modules:
        w = dict(unet.named_modules())[m].weight
        lora[m] = (torch.randn(RANK, w.shape[1]) * 0.3, torch.randn(w.shape[0], RANK) * 0.3)

    layouts = {}
    layouts["diffusers"] = {f"unet.{m}.lora.down.weight": d for m, (d, u) in lora.items()}
    layouts["diffusers"].update({f"unet.{m}.lora.up.weight": u for m, (d, u) in lora.items()})
    ap = {}
    for m, (d, u) in lora.items():
        attn, proj = m.rsplit(".", 1) if not m.endswith("to_out.0") else (m[: -len(".to_out.0")], "to_out")
        ap[f"{attn}.processor.{proj}_lora.down.weight"] = d
        ap[f"{attn}.processor.{proj}_lora.up.weight"] = u
    layouts["attn_procs"] = ap
    layouts["peft"] = {f"unet.{m}.lora_A.weight": d for m, (d, u) in lora.items()}
    layouts["peft"].update({f"unet.{m}.lora_B.weight": u for m, (d, u) in lora.items()})
    for name, rename in (("kohya", lambda m: m), ("kohya_sgm", lambda m: sgm_name(m, CONFIG["layers_per_block"]))):
        k = {}
        for m, (d, u) in lora.items():
            base = "lora_unet_" + rename(m).replace(".", "_")
            k[base + ".lora_down.weight"] = d
            k[base + ".lora_up.weight"] = u
            k[base + ".alpha"] = torch.tensor(KOHYA_ALPHA)
        layouts[name] = k

    expected = {}
    with torch.no_grad():
        expected["base"] = fresh_unet(weights)(sample, t, ctx).sample
        for name, sd in layouts.items():
            u = fresh_unet(weights)
            sd64 = {k: v.clone() for k, v in sd.items()}
            if name == "attn_procs":
                u.load_attn_procs(sd64)
            else:
                if name == "peft":
                    sd64 = convert_state_dict_to_diffusers(sd64)
                kwargs = {"unet_config": u.config} if name == "kohya_sgm" else {}
                state, alphas = LoraLoaderMixin.lora_state_dict(sd64, **kwargs)
                LoraLoaderMixin.load_lora_into_unet(state, alphas, u)
            u.double()
            time_proj_f64(u)
            expected[name] = u(sample, t, ctx, cross_attention_kwargs={"scale": SCALE}).sample

        # By hand: W + scale * (alpha / rank) * up @ down.
        for name, alpha in (("diffusers", RANK), ("kohya", KOHYA_ALPHA)):
            merged = {k: v.double().clone() for k, v in weights.items()}
            for m, (d, u) in lora.items():
                merged[m + ".weight"] += SCALE * (alpha / RANK) * (u.double() @ d.double())
            ref = fresh_unet(merged)(sample, t, ctx).sample
            for layout in layouts:
                if (layout.startswith("kohya")) == (name == "kohya"):
                    err = (expected[layout] - ref).abs().max().item()
                    assert err < 1e-12, (layout, err)
                    print(f"{layout}: diffusers' loading = hand merge within {err:.2e}")

    os.makedirs(out_dir, exist_ok=True)
    base = dict(weights)
    base["input.sample"] = sample
    base["input.timestep"] = t
    base["input.encoder_hidden_states"] = ctx
    config = dict(unet.config)
    save_file({k: v.contiguous() for k, v in base.items()}, os.path.join(out_dir, "base.safetensors"),
              metadata={"config": json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()
                                              if not k.startswith("_")}),
                        "scale": repr(SCALE), "rank": str(RANK), "kohya_alpha": repr(KOHYA_ALPHA)})
    for name, sd in layouts.items():
        save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out_dir, name + ".safetensors"),
                  metadata={"format": "pt"})
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(out_dir, "expected.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
