#!/usr/bin/env python3
"""What the Python layer adds per generated token, against the CLI on the same model.

Runs, alternately and `--runs` times each, `kvsqueeze generate --greedy --ignore-eos` and
the same generation streamed through kvsqueeze.Model.generate(stream=True), and reports
decode tokens/s of both (medians) and the Python layer's share: wall-clock time spent
between pieces beyond the engine's own decode time. Run it with the Python of a virtual
environment where `pip install .` put kvsqueeze (its CLI comes with it):

    build/python-venv/bin/python bench/python_overhead.py -m smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time

import kvsqueeze as kvs

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def cli_decode_tps(cli: str, model: str, n: int, threads: int) -> float:
    p = subprocess.run([cli, "generate", "-m", model, "-p", PROMPT, "--greedy", "--ignore-eos", "-n", str(n), "-t",
                        str(threads)], capture_output=True, text=True, check=True)
    return float(re.search(r"decode: \d+ tokens, ([\d.]+) tokens/s", p.stderr).group(1))


def python_decode(model: kvs.Model, n: int) -> tuple:
    """(engine decode tokens/s, wall-clock tokens/s between pieces, Python's share)."""
    stream = model.generate(PROMPT, max_tokens=n, temperature=0, ignore_eos=True, stream=True)
    next(stream)  # the prompt is read before the first piece
    t0 = time.perf_counter()
    for _ in stream:
        pass
    wall = time.perf_counter() - t0
    stats = stream.stats
    # Every forward pass happens inside the timed loop (the first piece needs none); the
    # engine's decode time also counts the first piece's sampling, so the share errs high.
    engine = stats["decode_seconds"]
    passes = stats["decode_passes"]
    return passes / engine, passes / wall, wall / engine - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default="smollm2-135m-instruct")
    ap.add_argument("-n", type=int, default=256, help="tokens per generation")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cli", default=shutil.which("kvsqueeze"), help="the CLI (default: the one on PATH)")
    a = ap.parse_args()
    if not a.cli:
        sys.exit("no kvsqueeze CLI on PATH: give --cli")
    model = kvs.Model(a.model, threads=a.threads)
    python_decode(model, 16)  # warm the pages of the weights
    cli_tps, py_tps, py_wall_tps, overhead = [], [], [], []
    for _ in range(a.runs):
        cli_tps.append(cli_decode_tps(a.cli, a.model, a.n, a.threads))
        engine_tps, wall_tps, share = python_decode(model, a.n)
        py_tps.append(engine_tps)
        py_wall_tps.append(wall_tps)
        overhead.append(max(share, 0.0))
    med = statistics.median
    print(f"model {a.model}, {a.n} tokens, {a.threads} threads, {a.runs} runs (medians)")
    print(f"  CLI decode:                         {med(cli_tps):7.1f} tokens/s")
    print(f"  Python, engine's decode time:       {med(py_tps):7.1f} tokens/s")
    print(f"  Python, wall clock between pieces:  {med(py_wall_tps):7.1f} tokens/s")
    print(f"  Python layer per token: {100 * med(overhead):.2f}% of the engine's decode time "
          f"(runs: {', '.join(f'{100 * o:.2f}%' for o in overhead)})")


if __name__ == "__main__":
    main()
