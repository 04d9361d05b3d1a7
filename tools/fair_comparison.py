#!/usr/bin/env python3
"""The compute-matched comparison of SPO, Diffusion-DPO (on- and off-policy pairs), D3PO and DDPO (docs/results.md).

Every step is a committed experiment binary with a committed config (configs/fair/); this script only orders them,
writes the small config overlays the tuning and the seeds need, and skips what is already done (runs resume with
--resume, so an interrupted stage continues where it stopped). Standard library only.

    python3 tools/fair_comparison.py inputs            # pair sets, preference models, the early generator
    python3 tools/fair_comparison.py tune [--jobs 2]   # the grid of configs/fair/grid.json on the validation prompts
    python3 tools/fair_comparison.py run [--jobs 2] [--seeds 1 2 3]   # every method to the large budget
    python3 tools/fair_comparison.py evaluate          # the weights at the small budget, on the evaluation prompts
    python3 tools/fair_comparison.py report            # plot and tables (tools/fair_report.py)
    python3 tools/fair_comparison.py all [--jobs 2]

--jobs N runs N experiments side by side with one thread each (on the 2-core reference machine two single-thread
runs finish sooner than one two-thread run after the other; each run is deterministic for its thread count).
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join("build", "bin")
RUNS = os.path.join("runs", "fair")
GRID = os.path.join("configs", "fair", "grid.json")


def load_grid():
    with open(GRID) as f:
        return json.load(f)


def run(cmd, log=None, threads=None):
    """Runs cmd from the source root; with log, its output goes there. Raises on failure, naming the log."""
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    print("+ " + " ".join(cmd), flush=True)
    if log:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "a") as out:
            rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    else:
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
    if rc != 0:
        raise SystemExit("failed (rc %d): %s%s" % (rc, " ".join(cmd), "; see " + log if log else ""))


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def nested(dotted):
    """{"a.b": v} -> {"a": {"b": v}} (a config overlay)."""
    out = {}
    for key, v in dotted.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parallel(tasks, jobs):
    """Runs the callables, jobs at a time (one thread each when jobs > 1)."""
    if jobs <= 1:
        for t in tasks:
            t(None)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for f in [pool.submit(t, 1) for t in tasks]:
            f.result()


# --- inputs -------------------------------------------------------------------------------------------------------

def inputs(_args):
    """The early generator, both pair sets and both preference-model chains (clean model, then the step-aware one)."""
    early = os.path.join("models", "fair", "early_base")
    if not os.path.exists(os.path.join(ROOT, early, "base.safetensors")):
        run([os.path.join(BIN, "pretrain_base"), "configs/fair/pretrain_early.json", "--resume"],
            os.path.join(RUNS, "logs", "pretrain_early.log"))
        os.makedirs(os.path.join(ROOT, early), exist_ok=True)
        for f in ("base.safetensors", "run.json", "metrics.jsonl"):
            shutil.copy(os.path.join(ROOT, RUNS, "pretrain_early", f), os.path.join(ROOT, early, f))
    for data in ("on_policy", "off_policy"):
        steps = [("make_pairs", "pairs_" + data, "train.safetensors"),
                 ("train_pm_clean", "pm_clean_" + data, "preference_model.safetensors"),
                 ("train_spm", "spm_" + data, "preference_model.safetensors")]
        for binary, name, product in steps:
            if os.path.exists(os.path.join(ROOT, "models", "fair", name, product)):
                continue
            cmd = [os.path.join(BIN, binary), os.path.join("configs", "fair", name + ".json")]
            if binary != "make_pairs":
                cmd.append("--resume")
            run(cmd, os.path.join(RUNS, "logs", name + ".log"))


# --- tuning -------------------------------------------------------------------------------------------------------

def grid_points(grid):
    """[(name, overrides)] of a method's grid: the product of its value lists, in order."""
    points = [("", {})]
    for key, values in grid.items():
        points = [(n + ("_" if n else "") + "%s=%g" % (key.split(".")[-1], v), dict(o, **{key: v}))
                  for n, o in points for v in values]
    return points


def tune(args):
    g = load_grid()
    small = g["budgets"]["small"]
    val = g["validation"]
    tasks = []
    for variant, m in g["methods"].items():
        for point, overrides in grid_points(m["grid"]):
            out = os.path.join(RUNS, "tune", variant, point)
            if os.path.exists(os.path.join(ROOT, out, "results.json")):
                continue
            overlay = merge(nested(overrides), {
                "extends": os.path.join("configs", "fair", variant + ".json"),
                "output_dir": out,
                "evaluation": {"templates": val["templates"], "seeds_per_prompt": val["seeds_per_prompt"]},
                "budget": {"forward_equivalents": small, "progress_every": 0, "snapshots": []}})
            cfg = os.path.join(RUNS, "tune", "configs", variant, point + ".json")
            write_json(os.path.join(ROOT, cfg), overlay)
            cmd = [os.path.join(BIN, m["binary"]), cfg, "--resume"]
            tasks.append(lambda th, cmd=cmd, out=out: run(cmd, out + ".log", th))
    parallel(tasks, args.jobs)
    choose(g)


def choose(g):
    """runs/fair/tune/chosen.json: every grid point's validation reward and the best point of each method."""
    chosen = {}
    for variant, m in g["methods"].items():
        rows = []
        for point, overrides in grid_points(m["grid"]):
            res = os.path.join(ROOT, RUNS, "tune", variant, point, "results.json")
            reward = None
            if os.path.exists(res):
                with open(res) as f:
                    r = json.load(f)
                key = next(k for k in r if k not in ("base", "win_rate_vs_base", "experiment", "compute", "wall_s"))
                reward = r[key]["reward_mean"]
            rows.append({"point": point, "overrides": overrides, "validation_reward": reward})
        done = [r for r in rows if r["validation_reward"] is not None]
        best = max(done, key=lambda r: r["validation_reward"]) if done else None
        chosen[variant] = {"grid": rows, "chosen": best["point"] if best else None,
                           "overrides": best["overrides"] if best else {}}
    write_json(os.path.join(ROOT, RUNS, "tune", "chosen.json"), chosen)
    return chosen


# --- the comparison -----------------------------------------------------------------------------------------------

def comparison(args):
    g = load_grid()
    path = os.path.join(ROOT, RUNS, "tune", "chosen.json")
    if not os.path.exists(path):
        raise SystemExit("no %s: run the tune stage first" % path)
    with open(path) as f:
        chosen = json.load(f)
    write_json(os.path.join(ROOT, RUNS, "budgets.json"), g["budgets"])
    tasks = []
    for seed in args.seeds:
        for variant, m in g["methods"].items():
            if not chosen.get(variant, {}).get("chosen"):
                raise SystemExit("%s has no tuned point in %s" % (variant, path))
            out = os.path.join(RUNS, variant, "seed%d" % seed)
            if os.path.exists(os.path.join(ROOT, out, "results.json")):
                continue
            cfg = os.path.join(RUNS, "configs", variant + ".json")
            write_json(os.path.join(ROOT, cfg), merge(nested(chosen[variant]["overrides"]), {
                "extends": os.path.join("configs", "fair", variant + ".json")}))
            cmd = [os.path.join(BIN, m["binary"]), cfg, "--seed=%d" % seed, "--output=" + out, "--resume"]
            tasks.append(lambda th, cmd=cmd, out=out: run(cmd, out + ".log", th))
    parallel(tasks, args.jobs)


def evaluate(_args):
    """Every run's weights at the small budget (lora_fe<small>.safetensors) on the evaluation prompts."""
    g = load_grid()
    small = g["budgets"]["small"]
    named = []
    for variant in g["methods"]:
        for seed in (1, 2, 3):
            lora = os.path.join(RUNS, variant, "seed%d" % seed, "lora_fe%d.safetensors" % small)
            if os.path.exists(os.path.join(ROOT, lora)):
                named.append("%s_seed%d=%s" % (variant, seed, lora))
    if not named:
        raise SystemExit("no snapshot at the small budget yet: run the run stage first")
    # The evaluation needs the base model, the LoRA rank and the evaluation section, which every fair config shares.
    run([os.path.join(BIN, "evaluate"), os.path.join("configs", "fair", "spo_on_policy.json"),
         os.path.join(RUNS, "eval_small")] + named, os.path.join(RUNS, "logs", "eval_small.log"))


def report(_args):
    run([sys.executable, os.path.join("tools", "fair_report.py"), "--runs", RUNS, "--images",
         os.path.join("docs", "images"), "--docs", os.path.join("docs", "results.md")])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["inputs", "tune", "run", "evaluate", "report", "all"])
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = p.parse_args()
    stages = {"inputs": [inputs], "tune": [tune], "run": [comparison], "evaluate": [evaluate], "report": [report],
              "all": [inputs, tune, comparison, evaluate, report]}[args.stage]
    for s in stages:
        s(args)


if __name__ == "__main__":
    main()
