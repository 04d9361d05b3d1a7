"""Checks bench/cuda/torch_sd_unet.py against diffusers' UNet2DConditionModel (0.26.1): the same state dict loads
strictly both ways and the outputs agree in float64 at a small SD-style config. Prints the largest difference.
Run with the reference venv (torch + diffusers): python tools/reference/check_torch_sd_unet.py
"""
import os
import sys

import torch
from diffusers import UNet2DConditionModel as DiffusersUNet

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench", "cuda"))
from torch_sd_unet import UNet2DConditionModel  # noqa: E402


def main():
    torch.manual_seed(0)
    ch, attention = (32, 64, 64), (True, True, False)
    ours = UNet2DConditionModel(in_channels=4, out_channels=4, block_out_channels=ch, attention=attention,
                                layers_per_block=2, attention_heads=4, cross_attention_dim=48, norm_num_groups=8)
    ref = DiffusersUNet(sample_size=16, in_channels=4, out_channels=4, block_out_channels=ch, layers_per_block=2,
                        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
                        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
                        cross_attention_dim=48, attention_head_dim=4, norm_num_groups=8)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours, ref = ours.double(), ref.double()
    x, t, c = torch.randn(2, 4, 16, 16).double(), torch.tensor([17, 901]), torch.randn(2, 5, 48).double()
    with torch.no_grad():
        a = ours(x, t, c)
        b = ref(x, t, encoder_hidden_states=c).sample
    diff = (a - b).abs().max().item()
    print(f"parameters {sum(p.numel() for p in ours.parameters())}, max |ours - diffusers| = {diff:.3e}")
    assert diff < 1e-10, diff


if __name__ == "__main__":
    main()
