"""Compression presses as objects, named after kvpress's.

Each press describes one of the engine's presets (``kvsqueeze generate --press ...``).
The amount kept is either ``compression_ratio`` (the fraction of the prompt *removed*,
as in kvpress: 0.75 keeps a quarter) or ``budget`` (KV entries kept per head, the
observation window included, as the CLI's ``--budget``). Impossible settings raise
``ValueError`` with the CLI's message when the press is used (or by ``validate()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from . import _core

__all__ = [
    "BasePress",
    "Press",
    "SnapKVPress",
    "PyramidKVPress",
    "StreamingLLMPress",
    "KnormPress",
    "TOVAPress",
    "ObservedAttentionPress",
    "AdaKVPress",
    "CriticalKVPress",
    "CriticalAdaKVPress",
    "LavaPress",
]


@dataclass
class BasePress:
    """What every press shares: how much is kept and how scores are formed."""

    compression_ratio: float = 0.0
    budget: Optional[int] = None
    window_size: int = 32
    kernel_size: int = 7
    pooling: str = "max"
    gqa_reduce: Optional[str] = None
    skip_layers: int = 0
    kv_type: Optional[str] = None  # KV storage for this press's cache; None: the model's
    preset: str = field(default="", init=False, repr=False)

    def options(self) -> _core.PressOptions:
        """The engine's press options (the CLI's flags) for this press."""
        if not isinstance(self.compression_ratio, (int, float)) or not 0.0 <= self.compression_ratio < 1.0:
            raise ValueError(
                f"compression_ratio must be in [0, 1) (the fraction of the prompt removed, as in kvpress), "
                f"got {self.compression_ratio!r}"
            )
        o = _core.PressOptions()
        o.preset = self.preset
        if self.budget is not None:
            if self.compression_ratio != 0.0:
                raise ValueError("give either budget or compression_ratio, not both")
            o.budget = int(self.budget)
            if o.budget < 1:
                raise ValueError(f"budget must be >= 1 (got {self.budget})")
        elif self.preset != "none" or self.compression_ratio != 0.0:
            o.ratio = 1.0 - float(self.compression_ratio)
        o.window = int(self.window_size)
        o.pool_kernel = int(self.kernel_size)
        o.pool = self.pooling
        o.gqa_reduce = self.gqa_reduce or ""
        o.skip_layers = int(self.skip_layers)
        o.kv_type = self.kv_type or ""  # "": the model's
        self._tune(o)
        return o

    def _tune(self, o: _core.PressOptions) -> None:
        """Options particular to one press."""

    def validate(self) -> "BasePress":
        """Raises ValueError when the press cannot run; returns the press."""
        self.options().validate()
        return self


@dataclass
class SnapKVPress(BasePress):
    """SnapKV: keys scored by the attention of the last `window_size` queries, pooled."""

    def __post_init__(self) -> None:
        self.preset = "snapkv"


@dataclass
class KnormPress(BasePress):
    """Keeps the keys of smallest L2 norm."""

    def __post_init__(self) -> None:
        self.preset = "knorm"


@dataclass
class TOVAPress(BasePress):
    """TOVA: keys scored by the last query's attention."""

    def __post_init__(self) -> None:
        self.preset = "tova"


@dataclass
class ObservedAttentionPress(BasePress):
    """H2O: keys scored by the attention every prompt query paid them."""

    def __post_init__(self) -> None:
        self.preset = "h2o"


@dataclass
class StreamingLLMPress(BasePress):
    """StreamingLLM: the first `n_sink` tokens and the most recent ones."""

    n_sink: int = 4

    def __post_init__(self) -> None:
        self.preset = "streamingllm"

    def _tune(self, o: _core.PressOptions) -> None:
        o.sinks = int(self.n_sink)


@dataclass
class PyramidKVPress(BasePress):
    """PyramidKV: SnapKV scores, budgets falling linearly with depth (steepness `beta`)."""

    beta: float = 20.0

    def __post_init__(self) -> None:
        self.preset = "pyramidkv"

    def _tune(self, o: _core.PressOptions) -> None:
        o.pyramid_beta = float(self.beta)


def _inner_name(press: object) -> str:
    return type(press).__name__


@dataclass
class AdaKVPress:
    """Ada-KV: the inner press's scores, head budgets from one top-k over the layer's
    heads, each head guaranteed `alpha_safeguard` of the uniform budget. Wraps
    SnapKVPress (ada-snapkv) or PyramidKVPress (ada-pyramidkv)."""

    press: BasePress
    alpha_safeguard: float = 0.2

    def options(self) -> _core.PressOptions:
        if type(self.press) is SnapKVPress:
            preset = "ada-snapkv"
        elif type(self.press) is PyramidKVPress:
            preset = "ada-pyramidkv"
        else:
            raise ValueError(f"AdaKVPress wraps SnapKVPress or PyramidKVPress, not {_inner_name(self.press)}")
        o = self.press.options()
        o.preset = preset
        o.alpha = float(self.alpha_safeguard)
        return o

    def validate(self) -> "AdaKVPress":
        self.options().validate()
        return self


@dataclass
class CriticalKVPress:
    """CriticalKV: two-stage selection inside each head's budget, weighting the inner
    press's scores by the projected value norms. Wraps SnapKVPress (criticalkv)."""

    press: BasePress

    def options(self) -> _core.PressOptions:
        if type(self.press) is not SnapKVPress:
            raise ValueError(f"CriticalKVPress wraps SnapKVPress, not {_inner_name(self.press)}")
        o = self.press.options()
        o.preset = "criticalkv"
        return o

    def validate(self) -> "CriticalKVPress":
        self.options().validate()
        return self


@dataclass
class CriticalAdaKVPress:
    """CriticalKV inside Ada-KV head budgets (critical-ada-snapkv). Wraps SnapKVPress."""

    press: BasePress
    alpha_safeguard: float = 0.2

    def options(self) -> _core.PressOptions:
        if type(self.press) is not SnapKVPress:
            raise ValueError(f"CriticalAdaKVPress wraps SnapKVPress, not {_inner_name(self.press)}")
        o = self.press.options()
        o.preset = "critical-ada-snapkv"
        o.alpha = float(self.alpha_safeguard)
        return o

    def validate(self) -> "CriticalAdaKVPress":
        self.options().validate()
        return self


_LAVA_VARIANTS = {"full": "lava", "heads": "lava-heads", "layers": "lava-layers"}


@dataclass
class LavaPress(BasePress):
    """LAVa: value-aware scores; `variant` "full" (head and layer budgets adapt),
    "heads" (head budgets only) or "layers" (layer budgets only). GQA groups reduce by
    max unless `gqa_reduce` says otherwise."""

    variant: str = "full"

    def __post_init__(self) -> None:
        if self.variant not in _LAVA_VARIANTS:
            raise ValueError(f"LavaPress variant is one of {', '.join(_LAVA_VARIANTS)}, not {self.variant!r}")
        self.preset = _LAVA_VARIANTS[self.variant]


@dataclass(init=False)
class Press(BasePress):
    """Any preset by its CLI name (`kvsqueeze.preset_names()`), with every option:
    e.g. ``Press("ada-pyramidkv", budget=128, alpha=0.3)``."""

    name: str = "snapkv"
    alpha: float = 0.2
    pyramid_beta: float = 20.0
    n_sink: int = 4
    compress_every: int = 0

    def __init__(self, name: str, **options: object) -> None:
        for key, value in options.items():
            if key not in self.__dataclass_fields__ or key in ("name", "preset"):
                raise TypeError(f"Press() got an unexpected option {key!r}")
        defaults = {k: f.default for k, f in self.__dataclass_fields__.items() if f.init and k != "name"}
        for key, value in {**defaults, **options}.items():
            setattr(self, key, value)
        self.name = name
        self.preset = name

    def _tune(self, o: _core.PressOptions) -> None:
        o.alpha = float(self.alpha)
        o.pyramid_beta = float(self.pyramid_beta)
        o.sinks = int(self.n_sink)
        o.compress_every = int(self.compress_every)
