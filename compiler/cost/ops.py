"""Costs of the work around the GEMMs: norms, elementwise ops, softmax, attention, copies.

An op is described by what it moves and computes, not by its shape:

    OpWork(kind, bytes, flops, dtype)     kind: one of OP_KINDS

Analytic model (any target):

    us = launch_us + max(bytes / (bandwidth * memory_efficiency), flops / (peak * dense_efficiency))

so norms, elementwise ops, softmax and copies are memory-bound and attention is bound by
whichever is larger. Measured model (`OpTable`, rows that `sparsecc calibrate` writes with
`"op"` set to a kind): per (kind, dtype) the measured µs as a function of size (bytes, or flops
for attention), interpolated linearly in log-log between measured sizes; above the largest
measured size time scales linearly with size (the op is throughput-bound there), below the
smallest it is held (the launch floor). `source` says which: "measured", "interpolated",
"analytic" (outside the measured sizes, or no rows of that kind).
"""
from __future__ import annotations

import bisect
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable

from ..errors import ConfigError
from ..targets import DTYPE_BYTES, Target, normalize_dtype
from .analytic import Prediction

OP_KINDS = ("elementwise", "norm", "softmax", "attention", "copy")


@dataclasses.dataclass(frozen=True)
class OpWork:
    kind: str
    bytes: float          # read + written, once each
    flops: float = 0.0
    dtype: str = "f16"

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise ConfigError(f"unknown op kind {self.kind!r}; known: {', '.join(OP_KINDS)}")
        if not self.bytes > 0 or self.flops < 0:
            raise ConfigError(f"{self.kind}: bytes must be > 0 and flops >= 0")
        object.__setattr__(self, "dtype", normalize_dtype(self.dtype))

    @property
    def size(self) -> float:
        """The axis measured times are interpolated on."""
        return self.flops if self.kind == "attention" else self.bytes


def analytic_op_us(target: Target, work: OpWork) -> float:
    m = target.model
    mem = work.bytes / (target.memory_gbs * 1e3 * m.memory_efficiency)
    peak = target.peak(work.dtype) or target.peak("f32") or 1.0
    math_us = work.flops / (peak * 1e6 * m.dense_efficiency)
    return target.launch_us + max(mem, math_us)


def attention_work(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int,
                   dtype: str = "f16", kv_heads: int | None = None) -> OpWork:
    """SDPA: QKᵀ and PV (4·b·h·q·kv·d flops); q, k, v read and the output written once."""
    b = DTYPE_BYTES[normalize_dtype(dtype)]
    kvh = kv_heads or heads
    moved = b * (2 * batch * heads * q_len * head_dim + 2 * batch * kvh * kv_len * head_dim)
    return OpWork("attention", moved, 4.0 * batch * heads * q_len * kv_len * head_dim, dtype)


class OpTable:
    """Measured op times by (kind, dtype), interpolated in log-log over size."""

    def __init__(self, target: Target, points: Iterable[tuple[str, str, float, float]] = ()):
        self.target = target
        logs: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for kind, dtype, size, us in points:
            logs[(kind, dtype)][size].append(math.log(us))
        self.series: dict[tuple[str, str], list[tuple[float, float]]] = {
            key: sorted((s, math.exp(sum(v) / len(v))) for s, v in sizes.items())
            for key, sizes in logs.items()}

    def __len__(self) -> int:
        return sum(len(s) for s in self.series.values())

    def predict(self, work: OpWork) -> Prediction:
        analytic = analytic_op_us(self.target, work)
        series = self.series.get((work.kind, work.dtype))
        if not series:
            return Prediction(analytic, "analytic", f"no measured {work.kind} {work.dtype} rows")
        sizes = [s for s, _ in series]
        x = work.size
        i = bisect.bisect_left(sizes, x)
        if i < len(sizes) and sizes[i] == x:
            return Prediction(series[i][1], "measured", f"{work.kind} {work.dtype} size {x:g}")
        if x < sizes[0]:
            return Prediction(series[0][1], "analytic",
                              f"below the measured {work.kind} sizes: held at the smallest")
        if x > sizes[-1]:
            return Prediction(series[-1][1] * x / sizes[-1], "analytic",
                              f"above the measured {work.kind} sizes: scaled linearly")
        (s0, u0), (s1, u1) = series[i - 1], series[i]
        w = math.log(x / s0) / math.log(s1 / s0)
        return Prediction(math.exp((1 - w) * math.log(u0) + w * math.log(u1)), "interpolated",
                          f"{work.kind} {work.dtype} between sizes {s0:g} and {s1:g}")
