#!/usr/bin/env python3
"""Mean Jaccard overlap of two kept-position files, per layer and KV head.

    compare_kept.py A.json B.json [--per-head]

Both files have the shape of `kvsqueeze generate --dump-selection` (run_kvpress.py
--dump-kept writes the same). Only layers present in both are compared (kvpress
dumps leave out layers it never presses, e.g. sliding-window ones). Plain Python.
"""
from __future__ import annotations

import argparse
import json
import sys


def positions(j: dict) -> dict[int, dict[int, set[int]]]:
    """{layer: {head: kept positions}} of a --dump-selection / --dump-kept document."""
    return {L["layer"]: {h["head"]: set(h["positions"]) for h in L["heads"]} for L in j["layers"]}


def load(path: str) -> tuple[dict, dict[int, dict[int, set[int]]]]:
    j = json.load(open(path))
    return j, positions(j)


def jaccard(a: set[int], b: set[int]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def jaccard_by_layer(a: dict, b: dict) -> dict[int, list[float]]:
    """For each layer both hold, the Jaccard index of each head both hold (head order)."""
    return {l: [jaccard(a[l][h], b[l][h]) for h in sorted(set(a[l]) & set(b[l]))] for l in sorted(set(a) & set(b))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--per-head", action="store_true", help="print every head, not just layer means")
    args = p.parse_args(argv)
    ja, A = load(args.a)
    jb, B = load(args.b)
    if ja.get("prompt_tokens") != jb.get("prompt_tokens"):
        print(f"warning: prompt_tokens differ ({ja.get('prompt_tokens')} vs {jb.get('prompt_tokens')})", file=sys.stderr)
    common = sorted(set(A) & set(B))
    if not common:
        sys.exit("no layer in common")
    only = sorted(set(A) ^ set(B))
    if only:
        print(f"layers in one file only (skipped): {only}", file=sys.stderr)
    print("layer  jaccard  kept(a)  kept(b)")
    all_j = []
    for l, js in jaccard_by_layer(A, B).items():
        heads = sorted(set(A[l]) & set(B[l]))
        all_j += js
        ka = sum(len(A[l][h]) for h in heads)
        kb = sum(len(B[l][h]) for h in heads)
        print(f"{l:5d}  {sum(js) / len(js):7.3f}  {ka:7d}  {kb:7d}")
        if args.per_head:
            for h, v in zip(heads, js):
                print(f"       head {h}: {v:.3f} ({len(A[l][h])} vs {len(B[l][h])})")
    print(f"mean Jaccard over {len(all_j)} (layer, head) pairs: {sum(all_j) / len(all_j):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
