#!/usr/bin/python3
"""Plots speed and memory against context length from benchmark records: the JSON lists
that `kvsqueeze bench --json` and `bench/vs_llamacpp.sh --json` write. One line per
engine and preset; panels: decode tok/s, decode ms per token, prompt tok/s, and memory
(peak resident solid, KV cache dashed). Writes bench_context.png and .svg.

usage: tools/plot_bench.py records.json [more.json ...] --out DIR [--title TEXT]
"""
import argparse
import collections
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REQUIRED = ("preset", "prompt_tokens", "prompt_tps", "decode_tps", "kv_bytes", "peak_rss_bytes")
MARKERS = "os^Dv<>PX*ph"
MIB = 1024.0 * 1024.0


def load(paths):
    records = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            sys.exit(f"error: {path}: {e.strerror}")
        except json.JSONDecodeError as e:
            sys.exit(f"error: {path}: malformed JSON ({e.msg}, line {e.lineno})")
        if not isinstance(data, list):
            sys.exit(f"error: {path}: expected a JSON list of benchmark records")
        for i, r in enumerate(data):
            missing = [k for k in REQUIRED if not isinstance(r, dict) or k not in r]
            if missing:
                sys.exit(f"error: {path}: record {i} lacks {', '.join(missing)}")
            records.append(r)
    if not records:
        sys.exit("error: no benchmark records to plot")
    return records


def label_of(r):
    engine = r.get("engine", "kvsqueeze")
    preset = r["preset"]
    budget = r.get("budget")
    text = f"{engine} {preset}"
    if preset != "none" and budget not in (None, "-", 0):
        text += f" B={budget}"
    return text


def series(records):
    """label -> sorted [(prompt_tokens, record)], later records replacing earlier ones."""
    by_label = collections.OrderedDict()
    for r in records:
        by_label.setdefault(label_of(r), {})[int(r["prompt_tokens"])] = r
    return collections.OrderedDict((k, sorted(v.items())) for k, v in by_label.items())


def plot(records, out_dir, title):
    lines = series(records)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax_dec, ax_ms), (ax_pre, ax_mem) = axes
    for i, (label, points) in enumerate(lines.items()):
        xs = [n for n, _ in points]
        marker = MARKERS[i % len(MARKERS)]
        color = f"C{i % 10}"
        ax_dec.plot(xs, [r["decode_tps"] for _, r in points], marker=marker, color=color, label=label)
        ax_ms.plot(xs, [1000.0 / r["decode_tps"] if r["decode_tps"] > 0 else float("nan") for _, r in points],
                   marker=marker, color=color, label=label)
        ax_pre.plot(xs, [r["prompt_tps"] for _, r in points], marker=marker, color=color, label=label)
        ax_mem.plot(xs, [r["peak_rss_bytes"] / MIB for _, r in points], marker=marker, color=color,
                    label=f"{label}: peak RSS")
        ax_mem.plot(xs, [r["kv_bytes"] / MIB for _, r in points], marker=marker, color=color, linestyle="--",
                    label=f"{label}: KV cache")
    for ax, ylabel in ((ax_dec, "decode tokens/s (higher is better)"),
                       (ax_ms, "ms per decoded token (lower is better)"),
                       (ax_pre, "prompt tokens/s (higher is better)"),
                       (ax_mem, "MiB (lower is better)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (prompt tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax_mem.set_yscale("log")
    threads = sorted({r.get("threads") for r in records if r.get("threads") is not None})
    suffix = f" ({', '.join(str(t) for t in threads)} threads)" if threads else ""
    fig.suptitle((title or "speed and memory vs context length") + suffix)
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for ext in ("png", "svg"):
        path = os.path.join(out_dir, f"bench_context.{ext}")
        fig.savefig(path, dpi=110)
        written.append(path)
    plt.close(fig)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", nargs="+", help="JSON files from kvsqueeze bench --json or vs_llamacpp.sh --json")
    ap.add_argument("--out", required=True, help="directory for bench_context.png and .svg")
    ap.add_argument("--title", default="", help="figure title")
    args = ap.parse_args()
    for path in plot(load(args.records), args.out, args.title):
        print(path)


if __name__ == "__main__":
    main()
