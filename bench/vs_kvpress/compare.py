#!/usr/bin/env python3
"""kvsqueeze and kvpress side by side, one command: answers, kept sets, cost, logits.

    bench/vs_kvpress/compare.py [-m MODEL.gguf] [--out DIR] [--samples 14]

Stages (each resumes from what DIR already holds; --stages picks some):
  export   kvsqueeze writes the RULER samples both engines read (token ids, answers)
  answers  both engines answer them under every preset x ratio (question-aware)
  h2o      both engines with H2O on the retrieval samples of the first length (kvpress
           needs eager attention for it: a separate model load, n x n weights per layer)
  f16      kvsqueeze again on an F16 copy of the weights (no 8-bit activations), retrieval
           samples: how much of the difference is arithmetic
  kept     positions kept per layer and KV head on a few samples, both engines
  cost     prefill time, decode speed, KV bytes and peak memory at --cost-lengths
  logits   full-cache logits of one sample, kvsqueeze against transformers
  report   the tables (DIR/comparison.md) and the plot (DIR/comparison.png)
The kvpress side runs in the venv of setup_venv.sh (created on first use); this driver
needs only python3 (and matplotlib for the plot). See README.md and docs/COMPARISON.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from compare_kept import jaccard_by_layer, positions  # noqa: E402
STAGES = ("export", "answers", "h2o", "f16", "kept", "cost", "logits", "report")
PRESETS = "none,snapkv,ada-snapkv,criticalkv,critical-ada-snapkv,pyramidkv,streamingllm,knorm,tova"
RETRIEVAL = "niah_single_number,niah_single_word,niah_multikey"
LONG_ANSWERS = "variable_tracking,common_words"  # 48 and 120 answer tokens: fewer samples
COST_PRESETS = "none,snapkv,ada-snapkv"
F16_PRESETS = "none,snapkv,critical-ada-snapkv"  # one that agrees by definition, one that does not


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--out", default="/tmp/vs_kvpress", help="work folder (default /tmp/vs_kvpress)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    p.add_argument("--samples", type=int, default=14,
                   help=f"samples per length of each of {RETRIEVAL} (default 14)")
    p.add_argument("--long-samples", type=int, help=f"samples per length of {LONG_ANSWERS} "
                                                    "(default: 4, or --samples when that is smaller)")
    p.add_argument("--lengths", default="2048,4096", help="prompt lengths of the answer samples")
    p.add_argument("--presets", default=PRESETS)
    p.add_argument("--ratios", default="0.25,0.5", help="shares of the prompt kept")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--kernel", type=int, default=15, help="pooling kernel, average pooling on both sides")
    p.add_argument("--kept-samples", type=int, default=2, help="samples whose kept positions are compared")
    p.add_argument("--cost-lengths", default="2048,4096,8192")
    p.add_argument("--cost-presets", default=COST_PRESETS)
    p.add_argument("--cost-ratio", type=float, default=0.25)
    p.add_argument("--decode", type=int, default=32, help="decode steps timed in the cost stage")
    p.add_argument("--threads", type=int, default=2, help="threads of each engine (torch's set to match)")
    p.add_argument("--haystack", default=os.path.join(ROOT, "models/paul_graham_essays.txt"))
    p.add_argument("--kvsqueeze", default=os.environ.get("KVSQUEEZE", os.path.join(ROOT, "build/release/src/kvsqueeze")))
    p.add_argument("--python", default=os.path.join(os.environ.get(
        "VS_KVPRESS_VENV", os.path.expanduser("~/.cache/kvsqueeze/vs-kvpress-venv")), "bin/python"),
        help="the venv's python (setup_venv.sh)")
    a = p.parse_args(argv)
    a.stages = [s for s in a.stages.split(",") if s]
    bad = [s for s in a.stages if s not in STAGES]
    if bad:
        p.error(f"unknown stage {bad[0]} (stages: {', '.join(STAGES)})")
    if a.long_samples is None:
        a.long_samples = min(4, a.samples)
    for path, what in ((a.model, "model"), (a.haystack, "haystack"), (a.kvsqueeze, "kvsqueeze binary")):
        if not os.path.exists(path):
            p.error(f"{what} {path} does not exist (scripts/setup.sh fetches the models and builds)")
    return a


def ensure_venv(a):
    """The kvpress side's venv: created by setup_venv.sh on first use (needs PyPI once)."""
    if not set(a.stages) & {"answers", "kept", "cost", "logits"} or os.path.exists(a.python):
        return
    venv = os.path.dirname(os.path.dirname(a.python))
    print(f"no {a.python}: creating the venv with setup_venv.sh", file=sys.stderr)
    subprocess.run([f"{HERE}/setup_venv.sh"], check=True, env={**os.environ, "VS_KVPRESS_VENV": venv})


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Runs a step under nice with passive OpenMP waits (two engines share the cores)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **kw.pop("env", {})}
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(["nice", "-n", "10", *cmd], env=env, check=True, text=True, **kw)


def match_flags(a) -> list[str]:
    """kvsqueeze flags that give its presses kvpress's definitions."""
    return ["--window", str(a.window), "--pool-kernel", str(a.kernel), "--pool", "avg", "--gqa-reduce", "mean"]


def sample_groups(a):
    common = ["-m", a.model, "--chat", "off", "--haystack", a.haystack, "--lengths", a.lengths]
    return [("retrieval", common + ["--subtasks", RETRIEVAL, "--samples", str(a.samples)]),
            ("long", common + ["--subtasks", LONG_ANSWERS, "--samples", str(a.long_samples)])]


def load_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path) if line.strip()] if os.path.exists(path) else []


def write_jsonl(path: str, rows, mode: str = "w") -> None:
    with open(path, mode) as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def ksq_eval(a, args: list[str], presets: str, out: str) -> None:
    """kvsqueeze's side of an answers grid: eval ruler with the matched press settings."""
    sh([a.kvsqueeze, "eval", "ruler", *args, "--presets", presets, "--ratios", a.ratios, *match_flags(a),
        "-t", str(a.threads), "--no-progress", "--out", out], stdout=subprocess.DEVNULL)


def kvpress(a, samples: str, presets: str, ratios: str, *extra: str, **kw) -> subprocess.CompletedProcess:
    """kvpress's side: run_kvpress.py on a samples file, question-aware, matched settings."""
    return sh([a.python, f"{HERE}/run_kvpress.py", "-m", a.model, "--input", samples, "--presets", presets,
               "--ratios", ratios, "--modes", "aware", "--window", str(a.window), "--kernel", str(a.kernel),
               "--threads", str(a.threads), *extra], **kw)


def stage_export(a):
    for name, args in sample_groups(a):
        sh([a.kvsqueeze, "eval", "ruler", *args, "--export-samples", f"{a.out}/samples_{name}.jsonl"],
           stdout=subprocess.DEVNULL)
    sh([a.kvsqueeze, "eval", "ruler", "-m", a.model, "--chat", "off", "--haystack", a.haystack,
        "--lengths", a.cost_lengths,
        "--subtasks", "niah_single_number", "--samples", "1", "--export-samples", f"{a.out}/samples_cost.jsonl"],
       stdout=subprocess.DEVNULL)


def stage_answers(a):
    for name, args in sample_groups(a):
        ksq_eval(a, args, a.presets, f"{a.out}/kvsqueeze.jsonl")
        kvpress(a, f"{a.out}/samples_{name}.jsonl", a.presets, a.ratios, "--out", f"{a.out}/kvpress.jsonl")


def stage_h2o(a):
    length = a.lengths.split(",")[0]
    name, args = sample_groups(a)[0]
    args = [length if x == a.lengths else x for x in args]
    ksq_eval(a, args, "h2o", f"{a.out}/kvsqueeze.jsonl")
    subset = f"{a.out}/samples_{name}_{length}.jsonl"
    write_jsonl(subset, (s for s in load_jsonl(f"{a.out}/samples_{name}.jsonl") if str(s["length"]) == length))
    kvpress(a, subset, "h2o", a.ratios, "--out", f"{a.out}/kvpress.jsonl")


def stage_f16(a):
    stem = os.path.basename(a.model).removesuffix(".gguf")
    stem = re.sub(r"\.(Q|IQ|F|BF)[0-9A-Z_]*$", "", stem, flags=re.IGNORECASE)  # SmolLM2-135M-Instruct.Q4_1
    copy = f"{a.out}/{stem}.F16.gguf"
    if not os.path.exists(copy):
        sh([a.kvsqueeze, "convert", "dequantize", "-m", a.model, "--type", "f16", "--out", copy],
           stdout=subprocess.DEVNULL)
    name, args = sample_groups(a)[0]
    args = [copy if x == a.model else x for x in args]
    ksq_eval(a, args, F16_PRESETS, f"{a.out}/kvsqueeze_f16.jsonl")


def kept_samples(a) -> list[dict]:
    """Spread over subtasks and lengths: every k-th retrieval sample."""
    samples = load_jsonl(f"{a.out}/samples_retrieval.jsonl")
    step = max(1, len(samples) // max(1, a.kept_samples))
    return samples[::step][: a.kept_samples]


def write_prompt(a, s: dict) -> str:
    """The question-aware prompt as text; checked to tokenize to the exported ids."""
    path = f"{a.out}/kept/{s['sample']}.txt"
    with open(path, "w") as f:
        f.write(s["context"] + s["question"])
    ids = json.loads(subprocess.run([a.kvsqueeze, "tokenize", "-m", a.model, "-f", path], check=True,
                                    capture_output=True, text=True).stdout)
    if ids != s["context_ids"] + s["question_ids"]:
        raise SystemExit(f"{path} does not tokenize to the sample's ids (export with --chat off)")
    return path


def cut_distances(ks: dict, kp: dict) -> list[int]:
    """For each position exactly one engine keeps: how many places it sits from kvpress's
    cut in kvpress's own score order (0: the first dropped or the last kept one)."""
    theirs = {l["layer"]: l["heads"] for l in kp["layers"]}
    out = []
    for layer in ks["layers"]:
        for h, g in zip(layer["heads"], theirs.get(layer["layer"], [])):
            rank = g.get("score_rank")
            if rank is None:
                return []
            x, y = set(h["positions"]), set(g["positions"])
            cut = len(y)
            out += [rank[p] - cut for p in x - y] + [cut - 1 - rank[p] for p in y - x]
    return out


def stage_kept(a):
    """Per sample: kvpress keeps-dumps every preset x ratio in one process (one shared
    prefill), kvsqueeze one `generate --dump-selection` each; then Jaccard per head."""
    folder = f"{a.out}/kept"
    os.makedirs(folder, exist_ok=True)
    path = f"{a.out}/kept.jsonl"
    done = {(r["sample"], r["preset"], r["ratio"]) for r in load_jsonl(path)}
    presets = [p for p in a.presets.split(",") if p != "none"]
    ratios = [float(r) for r in a.ratios.split(",")]
    with open(path, "a") as out:
        for s in kept_samples(a):
            todo = [(pr, r) for pr in presets for r in ratios if (s["sample"], pr, r) not in done]
            if not todo:
                continue
            prompt = write_prompt(a, s)
            one = f"{folder}/{s['sample']}.jsonl"
            write_jsonl(one, [s])
            kvpress(a, one, ",".join(presets), a.ratios, "--dump-kept", folder, stderr=subprocess.DEVNULL)
            for pr, ratio in todo:
                ks_file = f"{folder}/ksq_{s['sample']}_{pr}_{ratio:g}.json"
                kp_file = f"{folder}/kept_{s['sample']}_{pr}_{ratio:g}_aware.json"
                sh([a.kvsqueeze, "generate", "-m", a.model, "-f", prompt, "-n", "0", "--greedy", "--press", pr,
                    "--ratio", str(ratio), *match_flags(a), "-t", str(a.threads), "--dump-selection", ks_file],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                ks, kp = json.load(open(ks_file)), json.load(open(kp_file))
                by_layer = jaccard_by_layer(positions(ks), positions(kp))

                def kept(j):
                    return sum(len(h["positions"]) for l in j["layers"] if l["layer"] in by_layer for h in l["heads"])

                out.write(json.dumps({"sample": s["sample"], "preset": pr, "ratio": ratio,
                                      "prompt_tokens": len(s["context_ids"]) + len(s["question_ids"]),
                                      "kept_kvsqueeze": kept(ks), "kept_kvpress": kept(kp),
                                      "cut_distances": sorted(cut_distances(ks, kp)),
                                      "jaccard": {str(l): js for l, js in by_layer.items()}}) + "\n")
                out.flush()


KSQ_STATS = {
    "prompt": re.compile(r"prompt: (\d+) tokens, ([\d.]+) tokens/s \| decode: (\d+) tokens, ([\d.]+) tokens/s"),
    "kv": re.compile(r"KV cache: [\d.]+ MiB before compression, ([\d.]+) MiB after"),
    "rss": re.compile(r"peak resident memory: ([\d.]+) MiB"),
}


def stage_cost(a):
    path = f"{a.out}/cost.jsonl"
    done = {(r["engine"], r["preset"], r["prompt_tokens_target"]) for r in load_jsonl(path)}
    samples = {s["length"]: s for s in load_jsonl(f"{a.out}/samples_cost.jsonl")}
    os.makedirs(f"{a.out}/cost", exist_ok=True)
    for length in (int(x) for x in a.cost_lengths.split(",")):
        s = samples[length]
        one = f"{a.out}/cost/{length}.jsonl"
        write_jsonl(one, [s])
        prompt = f"{a.out}/cost/{length}.txt"
        with open(prompt, "w") as f:
            f.write(s["context"] + s["question"])
        for pr in a.cost_presets.split(","):
            ratio = [] if pr == "none" else ["--ratio", str(a.cost_ratio)]
            if ("kvsqueeze", pr, length) not in done:
                r = sh([a.kvsqueeze, "generate", "-m", a.model, "-f", prompt, "-n", str(a.decode), "--greedy",
                        "--ignore-eos", "--press", pr, *ratio, *match_flags(a), "-t", str(a.threads)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                m = KSQ_STATS["prompt"].search(r.stderr)
                n, ptps, d, dtps = int(m[1]), float(m[2]), int(m[3]), float(m[4])
                rec = {"engine": "kvsqueeze", "preset": pr, "ratio": None if pr == "none" else a.cost_ratio,
                       "prompt_tokens_target": length, "prompt_tokens": n, "prefill_seconds": round(n / ptps, 3),
                       "decode_tokens": d, "decode_tps": dtps, "kv_mib": float(KSQ_STATS["kv"].search(r.stderr)[1]),
                       "peak_rss_mib": float(KSQ_STATS["rss"].search(r.stderr)[1]), "threads": a.threads,
                       "kv_type": "f16"}
                write_jsonl(path, [rec], "a")
            if ("kvpress", pr, length) not in done:
                tmp = f"{a.out}/cost/kvpress_{pr}_{length}.jsonl"
                if os.path.exists(tmp):
                    os.remove(tmp)
                kvpress(a, one, pr, str(a.cost_ratio), "--direct", "--force-decode", str(a.decode), "--out", tmp,
                        stderr=subprocess.DEVNULL)
                r = load_jsonl(tmp)[0]
                rec = {"engine": "kvpress", "preset": pr, "ratio": r["ratio"], "prompt_tokens_target": length,
                       "prompt_tokens": r["prompt_tokens"], "prefill_seconds": r["prefill_seconds"],
                       "decode_tokens": r["decode_tokens"], "decode_tps": round(r["decode_tokens"] / r["decode_seconds"], 1),
                       "kv_mib": round(r["kv_bytes"] / 2**20, 2), "peak_rss_mib": r["peak_rss_mib"],
                       "load_rss_mib": r["load_rss_mib"], "threads": a.threads, "kv_type": "f32"}
                write_jsonl(path, [rec], "a")


def stage_logits(a):
    s = load_jsonl(f"{a.out}/samples_retrieval.jsonl")[0]
    ids = f"{a.out}/logits_ids.txt"
    with open(ids, "w") as f:
        f.write(",".join(map(str, s["context_ids"] + s["question_ids"])))
    sh([a.kvsqueeze, "logits", "-m", a.model, "--ids-file", ids, "--kv-type", "f32", "-t", str(a.threads),
        "--out", f"{a.out}/logits_kvsqueeze.f32"], stdout=subprocess.DEVNULL)
    r = sh([a.python, f"{HERE}/compare_logits.py", "-m", a.model, "--ids-file", ids, "--logits",
            f"{a.out}/logits_kvsqueeze.f32", "--threads", str(a.threads)], stdout=subprocess.PIPE)
    os.remove(f"{a.out}/logits_kvsqueeze.f32")
    with open(f"{a.out}/logits.txt", "w") as f:
        f.write(r.stdout)
    print(r.stdout)


def stage_report(a):
    # The tables and plot need matplotlib, which setup.sh installs for Debian's python3
    # (a pyenv or venv python3 earlier on PATH may lack it).
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    subprocess.run([python, f"{HERE}/report.py", a.out], check=True)


def main(argv=None) -> int:
    a = parse_args(argv)
    ensure_venv(a)
    os.makedirs(a.out, exist_ok=True)
    for stage in STAGES:
        if stage in a.stages:
            print(f"== {stage}", file=sys.stderr, flush=True)
            globals()[f"stage_{stage}"](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
