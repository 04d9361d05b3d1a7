"""Writes tests/data/pipelines/: a tiny Stable Diffusion 1.5-style and a tiny SDXL-style text-to-image pipeline with
random weights, saved by diffusers (tiny_sd15/, tiny_sdxl/: model_index.json, scheduler, tokenizer(s), text
encoder(s), unet, vae, in the layout of the real checkpoints), and what diffusers 0.26.1's StableDiffusionPipeline /
StableDiffusionXLPipeline produce from fixed initial latents (NAME.expected.safetensors): the prompt embeddings
(and SDXL's pooled embeddings and add_time_ids), the initial latents, the final latents, and the image in [0, 1]
([1, 3, H, W]). The settings are in the file's metadata. tiny_sd15.single.safetensors holds the same weights as
one original-layout checkpoint (the single-file form users download; SDXL's mapping is proven per component by
single_file_golden.py).

The weights are saved in float16 (as the released checkpoints are); the run is in float64 on those values. Three places where diffusers computes in float32 whatever
the model dtype are evaluated in float64, as spo's double path does: the sinusoidal timestep projections (time_proj,
add_time_proj), the float32 tables of the schedulers (betas, alphas_cumprod, sigmas: their values are kept and
converted to float64 after set_timesteps), the Euler step's cast of the sample to float32, and the attention
upcasts (the VAE's upcast_softmax casts float64 scores to float32).

    .venv/bin/python tools/reference/pipeline_parity.py tests/data/clip_tokenizer tests/data/pipelines
"""
import json
import math
import os
import sys
import types

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from diffusers.models.attention_processor import Attention
from diffusers.schedulers import scheduling_euler_discrete as euler_module
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

PROMPT = "a photo of an astronaut riding a horse on the moon"
NEGATIVE = None  # no negative prompt: SD1.5 encodes "", SDXL uses zeros (force_zeros_for_empty_prompt)
STEPS = 4
GUIDANCE = 5.0
SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def sinusoid_f64(dim):
    """diffusers' Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0) in float64."""
    half = dim // 2

    def forward(timesteps):
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float64) / half
        emb = timesteps.double()[:, None] * torch.exp(exponent)[None, :]
        return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)

    return forward


# diffusers' attention on torch 1.13 computes scores as baddbmm(torch.empty(...), q, k^T, beta=0): in float64 this
# now and then returns NaN for finite inputs, so beta = 0 is evaluated as alpha * bmm(q, k^T), which it means.
_baddbmm = torch.baddbmm


def _baddbmm_beta0(input, batch1, batch2, *, beta=1, alpha=1, out=None):
    if beta == 0 and out is None:
        return alpha * torch.bmm(batch1, batch2)
    return _baddbmm(input, batch1, batch2, beta=beta, alpha=alpha, out=out)


torch.baddbmm = _baddbmm_beta0


class Float64Torch(types.ModuleType):
    """The torch module with torch.float32 answering float64 (the Euler step's upcast of the sample)."""

    def __init__(self):
        super().__init__("torch")
        self.float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


def float64_tables(scheduler):
    original = scheduler.set_timesteps

    float32_alphas = scheduler.alphas_cumprod.clone()

    def set_timesteps(*args, **kwargs):
        scheduler.alphas_cumprod = float32_alphas  # every run starts from the float32 table
        original(*args, **kwargs)
        for name in ("alphas_cumprod", "sigmas"):
            if hasattr(scheduler, name):
                setattr(scheduler, name, getattr(scheduler, name).double())
        if hasattr(scheduler, "final_alpha_cumprod"):
            scheduler.final_alpha_cumprod = torch.tensor(float(scheduler.final_alpha_cumprod), dtype=torch.float64)

    scheduler.set_timesteps = set_timesteps


def text_config(vocab, hidden, act, projection=None):
    return CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, hidden_act=act, bos_token_id=0,
                          eos_token_id=2, pad_token_id=1, projection_dim=projection or hidden)


def vae(scaling):
    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(4, 8),
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=4, norm_num_groups=2, layers_per_block=1, sample_size=16,
                         scaling_factor=scaling)


def to_float64(pipe):
    pipe.to(torch.float64)
    for module in list(pipe.unet.modules()) + list(pipe.vae.modules()):
        if isinstance(module, Attention):  # the VAE's upcast_softmax casts float64 scores to float32
            module.upcast_softmax = False
            module.upcast_attention = False
    pipe.unet.time_proj.forward = sinusoid_f64(pipe.unet.config.block_out_channels[0])
    if getattr(pipe.unet, "add_time_proj", None) is not None:
        pipe.unet.add_time_proj.forward = sinusoid_f64(pipe.unet.config.addition_time_embed_dim)
    float64_tables(pipe.scheduler)


def run(pipe, name, out_dir, xl):
    to_float64(pipe)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64)
    kwargs = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                  height=16, width=16)
    out = {"latents.init": latents.clone()}
    torch.set_default_dtype(torch.float64)
    with torch.no_grad():
        if xl:
            pe, npe, pooled, npooled = pipe.encode_prompt(PROMPT, negative_prompt=NEGATIVE, device="cpu",
                                                          do_classifier_free_guidance=True)
            out.update({"prompt_embeds": pe, "negative_prompt_embeds": npe, "pooled_prompt_embeds": pooled,
                        "negative_pooled_prompt_embeds": npooled})
            out["add_time_ids"] = torch.tensor([[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]], dtype=torch.float64)
        else:
            pe, npe = pipe.encode_prompt(PROMPT, "cpu", 1, True, negative_prompt=NEGATIVE)
            out.update({"prompt_embeds": pe, "negative_prompt_embeds": npe})
        saved = euler_module.torch
        euler_module.torch = Float64Torch()
        try:
            final = pipe(**kwargs, latents=latents.clone(), output_type="latent").images
            image = pipe(**kwargs, latents=latents.clone(), output_type="pt").images
        finally:
            euler_module.torch = saved
            torch.set_default_dtype(torch.float32)
    out["latents.final"] = final
    out["image"] = image
    for k, v in out.items():
        assert v.dtype == torch.float64, (k, v.dtype)
    meta = {"prompt": PROMPT, "steps": str(STEPS), "guidance": repr(GUIDANCE),
            "height": "16", "width": "16"}
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(out_dir, name + ".expected.safetensors"),
              metadata=meta)
    print(name, "image range", float(image.min()), float(image.max()))


def write_single_file(pipe, name, out_dir, xl):
    """The pipeline's weights as one original-layout checkpoint (NAME.single.safetensors), as the released
    `v1-5-pruned-emaonly.safetensors` / `sd_xl_base_1.0.safetensors` files hold them (the mapping of
    single_file_golden.py, which proves it against diffusers' converters)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from single_file_golden import TEXT_PREFIX, openclip_to_original, unet_to_original, vae_to_original
    family = "sdxl" if xl else "sd1"
    original = {}
    original.update(unet_to_original(pipe.unet.state_dict(), dict(pipe.unet.config)))
    original.update(vae_to_original(pipe.vae.state_dict(), dict(pipe.vae.config)))
    original.update({TEXT_PREFIX[(family, "text_encoder")] + k: v for k, v in pipe.text_encoder.state_dict().items()
                     if not k.endswith("position_ids")})
    if xl:
        original.update(openclip_to_original(pipe.text_encoder_2.state_dict(),
                                             TEXT_PREFIX[(family, "text_encoder_2")]))
    save_file({k: v.contiguous() for k, v in original.items()}, os.path.join(out_dir, name + ".single.safetensors"))


def main(tok_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tok = CLIPTokenizer.from_pretrained(os.path.join(tok_dir, "tokenizer"))
    tok2 = CLIPTokenizer.from_pretrained(os.path.join(tok_dir, "tokenizer_2"))
    vocab = len(tok)

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)  # CLIP's causal mask in float64 needs it on torch 1.13
    te = CLIPTextModel(text_config(vocab, 32, "quick_gelu")).float()
    torch.set_default_dtype(torch.float32)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=2, norm_num_groups=4)
    sched = DDIMScheduler(**SD, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae(0.18215), text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(os.path.join(out_dir, "tiny_sd15"), safe_serialization=True)
    write_single_file(pipe, "tiny_sd15", out_dir, False)
    run(StableDiffusionPipeline.from_pretrained(os.path.join(out_dir, "tiny_sd15")), "tiny_sd15", out_dir, False)

    torch.manual_seed(1)
    torch.set_default_dtype(torch.float64)
    te1 = CLIPTextModel(text_config(vocab, 32, "quick_gelu")).float()
    te2 = CLIPTextModelWithProjection(text_config(vocab, 40, "gelu", projection=40)).float()
    torch.set_default_dtype(torch.float32)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                transformer_layers_per_block=(1, 2), use_linear_projection=True,
                                addition_embed_type="text_time", addition_time_embed_dim=8,
                                projection_class_embeddings_input_dim=6 * 8 + 40, cross_attention_dim=72,
                                norm_num_groups=4)
    sched = EulerDiscreteScheduler(**SD, steps_offset=1, timestep_spacing="leading", interpolation_type="linear")
    pipe = StableDiffusionXLPipeline(vae=vae(0.13025), text_encoder=te1, text_encoder_2=te2, tokenizer=tok,
                                     tokenizer_2=tok2, unet=unet, scheduler=sched, force_zeros_for_empty_prompt=True,
                                     add_watermarker=False)
    pipe.to(torch.float16).save_pretrained(os.path.join(out_dir, "tiny_sdxl"), safe_serialization=True)
    run(StableDiffusionXLPipeline.from_pretrained(os.path.join(out_dir, "tiny_sdxl"), add_watermarker=False),
        "tiny_sdxl", out_dir, True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
