#!/usr/bin/env python3
"""Run kvpress on the samples kvsqueeze exported, on the same GGUF weights and token ids.

    run_kvpress.py -m MODEL.gguf --input samples.jsonl --presets none,snapkv --ratios 0.5 \
        --modes aware,agnostic --out kvpress.jsonl

One JSON line per sample x preset x ratio x mode, shaped like kvsqueeze's eval records.
Runs inside the venv of setup_venv.sh. See README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # GGUF dequantisation draws a bar per tensor

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, DynamicCache  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_vocab import GgufVocab  # noqa: E402
from kept import KeptRecorder  # noqa: E402
from presses import PRESETS, attach, is_sliding, make_press  # noqa: E402


def string_match_all(prediction: str, answers: list[str]) -> float:
    """RULER's metric as kvsqueeze scores it: % of references found, ASCII case folded."""
    if not answers:
        return 0.0
    fold = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    p = prediction.translate(fold)
    return 100.0 * sum(a.translate(fold) in p for a in answers) / len(answers)


def load_model(path: str):
    folder, name = os.path.split(os.path.abspath(path))
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.eval()


def cache_entries(cache) -> int:
    return sum(layer.keys.shape[1] * layer.keys.shape[2] for layer in cache.layers if layer.keys is not None)


@torch.inference_mode()
def run_one(model, vocab: GgufVocab, sample: dict, press, agnostic: bool, recorder: KeptRecorder | None):
    ctx, q = sample["context_ids"], sample["question_ids"]
    stop = vocab.stop_ids() | set(_as_list(model.generation_config.eos_token_id))
    cache = DynamicCache(config=model.config)
    first = ctx if agnostic else ctx + q
    hook = recorder.hook if recorder else None
    t0 = time.perf_counter()
    # The press acts after each layer's attention over the whole prompt, then only
    # what is stored shrinks (kvpress's prefill hook).
    with attach(press, model, hook):
        out = model(input_ids=torch.tensor([first]), past_key_values=cache, logits_to_keep=1)
    kept = cache_entries(cache) - _masked(model)
    n = len(ctx) + len(q)
    pos = len(first)  # true positions continue after the prompt, not at the compressed length
    if agnostic:
        # transformers builds one causal mask for all full-attention layers, sized by
        # the first; when a press left them different lengths (PyramidKV) a chunk
        # cannot be masked, so the question is read a token at a time (same maths).
        chunks = [q] if _even_lengths(model, cache) else [[t] for t in q]
        for c in chunks:
            out = model(input_ids=torch.tensor([c]), past_key_values=cache,
                        position_ids=torch.arange(pos, pos + len(c)).unsqueeze(0), logits_to_keep=1)
            pos += len(c)
    generated = []
    for _ in range(sample["max_new_tokens"]):
        tok = int(out.logits[0, -1].argmax())
        if tok in stop:
            break
        generated.append(tok)
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=cache,
                    position_ids=torch.tensor([[pos]]))
        pos += 1
    seconds = time.perf_counter() - t0
    return vocab.decode(generated), seconds, kept


def _as_list(x):
    return [] if x is None else x if isinstance(x, list) else [x]


def _language_layers(model):
    return (model.model.language_model if hasattr(model.model, "language_model") else model.model).layers


def _even_lengths(model, cache) -> bool:
    full = [c.keys.shape[2] for c, layer in zip(cache.layers, _language_layers(model)) if not is_sliding(layer)]
    return len(set(full)) <= 1


def _masked(model) -> int:
    """Entries Ada-KV style presses mask instead of evicting (they stay in memory)."""
    total = 0
    for layer in _language_layers(model):
        m = getattr(layer.self_attn, "masked_key_indices", None)
        if m is not None:
            total += len(m[2])
    return total


def _reset_masks(model):
    for layer in _language_layers(model):
        layer.self_attn.masked_key_indices = None


def run_key(r: dict) -> tuple:
    return (r["model"], r["task"], r["subtask"], r["sample"], r["preset"], r["ratio"], r["question_agnostic"],
            r["window"], r["pool_kernel"], r["alpha"])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", required=True, help="GGUF file (the one kvsqueeze exported the samples with)")
    p.add_argument("--input", required=True, help="samples JSONL from `kvsqueeze eval ... --export-samples`")
    p.add_argument("--out", help="results JSONL (appended; runs already in it are skipped)")
    p.add_argument("--presets", default="none,snapkv,ada-snapkv", help=f"comma-separated, of: {','.join(PRESETS)}")
    p.add_argument("--ratios", default="0.5", help="shares of the prompt KEPT (kvsqueeze's --ratio), comma-separated")
    p.add_argument("--modes", default="aware", help="aware, agnostic or aware,agnostic")
    p.add_argument("--window", type=int, default=32, help="SnapKV observation window (kvpress default 64)")
    p.add_argument("--kernel", type=int, default=7, help="SnapKV pooling kernel, avg-pool (kvpress default 5)")
    p.add_argument("--alpha", type=float, default=0.2, help="Ada-KV safeguard")
    p.add_argument("--beta", type=float, default=20, help="PyramidKV steepness")
    p.add_argument("--limit", type=int, default=0, help="first N samples only (0: all)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--dump-kept", help="write the kept positions of the first run (one sample, preset, ratio, mode) "
                                       "in the shape of kvsqueeze's --dump-selection, then stop")
    p.add_argument("--sample", help="with --dump-kept: the sample id to use (default: the first)")
    a = p.parse_args(argv)
    a.presets = [s for s in a.presets.split(",") if s]
    a.ratios = [float(r) for r in a.ratios.split(",") if r]
    a.modes = [m for m in a.modes.split(",") if m]
    if any(m not in ("aware", "agnostic") for m in a.modes):
        p.error("--modes takes aware and/or agnostic")
    if not a.out and not a.dump_kept:
        p.error("give --out (results) or --dump-kept")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    samples = [json.loads(line) for line in open(a.input) if line.strip()]
    if a.sample:
        samples = [s for s in samples if s["sample"] == a.sample]
        if not samples:
            sys.exit(f"sample '{a.sample}' is not in {a.input}")
    if a.limit:
        samples = samples[: a.limit]
    for pr in a.presets:
        make_press(pr, a.ratios[0] if pr != "none" else None, a.window, a.kernel, a.alpha, a.beta)  # fail early

    done = set()
    if a.out and os.path.exists(a.out):
        done = {run_key(json.loads(line)) for line in open(a.out) if line.strip()}
    t = time.perf_counter()
    model = load_model(a.model)
    vocab = GgufVocab(a.model)
    print(f"loaded {os.path.basename(a.model)} in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    out = open(a.out, "a") if a.out else None
    for s in samples:
        for mode in a.modes:
            agnostic = mode == "agnostic"
            for pr in a.presets:
                for ratio in ([None] if pr == "none" else a.ratios):
                    rec = {"engine": "kvpress", "model": os.path.basename(a.model), "task": s.get("task", "ruler"),
                           "subtask": s.get("subtask", ""), "sample": s["sample"], "preset": pr, "budget": None,
                           "ratio": ratio, "compression_ratio": None if ratio is None else round(1 - ratio, 6),
                           "question_agnostic": agnostic, "window": a.window, "pool_kernel": a.kernel,
                           "pool": "avg", "gqa_reduce": "mean", "alpha": a.alpha}
                    if not a.dump_kept and run_key(rec) in done:
                        continue
                    press = make_press(pr, ratio, a.window, a.kernel, a.alpha, a.beta)
                    recorder = KeptRecorder(press) if a.dump_kept and press is not None else None
                    _reset_masks(model)
                    pred, secs, kept = run_one(model, vocab, s, press, agnostic, recorder)
                    n = len(s["context_ids"]) + len(s["question_ids"])
                    score = string_match_all(pred, s["answers"])
                    rec.update({"score": score, "metric": s.get("metric", "string_match_all"),
                                "metrics": {s.get("metric", "string_match_all"): score},
                                "prediction": pred.encode()[:400].decode("utf-8", "ignore"), "answers": s["answers"],
                                "prompt_tokens": n, "length": s.get("length"), "depth": s.get("depth"),
                                "kv_entries": kept, "seconds": round(secs, 3),
                                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
                    print(f"{s['sample']} {mode} {pr} r={ratio}: {score:.0f} {pred!r} ({secs:.1f} s)", file=sys.stderr)
                    if out:
                        out.write(json.dumps(rec) + "\n")
                        out.flush()
                    if a.dump_kept:
                        if recorder is None:
                            sys.exit("--dump-kept needs a preset other than none first in --presets")
                        recorder.write(a.dump_kept, pr, {"sample": s["sample"], "ratio": ratio,
                                                         "question_agnostic": agnostic, "window": a.window,
                                                         "pool_kernel": a.kernel, "alpha": a.alpha})
                        print(f"kept positions of {len(recorder.layers)} layers -> {a.dump_kept}", file=sys.stderr)
                        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
