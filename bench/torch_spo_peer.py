"""PyTorch peer of bench/bench_spo.cpp: SPO's resampler level, training minibatch and resampler round in eager PyTorch.

The model is diffusers' UNet2DConditionModel at spo's default (pretrain_base) config (the CONFIG of
bench/torch_unet_peer.py) with random weights; the policy is a deep copy with rank-4 LoRA adapters (alpha 4, A ~ N(0,
1/r^2), B = 0) on to_q / to_k / to_v / to_out.0 of every attention, written here without peft. The step-aware
preference model is a CLIP-like network of the same size as spo's default SPM (configs/spm.json: ViT with 4x4
patches, width 64, depth 4, 4 heads, adaLN-Zero time conditioning; one-block text tower of width 64; embed 64).
The SPO math follows SPO's public implementation (classifier-free guidance on a [uncond; cond] batch,
ddim_step_with_logprob with the clamped previous timestep, clamped ratios and -log sigmoid, the best/worst softmax-gap
comparison, a uniformly random continuation child).

Measured (the names of bench_spo.cpp):
  BM_Spo_ResamplerStep   one branching level for B = 10 prompts, k = 4: guided UNet on 40 children (80 rows), x0 /
                         eps, SPM scores of the 40 x0 predictions, compare, continuation, mean + 4 new children each
  BM_Spo_Minibatch       10 items: reference guided pass (no_grad), policy guided pass, 4 log-probs, SPO loss,
                         backward, grad-norm clip, AdamW on the LoRA parameters
  BM_Spo_ResamplerRound  a whole round: 4 plain DDIM steps, the branching at t_4, 15 levels and the final scoring
Prints one JSON object per benchmark: {"name", "ms_median", "ms_min", "reps", "clock", ...}, in milliseconds of wall
time, or of process CPU time with --cpu-time. Run through bench/run_spo.sh.
"""
import argparse
import copy
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from torch_unet_peer import CONFIG, timed

B, K, N_STEPS, DIVERT, THRESHOLD, GUIDANCE, ETA = 10, 4, 20, 4, 0.3, 3.0, 1.0  # configs/spo.json "resampler"
BETA, CLIP_EPS = 10.0, 0.1                                                     # configs/spo.json "loss"
LORA_RANK, LORA_ALPHA = 4, 4.0
LR, WEIGHT_DECAY, MAX_GRAD_NORM, BATCH = 1e-3, 1e-4, 1.0, 10
TEXT_LEN, CTX_DIM = 8, 64
CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
TEMPLATES = ["a photo of a {}", "a picture of a {}", "an image of a {}", "a {}", "a drawing of a {}",
             "a picture of one {}"]


class Tokenizer:
    """Whitespace word tokenizer over the template and class words, id 0 = padding, rows of TEXT_LEN ids."""

    def __init__(self):
        words = sorted({w for t in TEMPLATES for w in t.split() if w != "{}"} | {w for c in CLASSES for w in c.split()})
        self.ids = {w: i + 1 for i, w in enumerate(words)}

    @property
    def vocab_size(self):
        return len(self.ids) + 1

    def __call__(self, prompts):
        rows = [[self.ids[w] for w in p.split()][:TEXT_LEN] for p in prompts]
        return torch.tensor([r + [0] * (TEXT_LEN - len(r)) for r in rows])


class TextEncoder(nn.Module):
    """spo's EmbeddingTextEncoder: token + position embeddings [B, L, D] (the UNet's prompt features)."""

    def __init__(self, vocab):
        super().__init__()
        self.token = nn.Embedding(vocab, CTX_DIM)
        self.position = nn.Parameter(0.01 * torch.randn(TEXT_LEN, CTX_DIM))

    def forward(self, ids):
        return self.token(ids) + self.position


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) (x A^T) B^T; diffusers' LoRALinearLayer init (A ~ N(0, 1/r^2), B = 0)."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / rank)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x, *args):  # diffusers' AttnProcessor passes the LoRA scale as a second argument
        return self.base(x, *args) + self.scale * F.linear(F.linear(x, self.lora_A), self.lora_B)


def attach_lora(unet, rank, alpha):
    unet.requires_grad_(False)
    for m in unet.modules():
        if isinstance(m, Attention):
            m.to_q, m.to_k, m.to_v = (LoRALinear(p, rank, alpha) for p in (m.to_q, m.to_k, m.to_v))
            m.to_out[0] = LoRALinear(m.to_out[0], rank, alpha)
    return [p for n, p in unet.named_parameters() if "lora_" in n]


class SelfAttention(nn.Module):
    """softmax(q k^T / sqrt(d)) v per head; to_q / to_k / to_v without bias, to_out with bias (spo's nn::Attention)."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(width, width, bias=False) for _ in range(3))
        self.to_out = nn.Linear(width, width)

    def forward(self, x):
        b, n, w = x.shape
        q, k, v = (f(x).view(b, n, self.heads, -1).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.to_out((a @ v).transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """Pre-LN CLIP block; with conditioning the adaLN-Zero modulation of SPO's time-conditioned CLIP."""

    def __init__(self, width, heads, conditioned):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 6 * width) if conditioned else None

    def forward(self, x, t_emb=None):
        if self.modulation is None:
            h = x + self.attn(self.ln_1(x))
            return h + self.mlp(self.ln_2(h))
        sh1, sc1, g1, sh2, sc2, g2 = self.modulation(F.silu(t_emb)).unsqueeze(1).chunk(6, dim=-1)
        h = x + g1 * self.attn(self.ln_1(x) * (1 + sc1) + sh1)
        return h + g2 * self.mlp(self.ln_2(h) * (1 + sc2) + sh2)


class StepAwarePreferenceModel(nn.Module):
    """s = exp(logit_scale) cos(visual(x, t), text(ids)), the size of spo's default SPM (configs/spm.json)."""

    def __init__(self, vocab, resolution=32, patch=4, width=64, depth=4, heads=4, embed=64, text_width=64):
        super().__init__()
        tokens = (resolution // patch) ** 2 + 1
        self.conv1 = nn.Conv2d(1, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn(tokens, width) * width ** -0.5)
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.t_embedder = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(Block(width, heads, True) for _ in range(depth))
        self.final_modulation = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, embed, bias=False)
        self.token_embedding = nn.Embedding(vocab, text_width)
        self.text_position = nn.Parameter(0.01 * torch.randn(TEXT_LEN, text_width))
        self.text_block = Block(text_width, heads, False)
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Linear(text_width, embed, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @staticmethod
    def timestep_features(t, dim=256):  # cos-first sinusoids, f_k = exp(-ln(10000) k / 128)
        f = torch.exp(-math.log(10000) * torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
        a = t.float()[:, None] * f[None]
        return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)

    def forward(self, images, t, ids):
        x = self.conv1(images.clamp(-1, 1)).flatten(2).transpose(1, 2)              # [B, 64, W]
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        t_emb = self.t_embedder(self.timestep_features(t))
        h = self.ln_pre(x)
        for blk in self.blocks:
            h = blk(h, t_emb)
        sh, sc = self.final_modulation(F.silu(t_emb)).chunk(2, dim=-1)
        f = self.proj(self.ln_post(h[:, 0]) * (1 + sc) + sh)                          # [B, E]
        g = self.ln_final(self.text_block(self.token_embedding(ids) + self.text_position))
        m = (ids != 0).float()
        m = torch.where(m.sum(1, keepdim=True) > 0, m, torch.ones_like(m))
        g = self.text_projection((g * m[..., None]).sum(1) / m.sum(1, keepdim=True))  # masked mean, [B, E]
        return self.logit_scale.exp() * (F.normalize(f, dim=-1) * F.normalize(g, dim=-1)).sum(-1)


class Spo:
    """The models, the schedule and SPO's step math (ddim_step_with_logprob, ddim_seperate)."""

    def __init__(self, seed):
        torch.manual_seed(seed)
        self.tokenizer = Tokenizer()
        self.reference = UNet2DConditionModel(**CONFIG).eval()
        self.reference.requires_grad_(False)
        self.policy = copy.deepcopy(self.reference)
        self.lora = attach_lora(self.policy, LORA_RANK, LORA_ALPHA)
        self.text = TextEncoder(self.tokenizer.vocab_size).requires_grad_(False)
        self.spm = StepAwarePreferenceModel(self.tokenizer.vocab_size).eval().requires_grad_(False)
        self.sched = DDIMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, steps_offset=1,
                                   clip_sample=False, set_alpha_to_one=False)
        self.sched.set_timesteps(N_STEPS)
        self.ts = [int(t) for t in self.sched.timesteps]                               # 951, 901, ..., 1
        self.ac = self.sched.alphas_cumprod                                              # float32 [1000]
        self.ratio = self.sched.config.num_train_timesteps // N_STEPS
        self.prompts = [TEMPLATES[0].format(c) for c in CLASSES]
        self.ids, self.empty_ids = self.tokenizer(self.prompts), self.tokenizer([""] * B)

    def guided(self, unet, x, t, cond, uncond):
        """eps_u + g (eps_c - eps_u) from one UNet pass over [uncond; cond]."""
        out = unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond])).sample
        eu, ec = out.chunk(2)
        return eu + GUIDANCE * (ec - eu)

    def coefficients(self, t):
        """sqrt(abar_t), sqrt(1 - abar_t), sqrt(abar_prev), dir, std with t_prev = clamp(t - T/N, 0, T-1)."""
        a = self.ac[t].view(-1, 1, 1, 1)
        a_prev = self.ac[(t - self.ratio).clamp(0, len(self.ac) - 1)].view(-1, 1, 1, 1)
        std = ETA * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
        return a.sqrt(), (1 - a).sqrt(), a_prev.sqrt(), (1 - a_prev - std ** 2).sqrt(), std

    def predict(self, u, x, t):
        """x0 and eps of an epsilon prediction (ddim_step_fetch_x0)."""
        sa, s1a = self.coefficients(t)[:2]
        return (x - s1a * u) / sa, u

    def mean(self, x0, eps, t):
        """mu = sqrt(abar_prev) x0 + dir eps and std ("prev_sample_mean")."""
        _, _, ca, cd, std = self.coefficients(t)
        return ca * x0 + cd * eps, std

    def log_prob(self, u, t, x, x_prev):
        """ddim_step_with_logprob: mean over C H W of the Gaussian log-density of x_prev (detached)."""
        mu, std = self.mean(*self.predict(u, x, t), t)
        lp = -(x_prev.detach() - mu) ** 2 / (2 * std ** 2) - torch.log(std) - math.log(math.sqrt(2 * math.pi))
        return lp.mean(dim=(1, 2, 3))

    def children(self, x0, eps, t, gen):
        """k children mu + std z of each mean, sample-major [k B, ...] (ddim_step_fetch_x_t_1)."""
        mu, std = self.mean(x0, eps, t)
        return (mu[None] + std[None] * torch.randn((K, *mu.shape), generator=gen)).flatten(0, 1)

    def choose(self, scores, gen):
        """preference_score_compare (best / worst, softmax gap > threshold) and a uniformly random continuation."""
        s, idx = scores.view(K, B).sort(dim=0, descending=True)
        p = torch.softmax(s[[0, -1]], dim=0)
        valid = p[0] - p[1] > THRESHOLD
        return idx[0], idx[-1], valid, torch.randint(0, K, (B,), generator=gen) * B + torch.arange(B)

    def level(self, children, t_level, cond_k, uncond_k, ids_k, gen):
        """One branching level i > d (as bench_spo.cpp's resampler_level): returns the next k B children."""
        t = torch.full((K * B,), t_level, dtype=torch.long)
        u = self.guided(self.policy, children, t, cond_k, uncond_k)
        x0, eps = self.predict(u, children, t)
        _, _, _, rows = self.choose(self.spm(x0, t, ids_k), gen)
        return self.children(x0[rows], eps[rows], t[:B], gen)

    def round(self, gen):
        """multi_sample_pipeline for B prompts: plain steps to t_d, branching, levels, the final scoring at t = 0."""
        cond, uncond = self.text(self.ids), self.text(self.empty_ids)
        cond_k, uncond_k, ids_k = cond.repeat(K, 1, 1), uncond.repeat(K, 1, 1), self.ids.repeat(K, 1)
        x = torch.randn((B, 1, 32, 32), generator=gen)
        for t in self.ts[:DIVERT]:
            u = self.guided(self.policy, x, torch.full((B,), t), cond, uncond)
            x = self.sched.step(u, t, x, eta=ETA, generator=gen).prev_sample
        t_b = torch.full((B,), self.ts[DIVERT], dtype=torch.long)
        parent = x
        x0, eps = self.predict(self.guided(self.policy, parent, t_b, cond, uncond), parent, t_b)
        children = self.children(x0, eps, t_b, gen)
        pairs = []
        for i in range(DIVERT + 1, N_STEPS + 1):
            last = i == N_STEPS
            t = torch.full((K * B,), 0 if last else self.ts[i], dtype=torch.long)
            if not last:
                u = self.guided(self.policy, children, t, cond_k, uncond_k)
                x0, eps = self.predict(u, children, t)
            win, lose, valid, rows = self.choose(self.spm(children if last else x0, t, ids_k), gen)
            j = torch.arange(B)
            pairs.append((parent[valid], children[win * B + j][valid], children[lose * B + j][valid]))
            parent = children[rows]
            if last:
                break
            children = self.children(x0[rows], eps[rows], t[:B], gen)
        return parent, pairs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--only", default="", help="comma-separated substrings of benchmark names")
    ap.add_argument("--cpu-time", action="store_true", help="time process CPU time instead of wall time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spo = Spo(0)
    gen = torch.Generator().manual_seed(7)
    wanted = [s for s in args.only.split(",") if s]
    results, extras = [], {}
    clock = time.process_time if args.cpu_time else time.perf_counter

    def run(name, fn, min_time, warm_up=True):
        if not wanted or any(w in name for w in wanted):
            extras[name] = {}
            results.append((name, *timed(fn, args.reps, min_time, clock, warm_up)))

    with torch.no_grad():
        cond_k = spo.text(spo.ids).repeat(K, 1, 1)
        uncond_k = spo.text(spo.empty_ids).repeat(K, 1, 1)
    ids_k = spo.ids.repeat(K, 1)
    t_level = spo.ts[DIVERT + 1]
    children = torch.randn((K * B, 1, 32, 32), generator=gen)

    def step():
        with torch.no_grad():
            spo.level(children, t_level, cond_k, uncond_k, ids_k, gen)

    run("BM_Spo_ResamplerStep", step, args.min_time)

    # 10 items: parents at t_4 .. t_13, winner and loser two children of the reference's guided mean.
    t_items = torch.tensor(spo.ts[DIVERT:DIVERT + BATCH])
    x_t = torch.randn((BATCH, 1, 32, 32), generator=gen)
    with torch.no_grad():
        u = spo.guided(spo.reference, x_t, t_items, spo.text(spo.ids), spo.text(spo.empty_ids))
        x0, eps = spo.predict(u, x_t, t_items)
        x_w, x_l = spo.children(x0, eps, t_items, gen).view(K, BATCH, 1, 32, 32)[:2]
    opt = torch.optim.AdamW(spo.lora, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WEIGHT_DECAY)

    def minibatch():
        opt.zero_grad(set_to_none=False)
        with torch.no_grad():
            cond, uncond = spo.text(spo.ids), spo.text(spo.empty_ids)
            u_ref = spo.guided(spo.reference, x_t, t_items, cond, uncond)
        u = spo.guided(spo.policy, x_t, t_items, cond, uncond)
        lp_w, lp_l = spo.log_prob(u, t_items, x_t, x_w), spo.log_prob(u, t_items, x_t, x_l)
        lr_w, lr_l = spo.log_prob(u_ref, t_items, x_t, x_w), spo.log_prob(u_ref, t_items, x_t, x_l)
        r_w = torch.clamp(torch.exp(lp_w - lr_w), 1 - CLIP_EPS, 1 + CLIP_EPS)
        r_l = torch.clamp(torch.exp(lp_l - lr_l), 1 - CLIP_EPS, 1 + CLIP_EPS)
        loss = -torch.log(torch.sigmoid(BETA * torch.log(r_w) - BETA * torch.log(r_l))).mean()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(spo.lora, MAX_GRAD_NORM)
        opt.step()
        extras["BM_Spo_Minibatch"].update(loss=float(loss), grad_norm=float(grad_norm))

    run("BM_Spo_Minibatch", minibatch, args.min_time)

    def resampler_round():
        with torch.no_grad():
            _, pairs = spo.round(gen)
        extras["BM_Spo_ResamplerRound"]["pairs_per_round"] = sum(len(p[0]) for p in pairs)

    # Seconds per call: one call per repetition and no warm-up, as Iterations(1) in bench_spo.cpp.
    run("BM_Spo_ResamplerRound", resampler_round, 0.0, warm_up=False)
    n_lora = sum(p.numel() for p in spo.lora)
    for name, med, best in results:
        print(json.dumps({"name": name, "ms_median": med, "ms_min": best, "reps": args.reps, "threads": args.threads,
                          "clock": "process_cpu" if args.cpu_time else "wall",
                          "lora_parameters": n_lora, **extras[name]}))


if __name__ == "__main__":
    main()
