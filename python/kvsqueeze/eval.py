"""The evaluation harness (``kvsqueeze eval``) from Python: records as dicts."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _core
from .model import Model

__all__ = ["run", "read_results"]


def read_results(path: Union[str, os.PathLike[str]]) -> List[Dict[str, Any]]:
    """The records of a results file (one JSON object per line)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run(
    task: str,
    model: Union[Model, str, os.PathLike[str]],
    *,
    presets: Sequence[str] = ("snapkv",),
    budgets: Sequence[int] = (),
    ratios: Sequence[float] = (),
    samples: Optional[int] = None,
    seed: int = 0,
    question_agnostic: bool = False,
    chat: str = "auto",
    out: Union[str, os.PathLike[str], None] = None,
    text: Union[str, os.PathLike[str], None] = None,
    prompt_tokens: Optional[int] = None,
    continuation: int = 64,
    haystack: Union[str, os.PathLike[str], None] = None,
    lengths: Sequence[int] = (),
    depths: Sequence[float] = (0, 25, 50, 75, 100),
    subtasks: Sequence[str] = (),
    data: Sequence[Union[str, os.PathLike[str]]] = (),
    max_length: Optional[int] = None,
    window_size: int = 32,
    kernel_size: int = 7,
    pooling: str = "max",
    gqa_reduce: Optional[str] = None,
    alpha: float = 0.2,
    pyramid_beta: float = 20.0,
    skip_layers: int = 0,
    kv_type: str = "f16",
    separate_prefill: bool = False,
    threads: Optional[int] = None,
    progress: bool = False,
) -> List[Dict[str, Any]]:
    """Runs `task` (fidelity, ppl, niah, ruler, longbench) over presets x budgets/ratios,
    exactly as ``kvsqueeze eval`` does, and returns its result records. `ratios` are the
    fractions of the prompt *kept* (the CLI's --ratios, the records' "ratio"). With
    `out`, results append to that file and runs already in it are skipped (the records
    returned are then all of the file's); without it a temporary file is used."""
    o = _core.EvalOptions()
    o.task = task
    o.model_path = model.path if isinstance(model, Model) else _core.resolve_model_path(os.fspath(model))
    if threads is None and isinstance(model, Model):
        threads = model.threads
    o.presets = list(presets)
    o.budgets = [int(b) for b in budgets]
    o.ratios = [float(r) for r in ratios]
    o.samples = int(samples or 0)
    o.seed = int(seed)
    o.question_agnostic = bool(question_agnostic)
    o.chat = chat
    o.text_path = os.fspath(text) if text else ""
    o.prompt_tokens = int(prompt_tokens or 0)
    o.continuation_tokens = int(continuation)
    o.haystack_path = os.fspath(haystack) if haystack else ""
    o.lengths = [int(n) for n in lengths]
    o.depths = [float(d) for d in depths]
    o.subtasks = list(subtasks)
    o.data_files = [os.fspath(d) for d in data]
    o.max_length = int(max_length or 0)
    o.separate_prefill = bool(separate_prefill)
    o.progress = bool(progress)
    tuning = _core.PressOptions()
    tuning.window = int(window_size)
    tuning.pool_kernel = int(kernel_size)
    tuning.pool = pooling
    tuning.gqa_reduce = gqa_reduce or ""
    tuning.alpha = float(alpha)
    tuning.pyramid_beta = float(pyramid_beta)
    tuning.skip_layers = int(skip_layers)
    tuning.kv_type = kv_type
    o.set_tuning(tuning)
    if out is not None:
        o.out_path = os.fspath(out)
        _core.run_eval(o, int(threads or 0))
        return read_results(o.out_path)
    with tempfile.TemporaryDirectory(prefix="kvsqueeze-eval-") as tmp:
        o.out_path = os.path.join(tmp, "results.jsonl")
        _core.run_eval(o, int(threads or 0))
        return read_results(o.out_path) if os.path.exists(o.out_path) else []
