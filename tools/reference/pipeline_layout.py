"""Writes tests/data/pipeline_layout/tiny_sd: a diffusers StableDiffusionPipeline folder saved by diffusers and
transformers themselves, with tiny random weights, so that spo's pipeline-folder reader is tested on the exact layout
users download: model_index.json, scheduler/scheduler_config.json, tokenizer/ files, text_encoder/ (transformers,
fp16 variant only and sharded: model.safetensors.index.fp16.json + model.fp16-0000k-of-0000n.safetensors),
unet/ (diffusers, plain and fp16 variant), vae/ (plain). Also writes expected.json: for each component, the tensor
names, shapes and dtypes as the reference libraries stored them, and a few values (float64) of each.

    .venv/bin/python tools/reference/pipeline_layout.py tests/data/pipeline_layout
"""
import json
import os
import sys
import tempfile

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


def byte_vocab(folder):
    """A 514-entry CLIP vocabulary (bytes, their </w> forms, the two specials) and no merges."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    return CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))


def describe(path):
    out = {}
    with safe_open(path, framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k)
            out[k] = {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
                      "first": t.flatten()[:3].double().tolist()}
    return out


def main(out_dir):
    torch.manual_seed(0)
    root = os.path.join(out_dir, "tiny_sd")
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(4, 8),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
                                attention_head_dim=2, norm_num_groups=2)
    vae = AutoencoderKL(block_out_channels=(4,), down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",), latent_channels=4, norm_num_groups=2, layers_per_block=1)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=514, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                                      num_attention_heads=2, max_position_embeddings=77))
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    with tempfile.TemporaryDirectory() as tmp:
        tok = byte_vocab(tmp)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(root, safe_serialization=True)
    # The text encoder as an fp16 variant only, sharded by transformers.
    for f in os.listdir(os.path.join(root, "text_encoder")):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(root, "text_encoder", f))
    te.half().save_pretrained(os.path.join(root, "text_encoder"), safe_serialization=True, variant="fp16",
                              max_shard_size="4KB")
    # The UNet also as an fp16 variant beside the plain file.
    UNet2DConditionModel.from_pretrained(os.path.join(root, "unet")).half().save_pretrained(
        os.path.join(root, "unet"), safe_serialization=True, variant="fp16")
    expected = {}
    for comp in ("unet", "vae", "text_encoder"):
        d = os.path.join(root, comp)
        expected[comp] = {}
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                expected[comp][f] = describe(os.path.join(d, f))
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, sort_keys=True, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1])
