#!/usr/bin/env python3
"""Run kvpress on the samples kvsqueeze exported, on the same GGUF weights and token ids.

    run_kvpress.py -m MODEL.gguf --input samples.jsonl --presets none,snapkv --ratios 0.5 \
        --modes aware,agnostic --out kvpress.jsonl

One JSON line per sample x preset x ratio x mode, shaped like kvsqueeze's eval records.
Runs inside the venv of setup_venv.sh. See README.md.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
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
from presses import EAGER_ONLY, PRESETS, attach, is_sliding, make_press  # noqa: E402


def string_match_all(prediction: str, answers: list[str]) -> float:
    """RULER's metric as kvsqueeze scores it: % of references found, ASCII case folded."""
    if not answers:
        return 0.0
    fold = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    p = prediction.translate(fold)
    return 100.0 * sum(a.translate(fold) in p for a in answers) / len(answers)


def load_model(path: str, eager: bool = False):
    folder, name = os.path.split(os.path.abspath(path))
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    extra = {"attn_implementation": "eager"} if eager else {}
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, **extra)
    return model.eval()


def reset_peak_rss() -> float:
    """Frees what the allocator holds, resets the kernel's peak-RSS mark (VmHWM) and
    returns the resident MiB now: the GGUF load (dequantisation) peaks far above what a
    run needs, and getrusage's peak cannot be reset."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Resident peak since the last reset_peak_rss()."""
    return _status_mib("VmHWM")


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def cache_bytes(cache) -> int:
    """Bytes the cache tensors hold (masked Ada-KV entries included: they stay in memory)."""
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values)
               if t is not None)


def cache_entries(cache) -> int:
    return sum(layer.keys.shape[1] * layer.keys.shape[2] for layer in cache.layers if layer.keys is not None)


@torch.inference_mode()
def run_one(model, vocab: GgufVocab, sample: dict, press, agnostic: bool, recorder: KeptRecorder | None):
    """One run as kvpress's pipeline does it: the press hooked into this run's own prefill."""
    cache = DynamicCache(config=model.config)
    first = _first_chunk(sample, agnostic)
    hook = recorder.hook if recorder else None
    t0 = time.perf_counter()
    # The press acts after each layer's attention over the whole prompt, then only
    # what is stored shrinks (kvpress's prefill hook).
    with attach(press, model, hook):
        out = model(input_ids=torch.tensor([first]), past_key_values=cache, logits_to_keep=1)
    t1 = time.perf_counter()
    kept, kv_bytes = cache_entries(cache) - _masked(model), cache_bytes(cache)
    text, decoded = _answer(model, vocab, sample, cache, out.logits, agnostic)
    t2 = time.perf_counter()
    return text, {"seconds": round(t2 - t0, 3), "prefill_seconds": round(t1 - t0, 3),
                  "decode_seconds": round(t2 - t1, 3), "decode_tokens": decoded, "kv_bytes": kv_bytes}, kept


class SharedPrefill:
    """One full-cache prefill of a sample, replayed under each press.

    kvpress compresses in a forward hook after each layer's attention; the attention
    output (and so every later layer's input) is computed before the hook and does not
    depend on the press. So the prefill is run once with a recording hook, and each
    press's own forward_hook is then called on what it would have been given (the
    same kwargs, the same output), layer by layer, on a fresh copy of the full cache.
    `--check-replay` compares this with run_one on every run.
    """

    @torch.inference_mode()
    def __init__(self, model, sample: dict, agnostic: bool):
        self.calls: list[tuple] = []
        cache = DynamicCache(config=model.config)
        t0 = time.perf_counter()
        with attach(None, model, self._record):
            out = model(input_ids=torch.tensor([_first_chunk(sample, agnostic)]), past_key_values=cache,
                        logits_to_keep=1)
        self.seconds = time.perf_counter() - t0
        self.cache, self.logits = cache, out.logits

    def _record(self, module, args, kwargs, output):
        self.calls.append((module, args, dict(kwargs), output))

    @torch.inference_mode()
    def run(self, model, vocab: GgufVocab, sample: dict, press, agnostic: bool, recorder: KeptRecorder | None):
        t0 = time.perf_counter()
        cache = copy.deepcopy(self.cache)
        if press is not None:
            press.post_init_from_model(model)
            hook = recorder.hook if recorder else press.forward_hook
            for module, args, kwargs, output in self.calls:
                hook(module, args, {**kwargs, "past_key_values": cache}, output)
        t1 = time.perf_counter()
        kept, kv_bytes = cache_entries(cache) - _masked(model), cache_bytes(cache)
        text, decoded = _answer(model, vocab, sample, cache, self.logits, agnostic)
        t2 = time.perf_counter()
        return text, {"seconds": round(t2 - t0, 3), "prefill_seconds": round(self.seconds, 3),
                      "compress_seconds": round(t1 - t0, 3), "decode_seconds": round(t2 - t1, 3),
                      "decode_tokens": decoded, "kv_bytes": kv_bytes, "prefill": "shared"}, kept


def _first_chunk(sample: dict, agnostic: bool) -> list[int]:
    ctx, q = sample["context_ids"], sample["question_ids"]
    return ctx if agnostic else ctx + q


def _answer(model, vocab: GgufVocab, sample: dict, cache, logits, agnostic: bool) -> tuple[str, int]:
    """Greedy answer after the prefill: (agnostic) read the question, then decode.

    A sample with "force_decode" decodes exactly that many tokens, past any stop token
    (timing runs)."""
    force = sample.get("force_decode", 0)
    stop = set() if force else vocab.stop_ids() | set(_as_list(model.generation_config.eos_token_id))
    q = sample["question_ids"]
    pos = len(sample["context_ids"]) + (0 if agnostic else len(q))  # true positions, not the compressed length
    if agnostic:
        # transformers builds one causal mask for all full-attention layers, sized by
        # the first; when a press left them different lengths (PyramidKV) a chunk
        # cannot be masked, so the question is read a token at a time (same maths).
        chunks = [q] if _even_lengths(model, cache) else [[t] for t in q]
        for c in chunks:
            out = model(input_ids=torch.tensor([c]), past_key_values=cache,
                        position_ids=torch.arange(pos, pos + len(c)).unsqueeze(0), logits_to_keep=1)
            logits = out.logits
            pos += len(c)
    generated = []
    for _ in range(force or sample["max_new_tokens"]):
        tok = int(logits[0, -1].argmax())
        if tok in stop:
            break
        generated.append(tok)
        logits = model(input_ids=torch.tensor([[tok]]), past_key_values=cache,
                       position_ids=torch.tensor([[pos]])).logits
        pos += 1
    return vocab.decode(generated), len(generated)


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


def kept_file_name(sample: str, preset: str, ratio: float, mode: str) -> str:
    return f"kept_{sample}_{preset}_{ratio:g}_{mode}.json"


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
    p.add_argument("--direct", action="store_true",
                   help="prefill each run under its press (kvpress's pipeline) instead of one shared prefill "
                        "per sample replayed under each press")
    p.add_argument("--force-decode", type=int, default=0,
                   help="decode exactly N tokens, past stop tokens (timing; with --direct)")
    p.add_argument("--check-replay", action="store_true",
                   help="also run each run directly and stop if the answer or the kept count differ")
    p.add_argument("--dump-kept", metavar="DIR",
                   help="also write the positions each run keeps to DIR/kept_SAMPLE_PRESET_RATIO_MODE.json, "
                        "in the shape of kvsqueeze's --dump-selection")
    p.add_argument("--sample", help="only the sample with this id")
    a = p.parse_args(argv)
    a.presets = [s for s in a.presets.split(",") if s]
    a.ratios = [float(r) for r in a.ratios.split(",") if r]
    a.modes = [m for m in a.modes.split(",") if m]
    if any(m not in ("aware", "agnostic") for m in a.modes):
        p.error("--modes takes aware and/or agnostic")
    if not a.out and not a.dump_kept:
        p.error("give --out (results) and/or --dump-kept")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    samples = [json.loads(line) for line in open(a.input) if line.strip()]
    if a.dump_kept:
        os.makedirs(a.dump_kept, exist_ok=True)
    if a.sample:
        samples = [s for s in samples if s["sample"] == a.sample]
        if not samples:
            sys.exit(f"sample '{a.sample}' is not in {a.input}")
    if a.limit:
        samples = samples[: a.limit]
    if a.force_decode:
        samples = [{**s, "force_decode": a.force_decode} for s in samples]
    for pr in a.presets:
        make_press(pr, a.ratios[0] if pr != "none" else None, a.window, a.kernel, a.alpha, a.beta)  # fail early
    eager = any(pr in EAGER_ONLY for pr in a.presets)
    if eager and any(pr not in EAGER_ONLY + ("none",) for pr in a.presets):
        sys.exit(f"{', '.join(EAGER_ONLY)} need eager attention (the attention weights), which kvpress's Ada-KV "
                 "presses refuse: run them on their own, e.g. --presets none,h2o")
    if eager:
        a.direct = True  # a shared prefill would hold every layer's n x n attention weights

    done = set()
    if a.out and os.path.exists(a.out):
        done = {run_key(json.loads(line)) for line in open(a.out) if line.strip()}
    t = time.perf_counter()
    model = load_model(a.model, eager)
    vocab = GgufVocab(a.model)
    print(f"loaded {os.path.basename(a.model)} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    load_rss_mib = reset_peak_rss()

    out = open(a.out, "a") if a.out else None
    for s in samples:
        for mode in a.modes:
            agnostic = mode == "agnostic"
            shared = None
            for pr in a.presets:
                for ratio in ([None] if pr == "none" else a.ratios):
                    rec = {"engine": "kvpress", "model": os.path.basename(a.model), "task": s.get("task", "ruler"),
                           "subtask": s.get("subtask", ""), "sample": s["sample"], "preset": pr, "budget": None,
                           "ratio": ratio, "compression_ratio": None if ratio is None else round(1 - ratio, 6),
                           "question_agnostic": agnostic, "window": a.window, "pool_kernel": a.kernel,
                           "pool": "avg", "gqa_reduce": "mean", "alpha": a.alpha}
                    if run_key(rec) in done:
                        continue
                    press = make_press(pr, ratio, a.window, a.kernel, a.alpha, a.beta)
                    recorder = KeptRecorder(press) if a.dump_kept and press is not None else None
                    _reset_masks(model)
                    rss_before = reset_peak_rss()
                    if a.direct:
                        pred, times, kept = run_one(model, vocab, s, press, agnostic, recorder)
                    else:
                        shared = shared or SharedPrefill(model, s, agnostic)
                        pred, times, kept = shared.run(model, vocab, s, press, agnostic, recorder)
                        if a.check_replay:
                            _reset_masks(model)
                            again = make_press(pr, ratio, a.window, a.kernel, a.alpha, a.beta)
                            direct, _, direct_kept = run_one(model, vocab, s, again, agnostic, None)
                            if (direct, direct_kept) != (pred, kept):
                                sys.exit(f"replay differs from kvpress's own prefill on {s['sample']} {mode} {pr} "
                                         f"{ratio}: {pred!r} ({kept} kept) vs {direct!r} ({direct_kept} kept)")
                    n = len(s["context_ids"]) + len(s["question_ids"])
                    score = string_match_all(pred, s["answers"])
                    rec.update({"score": score, "metric": s.get("metric", "string_match_all"),
                                "metrics": {s.get("metric", "string_match_all"): score},
                                "prediction": pred.encode()[:400].decode("utf-8", "ignore"), "answers": s["answers"],
                                "prompt_tokens": n, "length": s.get("length"), "depth": s.get("depth"),
                                "kv_entries": kept, **times,
                                "peak_rss_mib": peak_rss_mib(), "rss_before_mib": rss_before,
                                "load_rss_mib": load_rss_mib, "threads": a.threads})
                    print(f"{s['sample']} {mode} {pr} r={ratio}: {score:.0f} {pred!r} ({times['seconds']:.1f} s)",
                          file=sys.stderr)
                    if out:
                        out.write(json.dumps(rec) + "\n")
                        out.flush()
                    if recorder is not None:
                        path = os.path.join(a.dump_kept, kept_file_name(s["sample"], pr, ratio, mode))
                        recorder.write(path, pr, {"sample": s["sample"], "ratio": ratio,
                                                  "question_agnostic": agnostic, "window": a.window,
                                                  "pool_kernel": a.kernel, "alpha": a.alpha})
    return 0


if __name__ == "__main__":
    sys.exit(main())
