"""kvsqueeze: LLM inference with a self-compressing KV cache, from Python.

    import kvsqueeze as kvs
    model = kvs.Model("smollm2-135m-instruct")
    pipe = kvs.pipeline(model)
    pipe(document, question="Who wrote it?", press=kvs.AdaKVPress(kvs.SnapKVPress(compression_ratio=0.75)))

See docs/PYTHON.md.
"""

from . import _core
from . import eval
from .model import Context, Model, PressLike, TextStream
from .pipeline import Pipeline, pipeline
from .presses import (
    AdaKVPress,
    BasePress,
    CriticalAdaKVPress,
    CriticalKVPress,
    KnormPress,
    LavaPress,
    ObservedAttentionPress,
    Press,
    PyramidKVPress,
    SnapKVPress,
    StreamingLLMPress,
    TOVAPress,
)

__version__ = "0.1.0"


def preset_names() -> "list[str]":
    """The engine's preset names (the CLI's --press values)."""
    return list(_core.preset_names())


__all__ = [
    "Model", "Context", "TextStream", "PressLike", "Pipeline", "pipeline", "eval", "preset_names",
    "BasePress", "Press", "SnapKVPress", "PyramidKVPress", "StreamingLLMPress", "KnormPress", "TOVAPress",
    "ObservedAttentionPress", "AdaKVPress", "CriticalKVPress", "CriticalAdaKVPress", "LavaPress",
]
