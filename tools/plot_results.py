#!/usr/bin/python3
"""Plots `kvsqueeze eval` results: score vs. budget per task (one line per preset, the
full cache as a dashed line) and the needle heatmaps (depth x length), as PNG and SVG.

usage: tools/plot_results.py results.jsonl [more.jsonl ...] --out DIR
"""
import argparse
import collections
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Extra views of the teacher-forced tasks: (metric key, axis label, log scale).
EXTRA = {
    "fidelity": [("kl", "next-token KL vs full cache (nats, lower is better)", True),
                 ("attn_l1", "attention-output L1 error, mean over layers (lower is better)", True)],
    "ppl": [("ppl", "perplexity of the continuation (lower is better)", False)],
}


MARKERS = "os^Dv<>PX*ph"
FORMATS = ("png", "svg")


def load(paths):
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    sys.exit(f"error: {path}:{n}: malformed JSON")
    if not rows:
        sys.exit("error: no results to plot")
    return rows


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def x_of(r):
    return r["budget"] if r.get("budget") is not None else r.get("ratio")


def save(fig, out, name, written):
    for ext in FORMATS:
        path = os.path.join(out, f"{name}.{ext}")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        written.append(path)
    plt.close(fig)


def value_of(r, key):
    if key == "score":
        return r["score"]
    return r.get("metrics", {}).get(key)


def draw_lines(ax, rows, key, log):
    by_preset = collections.defaultdict(lambda: collections.defaultdict(list))
    full = []
    for r in rows:
        v = value_of(r, key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if r["preset"] == "none":
            full.append(v)
        elif x_of(r) is not None:
            by_preset[r["preset"]][x_of(r)].append(v)
    colors = plt.get_cmap("tab20").colors
    for i, preset in enumerate(sorted(by_preset)):
        xs = sorted(by_preset[preset])
        ax.plot(xs, [mean(by_preset[preset][x]) for x in xs], marker=MARKERS[i % len(MARKERS)],
                color=colors[(2 * i) % 20 + (2 * i) // 20 % 2], label=preset)
    if full:
        ax.axhline(mean(full), color="black", linestyle="--", label="full cache")
    xs_all = sorted({x for p in by_preset.values() for x in p})
    if xs_all and all(isinstance(x, int) for x in xs_all) and len(xs_all) > 1 and xs_all[-1] / max(xs_all[0], 1) >= 4:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs_all)
        ax.set_xticklabels([str(x) for x in xs_all])
    if log and all(mean(v) > 0 for p in by_preset.values() for v in p.values()):
        ax.set_yscale("log")


def score_plots(rows, out, written):
    # Budgets and ratios are different axes: a grid with both gets a plot for each.
    groups = collections.defaultdict(list)
    for r in rows:
        kinds = ["budget", "ratio"] if r["preset"] == "none" else ["budget" if r.get("budget") is not None else "ratio"]
        for kind in kinds:
            groups[(r["model"], r["task"], bool(r.get("question_agnostic")), kind)].append(r)
    for (model, task, agnostic, kind), rs in sorted(groups.items()):
        if all(r["preset"] == "none" for r in rs):
            continue
        mode = "agnostic" if agnostic else "aware"
        xlabel = "budget per KV head (window included)" if kind == "budget" else "fraction of the prompt kept"
        subtasks = sorted({r.get("subtask", "") for r in rs})
        panels = ([("all", rs)] if len(subtasks) > 1 else []) + \
            [(s or task, [r for r in rs if r.get("subtask", "") == s]) for s in subtasks]
        views = [("score", f"score ({rs[0].get('metric', '')}, higher is better)", False)] + EXTRA.get(task, [])
        for key, label, log in views:
            cols = min(3, len(panels))
            nrows = math.ceil(len(panels) / cols)
            fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 4 * nrows), squeeze=False,
                                     constrained_layout=True)
            for ax, (title, prs) in zip(axes.flat, panels):
                draw_lines(ax, prs, key, log)
                ax.set_title(title)
                ax.set_xlabel(xlabel)
                ax.set_ylabel(label)
                ax.grid(alpha=0.3)
            for ax in list(axes.flat)[len(panels):]:
                ax.axis("off")
            # Beside the first row's last panel, clear of every curve.
            handles, labels = axes.flat[0].get_legend_handles_labels()
            axes[0][cols - 1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
            fig.suptitle(f"{task} on {model} (question-{mode})")
            suffix = "_ratio" if kind == "ratio" else ""
            save(fig, out, f"{task}_{mode}_{key}{suffix}_{os.path.splitext(model)[0]}", written)


def heatmaps(rows, out, written):
    groups = collections.defaultdict(list)
    for r in rows:
        if r["task"] == "niah" and "depth" in r and "length" in r:
            groups[(r["model"], bool(r.get("question_agnostic")), x_of(r) if r["preset"] != "none" else None)].append(r)
    for (model, agnostic, x), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        presets = sorted({r["preset"] for r in rs})
        depths = sorted({r["depth"] for r in rs})
        lengths = sorted({r["length"] for r in rs})
        cols = min(4, len(presets))
        nrows = math.ceil(len(presets) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.4 * nrows), squeeze=False,
                                 constrained_layout=True)
        image = None
        for ax, preset in zip(axes.flat, presets):
            cell = collections.defaultdict(list)
            for r in rs:
                if r["preset"] == preset:
                    cell[(r["depth"], r["length"])].append(r["score"])
            grid = [[mean(cell[(d, n)]) for n in lengths] for d in depths]
            image = ax.imshow(grid, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto", origin="upper")
            ax.set_xticks(range(len(lengths)))
            ax.set_xticklabels([str(n) for n in lengths], fontsize=7)
            ax.set_yticks(range(len(depths)))
            ax.set_yticklabels([f"{d:g}%" for d in depths], fontsize=7)
            ax.set_xlabel("prompt tokens")
            ax.set_ylabel("needle depth")
            ax.set_title(preset, fontsize=9)
        for ax in list(axes.flat)[len(presets):]:
            ax.axis("off")
        fig.colorbar(image, ax=axes.ravel().tolist(), label="recall (%)")
        mode = "agnostic" if agnostic else "aware"
        what = "full cache" if x is None else f"budget {x}"
        fig.suptitle(f"needle recall on {model}, {what} (question-{mode})")
        tag = "full" if x is None else f"b{x}"
        save(fig, out, f"niah_heatmap_{mode}_{tag}_{os.path.splitext(model)[0]}", written)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="JSONL files written by kvsqueeze eval")
    ap.add_argument("--out", required=True, help="folder for the PNG and SVG files")
    args = ap.parse_args()
    for p in args.results:
        if not os.path.isfile(p):
            sys.exit(f"error: cannot read '{p}'")
    rows = load(args.results)
    for n, r in enumerate(rows, 1):
        for field in ("model", "task", "preset", "score"):
            if field not in r:
                sys.exit(f"error: result {n} has no '{field}'")
    os.makedirs(args.out, exist_ok=True)
    written = []
    score_plots(rows, args.out, written)
    heatmaps(rows, args.out, written)
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
