"""diffusers peer of bench/bench_sd_pipeline.cpp and of the `generate` binary, on the same pipeline folder.

--micro: prints one JSON object per benchmark ({"name", "ms_median", "ms_min", "reps"}): BM_SD_EncodePrompt
(encode_prompt with classifier-free guidance), BM_SD_UNetStepCFG (one DDIM step: the UNet on the batch of 2,
guidance, scheduler.step) and BM_SD_VaeDecode (vae.decode of one latent), in float32 with torch's intra-op threads
set to --threads.
--generate: one whole image (DDIM, --steps steps, guidance 5, the checkpoint's size) as the pipeline's __call__, and
prints {"load_s", "encode_s", "denoise_s", "decode_s"}; run it under /usr/bin/time for the peak RSS.
--device cuda: the same on the GPU (float32; every timed call ends with torch.cuda.synchronize()), the peer of
bench/cuda/bench_sd_pipeline_cuda and `generate --device cuda`; the peak device memory is printed as "peak_gpu_gb".

    python bench/diffusers_sd_peer.py FOLDER (--micro | --generate) [--threads N] [--reps N] [--steps N]
                                     [--device cpu|cuda] [--only BM_SD_VaeDecode ...]
"""
import argparse
import json
import statistics
import time

import torch
from diffusers import DDIMScheduler, DiffusionPipeline

PROMPT = "a photo of an astronaut riding a horse on the moon"
DEVICE = "cpu"


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps, warm_up=True):
    if warm_up:
        fn()
        sync()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(samples), min(samples)


def load(folder):
    pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32).to(DEVICE)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def encode(pipe, xl):
    if xl:
        pe, npe, pooled, npooled = pipe.encode_prompt(PROMPT, device=DEVICE, do_classifier_free_guidance=True)
        return pe, npe, pooled, npooled
    pe, npe = pipe.encode_prompt(PROMPT, DEVICE, 1, True)
    return pe, npe, None, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--micro", action="store_true")
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--only", nargs="+", help="with --micro: run only these benchmarks (by name)")
    a = ap.parse_args()
    global DEVICE
    DEVICE = a.device
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    pipe = load(a.folder)
    sync()
    load_s = time.perf_counter() - t0
    xl = hasattr(pipe, "text_encoder_2")
    size = pipe.unet.config.sample_size
    with torch.no_grad():
        if a.generate:
            t1 = time.perf_counter()
            pe, npe, pooled, npooled = encode(pipe, xl)
            sync()
            t2 = time.perf_counter()
            kwargs = dict(prompt_embeds=pe, negative_prompt_embeds=npe, num_inference_steps=a.steps,
                          guidance_scale=5.0, output_type="latent")
            if xl:
                kwargs.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=npooled)
            latents = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
            sync()
            t3 = time.perf_counter()
            pipe.vae.decode(latents / pipe.vae.config.scaling_factor)
            sync()
            t4 = time.perf_counter()
            out = {"load_s": load_s, "encode_s": t2 - t1, "denoise_s": t3 - t2, "decode_s": t4 - t3}
            if DEVICE == "cuda":
                out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
            print(json.dumps(out))
            return
        pe, npe, pooled, npooled = encode(pipe, xl)
        context = torch.cat([npe, pe])
        added = None
        if xl:
            ids = torch.tensor([[size * 8.0, size * 8.0, 0, 0, size * 8.0, size * 8.0]] * 2, device=DEVICE)
            added = {"text_embeds": torch.cat([npooled, pooled]), "time_ids": ids}
        x = torch.randn(1, 4, size, size, device=DEVICE)
        pipe.scheduler.set_timesteps(1)
        t = pipe.scheduler.timesteps[0]

        def step():
            out = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=context, added_cond_kwargs=added).sample
            u, c = out.chunk(2)
            return pipe.scheduler.step(u + 5.0 * (c - u), t, x).prev_sample

        benchmarks = {"BM_SD_EncodePrompt": lambda: encode(pipe, xl), "BM_SD_UNetStepCFG": step,
                      "BM_SD_VaeDecode": lambda: pipe.vae.decode(x / pipe.vae.config.scaling_factor)}
        for name, fn in benchmarks.items():
            if a.only and name not in a.only:
                continue
            median, best = timed(fn, a.reps)
            print(json.dumps({"name": name, "ms_median": median, "ms_min": best, "reps": a.reps}), flush=True)


if __name__ == "__main__":
    main()
