"""SD-style conditional UNet in plain PyTorch with diffusers' UNet2DConditionModel topology and state-dict keys.

The GPU peer of spo's CUDA UNet benchmark (bench/cuda/torch_unet_gpu_peer.py) builds it from torch layers so that the
GPU machine needs no diffusers; tools/reference/check_torch_sd_unet.py proves it equal to diffusers 0.26.1 (same
state dict loaded strictly, same output). Attention runs through torch.nn.functional.scaled_dot_product_attention
(what diffusers' AttnProcessor2_0 calls on torch 2), so the peer gets PyTorch's fused attention kernels.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class Timesteps(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.channels = channels

    def forward(self, t):  # flip_sin_to_cos=True, downscale_freq_shift=0
        half = self.channels // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        emb = t[:, None].float() * torch.exp(exponent)[None, :]
        return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear_1 = nn.Linear(cin, cout)
        self.linear_2 = nn.Linear(cout, cout)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, d = x.shape
        split = lambda t: t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v)
        else:  # torch 1.x (reference check only)
            o = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v
        return self.to_out[0](o.transpose(1, 2).reshape(b, n, d))


class GEGLU(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.proj = nn.Linear(din, 2 * dout)

    def forward(self, x):
        a, g = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(g)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """GroupNorm, proj_in, `layers` transformer blocks, proj_out, residual; the projections are 1x1 convolutions on
    [B, C, H, W] or, with linear_projection (SD 2.x, SDXL), linear layers on the [B, H W, C] tokens."""

    def __init__(self, channels, heads, context_dim, groups, layers=1, linear_projection=False):
        super().__init__()
        self.linear = linear_projection
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        proj = (lambda: nn.Linear(channels, channels)) if linear_projection else (lambda: nn.Conv2d(channels, channels, 1))
        self.proj_in = proj()
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, heads, context_dim)
                                                 for _ in range(layers)])
        self.proj_out = proj()

    def forward(self, x, context):
        b, c, h, w = x.shape
        tokens = lambda y: y.permute(0, 2, 3, 1).reshape(b, h * w, c)  # noqa: E731
        image = lambda y: y.reshape(b, h, w, c).permute(0, 3, 1, 2)  # noqa: E731
        t = self.proj_in(tokens(self.norm(x))) if self.linear else tokens(self.proj_in(self.norm(x)))
        for block in self.transformer_blocks:
            t = block(t, context)
        return (image(self.proj_out(t)) if self.linear else self.proj_out(image(t))) + x


class Sampler(nn.Module):
    def __init__(self, channels, down):
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(channels, channels, 3, stride=2 if down else 1, padding=1)

    def forward(self, x):
        return self.conv(x if self.down else F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    def __init__(self, resnets, attentions, sampler, sampler_key):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions:
            self.attentions = nn.ModuleList(attentions)
        if sampler is not None:
            setattr(self, sampler_key, nn.ModuleList([sampler]))


class UNet2DConditionModel(nn.Module):
    """attention_heads and transformer_layers_per_block: one value, or one per level (down level i and its mirrored
    up level; the mid block takes the last). addition_time_embed_dim / projection_class_embeddings_input_dim: SDXL's
    addition_embed_type "text_time" (forward then takes text_embeds [B, P] and time_ids [B, K])."""

    def __init__(self, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                 attention=(True, True, True, False), layers_per_block=2, attention_heads=8, cross_attention_dim=768,
                 norm_num_groups=32, norm_eps=1e-5, transformer_layers_per_block=1, use_linear_projection=False,
                 addition_time_embed_dim=None, projection_class_embeddings_input_dim=None):
        super().__init__()
        ch, levels, g, eps = list(block_out_channels), len(block_out_channels), norm_num_groups, norm_eps
        per_level = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * levels  # noqa: E731
        heads, depth = per_level(attention_heads), per_level(transformer_layers_per_block)
        temb = 4 * ch[0]
        self.time_proj = Timesteps(ch[0])
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        if addition_time_embed_dim is not None:
            self.add_time_proj = Timesteps(addition_time_embed_dim)
            self.add_embedding = TimestepEmbedding(projection_class_embeddings_input_dim, temb)
        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        attn = lambda c, level: Transformer2DModel(c, heads[level], cross_attention_dim, g, depth[level],  # noqa: E731
                                                   use_linear_projection)
        self.down_blocks = nn.ModuleList()
        out = ch[0]
        for i in range(levels):
            cin, out = out, ch[i]
            res = [ResnetBlock2D(cin if j == 0 else out, out, temb, g, eps) for j in range(layers_per_block)]
            ats = [attn(out, i) for _ in range(layers_per_block)] if attention[i] else []
            self.down_blocks.append(Block(res, ats, Sampler(out, True) if i < levels - 1 else None, "downsamplers"))
        self.mid_block = Block([ResnetBlock2D(ch[-1], ch[-1], temb, g, eps) for _ in range(2)],
                               [attn(ch[-1], levels - 1)], None, "")
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        prev = rev[0]
        for i in range(levels):
            out, skip_in = rev[i], rev[min(i + 1, levels - 1)]
            res = []
            for j in range(layers_per_block + 1):
                skip = skip_in if j == layers_per_block else out
                res.append(ResnetBlock2D((prev if j == 0 else out) + skip, out, temb, g, eps))
            ats = [attn(out, levels - 1 - i) for _ in range(layers_per_block + 1)] if attention[levels - 1 - i] else []
            self.up_blocks.append(Block(res, ats, Sampler(out, False) if i < levels - 1 else None, "upsamplers"))
            prev = out
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], out_channels, 3, padding=1)

    def forward(self, sample, timesteps, context, text_embeds=None, time_ids=None):
        temb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype))
        if hasattr(self, "add_embedding"):
            ids = self.add_time_proj(time_ids.flatten()).reshape(time_ids.shape[0], -1)
            temb = temb + self.add_embedding(torch.cat([text_embeds, ids], dim=-1).to(temb.dtype))
        h = self.conv_in(sample)
        skips = [h]
        for b in self.down_blocks:
            for j, r in enumerate(b.resnets):
                h = r(h, temb)
                if hasattr(b, "attentions"):
                    h = b.attentions[j](h, context)
                skips.append(h)
            if hasattr(b, "downsamplers"):
                h = b.downsamplers[0](h)
                skips.append(h)
        h = self.mid_block.resnets[0](h, temb)
        h = self.mid_block.attentions[0](h, context)
        h = self.mid_block.resnets[1](h, temb)
        for b in self.up_blocks:
            for j, r in enumerate(b.resnets):
                h = r(torch.cat([h, skips.pop()], dim=1), temb)
                if hasattr(b, "attentions"):
                    h = b.attentions[j](h, context)
            if hasattr(b, "upsamplers"):
                h = b.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))
