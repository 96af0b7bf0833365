#!/usr/bin/env python3
"""Do the tests catch a wrong method? Puts deliberate bugs into a scratch copy of the
tree, one at a time, rebuilds, runs the tests that should notice, and reports any bug
that survives (exit status 1).

    scripts/mutation_check.py              every mutation (about 15 minutes on 2 cores)
    scripts/mutation_check.py --only knorm-sign,h2o-normalisation
    scripts/mutation_check.py --list

The scratch copy lives in build/mutation/ (the checkout is never touched); it shares
../shared and models/ with the checkout through links.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutation"
TREE = WORK / "tree"
BUILD = WORK / "build"

SCORING = "PressReference.*:Scorers.*:Press.*:Lava.*:Allocation.*"


@dataclass
class Mutation:
    name: str
    file: str
    find: str
    replace: str
    tests: str  # gtest filter of the tests expected to notice
    why: str


MUTATIONS = [
    # The bugs issue 21 found surviving the suite.
    Mutation("knorm-sign", "src/press/scorers.cpp", "= -std::sqrt(dot(k, k, hd));", "= std::sqrt(dot(k, k, hd));",
             SCORING, "K-norm keeps the largest keys"),
    Mutation("h2o-normalisation", "src/press/scorers.cpp", "/= static_cast<float>(s.n - j);", "/= 1.0f;",
             SCORING, "H2O sums attention without dividing by the queries that saw each key"),
    Mutation("tova-first-query", "src/press/scorers.cpp", "const float* last = s.q_window + (s.window - 1) * q_w;",
             "const float* last = s.q_window;", SCORING, "TOVA reads the first window query"),
    Mutation("lava-value-norm", "src/press/scorers.cpp", "out[static_cast<size_t>(h * prefix + j)] *= vbar;",
             "out[static_cast<size_t>(h * prefix + j)] *= 1.0f;", SCORING, "LAVa drops the value-norm factor"),
    Mutation("critical-value-norm", "src/press/budget_press.cpp", "crit[i] = (row[rest[i]] + 1e-4f) * norms[i];",
             "crit[i] = (row[rest[i]] + 1e-4f) * 1.0f;", SCORING, "CriticalKV's value norms are a constant"),
    Mutation("lava-one-minus-entropy", "src/press/lava_press.cpp", "entropies_.push_back(normalized_entropy(st.scores));",
             "entropies_.push_back(1.0 - normalized_entropy(st.scores));", SCORING, "LAVa layer budgets from 1 - entropy"),
    Mutation("server-memory-admission", "src/server/server.cpp", "if (in_use_ + bytes > budget_) {", "if (false) {",
             "ServerLimits.*", "the server admits past its memory budget"),
    Mutation("sampler-temperature", "src/runtime/sampler.cpp", "c.first = std::exp((c.first - mx) / o_.temperature);",
             "c.first = std::exp(c.first - mx);", "Sampler.*", "sampling ignores the temperature"),
    Mutation("cache-checksum", "src/cache/cache_file.cpp", "if (cache_checksum(bytes.data(), bytes.size() - 8) != stored)",
             "if (false)", "CacheFile.*", "a corrupt saved cache loads"),
    Mutation("kl-direction", "src/runtime/divergence.cpp",
             "return std::max(0.0, kl_divergence(probabilities(reference), probabilities(logits)));",
             "return std::max(0.0, kl_divergence(probabilities(logits), probabilities(reference)));",
             "Fidelity.*", "KL measured in the other direction"),
    # One per scorer and allocator besides.
    Mutation("snapkv-no-pooling", "src/press/scorers.cpp",
             "for (int hq = 0; hq < s.cfg->n_head; ++hq) pool1d(&per_q[static_cast<size_t>(hq * prefix)], prefix, c.pool_kernel, c.pool_max);",
             "", SCORING, "SnapKV scores are not pooled"),
    Mutation("snapkv-one-query", "src/press/scorers.cpp",
             "accumulated_attention(s, prefix, s.q_window, s.n - w, w, 1.0f / static_cast<float>(w));",
             "accumulated_attention(s, prefix, s.q_window, s.n - w, 1, 1.0f);", SCORING,
             "SnapKV reads only the first window query"),
    Mutation("gqa-mean-is-max", "src/press/scorers.cpp",
             "r = use_max ? std::max(r, v) : r + v / static_cast<float>(G);", "r = std::max(r, v);", SCORING,
             "GQA groups always reduced by max"),
    Mutation("streaming-no-sinks", "src/press/scorers.cpp",
             "out[static_cast<size_t>(h * prefix + j)] = j < sinks ? static_cast<float>(prefix + sinks - j) : static_cast<float>(j);",
             "out[static_cast<size_t>(h * prefix + j)] = static_cast<float>(j);", SCORING, "StreamingLLM forgets its sinks"),
    Mutation("pyramid-upside-down", "src/press/allocation.cpp",
             "out[static_cast<size_t>(l)] = std::clamp<int64_t>(hi - l * step, 0, prefix);",
             "out[static_cast<size_t>(l)] = std::clamp<int64_t>(lo + l * step, 0, prefix);", SCORING,
             "PyramidKV gives the upper layers more"),
    Mutation("ada-no-safeguard", "src/press/allocation.cpp",
             "const double raw = (1.0 - alpha) * static_cast<double>(f[static_cast<size_t>(h)]) + static_cast<double>(floor_a);",
             "const double raw = static_cast<double>(f[static_cast<size_t>(h)]);", SCORING, "Ada-KV without its alpha floor"),
    Mutation("window-not-kept", "src/press/budget_press.cpp",
             "for (int64_t j = prefix; j < n; ++j) chosen.push_back(j);  // the window is always kept", "", SCORING,
             "the observation window is evicted"),
    Mutation("lava-cascade-grows", "src/press/lava_press.cpp",
             "const int64_t b = std::min(hb[static_cast<size_t>(h)], st.kept[static_cast<size_t>(h)]);",
             "const int64_t b = st.kept[static_cast<size_t>(h)];", SCORING, "the LAVa cascade never shrinks finished layers"),
    Mutation("decode-press-drops-recent", "src/press/decode_press.cpp",
             "for (int64_t j = prefix; j < m; ++j) keep.push_back(j);\n  evictions_", "evictions_",
             "DecodePress.*:Cli.*Compress*:PressReference.*", "decode-time compression evicts the newest rows"),
    Mutation("decode-press-no-pooling", "src/press/decode_press.cpp",
             "pool1d(&per_q[static_cast<size_t>(g * prefix)], prefix, config_.pool_kernel, config_.pool_max);", "",
             "DecodePress.*:Cli.*Compress*:PressReference.*", "decode-time re-scoring without pooling"),
]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def make_tree() -> None:
    """A copy of the tracked files (those that changed get a new time, so the kept build
    folder rebuilds exactly them), with ../shared and models/ linked."""
    TREE.mkdir(parents=True, exist_ok=True)
    files = run(["git", "ls-files", "-z"], cwd=ROOT, check=True).stdout.split("\0")
    for f in filter(None, files):
        src, dst = ROOT / f, TREE / f
        if not src.is_file() or src.is_symlink():
            continue
        if dst.is_file() and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)
    shared = ROOT.parent / "shared"
    link = WORK / "shared"
    if link.is_symlink() or link.exists():
        link.unlink()
    if shared.exists():
        link.symlink_to(shared)
    if (ROOT / "models").exists() and not (TREE / "models").exists():
        (TREE / "models").symlink_to(ROOT / "models")


def build() -> subprocess.CompletedProcess:
    return run(["cmake", "--build", str(BUILD), "-j2", "--target", "kvsqueeze_tests", "kvsqueeze"])


def failing_tests(filter_: str) -> tuple:
    """(return code, names of the tests that failed)."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    try:
        p = run([str(BUILD / "tests" / "kvsqueeze_tests"), f"--gtest_filter={filter_}"], env=env, timeout=1200)
    except subprocess.TimeoutExpired:
        return -1, ["(timed out)"]
    names = sorted(set(re.findall(r"^\[  FAILED  \] (\S+?)(?: \(|,|$)", p.stdout, re.M)))
    return p.returncode, names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated mutation names")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    chosen = MUTATIONS
    if a.only:
        names = a.only.split(",")
        unknown = set(names) - {m.name for m in MUTATIONS}
        if unknown:
            sys.exit(f"unknown mutation(s): {', '.join(sorted(unknown))}")
        chosen = [m for m in MUTATIONS if m.name in names]
    if a.list:
        for m in chosen:
            print(f"{m.name:28} {m.file:32} {m.why}")
        return 0

    make_tree()
    for m in chosen:  # every mutation must apply to exactly one place
        n = (TREE / m.file).read_text().count(m.find)
        if n != 1:
            sys.exit(f"mutation {m.name}: its text occurs {n} times in {m.file} (the code moved? update the list)")
    cfg = run(["cmake", "-S", str(TREE), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release", "-DKVSQUEEZE_MICROBENCH=OFF"])
    if cfg.returncode != 0:
        sys.exit(cfg.stdout + cfg.stderr)
    print("building the unmutated tree ...", flush=True)
    b = build()
    if b.returncode != 0:
        sys.exit(b.stdout[-3000:] + b.stderr[-3000:])
    every_filter = ":".join(sorted({m.tests for m in chosen}))
    rc, failed = failing_tests(every_filter)
    if rc != 0:
        sys.exit(f"the unmutated tree already fails: {', '.join(failed)}")

    rows, survived = [], []
    for m in chosen:
        path = TREE / m.file
        original = path.read_text()
        path.write_text(original.replace(m.find, m.replace))
        try:
            b = build()
            if b.returncode != 0:
                result = "does not compile"
                survived.append(m.name)
            else:
                rc, failed = failing_tests(m.tests)
                result = ", ".join(failed) if rc != 0 else "SURVIVED"
                if rc == 0:
                    survived.append(m.name)
        finally:
            path.write_text(original)
            os.utime(path)  # make sees the restored file as new
        rows.append((m.name, m.why, result))
        print(f"{m.name:28} {result}", flush=True)
    build()
    print("\n| mutation | the bug | caught by |\n|---|---|---|")
    for name, why, result in rows:
        print(f"| {name} | {why} | {result} |")
    if survived:
        print(f"\n{len(survived)} of {len(rows)} mutations survived: {', '.join(survived)}")
        return 1
    print(f"\nall {len(rows)} mutations caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
