#!/usr/bin/env python3
"""Side by side: kvsqueeze eval records and run_kvpress.py records of the same runs.

    compare_results.py kvsqueeze.jsonl kvpress.jsonl

Pairs runs by (sample, preset, ratio, question-agnostic) and prints a Markdown table
of both scores and answers, then mean scores per (preset, ratio, mode) and how many
answers are identical. Plain Python.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict


def key(r: dict) -> tuple:
    ratio = None if r.get("ratio") is None else round(float(r["ratio"]), 6)
    return (r["sample"], r["preset"], ratio, bool(r["question_agnostic"]))


def load(path: str) -> dict[tuple, dict]:
    return {key(r): r for r in (json.loads(line) for line in open(path) if line.strip())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kvsqueeze")
    p.add_argument("kvpress")
    a = p.parse_args(argv)
    ks, kp = load(a.kvsqueeze), load(a.kvpress)
    both = sorted(set(ks) & set(kp), key=lambda k: (k[3], k[1], k[2] or 0, k[0]))
    if not both:
        raise SystemExit("no run appears in both files")
    print("| sample | mode | preset | ratio | kvsqueeze | kvpress | kvsqueeze answer | kvpress answer |")
    print("|---|---|---|---:|---:|---:|---|---|")
    groups = defaultdict(lambda: [0.0, 0.0, 0, 0])
    for k in both:
        s, pr, ratio, agn = k
        x, y = ks[k], kp[k]
        mode = "agnostic" if agn else "aware"
        print(f"| {s} | {mode} | {pr} | {ratio if ratio is not None else ''} | {x['score']:.0f} | {y['score']:.0f} "
              f"| `{x['prediction'].strip()[:40]}` | `{y['prediction'].strip()[:40]}` |")
        g = groups[(pr, ratio, mode)]
        g[0] += x["score"]
        g[1] += y["score"]
        g[2] += 1
        g[3] += x["prediction"].strip() == y["prediction"].strip()
    print("\n| preset | ratio | mode | n | kvsqueeze mean | kvpress mean | identical answers |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for (pr, ratio, mode), (sx, sy, n, same) in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0])):
        print(f"| {pr} | {ratio if ratio is not None else ''} | {mode} | {n} | {sx / n:.1f} | {sy / n:.1f} | {same}/{n} |")
    only = len(set(ks) ^ set(kp))
    if only:
        print(f"\n{only} runs appear in one file only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
