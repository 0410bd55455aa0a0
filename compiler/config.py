"""`CompileConfig`: everything `sparsecc.compile` needs besides the model, as frozen data.

Validated on construction; `to_dict`/`from_dict` round-trip through JSON-able dicts.
Per-layer overrides map a layer name or regex (matched in full) to a pattern string.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from .backend import backend_names, default_backend
from .errors import ConfigError
from .patterns import Pattern, parse_pattern
from .targets import get_target

MODES = ("prefill", "decode", "vision")


IMPORTANCE = ("magnitude", "wanda", "taylor")
MAX_ROWS = 1 << 31
WARN_ERROR = 0.1          # a --speedup plan measured past this relative output error warns       # batch and seq: past this no GEMM row count is meaningful


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    target: str = "h100"
    backend: str | None = None        # None: the target's default (torch on GPUs, else onnx)
    # candidate patterns; the selector picks per layer (dense is always a candidate)
    patterns: tuple[str, ...] = ("2:4", "block64x64@0.25", "channel0.25", "channel0.5", "dense")
    budget: float = 0.02              # total error budget (sum of per-layer relative errors)
    speedup: float | None = None      # instead: reach this predicted speedup at least error
    # instead of `budget`: the largest relative error of the model's outputs, end to end,
    # measured on the calibration inputs (sparsecc.accuracy); with `speedup`, the error past
    # which the plan is reported with a warning (default WARN_ERROR)
    max_error: float | None = None
    min_gain: float = 0.02            # keep a selected plan only if the whole model gains this
    batch: int | None = None          # workload: rows fed to each GEMM = batch * seq
    seq: int | None = None
    mode: str | None = None           # prefill | decode | vision; None: the model's own
    overrides: tuple[tuple[str, str], ...] = ()   # (layer name or regex, pattern)
    dtype: str = "f16"
    verify_each_pass: bool = False
    importance: str = "wanda"         # magnitude | wanda | taylor (wanda/taylor need calibration)
    reconstruct: bool = True          # refit sparse layers' kept weights to calibration inputs

    def __post_init__(self) -> None:
        target = get_target(self.target)
        object.__setattr__(self, "target", target.name)
        if self.backend is None:
            object.__setattr__(self, "backend", default_backend(target))
        if self.backend not in backend_names():
            raise ConfigError(f"unknown backend {self.backend!r}; known: "
                              f"{', '.join(backend_names())}")
        if self.backend not in target.backends:
            raise ConfigError(f"backend {self.backend} does not run on {target.name}; it has "
                              f"{', '.join(target.backends)}")
        pats = (self.patterns,) if isinstance(self.patterns, str) else tuple(self.patterns)
        if not pats:
            raise ConfigError("patterns: give at least one candidate pattern")
        object.__setattr__(self, "patterns", tuple(str(parse_pattern(p)) for p in pats))
        if not _finite(self.budget) or self.budget < 0:
            raise ConfigError(f"budget must be a finite non-negative number, got "
                              f"{self.budget!r}")
        if self.max_error is not None and (not _finite(self.max_error) or
                                           not 0 <= self.max_error <= 10):
            raise ConfigError(f"max_error must be a number in [0, 10] (a relative output "
                              f"error), got {self.max_error!r}")
        if not _finite(self.min_gain) or not 0 <= self.min_gain < 10:
            raise ConfigError(f"min_gain must be a number in [0, 10), got {self.min_gain!r}")
        if self.speedup is not None and (not _finite(self.speedup) or not
                                         1.0 <= self.speedup <= 1000):
            raise ConfigError(f"speedup must be a number from 1 to 1000, got {self.speedup!r}")
        for name in ("batch", "seq"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)
                                  or not 1 <= v <= MAX_ROWS):
                raise ConfigError(f"{name} must be an integer from 1 to {MAX_ROWS}, got {v!r}")
        if self.mode is not None and self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.importance not in IMPORTANCE:
            raise ConfigError(f"unknown importance {self.importance!r}; known: "
                              f"{', '.join(IMPORTANCE)}")
        if not isinstance(self.reconstruct, bool):
            raise ConfigError(f"reconstruct must be true or false, got {self.reconstruct!r}")
        if self.dtype not in ("f16", "bf16", "f32"):
            raise ConfigError(f"dtype must be f16, bf16 or f32, got {self.dtype!r}")
        items = self.overrides.items() if isinstance(self.overrides, Mapping) else self.overrides
        overrides = []
        for item in items:
            if len(item) != 2:
                raise ConfigError(f"an override is (layer regex, pattern), got {item!r}")
            key, pattern = item
            try:
                re.compile(key)
            except re.error as e:
                raise ConfigError(f"override {key!r} is not a valid regex: {e}") from None
            overrides.append((key, str(parse_pattern(pattern))))
        object.__setattr__(self, "overrides", tuple(overrides))

    def override_for(self, layer: str) -> Pattern | None:
        """The pattern forced on `layer` by the first override whose regex matches it in full."""
        for key, pattern in self.overrides:
            if layer == key or re.fullmatch(key, layer):
                return parse_pattern(pattern)
        return None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patterns"] = list(self.patterns)
        d["overrides"] = {k: v for k, v in self.overrides}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CompileConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"a config is a mapping, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; known: {sorted(fields)}")
        kw = dict(d)
        if "patterns" in kw:
            kw["patterns"] = tuple(kw["patterns"]) if not isinstance(kw["patterns"], str) \
                else tuple(kw["patterns"].split(","))
        if "overrides" in kw:
            ov = kw["overrides"]
            kw["overrides"] = tuple(ov.items()) if isinstance(ov, Mapping) else \
                tuple(tuple(x) for x in ov)
        return cls(**kw)

    def replace(self, **changes: Any) -> "CompileConfig":
        return dataclasses.replace(self, **changes)
