"""Generates tests/data/loss_golden.json: golden values of the preference-optimisation losses.

For each loss, a few random float64 batches are evaluated with the torch expressions of the reference training
scripts (algorithm.md section 3), and the gradients come from torch autograd:
  - SPO (RockeyCoss/SPO train_spo.py): -log(sigmoid(beta log r_w - beta log r_l)).mean(), r clamped to [1-eps, 1+eps]
  - D3PO (yk7333/d3po scripts/train.py): the same with sign vectors h0, h1 (ties -> 0)
  - DDPO (kvablack/ddpo-pytorch scripts/train.py): mean(max(-A r, -A clamp(r, 1-c, 1+c))), A clamped, approx_kl,
    clipfrac
  - Diffusion-DPO (SalesforceAIResearch/DiffusionDPO train.py): -logsigmoid(-0.5 beta (model_diff - ref_diff)).mean()
and sequences of per-prompt advantage normalisations (ddpo-pytorch stat_tracking.PerPromptStatTracker semantics,
numpy float64, std with ddof=0). Ratios are drawn inside and outside the clip ranges but never within 1e-6 of a
clip bound, so that the clamp's gradient mask does not depend on the last bit of exp(). Floats are written with
Python's repr (17 significant digits). Run with a Python that has torch and numpy:

    python tools/reference/loss_golden.py tests/data/loss_golden.json
"""
import json
import math
import sys
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def log_ratios(rng, n, eps, lo, hi):
    """n log-ratios uniform in [lo, hi], none whose exp lies within 1e-6 of 1 - eps or 1 + eps."""
    out = []
    while len(out) < n:
        d = rng.uniform(lo, hi)
        r = math.exp(d)
        if abs(r - (1 - eps)) > 1e-6 and abs(r - (1 + eps)) > 1e-6:
            out.append(d)
    return np.array(out)


def spo_case(rng, name, b, beta, eps, spread):
    lp_w_ref = rng.normal(-0.3, 0.5, b)
    lp_l_ref = rng.normal(-0.3, 0.5, b)
    lp_w_np = lp_w_ref + log_ratios(rng, b, eps, -spread, spread)
    lp_l_np = lp_l_ref + log_ratios(rng, b, eps, -spread, spread)
    lp_w = torch.tensor(lp_w_np, requires_grad=True)
    lp_l = torch.tensor(lp_l_np, requires_grad=True)
    raw_w = torch.exp(lp_w - torch.tensor(lp_w_ref))
    raw_l = torch.exp(lp_l - torch.tensor(lp_l_ref))
    ratio_w = torch.clamp(raw_w, 1 - eps, 1 + eps)
    ratio_l = torch.clamp(raw_l, 1 - eps, 1 + eps)
    margin = beta * torch.log(ratio_w) - beta * torch.log(ratio_l)
    loss = -torch.log(torch.sigmoid(margin)).mean()
    loss.backward()
    outside = lambda r: ((r < 1 - eps) | (r > 1 + eps)).double()
    return dict(
        name=name, beta=beta, clip_eps=eps,
        lp_w=lp_w_np.tolist(), lp_w_ref=lp_w_ref.tolist(), lp_l=lp_l_np.tolist(), lp_l_ref=lp_l_ref.tolist(),
        loss=float(loss), d_lp_w=flat(lp_w.grad), d_lp_l=flat(lp_l.grad),
        ratio_win_mean=float(raw_w.mean()), ratio_lose_mean=float(raw_l.mean()),
        clipped_ratio_win_mean=float(ratio_w.mean()), clipped_ratio_lose_mean=float(ratio_l.mean()),
        clip_fraction=float(torch.cat([outside(raw_w), outside(raw_l)]).mean()),
        implicit_accuracy=float((margin > 0).double().mean() + 0.5 * (margin == 0).double().mean()),
    )


def d3po_case(rng, name, b, beta, eps, spread):
    lp_0_ref = rng.normal(-0.3, 0.5, b)
    lp_1_ref = rng.normal(-0.3, 0.5, b)
    lp_0_np = lp_0_ref + log_ratios(rng, b, eps, -spread, spread)
    lp_1_np = lp_1_ref + log_ratios(rng, b, eps, -spread, spread)
    pref0 = rng.integers(0, 3, b).astype(np.float64)  # small integers: ties happen
    pref1 = rng.integers(0, 3, b).astype(np.float64)
    a, c = torch.tensor(pref0), torch.tensor(pref1)
    human_prefer = torch.stack([(a > c).double() * 2 - 1, (a < c).double() * 2 - 1], dim=1)
    human_prefer[a == c] = 0
    h0, h1 = human_prefer[:, 0], human_prefer[:, 1]
    lp_0 = torch.tensor(lp_0_np, requires_grad=True)
    lp_1 = torch.tensor(lp_1_np, requires_grad=True)
    raw_0 = torch.exp(lp_0 - torch.tensor(lp_0_ref))
    raw_1 = torch.exp(lp_1 - torch.tensor(lp_1_ref))
    ratio_0 = torch.clamp(raw_0, 1 - eps, 1 + eps)
    ratio_1 = torch.clamp(raw_1, 1 - eps, 1 + eps)
    loss = -torch.log(torch.sigmoid(beta * torch.log(ratio_0) * h0 + beta * torch.log(ratio_1) * h1)).mean()
    loss.backward()
    outside = lambda r: ((r < 1 - eps) | (r > 1 + eps)).double()
    return dict(
        name=name, beta=beta, clip_eps=eps,
        lp_0=lp_0_np.tolist(), lp_0_ref=lp_0_ref.tolist(), lp_1=lp_1_np.tolist(), lp_1_ref=lp_1_ref.tolist(),
        pref0=pref0.tolist(), pref1=pref1.tolist(), h0=flat(h0), h1=flat(h1),
        loss=float(loss), d_lp_0=flat(lp_0.grad), d_lp_1=flat(lp_1.grad),
        ratio_0_mean=float(raw_0.mean()), ratio_1_mean=float(raw_1.mean()),
        clipped_ratio_0_mean=float(ratio_0.mean()), clipped_ratio_1_mean=float(ratio_1.mean()),
        clip_fraction=float(torch.cat([outside(raw_0), outside(raw_1)]).mean()),
        tie_fraction=float((h0 == 0).double().mean()),
    )


def ddpo_case(rng, name, b, clip_range, adv_clip_max, spread, adv_scale):
    lp_old = rng.normal(-0.3, 0.5, b)
    lp_np = lp_old + log_ratios(rng, b, clip_range, -spread, spread)
    adv_np = rng.normal(0.0, adv_scale, b)
    adv_np[0] = 0.0
    lp = torch.tensor(lp_np, requires_grad=True)
    old = torch.tensor(lp_old)
    advantages = torch.clamp(torch.tensor(adv_np), -adv_clip_max, adv_clip_max)
    ratio = torch.exp(lp - old)
    unclipped_loss = -advantages * ratio
    clipped_loss = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = torch.mean(torch.maximum(unclipped_loss, clipped_loss))
    loss.backward()
    return dict(
        name=name, clip_range=clip_range, adv_clip_max=adv_clip_max,
        lp=lp_np.tolist(), lp_old=lp_old.tolist(), advantages=adv_np.tolist(),
        loss=float(loss), d_lp=flat(lp.grad),
        approx_kl=float(0.5 * torch.mean((lp - old) ** 2)),
        clipfrac=float(torch.mean((torch.abs(ratio - 1.0) > clip_range).double())),
        ratio_mean=float(ratio.mean()),
    )


def diffusion_dpo_case(rng, name, b, beta, spread):
    err_ref_w = rng.uniform(0.05, 0.3, b)
    err_ref_l = rng.uniform(0.05, 0.3, b)
    err_w_np = err_ref_w + rng.normal(0.0, spread, b)
    err_l_np = err_ref_l + rng.normal(0.0, spread, b)
    err_w_np[0], err_l_np[0] = err_ref_w[0], err_ref_l[0]  # the policy equals the reference: inside == 0
    err_w = torch.tensor(err_w_np, requires_grad=True)
    err_l = torch.tensor(err_l_np, requires_grad=True)
    model_diff = err_w - err_l
    ref_diff = torch.tensor(err_ref_w) - torch.tensor(err_ref_l)
    scale_term = -0.5 * beta
    inside_term = scale_term * (model_diff - ref_diff)
    loss = -1 * F.logsigmoid(inside_term).mean()
    loss.backward()
    implicit_acc = (inside_term > 0).sum().double() / inside_term.size(0)
    implicit_acc += 0.5 * (inside_term == 0).sum().double() / inside_term.size(0)
    return dict(
        name=name, beta=beta,
        err_w=err_w_np.tolist(), err_ref_w=err_ref_w.tolist(), err_l=err_l_np.tolist(), err_ref_l=err_ref_l.tolist(),
        loss=float(loss), d_err_w=flat(err_w.grad), d_err_l=flat(err_l.grad), implicit_accuracy=float(implicit_acc),
        model_error_mean=float(0.5 * (err_w.mean() + err_l.mean())),
        ref_error_mean=float(torch.cat([torch.tensor(err_ref_w), torch.tensor(err_ref_l)]).mean()),
    )


class Tracker:
    """Per-prompt statistics of ddpo-pytorch's stat tracker (buffer of the last buffer_size rewards per prompt)."""

    def __init__(self, buffer_size, min_count):
        self.buffer_size, self.min_count, self.buffers = buffer_size, min_count, {}

    def update(self, prompts, rewards):
        prompts, rewards = np.array(prompts), np.array(rewards, dtype=np.float64)
        advantages = np.empty_like(rewards)
        for prompt in np.unique(prompts):
            mine = rewards[prompts == prompt]
            buf = self.buffers.setdefault(prompt, deque(maxlen=self.buffer_size))
            buf.extend(mine)
            if len(buf) < self.min_count:
                mean, std = np.mean(rewards), np.std(rewards) + 1e-6
            else:
                mean, std = np.mean(buf), np.std(buf) + 1e-6
            advantages[prompts == prompt] = (mine - mean) / std
        return advantages


def tracker_case(rng, name, buffer_size, min_count, names, batch_sizes):
    tracker = Tracker(buffer_size, min_count)
    steps = []
    for b in batch_sizes:
        prompts = [names[i] for i in rng.integers(0, len(names), b)]
        rewards = rng.normal(5.0, 2.0, b)
        adv = tracker.update(prompts, rewards)
        steps.append(dict(prompts=prompts, rewards=rewards.tolist(), advantages=adv.tolist()))
    stats = {k: dict(mean=float(np.mean(v)), std=float(np.std(v)), count=len(v)) for k, v in tracker.buffers.items()}
    return dict(name=name, buffer_size=buffer_size, min_count=min_count, steps=steps, final_stats=stats)


def main(path):
    rng = np.random.default_rng(20240607)
    data = dict(
        spo=[
            spo_case(rng, "sd15 beta 10 eps 0.1, ratios in [0.8, 1.25]", 12, 10.0, 0.1, math.log(1.25)),
            spo_case(rng, "beta 2 eps 0.2, ratios in [0.5, 2]", 9, 2.0, 0.2, math.log(2.0)),
            spo_case(rng, "beta 10 eps 0.1, all inside", 5, 10.0, 0.1, 0.08),
            spo_case(rng, "beta 100 eps 0.05, one item", 1, 100.0, 0.05, 0.04),
        ],
        d3po=[
            d3po_case(rng, "beta 0.1 eps 0.1 (config/base.py)", 12, 0.1, 0.1, math.log(1.25)),
            d3po_case(rng, "beta 5 eps 0.2", 10, 5.0, 0.2, math.log(1.5)),
        ],
        ddpo=[
            ddpo_case(rng, "clip 1e-4 adv clip 5 (config/base.py)", 12, 1e-4, 5.0, 3e-4, 3.0),
            ddpo_case(rng, "clip 0.2 adv clip 2", 10, 0.2, 2.0, 0.5, 1.5),
        ],
        diffusion_dpo=[
            diffusion_dpo_case(rng, "beta 5000 (sd15 launcher)", 10, 5000.0, 0.01),
            diffusion_dpo_case(rng, "beta 1", 6, 1.0, 0.05),
        ],
        stat_tracker=[
            tracker_case(rng, "buffer 4 min_count 3", 4, 3, ["a cat", "a dog", "a red car"], [5, 7, 2, 6, 8]),
            tracker_case(rng, "buffer 16 min_count 16 (config/base.py)", 16, 16, ["p0", "p1"], [12, 12, 16, 10]),
            tracker_case(rng, "buffer 3 min_count 0", 3, 0, ["x", "y", "z", "w"], [4, 9]),
        ],
    )
    rewards = rng.normal(1.0, 0.7, 9)
    data["batch_advantages"] = dict(rewards=rewards.tolist(),
                                    advantages=((rewards - rewards.mean()) / (rewards.std() + 1e-8)).tolist())
    with open(path, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/loss_golden.json")
