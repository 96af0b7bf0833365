#!/usr/bin/python3
"""Writes docs/RESULTS.md from the quality-table JSONL files (bench/quality_tables.py):
the template's prose with its placeholders replaced by tables, claim checks and plots.

usage: tools/results_report.py [--results docs/results] [--template docs/results/RESULTS.md.in]
                               [--out docs/RESULTS.md] [--img docs/img/results]

Placeholders (one per line in the template, MODEL = a folder under --results):
  @@baseline MODEL@@   full-cache score per task and length, chat-template row included
  @@grid MODEL@@       every preset at every budget and ratio, both modes, all grid tasks pooled
  @@bytask MODEL@@     presets x tasks at each mode's middle budget
  @@digits MODEL@@     number needles: how many leading digits of the needle the answer has right
  @@pooling MODEL@@    NIAH with the pooling stage's wider kernel beside the grid's default
  @@fidelity MODEL@@   teacher-forced continuations: top-1 agreement and KL per preset
  @@claims MODEL@@     the papers' claims as paired comparisons, extraction and generation
  @@plots MODEL@@      score curves and NIAH heatmaps
  @@times MODEL@@      wall time of each stage
Intervals are 95%: Wilson for all-or-nothing scores, Student t otherwise; claim intervals
come from a bootstrap over samples (all grid points of a sample move together).
"""
import argparse
import collections
import json
import math
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_results  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PRESET_ORDER = ["none", "streamingllm", "h2o", "tova", "knorm", "snapkv", "pyramidkv", "ada-snapkv", "ada-pyramidkv",
                "criticalkv", "critical-ada-snapkv", "lava-layers", "lava-heads", "lava"]
# (better?, than, what it tests): the claims of the Ada-KV and LAVa papers as pairs of presets.
CLAIMS = [
    ("ada-snapkv", "snapkv", "Ada-KV head budgets beat SnapKV's uniform ones"),
    ("ada-pyramidkv", "pyramidkv", "Ada-KV head budgets beat PyramidKV's uniform ones"),
    ("ada-snapkv", "pyramidkv", "Ada-SnapKV beats PyramidKV (uniform heads, pyramid layers)"),
    ("lava", "ada-snapkv", "LAVa >= Ada-KV (Ada-SnapKV)"),
    ("lava", "lava-heads", "dynamic layer budgets help (LAVa vs LAVa with uniform layers)"),
    ("lava", "lava-layers", "dynamic head budgets help (LAVa vs LAVa with uniform heads)"),
    ("critical-ada-snapkv", "ada-snapkv", "CriticalKV's value-aware selection helps Ada-SnapKV"),
]
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


def load(path):
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    sys.exit(f"error: {path}:{n}: malformed JSON")
    return rows


def t975(df):
    for k in sorted(T975, reverse=True):
        if df >= k:
            return T975[k]
    return T975[1]


def interval(scores):
    """Mean and 95% interval of scores in [0, 100]."""
    n = len(scores)
    m = sum(scores) / n
    if all(s in (0.0, 100.0) for s in scores):  # Wilson score interval for a proportion
        z, p = 1.96, m / 100
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return m, 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)
    if n == 1:
        return m, 0.0, 100.0
    sd = math.sqrt(sum((s - m) ** 2 for s in scores) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return m, max(0.0, m - half), min(100.0, m + half)


def cell(scores, with_interval=True):
    if not scores:
        return ""
    m, lo, hi = interval(scores)
    return f"{m:.0f} [{lo:.0f}, {hi:.0f}]" if with_interval else f"{m:.0f}"


def task_name(r):
    return r["subtask"] if r.get("subtask") else r["task"]


def column_of(r):
    if r.get("budget") is not None:
        return ("b", r["budget"])
    if r.get("ratio") is not None:
        return ("r", r["ratio"])
    return ("full", 0)


def grid_columns(rows):
    """The compressed columns of rows: budgets ascending, then ratios ascending."""
    return sorted({column_of(r) for r in rows if r["preset"] != "none"}, key=lambda c: (c[0] != "b", c[1]))


def is_number_needle(r):
    """A 7-digit needle whose answer can be scored digit by digit."""
    return (r["task"] == "niah" or r.get("subtask") == "niah_single_number") and bool(r.get("answers"))


def column_label(c):
    return {"b": str(c[1]), "r": f"{c[1]:g}×", "full": "full"}[c[0]]


def preset_rank(p):
    return PRESET_ORDER.index(p) if p in PRESET_ORDER else len(PRESET_ORDER)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def baseline_section(rows):
    if not rows:
        return "_(no baseline results yet)_"
    lengths = sorted({r["length"] for r in rows})
    by = collections.defaultdict(list)
    for r in rows:
        name = task_name(r) + (f" (chat template: {r['chat']})" if "chat" in r else "")
        by[(r["task"] != "niah", name, r["length"])].append(r["score"])
    names = sorted({(k[0], k[1]) for k in by})
    body = [[name] + [cell(by.get((kind, name, n), [])) + (f" (n={len(by[(kind, name, n)])})" if (kind, name, n) in by
                                                           else "") for n in lengths] for kind, name in names]
    return table(["task", *[f"{n} tokens" for n in lengths]], body)


def grid_section(rows):
    if not rows:
        return "_(no grid results yet)_"
    out = []
    tasks = sorted({task_name(r) for r in rows})
    samples = {(task_name(r), r["sample"]) for r in rows if r["preset"] == "none" and not r["question_agnostic"]}
    out.append(f"Tasks pooled: {', '.join(tasks)}; {len(samples)} samples per cell (each sample counts once). "
               "Columns: per-head budget in entries (window included), then the fraction of the prompt kept.\n")
    for agnostic in (False, True):
        rs = [r for r in rows if r["question_agnostic"] == agnostic]
        if not rs:
            continue
        cols = grid_columns(rs)
        by = collections.defaultdict(list)
        for r in rs:
            by[(r["preset"], column_of(r))].append(r["score"])
        presets = sorted({r["preset"] for r in rs}, key=preset_rank)
        body = []
        for p in presets:
            if p == "none":
                body.append(["**none** (full cache)", cell(by[("none", ("full", 0))])] + [""] * len(cols))
            else:
                body.append([p, ""] + [cell(by.get((p, c), []), with_interval=False) for c in cols])
        out.append(f"**question-{'agnostic' if agnostic else 'aware'}** (mean score; the full cache with its 95% "
                   "interval)\n")
        out.append(table(["preset", "full", *[column_label(c) for c in cols]], body))
        widest = max((interval(v)[2] - interval(v)[1]) / 2 for (p, c), v in by.items() if p != "none")
        out.append(f"\n95% intervals of the compressed cells are up to ±{widest:.0f} points wide at this sample "
                   "count; the claims below compare presets sample by sample instead.\n")
    return "\n".join(out)


def bytask_section(rows):
    if not rows:
        return "_(no grid results yet)_"
    out = []
    for agnostic in (False, True):
        rs = [r for r in rows if r["question_agnostic"] == agnostic]
        budgets = sorted({r["budget"] for r in rs if r.get("budget") is not None})
        if not budgets:
            continue
        b = budgets[len(budgets) // 2]
        tasks = sorted({task_name(r) for r in rs})
        by = collections.defaultdict(list)
        for r in rs:
            if r["preset"] == "none" or r.get("budget") == b:
                by[(r["preset"], task_name(r))].append(r["score"])
        presets = sorted({r["preset"] for r in rs}, key=preset_rank)
        body = [[p] + [cell(by.get((p, t), []), with_interval=False) for t in tasks] for p in presets]
        out.append(f"**question-{'agnostic' if agnostic else 'aware'}, budget {b}** (mean score per task; "
                   "none = full cache)\n")
        out.append(table(["preset", *tasks], body) + "\n")
    return "\n".join(out)


def paired(rows, a, b, agnostic):
    """Per sample, the list of score differences a - b over the grid points both ran."""
    pts = {}
    for r in rows:
        if r["question_agnostic"] == agnostic and r["preset"] in (a, b):
            pts[(r["preset"], task_name(r), r["sample"], column_of(r))] = r["score"]
    diffs = collections.defaultdict(list)
    for (p, t, s, c), v in pts.items():
        if p == a and (b, t, s, c) in pts:
            diffs[(t, s)].append(v - pts[(b, t, s, c)])
    return diffs


def bootstrap(diffs, rounds=2000, seed=1):
    keys = sorted(diffs)
    rng = random.Random(seed)
    means = []
    for _ in range(rounds):
        pick = [keys[rng.randrange(len(keys))] for _ in keys]
        vals = [d for k in pick for d in diffs[k]]
        means.append(sum(vals) / len(vals))
    means.sort()
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def correct_prefix(answer, prediction):
    p = prediction.strip()
    k = 0
    while k < len(answer) and k < len(p) and p[k] == answer[k]:
        k += 1
    return k


def digits_section(rows):
    rows = [r for r in rows if is_number_needle(r)]
    if not rows:
        return "_(no number-needle results yet)_"
    width = len(rows[0]["answers"][0])
    out = []
    for agnostic in (False, True):
        rs = [r for r in rows if r["question_agnostic"] == agnostic]
        if not rs:
            continue
        cols = grid_columns(rs)
        by = collections.defaultdict(list)
        for r in rs:
            by[(r["preset"], column_of(r))].append(correct_prefix(r["answers"][0], r["prediction"]))
        presets = sorted({r["preset"] for r in rs}, key=preset_rank)
        body = []
        for p in presets:
            if p == "none":
                v = by[("none", ("full", 0))]
                body.append(["**none** (full cache)", f"{sum(v) / len(v):.1f}"] + [""] * len(cols))
            else:
                body.append([p, ""] + [f"{sum(by[(p, c)]) / len(by[(p, c)]):.1f}" if by.get((p, c)) else ""
                                       for c in cols])
        n = len({(task_name(r), r["sample"]) for r in rs})
        out.append(f"**question-{'agnostic' if agnostic else 'aware'}**: mean leading digits right, of {width} "
                   f"({n} samples)\n")
        out.append(table(["preset", "full", *[column_label(c) for c in cols]], body) + "\n")
    return "\n".join(out)


def pooling_section(pool_rows, grid_rows, kernel=15):
    if not pool_rows:
        return "_(no pooling results yet)_"
    keys = {(r["preset"], column_of(r), r["sample"]) for r in pool_rows if r["preset"] != "none"}
    presets = sorted({k[0] for k in keys}, key=preset_rank)
    cols = sorted({k[1] for k in keys}, key=lambda c: (c[0] != "b", c[1]))
    body = []
    for label, rows in (("7 (default)", grid_rows), (str(kernel), pool_rows)):
        by = collections.defaultdict(list)
        for r in rows:
            if r["task"] == "niah" and not r["question_agnostic"] and (r["preset"], column_of(r), r["sample"]) in keys:
                by[(r["preset"], column_of(r))].append(r)
        for p in presets:
            cells = []
            for c in cols:
                rs = by.get((p, c), [])
                if not rs:
                    cells.append("")
                    continue
                recall = sum(r["score"] for r in rs) / len(rs)
                digits = sum(correct_prefix(r["answers"][0], r["prediction"]) for r in rs) / len(rs)
                cells.append(f"{recall:.0f} ({digits:.1f})")
            body.append([p, label] + cells)
    n = len({k[2] for k in keys})
    return (f"NIAH, question-aware, {n} depths: recall % (leading digits right, of 7), the same samples with the "
            f"presets' default max-pooling kernel and with kernel {kernel}.\n\n" +
            table(["preset", "pooling kernel", *[column_label(c) for c in cols]], body))


def fidelity_section(rows):
    if not rows:
        return "_(no fidelity results yet)_"
    cols = grid_columns(rows)
    windows = {r["sample"] for r in rows}
    out = [f"{len(windows)} windows of {rows[0]['prompt_tokens']} prompt tokens, "
           f"{rows[0].get('continuation_tokens', 64)} teacher-forced tokens each.\n"]
    for key, what, fmt in (("top1_agreement", "top-1 agreement with the full cache (%)", "{:.1f}"),
                           ("kl", "mean KL(full ‖ compressed) per token (nats)", "{:.3f}")):
        by = collections.defaultdict(list)
        for r in rows:
            if r["preset"] != "none":
                by[(r["preset"], column_of(r))].append(r["metrics"][key])
        presets = sorted({p for p, _ in by}, key=preset_rank)
        body = [[p] + [fmt.format(sum(by[(p, c)]) / len(by[(p, c)])) if by.get((p, c)) else "" for c in cols]
                for p in presets]
        out.append(f"**{what}**\n")
        out.append(table(["preset", *[column_label(c) for c in cols]], body) + "\n")
    return "\n".join(out)


def claims_section(grid_rows, fidelity_rows):
    if not grid_rows and not fidelity_rows:
        return "_(no grid results yet)_"
    # Number needles scored by their leading digits right: partial credit where all-or-nothing recall ties.
    digit_rows = [dict(r, score=100.0 * correct_prefix(r["answers"][0], r["prediction"]) / len(r["answers"][0]))
                  for r in grid_rows if is_number_needle(r)]
    # Teacher-forced KL as a score (higher is better): finer than top-1 agreement.
    kl_rows = [dict(r, score=-1000.0 * r["metrics"]["kl"]) for r in fidelity_rows]
    kinds = [("extraction (NIAH/RULER)", grid_rows, (False, True)),
             ("number needles, digits right (%)", digit_rows, (False, True)),
             ("generation (teacher-forced top-1)", fidelity_rows, (False,)),
             ("generation (−KL, millinats)", kl_rows, (False,))]
    body = []
    for a, b, what in CLAIMS:
        for kind, rows, modes in kinds:
            for agnostic in modes:
                diffs = paired(rows, a, b, agnostic)
                vals = [d for v in diffs.values() for d in v]
                if not vals:
                    continue
                mode = "agnostic" if agnostic else "aware"
                m = sum(vals) / len(vals)
                lo, hi = bootstrap(diffs)
                wins, losses = sum(d > 0 for d in vals), sum(d < 0 for d in vals)
                if len(diffs) < 4:
                    verdict = f"too few samples ({len(diffs)})"
                elif wins == losses == 0:
                    verdict = "not measurable (equal scores at every point)"
                elif lo > 0:
                    verdict = "**confirmed**"
                elif hi < 0:
                    verdict = "**refuted** (the opposite holds)"
                else:
                    verdict = "not significant"
                body.append([what, kind, mode if "generation" not in kind else "-", f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]",
                             f"{wins}/{losses}/{len(vals) - wins - losses}", verdict])
    return table(["claim (A vs B)", "task", "mode", "mean A − B, 95% CI", "wins/losses/ties", "verdict"], body)


def plots_section(model, rows, img_dir, doc_dir):
    if not rows:
        return "_(no plots yet)_"
    out_dir = os.path.join(img_dir, model)
    os.makedirs(out_dir, exist_ok=True)
    for stale in os.listdir(out_dir):  # the folder holds exactly what the page links
        if stale.endswith(".png"):
            os.remove(os.path.join(out_dir, stale))
    written = []
    plot_results.FORMATS = ("png",)
    plot_results.score_plots([r for r in rows if r["_file"] in ("grid", "fidelity")], out_dir, written)
    plot_results.heatmaps([r for r in rows if r["_file"] == "heatmap"], out_dir, written)
    lines = []
    for path in [p for p in written if "attn_l1" in p]:  # the attention-error view: EVALUATION.md, not here
        os.remove(path)
    for path in sorted(p for p in written if "attn_l1" not in p):
        rel = os.path.relpath(path, doc_dir)
        lines.append(f"![{os.path.basename(path)}]({rel})")
    return "\n\n".join(lines)


def times_section(folder):
    path = os.path.join(folder, "wall_times.json")
    if not os.path.exists(path):
        return "_(no wall times recorded)_"
    times = json.load(open(path))
    return table(["stage", "wall time"], [[k, f"{v / 60:.1f} min"] for k, v in times.items()] +
                 [["total", f"{sum(times.values()) / 60:.1f} min"]])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=os.path.join(ROOT, "docs", "results"))
    ap.add_argument("--template", default=None, help="default: RESULTS.md.in in --results")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "RESULTS.md"))
    ap.add_argument("--img", default=os.path.join(ROOT, "docs", "img", "results"))
    a = ap.parse_args()
    template = a.template or os.path.join(a.results, "RESULTS.md.in")
    if not os.path.exists(template):
        sys.exit(f"error: no template at {template}")
    doc_dir = os.path.dirname(os.path.abspath(a.out))
    cache = {}

    def model_rows(model):
        folder = os.path.join(a.results, model)
        if model not in cache:
            files = {}
            for name in ("baseline", "grid", "fidelity", "heatmap", "pooling"):
                files[name] = load(os.path.join(folder, f"{name}.jsonl"))
                for r in files[name]:
                    r["_file"] = name
            cache[model] = files
        return cache[model], folder

    def expand(match):
        kind, model = match.group(1), match.group(2)
        files, folder = model_rows(model)
        if kind == "baseline":
            return baseline_section(files["baseline"])
        if kind == "grid":
            return grid_section(files["grid"])
        if kind == "bytask":
            return bytask_section(files["grid"])
        if kind == "digits":
            return digits_section(files["grid"])
        if kind == "fidelity":
            return fidelity_section(files["fidelity"])
        if kind == "pooling":
            return pooling_section(files["pooling"], files["grid"])
        if kind == "claims":
            return claims_section(files["grid"], files["fidelity"])
        if kind == "plots":
            return plots_section(model, files["grid"] + files["fidelity"] + files["heatmap"], a.img, doc_dir)
        if kind == "times":
            return times_section(folder)
        sys.exit(f"error: unknown placeholder @@{kind} {model}@@")

    with open(template, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"^@@(\w+) ([\w.-]+)@@$", expand, text, flags=re.M)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(a.out)


if __name__ == "__main__":
    main()
