"""Generates tests/data/diffusion/schedulers_golden.json: golden sampling chains of diffusers' inference schedulers.

For DDIMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler and
PNDMScheduler (diffusers 0.26.1) over several configs each, the file holds the scheduler_config.json the scheduler
writes (`to_json_string`), the inference timesteps, the sigma table (float32, as diffusers stores it),
init_noise_sigma, and a whole chain on a [1, 4, 4, 4] float64 sample: per step the scaled model input (Euler
schedulers; the others scale by 1), the noise an ancestral step drew and the step's output. The model is a fixed
function of (x, t) (see `fake_model`) so multistep history matters.

Precision convention (what the C++ reproduces): the tables diffusers computes in float32 (betas, alphas_cumprod,
the sigma table of set_timesteps) stay float32 values; every per-step computation is float64. To get that from
diffusers, the float32 tables are converted to float64 (values unchanged) after set_timesteps, and the Euler
schedulers' cast of the sample to float32 inside step() is mapped to float64.

    python tools/reference/scheduler_golden.py tests/data/diffusion/schedulers_golden.json
"""
import json
import math
import sys
import types

import torch
import diffusers
from diffusers.schedulers import scheduling_euler_ancestral_discrete as euler_a_module
from diffusers.schedulers import scheduling_euler_discrete as euler_module

SHAPE = [1, 4, 4, 4]
SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)


def flat(t):
    """Tensor values rounded to 15 significant digits (the file stays small; the tests compare to 1e-10)."""
    return [float("%.15g" % v) for v in t.detach().reshape(-1).tolist()]


def exact(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def fake_model(x, t):
    """u = (0.9 - 0.5 t / 1000) x + 0.3 cos(t / 97) b, b_i = sin(0.37 i + 0.1): linear in x, varying with t."""
    t = float(t)
    b = torch.sin(0.37 * torch.arange(x.numel(), dtype=torch.float64) + 0.1).reshape(x.shape)
    return (0.9 - 0.5 * t / 1000.0) * x + (0.3 * math.cos(t / 97.0)) * b


class Float64Torch(types.ModuleType):
    """The torch module with torch.float32 answering float64 (the Euler steps' upcast of the sample)."""

    def __init__(self):
        super().__init__("torch")
        self.float32 = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


CASES = [
    # name, class, config, steps, eta
    ("ddim_sd15", "DDIMScheduler", dict(SD, steps_offset=1, set_alpha_to_one=False, clip_sample=False), 8, 0.0),
    ("ddim_eta1_sample_clip", "DDIMScheduler",
     dict(beta_schedule="linear", clip_sample=True, clip_sample_range=0.8, set_alpha_to_one=True,
          prediction_type="sample", timestep_spacing="linspace"), 8, 1.0),
    ("ddim_v_zero_snr_trailing", "DDIMScheduler",
     dict(SD, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
          clip_sample=False, set_alpha_to_one=False), 8, 0.0),
    ("ddim_thresholding", "DDIMScheduler",
     dict(SD, steps_offset=1, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5,
          clip_sample=False, set_alpha_to_one=False), 8, 0.5),
    ("euler_sdxl", "EulerDiscreteScheduler",
     dict(SD, steps_offset=1, timestep_spacing="leading", interpolation_type="linear"), 8, None),
    ("euler_karras_v", "EulerDiscreteScheduler",
     dict(SD, use_karras_sigmas=True, prediction_type="v_prediction"), 6, None),
    ("euler_zero_snr_trailing", "EulerDiscreteScheduler",
     dict(SD, rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"), 8, None),
    ("euler_ancestral_sd", "EulerAncestralDiscreteScheduler",
     dict(SD, steps_offset=1, timestep_spacing="leading"), 8, None),
    ("euler_ancestral_v_linspace", "EulerAncestralDiscreteScheduler",
     dict(beta_schedule="linear", prediction_type="v_prediction"), 8, None),
    ("dpmpp_2m_karras", "DPMSolverMultistepScheduler",
     dict(SD, use_karras_sigmas=True, steps_offset=1, timestep_spacing="leading"), 8, None),
    ("dpmpp_2m_leading_16", "DPMSolverMultistepScheduler", dict(SD, steps_offset=1, timestep_spacing="leading"), 15,
     None),
    ("dpmpp_2m_v_heun_sigma_min", "DPMSolverMultistepScheduler",
     dict(SD, prediction_type="v_prediction", solver_type="heun", final_sigmas_type="sigma_min",
          timestep_spacing="trailing"), 8, None),
    ("dpmpp_2m_sample_thresholding", "DPMSolverMultistepScheduler",
     dict(beta_schedule="squaredcos_cap_v2", prediction_type="sample", thresholding=True,
          dynamic_thresholding_ratio=0.8, sample_max_value=2.0, euler_at_final=True), 8, None),
    ("pndm_sd15", "PNDMScheduler", dict(SD, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False), 8, None),
    ("pndm_v_trailing", "PNDMScheduler",
     dict(SD, skip_prk_steps=True, prediction_type="v_prediction", timestep_spacing="trailing"), 8, None),
]


def run_case(name, cls_name, cfg, n, eta, gen):
    cls = getattr(diffusers, cls_name)
    s = cls(**cfg)
    config = json.loads(s.to_json_string().replace("-Infinity", "\"-Infinity\""))
    s.set_timesteps(n)
    rec = {"name": name, "config": config, "num_inference_steps": n, "shape": SHAPE}
    if eta is not None:
        rec["eta"] = eta
    is_euler = cls_name.startswith("Euler")
    if hasattr(s, "sigmas") and cls_name != "DDIMScheduler" and cls_name != "PNDMScheduler":
        assert s.sigmas.dtype == torch.float32
        rec["sigmas"] = exact(s.sigmas)
        s.sigmas = s.sigmas.double()
    if hasattr(s, "alphas_cumprod"):
        s.alphas_cumprod = s.alphas_cumprod.double()
    if hasattr(s, "final_alpha_cumprod"):
        s.final_alpha_cumprod = torch.tensor(float(s.final_alpha_cumprod), dtype=torch.float64)
    ts = s.timesteps
    rec["timesteps"] = [float(v) for v in ts.tolist()]
    rec["timesteps_are_integers"] = not torch.is_floating_point(ts)
    rec["init_noise_sigma"] = float(s.init_noise_sigma)
    x = torch.randn(SHAPE, generator=gen, dtype=torch.float64) * float(s.init_noise_sigma)
    rec["initial_sample"] = flat(x)
    steps = []
    saved = (euler_module.torch, euler_a_module.torch)
    euler_module.torch = euler_a_module.torch = Float64Torch()
    try:
        for t in ts:
            step = {}
            x_in = s.scale_model_input(x, t)
            if is_euler:
                step["scaled_input"] = flat(x_in)
            else:
                assert torch.equal(x_in, x)
            u = fake_model(x_in, t)
            if cls_name == "DDIMScheduler":
                z = torch.randn(SHAPE, generator=gen, dtype=torch.float64) if eta > 0 else None
                x = s.step(u, int(t), x, eta=eta, variance_noise=z).prev_sample
                if z is not None:
                    step["noise"] = flat(z)
            elif cls_name == "EulerAncestralDiscreteScheduler":
                before = gen.get_state()
                step["noise"] = flat(torch.randn(SHAPE, generator=gen, dtype=torch.float64))
                gen.set_state(before)
                x = s.step(u, t, x, generator=gen).prev_sample
            else:
                x = s.step(u, t, x).prev_sample
            assert x.dtype == torch.float64
            step["prev_sample"] = flat(x)
            steps.append(step)
    finally:
        euler_module.torch, euler_a_module.torch = saved
    rec["steps"] = steps
    return rec


def main(out_path):
    torch.set_default_dtype(torch.float32)
    gen = torch.Generator().manual_seed(1234)
    data = {"diffusers_version": diffusers.__version__, "cases": []}
    for name, cls_name, cfg, n, eta in CASES:
        data["cases"].append(run_case(name, cls_name, cfg, n, eta, gen))
    with open(out_path, "w") as f:
        json.dump(data, f, separators=(",", ":"), allow_nan=False)
    print(f"wrote {out_path}: {len(data['cases'])} chains")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/diffusion/schedulers_golden.json")
