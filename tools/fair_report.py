#!/usr/bin/env python3
"""Plot and Markdown tables of the compute-matched comparison of the preference-optimisation methods.

Reads the run folders of the comparison (standard library only):
    <runs>/<variant>/seed<k>/progress.jsonl   rater reward on the progress prompts against charged compute
    <runs>/<variant>/seed<k>/results.json     final evaluation at the large budget
    <runs>/eval_small/evaluation.json         evaluation of every run's snapshot at the small budget
    <runs>/budgets.json                       {"small": fe, "large": fe} (default 80000 and 320000)
    <runs>/tune/chosen.json                   tuning grid on the validation prompts and the chosen point
Compute is counted in UNet forward-equivalents (fe), the inputs charged to a method (its preference model, its pair
generation) included. Writes <images>/fair_reward_vs_compute.svg (mean over seeds of the progress reward against
charged compute, 95% t band over seeds, the two budgets and the base model marked) and prints the Markdown: the compute
charged before training, one table per budget (mean over seeds with its 95% t interval over seeds), the compute each
method needs to reach the best progress reward of the others, and the tuning grid. Missing seeds and variants are
skipped with a note. With --docs, the Markdown also replaces the lines between <!-- fair:begin --> and
<!-- fair:end --> of that file (a section with the markers is appended where they are absent).
    python3 tools/fair_report.py [--runs runs/fair] [--images docs/images] [--docs docs/results.md]
"""
import argparse
import json
import math
import os
import shlex
import sys
from xml.sax.saxutils import escape

from results_tables import fmt, interval  # the same intervals as the other tables of docs/results.md

# (run folder, label, key of the tuned model in results.json)
VARIANTS = [
    ("spo_on_policy", "SPO (SPM from on-policy pairs)", "spo"),
    ("spo_off_policy", "SPO (SPM from off-policy pairs)", "spo"),
    ("diffusion_dpo_on_policy", "Diffusion-DPO (on-policy pairs)", "diffusion_dpo"),
    ("diffusion_dpo_off_policy", "Diffusion-DPO (off-policy pairs)", "diffusion_dpo"),
    ("d3po", "D3PO", "d3po"),
    ("ddpo", "DDPO", "ddpo"),
]
SEEDS = (1, 2, 3)
DEFAULT_BUDGETS = {"small": 80000, "large": 320000}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
BEGIN, END = "<!-- fair:begin -->", "<!-- fair:end -->"
SVG_NAME = "fair_reward_vs_compute.svg"


def mean_or_none(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def read_json(path, notes):
    """The parsed file, or None (with a note unless the file is simply absent)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        notes.append(f"`{path}` unreadable ({e.__class__.__name__}); skipped")
        return None


def read_progress(path, notes):
    """Progress points sorted by step; after a resume the last line of a repeated step wins."""
    if not os.path.exists(path):
        return None
    by_step = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                point = json.loads(line)
                by_step[int(point["step"])] = point
            except (ValueError, KeyError, TypeError):
                notes.append(f"`{path}` line {number} unreadable; skipped")
    curve = [by_step[s] for s in sorted(by_step)]
    return [p for p in curve if isinstance(p.get("fe"), (int, float)) and
            isinstance(p.get("reward_mean"), (int, float))] or None


def load(runs, notes):
    """Per variant: the available seeds with their progress curve and final results."""
    data = {}
    for name, label, key in VARIANTS:
        seeds, missing = [], []
        for k in SEEDS:
            folder = os.path.join(runs, name, f"seed{k}")
            progress = read_progress(os.path.join(folder, "progress.jsonl"), notes)
            results = read_json(os.path.join(folder, "results.json"), notes)
            if results is not None and not isinstance(results.get(key), dict):
                notes.append(f"`{folder}/results.json` has no \"{key}\" entry; final results of seed {k} skipped")
                results = None
            if progress is None and results is None:
                missing.append(k)
                continue
            if progress is None:
                notes.append(f"{label}: seed {k} has no progress curve")
            if results is None:
                notes.append(f"{label}: seed {k} has no final results (`results.json`)")
            seeds.append({"seed": k, "progress": progress, "results": results})
        if len(missing) == len(SEEDS):
            notes.append(f"{label}: no runs (`{os.path.join(runs, name)}`)")
        elif missing:
            notes.append(f"{label}: seed{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} missing")
        data[name] = seeds
    return data


# ---------------------------------------------------------------------------------------------------------- curves


def interp(xs, ys, x):
    """Linear interpolation of the points (xs, ys) at x, xs increasing and xs[0] <= x <= xs[-1]."""
    for i in range(1, len(xs)):
        if x <= xs[i]:
            if xs[i] == xs[i - 1]:
                return ys[i]
            f = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return ys[i - 1] + f * (ys[i] - ys[i - 1])
    return ys[-1]


def seed_points(progress):
    """(fe, reward) of a progress curve with fe strictly increasing (a point that does not advance fe replaces the
    previous one)."""
    xs, ys = [], []
    for p in progress:
        if xs and p["fe"] <= xs[-1]:
            xs.pop()
            ys.pop()
        xs.append(float(p["fe"]))
        ys.append(float(p["reward_mean"]))
    return xs, ys


def mean_curve(curves):
    """Mean over seeds of the progress reward on a common grid of fe and the half-width of its 95% t interval (None
    with one seed): each seed is interpolated within its own range onto the multiples of the smallest spacing of
    progress points (the seeds' own points added), and the mean is taken where every seed has data."""
    curves = [seed_points(c) for c in curves]
    curves = [(xs, ys) for xs, ys in curves if xs]
    if not curves:
        return []
    lo, hi = max(xs[0] for xs, _ in curves), min(xs[-1] for xs, _ in curves)
    if lo > hi:
        return []
    gaps = [b - a for xs, _ in curves for a, b in zip(xs, xs[1:]) if b > a]
    grid = {lo, hi} | {x for xs, _ in curves for x in xs if lo <= x <= hi}
    if gaps and hi > lo:
        spacing = max(min(gaps), (hi - lo) / 400)
        grid |= {k * spacing for k in range(math.ceil(lo / spacing), math.floor(hi / spacing) + 1)}
    out = []
    for x in sorted(grid):
        if out and x - out[-1][0] < 1e-9 * max(1.0, abs(x)):
            continue
        values = [interp(xs, ys, x) for xs, ys in curves]
        mean, ci = interval(values)
        out.append((x, mean, None if ci is None else ci[1] - mean))
    return out


def first_reach(curve, target):
    """Charged fe at which the mean curve [(fe, reward, half)] first reaches target (linear between points), or
    None."""
    if curve and curve[0][1] >= target:
        return curve[0][0]
    for (xa, ya, _), (xb, yb, _) in zip(curve, curve[1:]):
        if yb >= target:
            f = 1.0 if yb == ya else (target - ya) / (yb - ya)
            return xa + max(0.0, min(1.0, f)) * (xb - xa)
    return None


def best_within(curve, budget):
    """Best mean reward of the curve at charged fe <= budget (the curve interpolated at the budget included)."""
    xs, ys = [p[0] for p in curve], [p[1] for p in curve]
    values = [y for x, y in zip(xs, ys) if x <= budget]
    if xs and xs[0] <= budget < xs[-1]:
        values.append(interp(xs, ys, budget))
    return max(values) if values else None


# ------------------------------------------------------------------------------------------------------------- SVG


def nice_ticks(lo, hi, count=6):
    """Round tick values covering [lo, hi] and their step."""
    span = hi - lo if hi > lo else 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda st: abs(math.log(span / st / count)))
    first = math.floor(lo / step + 1e-9) * step
    ticks = []
    t = first
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(t)
        t += step
    return ticks, step


def tick_label(value, step):
    digits = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step < 1 and abs(step * 10 ** digits - round(step * 10 ** digits)) > 1e-6:
        digits += 1
    text = f"{value:.{digits}f}"
    return "0" if float(text) == 0 else text.replace("-", "\u2212")


def svg_plot(path, curves, budgets, base_reward, n_seeds):
    """Line chart of the mean progress reward against charged compute: curves = [(label, colour, dashed, curve)]."""
    width, height = 900, 560
    left, right, top, bottom = 78, 605, 52, 486
    xs = [p[0] / 1000 for _, _, _, c in curves for p in c] + [budgets["small"] / 1000, budgets["large"] / 1000]
    ys = [p[1] + s * (p[2] or 0.0) for _, _, _, c in curves for p in c for s in (-1, 1)]
    if base_reward is not None:
        ys.append(base_reward)
    x_hi = max(xs) * 1.03
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.06 or 0.01
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_ticks, x_step = nice_ticks(0.0, x_hi, 8)
    y_ticks, y_step = nice_ticks(y_lo, y_hi, 7)
    x_hi = max(x_hi, x_ticks[-1])
    y_lo, y_hi = min(y_lo, y_ticks[0]), max(y_hi, y_ticks[-1])

    def px(x):
        return left + (x / x_hi) * (right - left)

    def py(y):
        return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    def points(pairs):
        return " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pairs)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
           f'<defs><clipPath id="plot"><rect x="{left}" y="{top}" width="{right - left}" '
           f'height="{bottom - top}"/></clipPath></defs>',
           f'<text x="{(left + right) / 2:.1f}" y="28" text-anchor="middle" font-size="16" font-weight="bold">'
           f'Rater reward vs charged compute ({n_seeds} seeds, 95% interval)</text>']
    for t in x_ticks:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#e6e6e6"/>')
        out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 19}" text-anchor="middle">{tick_label(t, x_step)}</text>')
    for t in y_ticks:
        y = py(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        out.append(f'<line x1="{left - 5}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#333"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{tick_label(t, y_step)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" '
               f'stroke="#333"/>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{bottom + 44}" text-anchor="middle" font-size="13">'
               f'charged compute (thousands of UNet forward-equivalents)</text>')
    out.append(f'<text x="20" y="{(top + bottom) / 2:.1f}" text-anchor="middle" font-size="13" '
               f'transform="rotate(-90 20 {(top + bottom) / 2:.1f})">rater reward on the progress prompts</text>')

    out.append('<g clip-path="url(#plot)">')
    for _, colour, _, curve in curves:
        if len(curve) >= 2 and all(p[2] is not None for p in curve):
            upper = [(x / 1000, y + h) for x, y, h in curve]
            lower = [(x / 1000, y - h) for x, y, h in reversed(curve)]
            out.append(f'<polygon points="{points(upper + lower)}" fill="{colour}" fill-opacity="0.16" '
                       f'stroke="none"/>')
    if base_reward is not None:
        y = py(base_reward)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#444" stroke-width="1.3" '
                   f'stroke-dasharray="2 3"/>')
    for name in ("small", "large"):
        x = px(budgets[name] / 1000)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#555" stroke-width="1.2" '
                   f'stroke-dasharray="7 4"/>')
    for _, colour, dashed, curve in curves:
        dash = ' stroke-dasharray="8 4"' if dashed else ""
        if len(curve) >= 2:
            out.append(f'<polyline points="{points((x / 1000, y) for x, y, _ in curve)}" fill="none" '
                       f'stroke="{colour}" stroke-width="2.2" stroke-linejoin="round"{dash}/>')
        if curve:
            out.append(f'<circle cx="{px(curve[0][0] / 1000):.1f}" cy="{py(curve[0][1]):.1f}" r="3.5" '
                       f'fill="{colour}"/>')
    out.append('</g>')
    for name in ("small", "large"):
        x = px(budgets[name] / 1000)
        anchor, dx = ("end", -5) if x > right - 120 else ("start", 5)
        out.append(f'<text x="{x + dx:.1f}" y="{top + 15}" text-anchor="{anchor}" fill="#333">{name} budget '
                   f'({budgets[name] / 1000:g}k fe)</text>')
    if base_reward is not None:
        out.append(f'<text x="{right - 5}" y="{py(base_reward) + 15:.1f}" text-anchor="end" fill="#333">base model'
                   f'</text>')

    lx, ly = right + 18, top + 6
    out.append('<g font-size="11">')
    out.append(f'<text x="{lx}" y="{ly}" font-weight="bold">method (mean over seeds)</text>')
    ly += 20
    for label, colour, dashed, curve in curves:
        dash = ' stroke-dasharray="8 4"' if dashed else ""
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="26" height="12" fill="{colour}" fill-opacity="0.16"/>')
        out.append(f'<line x1="{lx}" y1="{ly - 3}" x2="{lx + 26}" y2="{ly - 3}" stroke="{colour}" '
                   f'stroke-width="2.2"{dash}/>')
        out.append(f'<text x="{lx + 33}" y="{ly + 1}">{escape(label)}</text>')
        ly += 20
    ly += 6
    out.append(f'<line x1="{lx}" y1="{ly - 3}" x2="{lx + 26}" y2="{ly - 3}" stroke="#444" stroke-width="1.3" '
               f'stroke-dasharray="2 3"/>')
    out.append(f'<text x="{lx + 33}" y="{ly + 1}">base model (round 0)</text>')
    ly += 20
    out.append(f'<line x1="{lx}" y1="{ly - 3}" x2="{lx + 26}" y2="{ly - 3}" stroke="#555" stroke-width="1.2" '
               f'stroke-dasharray="7 4"/>')
    out.append(f'<text x="{lx + 33}" y="{ly + 1}">compute budgets</text>')
    ly += 20
    out.append(f'<circle cx="{lx + 13}" cy="{ly - 3}" r="3.5" fill="#555"/>')
    out.append(f'<text x="{lx + 33}" y="{ly + 1}">charged before training</text>')
    ly += 20
    out.append(f'<rect x="{lx}" y="{ly - 9}" width="26" height="12" fill="#555" fill-opacity="0.16"/>')
    out.append(f'<text x="{lx + 33}" y="{ly + 1}">95% t interval over seeds</text>')
    out.append('</g>')
    out.append('</svg>')
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# -------------------------------------------------------------------------------------------------------- Markdown


def kfe(fe):
    return "-" if fe is None else f"{fe / 1000:.1f}"


def number(value, digits=0):
    return "-" if value is None else f"{value:.{digits}f}"


def compute_table(data, lines):
    lines += ["**Compute charged before training** (charged inputs: preference model and pair generation, in "
              "thousands of UNet forward-equivalents; mean over seeds)", "",
              "| variant | seeds | charged inputs (k fe) | rater queries charged | fine-tuning rounds at the large "
              "budget | total charged at the end (k fe) | training wall-clock s | training CPU s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, label, _ in VARIANTS:
        seeds = data[name]
        if not seeds:
            continue
        compute = [(s["results"] or {}).get("compute", {}) for s in seeds]
        first = [s["progress"][0] if s["progress"] else {} for s in seeds]
        last = [s["progress"][-1] if s["progress"] else {} for s in seeds]
        inputs = mean_or_none([f.get("fe") if f.get("step") == 0 else c.get("charged_inputs_fe")
                               for f, c in zip(first, compute)])
        queries = mean_or_none([f.get("rater_queries") if f.get("step") == 0 and "rater_queries" in f
                                else c.get("rater_queries") for f, c in zip(first, compute)])
        rounds = mean_or_none([c.get("rounds", l.get("step")) for c, l in zip(compute, last)])
        total = mean_or_none([c.get("forward_equivalents", l.get("fe")) for c, l in zip(compute, last)])
        wall = mean_or_none([l.get("train_wall_s") for l in last])
        cpu = mean_or_none([l.get("train_cpu_s") for l in last])
        lines.append(f"| {label} | {len(seeds)} | {kfe(inputs)} | {number(queries)} | {number(rounds, 1)} | "
                     f"{kfe(total)} | {number(wall)} | {number(cpu)} |")
    lines.append("")


def small_metrics(evaluation, name, seeds, notes):
    out = []
    for s in seeds:
        entry = (evaluation or {}).get(f"{name}_seed{s['seed']}")
        if isinstance(entry, dict) and "reward_mean" in entry:
            out.append({"reward": entry["reward_mean"], "win": (entry.get("win_rate_vs_base") or {}).get("rate"),
                        "frechet": entry.get("frechet"), "accuracy": entry.get("class_accuracy")})
        elif evaluation is not None:
            notes.append(f"small budget: no evaluation of `{name}_seed{s['seed']}`")
    return out


def large_metrics(name, key, seeds):
    out = []
    for s in seeds:
        r = s["results"]
        if r is None:
            continue
        out.append({"reward": r[key].get("reward_mean"), "win": (r.get("win_rate_vs_base") or {}).get("rate"),
                    "frechet": r[key].get("frechet"), "accuracy": r[key].get("class_accuracy")})
    return out


def budget_table(title, rows, base, lines):
    lines += [f"**{title}**", "",
              "| variant | seeds | rater reward | paired win rate vs base | Frechet | class accuracy |",
              "|---|---:|---:|---:|---:|---:|"]
    for label, metrics in rows:

        def column(field, digits):
            return fmt([m[field] for m in metrics if m[field] is not None], digits)

        lines.append(f"| {label} | {len(metrics)} | {column('reward', 4)} | {column('win', 3)} | "
                     f"{column('frechet', 3)} | {column('accuracy', 4)} |")
    if base:
        ci = base.get("reward_ci95")
        reward = f"{base['reward_mean']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
        lines.append(f"| base model (95% interval over its images) | - | {reward} | 0.5 | "
                     f"{number(base.get('frechet'), 3)} | {number(base.get('class_accuracy'), 4)} |")
    lines.append("")


def reach_table(means, budgets, lines):
    lines += [f"**Compute to reach the others' best** (target: the best mean progress reward of any other variant "
              f"within the large budget of {budgets['large'] / 1000:g}k fe; charged compute at which the variant's "
              f"mean curve first reaches it)", "",
              "| variant | target (reached by) | charged compute to reach it (k fe) |", "|---|---:|---:|"]
    best = {name: best_within(curve, budgets["large"]) for name, curve in means.items()}
    labels = {name: label for name, label, _ in VARIANTS}
    for name, curve in means.items():
        others = [(b, other) for other, b in best.items() if other != name and b is not None]
        if not others:
            continue
        target, by = max(others)
        at = first_reach(curve, target)
        own = max(p[1] for p in curve)
        reached = kfe(at) if at is not None else f"not reached (best {own:.4f})"
        lines.append(f"| {labels[name]} | {target:.4f} ({labels[by]}) | {reached} |")
    lines.append("")


def overrides_text(overrides):
    if not overrides:
        return "(defaults)"
    return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted(overrides.items()))


def tuning_table(chosen, lines, notes):
    if not isinstance(chosen, dict):
        notes.append("no tuning record (`tune/chosen.json`)")
        return
    lines += ["**Tuning on the validation prompts** (rater reward on the validation prompts; the chosen point in bold)",
              "", "| variant | grid point | overrides | validation reward |", "|---|---|---|---:|"]
    labels = {name: label for name, label, _ in VARIANTS}
    for name in [n for n, _, _ in VARIANTS] + sorted(set(chosen) - set(labels)):
        entry = chosen.get(name)
        if not isinstance(entry, dict):
            if name in labels:
                notes.append(f"{labels[name]}: no tuning record")
            continue
        if not entry.get("chosen"):
            notes.append(f"{labels.get(name, name)}: no tuning point chosen (no validation reward)")
        for point in entry.get("grid", []):
            reward = point.get("validation_reward")
            text = "-" if reward is None else f"{reward:.4f}"
            name_text = str(point.get("point", "?"))
            if point.get("point") == entry.get("chosen"):
                name_text, text = f"**{name_text}**", f"**{text}**"
            lines.append(f"| {labels.get(name, name)} | {name_text} | {overrides_text(point.get('overrides'))} | "
                         f"{text} |")
    lines.append("")


def base_progress_reward(data):
    return mean_or_none([s["progress"][0]["reward_mean"] for seeds in data.values() for s in seeds
                         if s["progress"] and s["progress"][0].get("step") == 0])


def report(args, image_link):
    notes = []
    budgets = dict(DEFAULT_BUDGETS)
    budgets.update(read_json(os.path.join(args.runs, "budgets.json"), notes) or {})
    data = load(args.runs, notes)
    evaluation = read_json(os.path.join(args.runs, "eval_small", "evaluation.json"), notes)
    if evaluation is None:
        notes.append("no small-budget evaluation (`eval_small/evaluation.json`)")

    means, counts = {}, {}
    for name, _, _ in VARIANTS:
        curves = [s["progress"] for s in data[name] if s["progress"]]
        curve = mean_curve(curves)
        if curve:
            means[name], counts[name] = curve, len(curves)
    svg = os.path.join(args.images, SVG_NAME)
    lines = []
    if means:
        n_seeds = max(counts.values())
        plotted = [(label + (f" (n={counts[name]})" if counts[name] < n_seeds else ""), COLOURS[i % len(COLOURS)],
                    "off_policy" in name, means[name])
                   for i, (name, label, _) in enumerate(VARIANTS) if name in means]
        svg_plot(svg, plotted, budgets, base_progress_reward(data), n_seeds)
        lines += [f"![Rater reward vs charged compute]({image_link(svg)})", ""]
    else:
        notes.append("no progress curves: no plot written")

    compute_table(data, lines)
    for budget in ("small", "large"):
        rows = []
        for name, label, key in VARIANTS:
            seeds = data[name]
            metrics = (small_metrics(evaluation, name, seeds, notes) if budget == "small"
                       else large_metrics(name, key, seeds))
            if metrics:
                rows.append((label, metrics))
        base = ((evaluation or {}).get("base") if budget == "small" else
                next((s["results"]["base"] for n, _, _ in VARIANTS for s in data[n]
                      if s["results"] and isinstance(s["results"].get("base"), dict)), None))
        budget_table(f"At the {budget} budget ({budgets[budget] / 1000:g}k fe charged; mean over seeds, 95% t "
                     f"interval over seeds)", rows, base if isinstance(base, dict) else None, lines)
    if means:
        reach_table(means, budgets, lines)
    tuning_table(read_json(os.path.join(args.runs, "tune", "chosen.json"), notes), lines, notes)

    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in dict.fromkeys(notes)] + [""]
    command = " ".join(["python3", "tools/fair_report.py"] + [shlex.quote(a) for a in sys.argv[1:]])
    lines.append(f"Produced by `{command}`.")
    return "\n".join(lines) + "\n"


def replace_section(path, text):
    """Replaces the lines between the markers of path by text, or appends a section with the markers."""
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    rows = old.splitlines(keepends=True)
    stripped = [r.strip() for r in rows]
    if BEGIN in stripped and END in stripped[stripped.index(BEGIN) + 1:]:
        b = stripped.index(BEGIN)
        e = stripped.index(END, b + 1)
        new = "".join(rows[:b + 1]) + "\n" + text + "\n" + "".join(rows[e:])
    else:
        sep = "" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
        new = old + sep + f"## Compute-matched comparison\n\n{BEGIN}\n\n{text}\n{END}\n"
    with open(path, "w") as f:
        f.write(new)


def main():
    parser = argparse.ArgumentParser(description="Plot and tables of the compute-matched comparison.")
    parser.add_argument("--runs", default="runs/fair", help="run folders of the comparison (default runs/fair)")
    parser.add_argument("--images", default="docs/images", help="folder of the SVG plot (default docs/images)")
    parser.add_argument("--docs", help="Markdown file whose fair:begin/fair:end section is replaced")
    args = parser.parse_args()
    if args.docs:
        start = os.path.dirname(os.path.abspath(args.docs))
        text = report(args, lambda p: os.path.relpath(os.path.abspath(p), start).replace(os.sep, "/"))
    else:
        text = report(args, lambda p: p.replace(os.sep, "/"))
    sys.stdout.write(text)
    if args.docs:
        replace_section(args.docs, text)


if __name__ == "__main__":
    main()
