#!/usr/bin/env python3
"""Markdown tables of the baselines and ablations (docs/results.md) from the run folders of tools/run_seeds.sh.

Reads runs/<name>/seed<k>/results.json and progress.jsonl of every finished seed (standard library only; seeds the
CPU has not run are taken from runs/gpu/<name>/seed<k>, the GPU twin's runs), and prints
for each table: the rater's reward (mean over seeds, 95% t interval over seeds), the paired win rate against the base
model, the Frechet distance and the held-out judge's class accuracy, with the number of seeds; then the efficiency
comparison of SPO and Diffusion-DPO (rater reward against training wall-clock, preference-model training counted).
    python3 tools/results_tables.py [runs-dir]
"""
import glob
import json
import math
import os
import sys

# Two-sided 95% Student t quantiles by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}

TABLES = [
    ("Table 2: SPO against the baselines", [
        ("SPO (SPM, best-worst pair, random continuation)", "spo_seeds"),
        ("Diffusion-DPO (offline pairs)", "diffusion_dpo"),
        ("D3PO (final-image rater preference at every step)", "d3po"),
        ("DDPO (PPO on the rater's reward)", "ddpo")]),
    ("Table 4: how the chain continues", [
        ("winner child", "spo_continue_winner"),
        ("loser child", "spo_continue_loser"),
        ("random child (SPO)", "spo_seeds")]),
    ("Table 5: preference model", [
        ("step-aware preference model (SPO)", "spo_seeds"),
        ("without step condition", "spo_no_step_condition"),
        ("clean-image model on x0 predictions", "spo_clean_pm"),
        ("oracle rater on x0 predictions (upper bound)", "spo_oracle")]),
    ("Table 6: children per step k", [
        ("k = 2", "spo_k2"),
        ("k = 4 (SPO)", "spo_seeds"),
        ("k = 8", "spo_k8")]),
    ("Table 8: timesteps where pairs are recorded", [
        ("[0, 250]", "spo_t0_250"),
        ("[0, 500]", "spo_t0_500"),
        ("[0, 750]", "spo_t0_750"),
        ("[0, 1000]", "spo_t0_1000"),
        ("[250, 750]", "spo_t250_750"),
        ("SPO default (steps 5-20, t <= 751)", "spo_seeds")]),
    ("Table 9: which pair is trained", [
        ("best and worst (SPO)", "spo_seeds"),
        ("random pair, labelled by the preference model", "spo_random_pair")]),
    ("Pair loss on the step-wise pairs (beyond the paper)", [
        ("clipped ratio, beta 10, clip 0.1 (SPO)", "spo_seeds"),
        ("unclipped step DPO, beta 10", "spo_step_dpo")]),
]


def interval(values):
    """Mean and 95% t interval over runs (None for the interval with one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T95.get(n - 1, 1.96) * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


def fmt(values, digits=4):
    if not values:
        return "-"
    mean, ci = interval(values)
    return f"{mean:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def seeds(runs, name):
    """Finished seeds of a variant: runs/<name>/seed<k> (CPU), completed by runs/gpu/<name>/seed<k> (bin/spo_cuda,
    tools/gpu_experiments.sh) for seeds the CPU has not run."""
    out = []
    cpu = sorted(glob.glob(os.path.join(runs, name, "seed*", "results.json")))
    have = {os.path.basename(os.path.dirname(p)) for p in cpu}
    gpu = [p for p in sorted(glob.glob(os.path.join(runs, "gpu", name, "seed*", "results.json")))
           if os.path.basename(os.path.dirname(p)) not in have]
    for path in cpu + gpu:
        with open(path) as f:
            r = json.load(f)
        tuned = r.get("spo") or r.get("tuned") or next(v for k, v in r.items() if isinstance(v, dict) and
                                                        "reward_mean" in v and k != "base")
        out.append({"dir": os.path.dirname(path), "gpu": path in gpu, "base": r["base"], "tuned": tuned,
                    "win": r["win_rate_vs_base"]["rate"] if "rate" in r["win_rate_vs_base"]
                    else r["win_rate_vs_base"]["mean"], "wall_s": r.get("wall_s")})
    return out


def tables(runs):
    base = None
    for title, rows in TABLES:
        print(f"**{title}**\n")
        print("| variant | seeds | rater reward | win rate vs base | Frechet | class accuracy |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, name in rows:
            s = seeds(runs, name)
            if s and base is None:
                base = s[0]["base"]
            n_gpu = sum(x["gpu"] for x in s)
            count = f"{len(s)}" + (f" ({n_gpu} GPU)" if n_gpu else "")
            print(f"| {label} | {count} | {fmt([x['tuned']['reward_mean'] for x in s])} | "
                  f"{fmt([x['win'] for x in s], 3)} | {fmt([x['tuned']['frechet'] for x in s], 3)} | "
                  f"{fmt([x['tuned']['class_accuracy'] for x in s], 4)} |")
        if base:
            lo, hi = base["reward_ci95"]
            print(f"| base model (95% interval over its 320 images) | - | {base['reward_mean']:.4f} [{lo:.4f}, {hi:.4f}] "
                  f"| 0.5 | {base['frechet']:.3f} | {base['class_accuracy']:.4f} |")
        print()


def progress(runs, name):
    curves = []
    for path in sorted(glob.glob(os.path.join(runs, name, "seed*", "progress.jsonl"))):
        if not os.path.exists(os.path.join(os.path.dirname(path), "results.json")):
            continue  # a run still in progress
        with open(path) as f:
            curves.append([json.loads(line) for line in f if line.strip()])
    return curves


def first_time(curve, target, key="train_wall_s"):
    """Training wall-clock (s), or with key="step" the round, at which the progress reward first reaches target
    (linear between progress points), or None."""
    for a, b in zip(curve, curve[1:]):
        if b["reward_mean"] >= target:
            if b["reward_mean"] == a["reward_mean"]:
                return b[key]
            f = (target - a["reward_mean"]) / (b["reward_mean"] - a["reward_mean"])
            return a[key] + max(0.0, min(1.0, f)) * (b[key] - a[key])
    return None


def efficiency(runs, pm_seconds):
    spo, dpo = progress(runs, "spo_seeds"), progress(runs, "diffusion_dpo")
    if not spo or not dpo:
        return
    print("**Rater reward on the progress prompts (4 seeds x 20 held-out prompts) against training wall-clock**\n")
    print("| method | round | training wall-clock s (mean over seeds) | reward (mean, 95% interval over seeds) |")
    print("|---|---:|---:|---:|")
    for label, curves in (("SPO", spo), ("Diffusion-DPO", dpo)):
        for i in range(min(len(c) for c in curves)):
            print(f"| {label} | {curves[0][i]['step']} | {sum(c[i]['train_wall_s'] for c in curves) / len(curves):.0f} "
                  f"| {fmt([c[i]['reward_mean'] for c in curves])} |")
    final_dpo = sum(c[-1]["reward_mean"] for c in dpo) / len(dpo)
    final_spo = sum(c[-1]["reward_mean"] for c in spo) / len(spo)
    print()
    for label, curves, target, other in (("SPO", spo, final_dpo, "Diffusion-DPO"),
                                         ("Diffusion-DPO", dpo, final_spo, "SPO")):
        times = [first_time(c, target) for c in curves]
        reached = [t for t in times if t is not None]
        line = f"- {label} reaches {other}'s final progress reward ({target:.4f}) in {len(reached)} of {len(curves)} seeds"
        if reached:
            mean = sum(reached) / len(reached)
            rounds = [first_time(c, target, "step") for c in curves if first_time(c, target) is not None]
            line += f": round {sum(rounds) / len(rounds):.1f} and {mean:.0f} s of training on average"
            if label == "SPO":
                line += f" (+ {pm_seconds:.0f} s of preference-model training = {mean + pm_seconds:.0f} s)"
        print(line + ".")


def main():
    runs = sys.argv[1] if len(sys.argv) > 1 else "runs"
    tables(runs)
    pm = 0.0
    for path in ("models/pm_clean/metrics.jsonl", "models/spm/metrics.jsonl"):
        if os.path.exists(path):
            with open(path) as f:
                pm += json.loads(f.read().strip().splitlines()[-1])["wall_s"]
    efficiency(runs, pm)


if __name__ == "__main__":
    main()
