#!/usr/bin/env python3
"""Tables and plot of a compare.py run: DIR/comparison.md and DIR/comparison.png.

    report.py DIR [--plot FILE]
    report.py DIR --template docs/comparison/COMPARISON.md.in --doc docs/COMPARISON.md \
        --plot docs/img/comparison.png        # the published page

Answers: per preset and ratio, both engines' mean score with its 95% interval, and the
paired difference (kvsqueeze - kvpress, same sample) with a bootstrap interval over
samples. Kept sets: mean Jaccard index of the positions each engine keeps, per preset
(over samples x layers x KV heads), with the lowest layer's mean, and for scorer presses
how far the positions only one engine keeps sit from kvpress's cut in its own score
order (a few places: near-ties; hundreds: a different rule). Cost: prefill time,
decode speed, KV bytes and peak memory. Plain python3 (+ matplotlib for the plot).
"""
from __future__ import annotations

import argparse
import collections
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from results_report import bootstrap, interval, load, preset_rank, table  # noqa: E402


def ratio_key(r):
    return None if r.get("ratio") is None else round(float(r["ratio"]), 6)


def answers_key(r):
    return (r["sample"], r["preset"], ratio_key(r), bool(r["question_agnostic"]))


def cell(scores):
    m, lo, hi = interval(scores)
    return f"{m:.1f} [{lo:.0f}, {hi:.0f}]"


def paired_answers(folder):
    """{(preset, ratio): [(sample, kvsqueeze row, kvpress row)]} for runs both engines did."""
    ks = {answers_key(r): r for r in load(f"{folder}/kvsqueeze.jsonl")}
    kp = {answers_key(r): r for r in load(f"{folder}/kvpress.jsonl")}
    groups = collections.defaultdict(list)
    for k in sorted(set(ks) & set(kp)):
        groups[(k[1], k[2])].append((k[0], ks[k], kp[k]))
    return groups


def answers_section(folder):
    groups = paired_answers(folder)
    rows = []
    for (preset, ratio), runs in sorted(groups.items(), key=lambda kv: (kv[0][1] or 0, preset_rank(kv[0][0]))):
        x = [a["score"] for _, a, _ in runs]
        y = [b["score"] for _, _, b in runs]
        diffs = {s: [a["score"] - b["score"]] for s, a, b in runs}
        d = sum(v[0] for v in diffs.values()) / len(diffs)
        lo, hi = (0.0, 0.0) if all(v[0] == 0 for v in diffs.values()) else bootstrap(diffs)
        same = sum(a["prediction"].strip() == b["prediction"].strip() for _, a, b in runs)
        agree = "yes" if lo <= 0 <= hi else "**no**"
        rows.append([preset, "full" if ratio is None else f"{ratio:g}", str(len(runs)), cell(x), cell(y),
                     f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]", agree, f"{same}/{len(runs)}"])
    if not rows:
        return "(no run appears in both engines' files)"
    return table(["preset", "kept", "samples", "kvsqueeze", "kvpress", "difference", "within noise",
                  "identical answers"], rows)


def f16_section(folder):
    """kvsqueeze on the F16 copy against kvpress and against itself on the Q4_1 file."""
    f16 = {answers_key(r): r for r in load(f"{folder}/kvsqueeze_f16.jsonl")}
    q = {answers_key(r): r for r in load(f"{folder}/kvsqueeze.jsonl")}
    kp = {answers_key(r): r for r in load(f"{folder}/kvpress.jsonl")}
    groups = collections.defaultdict(list)
    for k in sorted(set(f16) & set(q) & set(kp)):
        groups[(k[1], k[2])].append((f16[k], q[k], kp[k]))
    rows = []
    for (preset, ratio), runs in sorted(groups.items(), key=lambda kv: (kv[0][1] or 0, preset_rank(kv[0][0]))):
        n = len(runs)

        def same(i, j):
            return sum(r[i]["prediction"].strip() == r[j]["prediction"].strip() for r in runs)

        rows.append([preset, "full" if ratio is None else f"{ratio:g}", str(n),
                     *(f"{sum(r[i]['score'] for r in runs) / n:.1f}" for i in range(3)),
                     f"{same(0, 2)}/{n}", f"{same(1, 2)}/{n}"])
    if not rows:
        return "(no F16 run)"
    return table(["preset", "kept", "samples", "kvsqueeze F16", "kvsqueeze Q4_1", "kvpress",
                  "identical F16 / kvpress", "identical Q4_1 / kvpress"], rows)


def by_task_section(folder):
    """Full cache and the two ratios of SnapKV, per subtask: where the scores come from."""
    groups = paired_answers(folder)
    cols = [(p, r) for p, r in sorted(groups, key=lambda k: (preset_rank(k[0]), k[1] or 0)) if p in ("none", "snapkv")]
    tasks = sorted({a["subtask"] for runs in groups.values() for _, a, _ in runs})
    rows = []
    for t in tasks:
        row = [t]
        for c in cols:
            runs = [(a, b) for _, a, b in groups[c] if a["subtask"] == t]
            sx = sum(a["score"] for a, _ in runs) / len(runs)
            sy = sum(b["score"] for _, b in runs) / len(runs)
            row.append(f"{sx:.0f} / {sy:.0f}")
        rows.append(row)
    head = ["subtask"] + [("full cache" if r is None else f"{p} {r:g}") + " (ksq / kvp)" for p, r in cols]
    return table(head, rows)


def kept_section(folder):
    rows = load(f"{folder}/kept.jsonl")
    groups = collections.defaultdict(list)
    for r in rows:
        groups[(r["preset"], r["ratio"])].append(r)
    out = []
    for (preset, ratio), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], preset_rank(kv[0][0]))):
        per_layer = collections.defaultdict(list)
        for r in rs:
            for layer, js in r["jaccard"].items():
                per_layer[int(layer)] += js
        every = [j for js in per_layer.values() for j in js]
        worst_layer, worst = min(((l, sum(js) / len(js)) for l, js in per_layer.items()), key=lambda t: t[1])
        dist = sorted(d for r in rs for d in r.get("cut_distances", []))
        if dist:
            near = f"{len(dist)}: {dist[len(dist) // 2]} / {dist[int(0.9 * (len(dist) - 1))]} / {dist[-1]}"
        else:
            near = "0" if all(j == 1.0 for j in every) else "(no score order)"
        kept_ks = sum(r["kept_kvsqueeze"] for r in rs)
        kept_kp = sum(r["kept_kvpress"] for r in rs)
        out.append([preset, f"{ratio:g}", str(len(rs)), str(len(every)), f"{sum(every) / len(every):.3f}",
                    f"{min(every):.3f}", f"{worst:.3f} (layer {worst_layer})", f"{kept_ks / kept_kp:.3f}", near])
    if not out:
        return "(no kept sets compared)"
    return table(["preset", "kept", "samples", "layer x head pairs", "mean Jaccard", "lowest pair",
                  "lowest layer mean", "entries kept, kvsqueeze / kvpress",
                  "entries in one only: count: median / p90 / max places from kvpress's cut"], out)


def cost_section(folder):
    rows = load(f"{folder}/cost.jsonl")
    by = {(r["engine"], r["preset"], r["prompt_tokens_target"]): r for r in rows}
    out = []
    for length in sorted({r["prompt_tokens_target"] for r in rows}):
        for preset in sorted({r["preset"] for r in rows}, key=preset_rank):
            a, b = by.get(("kvsqueeze", preset, length)), by.get(("kvpress", preset, length))
            if not a or not b:
                continue
            name = preset if a["ratio"] is None else f"{preset} {a['ratio']:g}"
            out.append([str(length), name,
                        f"{a['prefill_seconds']:.2f} / {b['prefill_seconds']:.2f}",
                        f"{b['prefill_seconds'] / a['prefill_seconds']:.2f}x",
                        f"{a['decode_tps']:.1f} / {b['decode_tps']:.1f}",
                        f"{a['decode_tps'] / b['decode_tps']:.2f}x",
                        f"{a['kv_mib']:.1f} / {b['kv_mib']:.1f}",
                        f"{a['peak_rss_mib']:.0f} / {b['peak_rss_mib']:.0f}"])
    if not out:
        return "(no cost measured)"
    return table(["prompt tokens", "preset", "prefill s (ksq / kvp)", "prefill speed-up",
                  "decode tok/s (ksq / kvp)", "decode speed-up", "KV MiB (ksq f16 / kvp f32)",
                  "peak RSS MiB (ksq / kvp)"], out)


def plot(folder, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    groups = paired_answers(folder)
    ratios = sorted({r for _, r in groups if r is not None})
    presets = sorted({p for p, _ in groups if p != "none"}, key=preset_rank)
    fig, axes = plt.subplots(1, len(ratios) + 1, figsize=(5.2 * (len(ratios) + 1), 4.2))
    for ax, ratio in zip(axes, ratios):
        for i, (engine, idx, colour) in enumerate((("kvsqueeze", 1, "tab:blue"), ("kvpress", 2, "tab:orange"))):
            means, errs = [], [[], []]
            for p in presets:
                runs = groups.get((p, ratio), [])
                m, lo, hi = interval([r[idx]["score"] for r in runs]) if runs else (0, 0, 0)
                means.append(m)
                errs[0].append(m - lo)
                errs[1].append(hi - m)
            xs = [j + (i - 0.5) * 0.38 for j in range(len(presets))]
            ax.bar(xs, means, 0.38, yerr=errs, capsize=2, color=colour, label=engine)
        full = groups.get(("none", None))
        if full:
            ax.axhline(interval([r[1]["score"] for r in full])[0], color="gray", ls="--", lw=1, label="full cache")
        ax.set_xticks(range(len(presets)), presets, rotation=40, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(f"answers, {ratio:.0%} of the prompt kept")
        ax.set_ylabel("score (string_match_all), 95% interval")
        ax.legend(fontsize=8)
    cost = load(f"{folder}/cost.jsonl")
    ax = axes[-1]
    styles = {"none": "-", "snapkv": "--", "ada-snapkv": ":"}
    for engine, colour in (("kvsqueeze", "tab:blue"), ("kvpress", "tab:orange")):
        for preset in sorted({r["preset"] for r in cost}, key=preset_rank):
            pts = sorted((r["prompt_tokens_target"], r["decode_tps"])
                         for r in cost if r["engine"] == engine and r["preset"] == preset)
            ratio = next(r["ratio"] for r in cost if r["preset"] == preset)
            label = preset if ratio is None else f"{preset} {ratio:g}"
            ax.plot(*zip(*pts), styles.get(preset, "-."), marker="o", color=colour, label=f"{engine} {label}")
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("decode tokens/s")
    ax.set_ylim(bottom=0)
    ax.set_title("decode speed after the prompt, same threads")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot -> {path}", file=sys.stderr)


def sections(folder) -> dict[str, str]:
    logits = f"{folder}/logits.txt"
    return {
        "ANSWERS": answers_section(folder),
        "BYTASK": by_task_section(folder),
        "F16": f16_section(folder),
        "KEPT": kept_section(folder),
        "COST": cost_section(folder),
        "LOGITS": "```\n" + (open(logits).read().strip() if os.path.exists(logits) else "(not run)") + "\n```",
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--plot", help="plot file (default DIR/comparison.png)")
    p.add_argument("--template", help="fill the @@ANSWERS@@, @@BYTASK@@, @@F16@@, @@KEPT@@, @@COST@@, @@LOGITS@@ and "
                                      "@@PLOT@@ markers of this file ...")
    p.add_argument("--doc", help="... and write the result here (docs/COMPARISON.md)")
    a = p.parse_args(argv)
    if not os.path.isdir(a.folder):
        sys.exit(f"error: {a.folder} is not a folder")
    if bool(a.template) != bool(a.doc):
        sys.exit("error: --template and --doc go together")
    parts = sections(a.folder)
    plot_path = a.plot or f"{a.folder}/comparison.png"
    plot(a.folder, plot_path)
    if a.template:
        text = open(a.template).read()
        rel = os.path.relpath(plot_path, os.path.dirname(os.path.abspath(a.doc)))
        parts["PLOT"] = f"![answers per preset, both engines, and cost per request]({rel})"
        for key, value in parts.items():
            text = text.replace(f"@@{key}@@", value)
        left = sorted(set(m for m in text.split("@@")[1::2] if m.isupper()))
        if left:
            sys.exit(f"error: unknown markers in {a.template}: {', '.join(left)}")
        with open(a.doc, "w") as f:
            f.write(text)
        print(f"{a.doc} written", file=sys.stderr)
        return 0
    titles = {"ANSWERS": "## Answers (question-aware)", "BYTASK": "### By subtask",
              "F16": "### The same weights without 8-bit activations", "KEPT": "## Kept sets", "COST": "## Cost",
              "LOGITS": "## Full-cache logits"}
    text = "\n\n".join(f"{titles[k]}\n\n{v}" for k, v in parts.items()) + "\n"
    with open(f"{a.folder}/comparison.md", "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
