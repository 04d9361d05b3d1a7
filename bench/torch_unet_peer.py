"""PyTorch peer of bench/bench_unet.cpp: diffusers' UNet2DConditionModel at spo's default (pretrain_base) config.

Measures, with the same shapes as spo's benchmark: forward at batch 8 and 64 (no_grad), a training step at batch 64
(zero_grad, forward, backward of sum(y * dy), AdamW step) and one DDIMScheduler.step at batch 64. Prints one JSON
object per benchmark: {"name", "ms_median", "ms_min", "reps"}. Run through bench/run_unet.sh, which sets the peer's
best environment (raised MALLOC_* thresholds, OPENBLAS_NUM_THREADS=1, 2 intra-op threads).
"""
import argparse
import json
import statistics
import time

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

CONFIG = dict(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 64, 128), layers_per_block=1,
              down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
              up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64,
              attention_head_dim=4, norm_num_groups=16)


def timed(fn, reps, min_time, clock=time.perf_counter, warm_up=True):
    """Median and minimum over `reps` repetitions of the mean time per call, each repetition >= min_time seconds."""
    if warm_up:
        fn()
    samples = []
    for _ in range(reps):
        n, t0 = 0, clock()
        while True:
            fn()
            n += 1
            elapsed = clock() - t0
            if elapsed >= min_time:
                break
        samples.append(1e3 * elapsed / n)
    return statistics.median(samples), min(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=2.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**CONFIG)
    n_params = sum(p.numel() for p in unet.parameters())

    def inputs(b):
        return (torch.randn(b, 1, 32, 32), torch.tensor([(37 * i) % 1000 for i in range(b)]), torch.randn(b, 8, 64))

    results = []
    for b in (8, 64):
        x, t, c = inputs(b)

        def fwd():
            with torch.no_grad():
                unet(x, t, encoder_hidden_states=c)

        results.append(("BM_Model_UNetForward/%d" % b, *timed(fwd, args.reps, args.min_time)))

    x, t, c = inputs(64)
    dy = torch.randn_like(x)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, weight_decay=1e-4)

    def train_step():
        opt.zero_grad(set_to_none=False)
        y = unet(x, t, encoder_hidden_states=c).sample
        (y * dy).sum().backward()
        opt.step()

    results.append(("BM_Model_UNetTrainStep/64", *timed(train_step, args.reps, args.min_time)))

    sched = DDIMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, steps_offset=1, clip_sample=False,
                          set_alpha_to_one=False)
    sched.set_timesteps(20)
    u, xs = torch.randn(64, 1, 32, 32), torch.randn(64, 1, 32, 32)
    g = torch.Generator().manual_seed(3)
    results.append(("BM_Diffusion_DdimStep/64",
                    *timed(lambda: sched.step(u, 501, xs, eta=1.0, generator=g), args.reps, 0.5)))
    for name, med, best in results:
        print(json.dumps({"name": name, "ms_median": med, "ms_min": best, "reps": args.reps, "threads": args.threads,
                          "parameters": n_params}))


if __name__ == "__main__":
    main()
