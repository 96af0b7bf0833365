#!/usr/bin/env python3
"""Compress a real document once, then ask it several questions.

Reads the first essay of models/paul_graham_essays.txt (fetched by scripts/setup.sh)
into SmolLM2-135M-Instruct through Ada-KV, keeps half of its KV cache, and answers each
question from the compressed cache, next to the full cache's answer. Prints the memory
and the time of each step.

    build/python-venv/bin/python python/examples/compress_and_ask.py [--ratio 0.5]
"""

import argparse
import time
from pathlib import Path

import kvsqueeze as kvs

QUESTIONS = [
    "What do hard liquor, cigarettes, heroin, and crack have in common?",
    "In what month and year was this essay written?",
    "Which process, according to the author, cures diseases?",
]

ap = argparse.ArgumentParser()
ap.add_argument("-m", "--model", default="smollm2-135m-instruct")
ap.add_argument("--ratio", type=float, default=0.5, help="compression_ratio: the share of the cache evicted")
ap.add_argument("--chars", type=int, default=6000, help="characters of the document read")
ap.add_argument("-t", "--threads", type=int, default=None)
args = ap.parse_args()

essays = Path(__file__).resolve().parents[2] / "models" / "paul_graham_essays.txt"
document = essays.read_text()[: args.chars]

t = time.perf_counter()
model = kvs.Model(args.model, threads=args.threads)
print(f"loaded {model} in {time.perf_counter() - t:.2f} s")

# Ada-KV over SnapKV scores, averaged over 15 positions (digits and names span several tokens).
press = kvs.AdaKVPress(kvs.SnapKVPress(compression_ratio=args.ratio, kernel_size=15, pooling="avg"))
contexts = {}
for name, p in (("full cache", None), (f"ada-snapkv {args.ratio:g}", press)):
    t = time.perf_counter()
    contexts[name] = model.compress(document, p)
    ctx = contexts[name]
    print(f"{name:>16}: {ctx.n_tokens} tokens read in {time.perf_counter() - t:.2f} s, "
          f"KV cache {ctx.bytes / 2**20:.2f} MiB ({100 * ctx.compression:.0f}% of {ctx.bytes_uncompressed / 2**20:.2f} MiB)")

budgets = contexts[f"ada-snapkv {args.ratio:g}"].budgets()
print(f"Ada-KV head budgets, layer 0: {budgets[0].tolist()}, last layer: {budgets[-1].tolist()}")

for q in QUESTIONS:
    print(f"\nQ: {q}")
    for name, ctx in contexts.items():
        t = time.perf_counter()
        answer = ctx.ask("\n\n" + q, max_new_tokens=40)
        print(f"  {name:>16} ({time.perf_counter() - t:.2f} s): {answer.strip()}")
