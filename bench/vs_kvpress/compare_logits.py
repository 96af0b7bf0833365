#!/usr/bin/env python3
"""Do kvsqueeze and transformers compute the same model from the same GGUF?

    kvsqueeze logits -m MODEL.gguf --ids-file ids.txt --kv-type f32 --out ksq.f32
    compare_logits.py -m MODEL.gguf --ids-file ids.txt --logits ksq.f32

Runs the ids through transformers (full cache, float32) and compares the logits of
every position with kvsqueeze's raw float32 [n_ids][n_vocab] file: max and mean
absolute difference, top-1 agreement, and the KL divergence of the next-token
distributions. Runs inside the venv of setup_venv.sh.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # before torch, which imports tqdm

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_kvpress import load_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--ids-file", required=True, help="token ids, comma or whitespace separated")
    p.add_argument("--logits", required=True, help="kvsqueeze logits output (float32 [n_ids][n_vocab])")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ids = [int(t) for t in re.split(r"[,\s]+", open(a.ids_file).read().strip()) if t]
    model = load_model(a.model)
    with torch.inference_mode():
        ours = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
    theirs = np.fromfile(a.logits, dtype=np.float32)
    if theirs.size != ours.size:
        sys.exit(f"{a.logits} holds {theirs.size} floats, expected {len(ids)} x {ours.shape[1]}")
    theirs = theirs.reshape(ours.shape)
    diff = np.abs(ours - theirs)
    top1 = (ours.argmax(1) == theirs.argmax(1)).mean()

    def log_softmax(x):
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))

    lp, lq = log_softmax(theirs.astype(np.float64)), log_softmax(ours.astype(np.float64))
    kl = (np.exp(lp) * (lp - lq)).sum(1)  # KL(kvsqueeze || transformers) per position
    print(f"positions {len(ids)}, vocab {ours.shape[1]}")
    print(f"max |diff| {diff.max():.4f} (position {diff.max(1).argmax()}), mean |diff| {diff.mean():.5f}, "
          f"logit scale (std) {theirs.std():.2f}")
    print(f"last position: max |diff| {diff[-1].max():.4f}, argmax kvsqueeze {theirs[-1].argmax()} "
          f"transformers {ours[-1].argmax()}")
    rel = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    print(f"relative L2 per position: mean {rel.mean():.4f} max {rel.max():.4f}")
    print(f"top-1 agreement {100 * top1:.2f}%, KL mean {kl.mean():.2e} max {kl.max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
