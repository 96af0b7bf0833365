#!/usr/bin/python3
"""Runs the quality tables of docs/RESULTS.md for one model, in four resumable stages,
each a `kvsqueeze eval` grid appending to a JSONL file in OUT:

  baseline.jsonl  full cache only: every RULER subtask and NIAH at each length (raw text
                  prompts), and NIAH read through the model's chat template
  grid.jsonl      every preset at budgets and ratios, question-aware and question-agnostic,
                  at --grid-length, for the tasks the full cache solves (mean >= 50 there)
  fidelity.jsonl  the grid's presets on the generation side: windows of the haystack text
                  compressed at --grid-length tokens, the next 64 tokens teacher-forced,
                  top-1 agreement and KL against the full cache
  heatmap.jsonl   NIAH depth x length for the headline presets at two budgets
  pooling.jsonl   NIAH at --grid-length for SnapKV and Ada-SnapKV with a wider pooling
                  kernel (15 instead of 7): do the needle's later tokens survive then?

A stage that was interrupted continues where it stopped on the next run (eval skips the
runs already in its file). Wall times go to OUT/wall_times.json.
Then: tools/results_report.py writes docs/RESULTS.md from the files.

usage: bench/quality_tables.py -m smollm2-135m-instruct --out docs/results/smollm2-135m-instruct
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import time

RULER_SUBTASKS = ["niah_single_number", "niah_single_word", "niah_single_uuid", "niah_multikey", "niah_multivalue",
                  "niah_multiquery", "variable_tracking", "common_words", "frequent_words"]
GRID_PRESETS = "all"
HEATMAP_PRESETS = "streamingllm,snapkv,pyramidkv,ada-snapkv,ada-pyramidkv,lava"
POOLING_KERNEL = 15  # the pooling stage's kernel (the presets' default is 7)
SOLVED = 50.0  # full-cache mean score from which a task enters the grid


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True, help="GGUF file or known model name")
    ap.add_argument("--out", required=True, help="folder for the JSONL files")
    ap.add_argument("--kvsqueeze", default="build/release/src/kvsqueeze")
    ap.add_argument("--haystack", default=None, help="filler text (default: the Paul Graham essays in the model cache)")
    ap.add_argument("--lengths", default="2048,4096,8192", help="baseline prompt lengths")
    ap.add_argument("--chat-lengths", default=None, help="lengths of the chat-template NIAH row (default: --lengths)")
    ap.add_argument("--ruler-lengths", default=None, help="lengths of the RULER baseline (default: --lengths)")
    ap.add_argument("--heatmap-lengths", default=None, help="lengths of the heatmap stage (default: --lengths)")
    ap.add_argument("--baseline-samples", type=int, default=3, help="RULER samples per subtask and length (full cache)")
    ap.add_argument("--grid-length", type=int, default=4096)
    ap.add_argument("--grid-tasks", default=None,
                    help="comma-separated tasks (niah, or RULER subtasks) the grid may run, among those the full "
                         "cache solves (default: all of them)")
    ap.add_argument("--grid-samples", type=int, default=2, help="RULER samples per subtask in the grid")
    ap.add_argument("--budgets", default="128,256,512,1024")
    ap.add_argument("--ratios", default="0.1,0.25,0.5")
    ap.add_argument("--depths", default="0,25,50,75,100")
    ap.add_argument("--heatmap-budgets", default="256,1024")
    ap.add_argument("--fidelity-samples", type=int, default=5, help="text windows of the fidelity stage")
    ap.add_argument("--stages", default="baseline,grid,fidelity,heatmap,pooling")
    ap.add_argument("-t", "--threads", type=int, default=0)
    a = ap.parse_args()
    # A larger model may not afford every stage at every length on two cores.
    a.chat_lengths = a.chat_lengths or a.lengths
    a.ruler_lengths = a.ruler_lengths or a.lengths
    a.heatmap_lengths = a.heatmap_lengths or a.lengths
    return a


def model_cache_dir():
    return os.environ.get("KVSQUEEZE_MODELS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")


def eval_cmd(a, task, out, *extra):
    filler = ["--haystack", a.haystack] if task in ("niah", "ruler") else ["--text", a.haystack]
    cmd = [a.kvsqueeze, "eval", task, "-m", a.model, *filler, "--no-progress", "--out", out]
    if a.threads:
        cmd += ["-t", str(a.threads)]
    return cmd + [str(x) for x in extra]


def run(cmd, stage, times, required=True):
    print("+", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    r = subprocess.run(cmd)
    times[stage] = times.get(stage, 0.0) + time.monotonic() - t0
    if r.returncode != 0:
        if required:
            sys.exit(f"error: {stage}: kvsqueeze eval failed (exit {r.returncode})")
        print(f"note: {stage}: skipped (exit {r.returncode})", flush=True)


def load(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def solved_tasks(baseline, length):
    """(task, subtask) pairs whose full-cache mean at `length` (raw prompts) reaches SOLVED."""
    scores = collections.defaultdict(list)
    for r in baseline:
        if r["preset"] == "none" and r.get("length") == length and "chat" not in r:
            scores[(r["task"], r["subtask"])].append(r["score"])
    return sorted(k for k, v in scores.items() if sum(v) / len(v) >= SOLVED)


def main():
    a = parse_args()
    if a.haystack is None:
        a.haystack = os.path.join(model_cache_dir(), "paul_graham_essays.txt")
    if not os.path.exists(a.haystack):
        sys.exit(f"error: no haystack at {a.haystack} (scripts/fetch_models.sh paul-graham-essays)")
    os.makedirs(a.out, exist_ok=True)
    stages = a.stages.split(",")
    times_path = os.path.join(a.out, "wall_times.json")
    times = json.load(open(times_path)) if os.path.exists(times_path) else {}
    baseline, grid, fidelity, heatmap, pooling = (os.path.join(a.out, f) for f in (
        "baseline.jsonl", "grid.jsonl", "fidelity.jsonl", "heatmap.jsonl", "pooling.jsonl"))
    raw = ["--chat", "off"]  # completion prompts: what both small models answer (the chat rows say why)

    def save_times():
        # Merged with what is on disk: another stage may have run meanwhile in another process.
        on_disk = json.load(open(times_path)) if os.path.exists(times_path) else {}
        on_disk.update({k: round(v, 1) for k, v in times.items()})
        with open(times_path, "w") as f:
            json.dump(on_disk, f, indent=1)

    if "baseline" in stages:
        run(eval_cmd(a, "niah", baseline, "--presets", "none", "--lengths", a.lengths, "--depths", a.depths, *raw),
            "baseline", times)
        # Through the chat template (or the vocabulary's turn markers); a model with neither has no chat row.
        run(eval_cmd(a, "niah", baseline, "--presets", "none", "--lengths", a.chat_lengths, "--depths",
                     a.depths, "--chat", "on"), "baseline", times, required=False)
        run(eval_cmd(a, "ruler", baseline, "--presets", "none", "--lengths", a.ruler_lengths, "--samples",
                     a.baseline_samples, *raw), "baseline", times)
        save_times()

    if "grid" in stages:
        solved = solved_tasks(load(baseline), a.grid_length)
        if a.grid_tasks:
            solved = [(t, st) for t, st in solved if (st or t) in a.grid_tasks.split(",")]
        print(f"tasks the full cache solves at {a.grid_length} tokens:", solved or "none", flush=True)
        subtasks = [s for t, s in solved if t == "ruler"]
        for mode in ([], ["--question-agnostic"]):
            if ("niah", "") in solved:
                run(eval_cmd(a, "niah", grid, "--presets", GRID_PRESETS, "--budgets", a.budgets, "--ratios", a.ratios,
                             "--lengths", a.grid_length, "--depths", a.depths, *raw, *mode), "grid", times)
            if subtasks:
                run(eval_cmd(a, "ruler", grid, "--presets", GRID_PRESETS, "--budgets", a.budgets, "--ratios",
                             a.ratios, "--lengths", a.grid_length, "--subtasks", ",".join(subtasks), "--samples",
                             a.grid_samples, *raw, *mode), "grid", times)
            save_times()

    if "fidelity" in stages:
        cmd = eval_cmd(a, "fidelity", fidelity, "--presets", GRID_PRESETS, "--budgets", a.budgets, "--ratios", a.ratios,
                       "--prompt-tokens", a.grid_length, "--samples", a.fidelity_samples)
        run(cmd, "fidelity", times)
        save_times()

    if "heatmap" in stages:
        run(eval_cmd(a, "niah", heatmap, "--presets", HEATMAP_PRESETS, "--budgets", a.heatmap_budgets, "--lengths",
                     a.heatmap_lengths, "--depths", a.depths, *raw), "heatmap", times)
        save_times()
    if "pooling" in stages:
        run(eval_cmd(a, "niah", pooling, "--presets", "snapkv,ada-snapkv", "--budgets", "256,1024", "--ratios", "0.25",
                     "--lengths", a.grid_length, "--depths", a.depths, "--pool-kernel", POOLING_KERNEL, *raw),
            "pooling", times)
        save_times()
    print(json.dumps(times))


if __name__ == "__main__":
    main()
