"""Generates tests/data/diffusion/ddim_golden.json: golden values from diffusers' DDIMScheduler.

Contents: betas / alphas_cumprod of the three beta schedules, set_timesteps() for every spacing and several N,
DDIMScheduler.step() outputs for several (eta, prediction_type, clip_sample, set_alpha_to_one, t) with a fixed
variance_noise, and the per-step Gaussian log-probability of DDPO/D3PO/SPO (`ddim_step_with_logprob`) evaluated in
torch float64 from the formulas of those repositories, with its gradient with respect to the model output
(torch autograd). Run with a Python that has torch and diffusers:

    python tools/reference/ddim_golden.py tests/data/diffusion/ddim_golden.json
"""
import json
import math
import sys

import numpy as np
import torch
from diffusers import DDIMScheduler

T = 1000
SCHEDULES = {
    "linear": dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "squaredcos_cap_v2": dict(beta_schedule="squaredcos_cap_v2"),
}


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def make(schedule, **kw):
    cfg = dict(num_train_timesteps=T, clip_sample=False, set_alpha_to_one=False, steps_offset=0)
    cfg.update(SCHEDULES[schedule])
    cfg.update(kw)
    return DDIMScheduler(**cfg)


def logprob_reference(sched, model_output, timestep, sample, prev_sample, eta, prediction_type):
    """ddim_step_with_logprob of DDPO/D3PO/SPO (algorithm.md section 2), batched over timesteps, float64."""
    ac = sched.alphas_cumprod.to(torch.float64)
    n = sched.num_inference_steps
    prev_t = torch.clamp(timestep - T // n, 0, T - 1)
    a_t = ac.gather(0, timestep).view(-1, 1, 1, 1)
    a_prev = torch.where(prev_t >= 0, ac.gather(0, prev_t), torch.tensor(float(sched.final_alpha_cumprod)))
    a_prev = a_prev.view(-1, 1, 1, 1).to(torch.float64)
    b_t = 1 - a_t
    if prediction_type == "epsilon":
        x0 = (sample - b_t.sqrt() * model_output) / a_t.sqrt()
        eps = model_output
    elif prediction_type == "v_prediction":
        x0 = a_t.sqrt() * sample - b_t.sqrt() * model_output
        eps = a_t.sqrt() * model_output + b_t.sqrt() * sample
    else:
        x0 = model_output
        eps = (sample - a_t.sqrt() * x0) / b_t.sqrt()
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = eta * variance.sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).sqrt() * eps
    lp = -((prev_sample.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - math.log(math.sqrt(2 * math.pi))
    return lp.mean(dim=tuple(range(1, lp.ndim))), mean, std.view(-1)


def main(out_path):
    g = torch.Generator().manual_seed(0)
    data = {"num_train_timesteps": T, "schedules": {}, "timesteps": [], "steps": [], "logprobs": []}
    for name in SCHEDULES:
        s = make(name)
        data["schedules"][name] = {"betas": flat(s.betas), "alphas_cumprod": flat(s.alphas_cumprod)}

    for spacing in ["leading", "trailing", "linspace"]:
        for n in [1, 3, 7, 10, 20, 50, 333, 1000]:
            for offset in [0, 1]:
                s = make("scaled_linear", timestep_spacing=spacing, steps_offset=offset)
                s.set_timesteps(n)
                data["timesteps"].append({"spacing": spacing, "n": n, "steps_offset": offset,
                                          "timesteps": [int(v) for v in s.timesteps.tolist()]})

    shape = [2, 2, 3, 3]
    cases = []  # (schedule, prediction, eta, clip_sample, set_alpha_to_one, n, t)
    all_t = [(20, 951), (20, 501), (20, 1), (50, 981), (10, 0)]
    for prediction in ["epsilon", "v_prediction", "sample"]:
        for eta in [0.0, 0.5, 1.0]:
            cases += [("scaled_linear", prediction, eta, False, False, n, t) for n, t in all_t]
        cases += [("scaled_linear", prediction, 1.0, True, False, n, t) for n, t in [(20, 951), (20, 1)]]
    for eta in [0.0, 1.0]:
        cases += [("scaled_linear", "epsilon", eta, False, True, n, t) for n, t in [(20, 1), (10, 0)]]
    for schedule in ["linear", "squaredcos_cap_v2"]:
        for prediction in ["epsilon", "v_prediction"]:
            cases += [(schedule, prediction, 1.0, False, False, n, t) for n, t in [(20, 951), (20, 1)]]
    for schedule, prediction, eta, clip, alpha_one, n, t in cases:
        s = make(schedule, prediction_type=prediction, clip_sample=clip, clip_sample_range=1.0,
                 set_alpha_to_one=alpha_one)
        s.set_timesteps(n)
        x = torch.randn(shape, generator=g)
        out = torch.randn(shape, generator=g) * (1.5 if prediction == "sample" else 1.0)
        z = torch.randn(shape, generator=g)
        r = s.step(out, t, x, eta=eta, variance_noise=z if eta > 0 else None)
        # The same step in float64 throughout (float32 table values, float64 arithmetic): the double reference.
        s.alphas_cumprod = s.alphas_cumprod.double()
        s.final_alpha_cumprod = torch.tensor(float(s.final_alpha_cumprod), dtype=torch.float64)
        r64 = s.step(out.double(), t, x.double(), eta=eta, variance_noise=z.double() if eta > 0 else None)
        assert r64.prev_sample.dtype == torch.float64
        data["steps"].append({
            "schedule": schedule, "prediction_type": prediction, "eta": eta, "clip_sample": clip,
            "set_alpha_to_one": alpha_one, "num_inference_steps": n, "timestep": t,
            "shape": shape, "sample": flat(x), "model_output": flat(out), "noise": flat(z),
            "prev_sample": flat(r.prev_sample), "pred_original_sample": flat(r.pred_original_sample),
            "prev_sample_f64": flat(r64.prev_sample), "pred_original_sample_f64": flat(r64.pred_original_sample)})

    for schedule, prediction, eta, n in [("scaled_linear", "epsilon", 1.0, 20), ("scaled_linear", "epsilon", 0.5, 20),
                                         ("scaled_linear", "v_prediction", 1.0, 20), ("linear", "sample", 1.0, 10),
                                         ("squaredcos_cap_v2", "epsilon", 1.0, 50)]:
        s = make(schedule, prediction_type=prediction, steps_offset=1)  # t = 0 would make std = 0 (degenerate)
        s.set_timesteps(n)
        ts = s.timesteps
        timestep = torch.stack([ts[0], ts[len(ts) // 2], ts[-1]]).to(torch.int64)  # includes the clamped last step
        x = torch.randn([3] + shape[1:], generator=g, dtype=torch.float64)
        out = torch.randn([3] + shape[1:], generator=g, dtype=torch.float64).requires_grad_(True)
        prev = torch.randn([3] + shape[1:], generator=g, dtype=torch.float64)
        lp, mean, std = logprob_reference(s, out, timestep, x, prev, eta, prediction)
        upstream = torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64)
        (grad,) = torch.autograd.grad((lp * upstream).sum(), out)
        data["logprobs"].append({
            "schedule": schedule, "prediction_type": prediction, "eta": eta, "num_inference_steps": n,
            "timesteps": [int(v) for v in timestep.tolist()], "shape": [3] + shape[1:], "sample": flat(x),
            "model_output": flat(out), "prev_sample": flat(prev), "log_prob": flat(lp), "mean": flat(mean),
            "std": flat(std), "upstream": flat(upstream), "grad_model_output": flat(grad)})

    with open(out_path, "w") as f:
        json.dump(data, f, separators=(",", ":"), allow_nan=False)
    print(f"wrote {out_path}: {len(data['timesteps'])} timestep sets, {len(data['steps'])} steps, "
          f"{len(data['logprobs'])} log-prob cases")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/diffusion/ddim_golden.json")
