"""Checks bench/cuda/torch_sd_unet.py against diffusers' UNet2DConditionModel (0.26.1): the same state dict loads
strictly both ways and the outputs agree in float64, at a small SD 1.5-style config and at a small SDXL-style one
(a plain first level, per-level heads and transformer depths, linear projections, text_time added conditions).
Prints the largest difference of each. Run with the reference venv (torch + diffusers):
python tools/reference/check_torch_sd_unet.py
"""
import os
import sys

import torch
from diffusers import UNet2DConditionModel as DiffusersUNet

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench", "cuda"))
from torch_sd_unet import UNet2DConditionModel  # noqa: E402


def block_types(attention):
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return dict(down_block_types=down, up_block_types=up)


def compare(name, ours, ref, added=None):
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours, ref = ours.double(), ref.double()
    x, t, c = torch.randn(2, 4, 16, 16).double(), torch.tensor([17, 901]), torch.randn(2, 5, 48).double()
    with torch.no_grad():
        if added is None:
            a = ours(x, t, c)
            b = ref(x, t, encoder_hidden_states=c).sample
        else:
            a = ours(x, t, c, added["text_embeds"], added["time_ids"])
            b = ref(x, t, encoder_hidden_states=c, added_cond_kwargs=added).sample
    diff = (a - b).abs().max().item()
    print(f"{name}: parameters {sum(p.numel() for p in ours.parameters())}, max |ours - diffusers| = {diff:.3e}")
    assert diff < 1e-10, diff


def main():
    torch.manual_seed(0)
    ch, attention = (32, 64, 64), (True, True, False)
    ours = UNet2DConditionModel(in_channels=4, out_channels=4, block_out_channels=ch, attention=attention,
                                layers_per_block=2, attention_heads=4, cross_attention_dim=48, norm_num_groups=8)
    ref = DiffusersUNet(sample_size=16, in_channels=4, out_channels=4, block_out_channels=ch, layers_per_block=2,
                        cross_attention_dim=48, attention_head_dim=4, norm_num_groups=8, **block_types(attention))
    compare("SD 1.5-style", ours, ref)

    # SDXL-style: as SDXL base, attention_head_dim is the per-level head count, and text_time adds the pooled
    # embedding and 6 time ids.
    ch, attention, heads, depth = (32, 64, 64), (False, True, True), (2, 4, 8), (1, 2, 3)
    ours = UNet2DConditionModel(in_channels=4, out_channels=4, block_out_channels=ch, attention=attention,
                                layers_per_block=2, attention_heads=heads, cross_attention_dim=48, norm_num_groups=8,
                                transformer_layers_per_block=depth, use_linear_projection=True,
                                addition_time_embed_dim=8, projection_class_embeddings_input_dim=10 + 6 * 8)
    ref = DiffusersUNet(sample_size=16, in_channels=4, out_channels=4, block_out_channels=ch, layers_per_block=2,
                        cross_attention_dim=48, attention_head_dim=heads, norm_num_groups=8,
                        transformer_layers_per_block=depth, use_linear_projection=True,
                        addition_embed_type="text_time", addition_time_embed_dim=8,
                        projection_class_embeddings_input_dim=10 + 6 * 8, **block_types(attention))
    added = {"text_embeds": torch.randn(2, 10).double(),
             "time_ids": torch.tensor([[16.0, 16, 0, 0, 16, 16], [32.0, 24, 4, 2, 16, 16]]).double()}
    compare("SDXL-style", ours, ref, added)


if __name__ == "__main__":
    main()
