"""Writes tests/data/single_file/: tiny Stable Diffusion checkpoints as ONE safetensors file in the original
(ldm / sgm) layout, as users download them (v1-5-pruned-emaonly.safetensors, sd_xl_base_1.0.safetensors), and the
diffusers / transformers state dicts diffusers 0.26.1 converts them into.

For each family NAME it writes
  NAME.safetensors           the original layout: model.diffusion_model.* (UNet), first_stage_model.* (VAE) and the
                             text encoder(s): cond_stage_model.transformer.text_model.* (sd1, CLIP-L in transformers
                             layout), cond_stage_model.model.* (sd2, OpenCLIP ViT-H layout), or
                             conditioner.embedders.0.transformer.text_model.* + conditioner.embedders.1.model.* (sdxl,
                             CLIP-L + OpenCLIP bigG); sd1 also holds what real files carry besides the models (the
                             DDPM schedule buffers, model_ema.decay / num_updates, text_model.embeddings.position_ids)
  NAME.expected.safetensors  for each component (unet, vae, text_encoder, and text_encoder_2 for sdxl) the tensors of
                             the tiny diffusers / transformers model: metadata "<component>" = the JSON list
                             [[diffusers key, shape], ...] sorted by key, and tensor "<component>" = their values
                             flattened and concatenated in that order, in the file's dtype (one blob per component
                             keeps the file small); metadata "family" and "layers_per_block"
Dtypes: sd1 F32, sd2 BF16, sdxl F16.

The original layout is written here by the inverse of diffusers' single-file mapping, and the script proves it: it
loads NAME.safetensors back and runs diffusers' own converters (convert_ldm_unet_checkpoint,
convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint) on it, and asserts that the
result equals the models' state dicts key for key, bit for bit. The SD2 text encoder follows the converter: the
OpenCLIP model in the file has 24 layers, the diffusers text encoder keeps the first 23 and no projection (the
converter's rule for stabilityai/stable-diffusion-2, whose config it is made to return here).

    .venv/bin/python tools/reference/single_file_golden.py tests/data/single_file
"""
import json
import os
import re
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion import convert_from_ckpt as cfc
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

CLIP_L = dict(vocab_size=16, hidden_size=4, intermediate_size=8, num_hidden_layers=2, num_attention_heads=2,
              max_position_embeddings=4, hidden_act="quick_gelu", projection_dim=4)

FAMILIES = {
    # Attention on the first two of three levels, layers_per_block 2, 1x1-conv projections (SD1.x).
    "sd1": dict(
        dtype=torch.float32,
        unet=dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(2, 2, 4), layers_per_block=2,
                  down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=4,
                  attention_head_dim=2, norm_num_groups=2),
        vae=dict(in_channels=3, out_channels=3, latent_channels=2, block_out_channels=(2, 4), layers_per_block=1,
                 norm_num_groups=2, down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2),
        text=[("text_encoder", "clip", CLIP_L)]),
    # Attention on the first of two levels, layers_per_block 1, linear projections, OpenCLIP ViT-H-like text (SD2.x).
    "sd2": dict(
        dtype=torch.bfloat16,
        unet=dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(2, 4), layers_per_block=1,
                  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=4,
                  attention_head_dim=(1, 2), norm_num_groups=2, use_linear_projection=True),
        vae=dict(in_channels=3, out_channels=3, latent_channels=2, block_out_channels=(2, 2, 4), layers_per_block=1,
                 norm_num_groups=2, down_block_types=("DownEncoderBlock2D",) * 3,
                 up_block_types=("UpDecoderBlock2D",) * 3),
        # The file holds 24 layers (as ViT-H); diffusers' SD2 text encoder has 23.
        text=[("text_encoder", "openclip_sd2",
               dict(vocab_size=16, hidden_size=4, intermediate_size=8, num_hidden_layers=24, num_attention_heads=2,
                    max_position_embeddings=4, hidden_act="gelu", projection_dim=4))]),
    # SDXL: [DownBlock2D, CrossAttnDownBlock2D], text_time add embedding, 2 transformer layers in the attention level.
    "sdxl": dict(
        dtype=torch.float16,
        unet=dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(2, 4), layers_per_block=2,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                  attention_head_dim=(1, 2), transformer_layers_per_block=(1, 2), norm_num_groups=2,
                  use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=2,
                  projection_class_embeddings_input_dim=6 * 2 + 3),
        vae=dict(in_channels=3, out_channels=3, latent_channels=2, block_out_channels=(2, 4), layers_per_block=2,
                 norm_num_groups=2, down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2),
        text=[("text_encoder", "clip", dict(CLIP_L, hidden_act="quick_gelu")),
              ("text_encoder_2", "openclip",
               dict(vocab_size=16, hidden_size=4, intermediate_size=8, num_hidden_layers=3, num_attention_heads=2,
                    max_position_embeddings=4, hidden_act="gelu", projection_dim=3))]),
}

TEXT_PREFIX = {("sd1", "text_encoder"): "cond_stage_model.transformer.",
               ("sd2", "text_encoder"): "cond_stage_model.model.",
               ("sdxl", "text_encoder"): "conditioner.embedders.0.transformer.",
               ("sdxl", "text_encoder_2"): "conditioner.embedders.1.model."}

RESNET_TO_ORIGINAL = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                      "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def randomize(model, gen):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * 0.5)
    return model


def resnet_part(rest):
    """`norm1.weight` -> `in_layers.0.weight` (the original UNet resnet's names)."""
    head, tail = rest.rsplit(".", 1)
    return RESNET_TO_ORIGINAL[head] + "." + tail


def unet_to_original(sd, cfg):
    lpb = cfg["layers_per_block"]
    up_attn = [t.startswith("CrossAttn") for t in cfg["up_block_types"]]
    out = {}
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for key, value in sd.items():
        head, tail = key.rsplit(".", 1)
        if head in fixed:
            new = fixed[head] + "." + tail
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            i = 1 + b * (lpb + 1) + layer
            new = f"input_blocks.{i}.0.{resnet_part(rest)}" if kind == "resnets" else f"input_blocks.{i}.1.{rest}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{1 + int(m[1]) * (lpb + 1) + lpb}.0.op.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d)\.(.*)", key):
            if m[1] == "attentions":
                new = f"middle_block.1.{m[3]}"
            else:
                new = f"middle_block.{2 * int(m[2])}.{resnet_part(m[3])}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            b, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            i = b * (lpb + 1) + layer
            new = f"output_blocks.{i}.0.{resnet_part(rest)}" if kind == "resnets" else f"output_blocks.{i}.1.{rest}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m[1])
            new = f"output_blocks.{b * (lpb + 1) + lpb}.{2 if up_attn[b] else 1}.conv.{m[2]}"
        else:
            raise KeyError(f"no original name for UNet key {key}")
        assert new not in out, new
        out["model.diffusion_model." + new] = value
    return out


def vae_to_original(sd, cfg):
    n = len(cfg["block_out_channels"])
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in sd.items():
        v = value
        if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.*)", key):
            new = f"{m[1]}.norm_out.{m[2]}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            new = f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)\.(weight|bias)", key):
            new = f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"
            if m[2] != "group_norm" and m[3] == "weight":
                v = value[:, :, None, None]  # 1x1 convolutions in the original
        else:
            new = key  # conv_in, conv_out, quant_conv, post_quant_conv
        assert new not in out, new
        out["first_stage_model." + new] = v.contiguous()
    return out


def openclip_to_original(sd, prefix):
    """A transformers CLIP text model (with projection) in OpenCLIP's layout under `prefix`."""
    out = {prefix + "logit_scale": torch.tensor(4.6052, dtype=sd["text_model.final_layer_norm.weight"].dtype)}
    fixed = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
             "text_model.embeddings.position_embedding.weight": "positional_embedding",
             "text_model.final_layer_norm.weight": "ln_final.weight",
             "text_model.final_layer_norm.bias": "ln_final.bias"}
    inner = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj", "mlp.fc1": "mlp.c_fc",
             "mlp.fc2": "mlp.c_proj"}
    qkv = {}
    for key, value in sd.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.t().contiguous()  # [w, p]
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            qkv[(int(m[1]), m[3], m[2])] = value
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.*)\.(weight|bias)", key):
            out[f"{prefix}transformer.resblocks.{m[1]}.{inner[m[2]]}.{m[3]}"] = value
        else:
            raise KeyError(f"no OpenCLIP name for {key}")
    for (layer, kind, part) in sorted(qkv):
        if part == "q":
            name = "in_proj_weight" if kind == "weight" else "in_proj_bias"
            out[f"{prefix}transformer.resblocks.{layer}.attn.{name}"] = torch.cat(
                [qkv[(layer, kind, "q")], qkv[(layer, kind, "k")], qkv[(layer, kind, "v")]], 0)
    return out


def assert_same(name, got, want):
    assert sorted(got) == sorted(want), (name, sorted(set(got) ^ set(want)))
    for k in want:
        g, w = got[k], want[k]
        assert g.shape == w.shape, (name, k, g.shape, w.shape)
        assert torch.equal(g.to(torch.float64), w.to(torch.float64)), (name, k)


def clip_config(kw):
    return CLIPTextConfig(**kw)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.set_default_dtype(torch.float64)  # transformers' CLIP builds its causal mask in the default dtype
    for name, fam in FAMILIES.items():
        gen = torch.Generator().manual_seed(sum(map(ord, name)))
        dtype = fam["dtype"]
        unet = randomize(UNet2DConditionModel(**fam["unet"]).float(), gen)
        vae = randomize(AutoencoderKL(**fam["vae"]).float(), gen)
        expected = {"unet": {k: v.to(dtype) for k, v in unet.state_dict().items()},
                    "vae": {k: v.to(dtype) for k, v in vae.state_dict().items()}}
        original = {}
        original.update(unet_to_original(expected["unet"], fam["unet"]))
        original.update(vae_to_original(expected["vae"], fam["vae"]))
        text_configs = {}
        for component, kind, kw in fam["text"]:
            cls = CLIPTextModel if kind == "clip" else CLIPTextModelWithProjection
            model = randomize(cls(clip_config(kw)).float(), gen)
            sd = {k: v.to(dtype) for k, v in model.state_dict().items()}
            prefix = TEXT_PREFIX[(name, component)]
            if kind == "clip":
                original.update({prefix + k: v for k, v in sd.items()})
                original[prefix + "text_model.embeddings.position_ids"] = torch.arange(kw["max_position_embeddings"])[
                    None]
            else:
                original.update(openclip_to_original(sd, prefix))
            if kind == "openclip_sd2":  # what diffusers keeps: 23 of the 24 layers, no projection
                kept = dict(kw, num_hidden_layers=kw["num_hidden_layers"] - 1)
                text_configs[component] = kept
                sd = {k: v for k, v in sd.items() if k != "text_projection.weight" and not k.startswith(
                    f"text_model.encoder.layers.{kw['num_hidden_layers'] - 1}.")}
            else:
                text_configs[component] = kw
            expected[component] = sd
        if name == "sd1":  # what real SD1.x files hold besides the models
            betas = torch.linspace(0.1, 0.2, 5, dtype=torch.float32)
            original["betas"] = betas
            original["alphas_cumprod"] = torch.cumprod(1 - betas, 0)
            original["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
            original["model_ema.num_updates"] = torch.tensor(7, dtype=torch.int32)
        original = {k: v.contiguous() for k, v in original.items()}
        path = os.path.join(out_dir, name + ".safetensors")
        save_file(original, path)
        lpb = fam["unet"]["layers_per_block"]
        blobs, meta = {}, {"family": name, "layers_per_block": str(lpb)}
        for c, sd in expected.items():
            keys = sorted(sd)
            blobs[c] = torch.cat([sd[k].reshape(-1) for k in keys])
            meta[c] = json.dumps([[k, list(sd[k].shape)] for k in keys], separators=(",", ":"))
        save_file(blobs, os.path.join(out_dir, name + ".expected.safetensors"), metadata=meta)

        # The proof: diffusers' converters on the file give the diffusers state dicts exactly.
        ckpt = load_file(path)
        conv_cfg = dict(layers_per_block=lpb, class_embed_type=None,
                        addition_embed_type=fam["unet"].get("addition_embed_type"))
        assert_same(name + " unet", cfc.convert_ldm_unet_checkpoint(dict(ckpt), conv_cfg), expected["unet"])
        assert_same(name + " vae", cfc.convert_ldm_vae_checkpoint(dict(ckpt), {}), expected["vae"])
        for component, kind, kw in fam["text"]:
            cfg = clip_config(text_configs[component])
            if kind == "clip":
                model = cfc.convert_ldm_clip_checkpoint(dict(ckpt), text_encoder=CLIPTextModel(cfg))
            else:
                hub = "stabilityai/stable-diffusion-2" if kind == "openclip_sd2" else \
                    "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"
                original_from_pretrained = cfc.CLIPTextConfig.from_pretrained
                cfc.CLIPTextConfig.from_pretrained = classmethod(
                    lambda cls, config_name, **kwargs: (assert_hub(config_name, hub), cfg)[1])
                try:
                    if kind == "openclip_sd2":
                        model = cfc.convert_open_clip_checkpoint(dict(ckpt), hub, subfolder="text_encoder")
                    else:
                        model = cfc.convert_open_clip_checkpoint(dict(ckpt), hub, prefix=TEXT_PREFIX[(name, component)],
                                                                 has_projection=True, projection_dim=kw["projection_dim"])
                finally:
                    cfc.CLIPTextConfig.from_pretrained = original_from_pretrained
            assert_same(f"{name} {component}", model.state_dict(), expected[component])
        size = os.path.getsize(path)
        print(f"{name}: {len(original)} original tensors, {sum(map(len, expected.values()))} diffusers tensors, {size} bytes, "
              f"converters agree")


def assert_hub(got, want):
    assert got == want, (got, want)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/single_file")
