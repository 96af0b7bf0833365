"""Which prompt positions a kvpress press keeps, per layer and KV head.

Two ways kvpress drops entries:
- scorer presses (SnapKV, PyramidKV, CriticalKV, ...) gather the kept rows into a
  shorter cache; gather copies rows bit for bit, so each kept key row is matched back
  to the identical row of the uncompressed keys (RoPE makes rows of different
  positions differ);
- head-wise presses (AdaKV, CriticalAdaKV) leave the cache full length and list the
  pruned (batch, head, position) triples in module.masked_key_indices, which kvpress's
  attention patch masks while decoding.
The hook wraps press.forward_hook and records both, without touching kvpress's code.
For scorer presses it also records each position's rank in the press's own score order
(0 = best), so that a position one engine keeps and the other drops can be placed
relative to kvpress's cut: next to it (a near-tie) or far from it (a different rule).
"""
from __future__ import annotations

import json

import numpy as np
import torch
from kvpress.presses.scorer_press import ScorerPress


def _rows(t) -> list[bytes]:
    a = np.ascontiguousarray(t.detach().float().cpu().numpy())
    return [r.tobytes() for r in a]


class KeptRecorder:
    def __init__(self, press):
        self.press = press
        self.layers: dict[int, list[list[int]]] = {}
        self.ranks: dict[int, list[list[int]]] = {}
        self.prompt_tokens = 0

    def hook(self, module, args, kwargs, output):
        layer = kwargs["past_key_values"].layers[module.layer_idx]
        before = layer.keys
        if isinstance(self.press, ScorerPress) and kwargs["hidden_states"].shape[1] == before.shape[2]:
            scores = self.press.score(module, kwargs["hidden_states"], before, layer.values, output[1], kwargs)
            order = scores[0].float().argsort(dim=-1, descending=True, stable=True)
            rank = torch.empty_like(order)
            rank.scatter_(-1, order, torch.arange(order.shape[-1]).expand_as(order))
            self.ranks[module.layer_idx] = rank.tolist()
        out = self.press.forward_hook(module, args, kwargs, output)
        after = layer.keys
        if after is before and getattr(module, "masked_key_indices", None) is None:
            return out  # nothing compressed (not the prefill)
        n = before.shape[2]
        self.prompt_tokens = n
        heads = []
        masked = getattr(module, "masked_key_indices", None)
        for h in range(before.shape[1]):
            if after is before:
                kept = set(range(n))
            else:
                where = {row: i for i, row in enumerate(_rows(before[0, h]))}
                kept = {where[row] for row in _rows(after[0, h])}
            if masked is not None:
                _, mh, mpos = masked
                kept -= set(mpos[mh == h].tolist())
            heads.append(sorted(kept))
        self.layers[module.layer_idx] = heads
        return out

    def kv_entries(self) -> int:
        return sum(len(p) for heads in self.layers.values() for p in heads)

    def write(self, path: str, preset: str, extra: dict) -> None:
        """Same shape as `kvsqueeze generate --dump-selection`; only pressed layers appear."""
        j = {"engine": "kvpress", "preset": preset, "prompt_tokens": self.prompt_tokens, **extra, "layers": []}
        for l in sorted(self.layers):
            heads = [{"head": h, "budget": len(p), "positions": p} for h, p in enumerate(self.layers[l])]
            for h, r in enumerate(self.ranks.get(l, [])):
                heads[h]["score_rank"] = r
            j["layers"].append({"layer": l, "heads": heads})
        with open(path, "w") as f:
            f.write(json.dumps(j) + "\n")
