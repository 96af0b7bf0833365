"""kvsqueeze preset names -> kvpress 0.5.5 presses, and how they are attached.

Ratios: kvsqueeze's --ratio is the share of the prompt KEPT; kvpress's
compression_ratio is the share REMOVED. Everything here takes kvsqueeze's ratio.
"""
from __future__ import annotations

import contextlib

from kvpress import (
    AdaKVPress,
    CriticalAdaKVPress,
    CriticalKVPress,
    KnormPress,
    ObservedAttentionPress,
    PyramidKVPress,
    SnapKVPress,
    StreamingLLMPress,
    TOVAPress,
)

# Presets kvpress has an equivalent for. Missing: ada-pyramidkv (AdaKVPress ignores
# PyramidKV's layer budgets), lava* (not in kvpress). h2o (ObservedAttentionPress) needs
# the attention weights, so the model is loaded with eager attention, which kvpress's
# Ada-KV presses refuse: h2o runs on its own (EAGER_ONLY).
PRESETS = ("none", "snapkv", "ada-snapkv", "pyramidkv", "criticalkv", "critical-ada-snapkv",
           "streamingllm", "knorm", "tova", "h2o")
EAGER_ONLY = ("h2o",)


def make_press(preset: str, ratio: float | None, window: int, kernel: int, alpha: float, beta: float):
    if preset == "none":
        return None
    if preset not in PRESETS:
        raise ValueError(f"no kvpress equivalent for preset '{preset}' (have: {', '.join(PRESETS)})")
    if ratio is None or not 0 < ratio <= 1:
        raise ValueError(f"preset '{preset}' needs a ratio in (0, 1], got {ratio}")
    cr = 1.0 - ratio

    def snap():
        return SnapKVPress(compression_ratio=cr, window_size=window, kernel_size=kernel)

    if preset == "snapkv":
        return snap()
    if preset == "ada-snapkv":
        return AdaKVPress(snap(), alpha_safeguard=alpha)
    if preset == "pyramidkv":
        return PyramidKVPress(compression_ratio=cr, window_size=window, kernel_size=kernel, beta=int(beta))
    if preset == "criticalkv":
        return CriticalKVPress(snap())
    if preset == "critical-ada-snapkv":
        return CriticalAdaKVPress(snap(), alpha_safeguard=alpha)
    if preset == "streamingllm":
        return StreamingLLMPress(compression_ratio=cr)
    if preset == "knorm":
        return KnormPress(compression_ratio=cr)
    if preset == "h2o":
        return ObservedAttentionPress(compression_ratio=cr)
    return TOVAPress(compression_ratio=cr)


def is_sliding(layer) -> bool:
    return bool(getattr(layer.self_attn, "is_sliding", False) or getattr(layer.self_attn, "sliding_window", None))


@contextlib.contextmanager
def attach(press, model, hook=None):
    """Like `with press(model)`, but leaves every sliding-window layer alone.

    kvpress skips them only for Gemma3ForConditionalGeneration; the text-only
    Gemma3ForCausalLM would get its sliding layers compressed too. kvsqueeze never
    presses sliding layers, so neither do we. `hook`, when given, replaces
    press.forward_hook (to record what is kept, or with no press what a prefill gives
    each pressed layer).
    """
    if press is None and hook is None:
        yield
        return
    if press is not None:
        press.post_init_from_model(model)
    lm = model.model.language_model if hasattr(model.model, "language_model") else model.model
    handles = []
    try:
        for layer in lm.layers:
            if is_sliding(layer):
                continue
            layer.self_attn.rotary_emb = lm.rotary_emb  # kvpress reads RoPE from here
            handles.append(layer.self_attn.register_forward_hook(hook or press.forward_hook, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
