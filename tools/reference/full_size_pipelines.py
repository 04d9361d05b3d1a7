"""Writes full-size Stable Diffusion 1.5 and SDXL base pipeline folders with random weights (the real architectures
and configs, fp16 safetensors as the released checkpoints are), for the load, generate and speed checks that need
real sizes. Weights cannot be downloaded here; these folders are never committed (SD1.5 is about 2 GB, SDXL about
7 GB on disk).

The tokenizers are small byte-level CLIP vocabularies (copied from tests/data/clip_tokenizer): every id they produce
is below the real vocabulary size of 49,408, so the text encoders keep their real embedding tables.

    .venv/bin/python tools/reference/full_size_pipelines.py tests/data/clip_tokenizer OUT_DIR [sd15] [sdxl]
"""
import os
import shutil
import sys

import torch
from diffusers import (AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def clip_l():
    return CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                          bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=768)


def clip_bigg():
    return CLIPTextConfig(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                          num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", bos_token_id=0,
                          eos_token_id=2, pad_token_id=1, projection_dim=1280)


def vae(scaling, force_upcast):
    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                         norm_num_groups=32, sample_size=512 if scaling > 0.15 else 1024, scaling_factor=scaling,
                         force_upcast=force_upcast)


def small_init(model):
    """Random weights of a scale that keeps activations finite in fp16 through a whole sampling run."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / fan_in ** 0.5)
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()
    return model


def main(tok_dir, out_dir, which):
    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(os.path.join(tok_dir, "tokenizer"))
    if "sd15" in which:
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        pipe = StableDiffusionPipeline(
            vae=small_init(vae(0.18215, False)), text_encoder=small_init(CLIPTextModel(clip_l())), tokenizer=tok,
            unet=small_init(unet), scheduler=PNDMScheduler(**SD, skip_prk_steps=True, steps_offset=1,
                                                           set_alpha_to_one=False),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.to(torch.float16).save_pretrained(os.path.join(out_dir, "sd15"), safe_serialization=True)
        del pipe, unet
    if "sdxl" in which:
        tok2 = CLIPTokenizer.from_pretrained(os.path.join(tok_dir, "tokenizer_2"))
        unet = UNet2DConditionModel(
            sample_size=128, block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
            transformer_layers_per_block=(1, 2, 10), use_linear_projection=True, cross_attention_dim=2048,
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
        pipe = StableDiffusionXLPipeline(
            vae=small_init(vae(0.13025, True)), text_encoder=small_init(CLIPTextModel(clip_l())),
            text_encoder_2=small_init(CLIPTextModelWithProjection(clip_bigg())), tokenizer=tok, tokenizer_2=tok2,
            unet=small_init(unet),
            scheduler=EulerDiscreteScheduler(**SD, steps_offset=1, timestep_spacing="leading",
                                             interpolation_type="linear"),
            force_zeros_for_empty_prompt=True, add_watermarker=False)
        pipe.to(torch.float16).save_pretrained(os.path.join(out_dir, "sdxl"), safe_serialization=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:] or ["sd15", "sdxl"])
