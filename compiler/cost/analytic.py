"""Analytic cost model: how long one weight layer's GEMM takes on a target, per pattern.

A layer is the GEMM [M, K] x [K, N]: linear N = out, K = in; conv N = out,
K = in/groups * prod(kernel), M = batch * H_out * W_out (the caller passes M as `m_rows`).

    time = max(t_math, t_mem) + launch (+ the pattern's fixed overhead)
    t_mem  = (weight bytes + M*K + M*N activation bytes) / (bandwidth * memory_efficiency)
    t_math = waves * (per-tile flops) / (peak / units * efficiency)
             tiles = ceil(M/tm) * ceil(N/tn) * split_k,  waves = ceil(tiles / units)

so partial waves and partial tiles cost whole ones (wave and tile quantization; on GPUs an M
below the tile still costs a whole tile: fitted, small-M kernels were no faster per row). The
GEMM library is assumed to pick the split-K factor (1, 2, 4, ... split_k_max) that fills the
units best.

Patterns:
  dense       as above, at `dense_efficiency` of the dense peak.
  2:4         on sparse tensor cores (targets with `sparse_tflops`): the 2:4 peak (twice dense)
              at `nm_efficiency`, no split-K; the weight moves as n/m of its values plus
              ceil(log2 m)-bit indices (56% of fp16 bytes); plus `nm_overhead_us`, which makes
              2:4 lose at small M. Other N:M, or no sparse hardware (TPU, CPU): costed as dense.
  block RxC   kept blocks only: density * flops at `block_efficiency[side]` (interpolated in
              log side; side = sqrt(R*C)) of the dense peak, over a grid of N/R block rows by
              M/tm, plus `block_overhead_us`. On TPUs only blocks aligned to the MXU (128) skip
              work; others are costed as dense.
  channel r   the smaller dense layer: N' = kept channels rounded up to `channel_pad`
              (GPU 8, TPU 128 = the MXU).
  channel+2:4 the channel-pruned layer, then 2:4 on it.

Assumptions:
  - Units are SMs (GPU), MXUs (TPU) or cores (CPU). On TPUs K and N are padded to the 128-wide
    MXU and M to rows of 8; CPU register tiles shrink with M.
  - Each call streams its weight from DRAM/HBM once and reads activations once (tiles reuse them
    through L2). No L2 residency across calls: the H100 benchmark repeated one GEMM, so a
    4096x4096 fp16 weight (32 MB) stayed in the 50 MB L2 and its decode times ran ~30% below
    this model.
  - One efficiency per kernel family and target, independent of shape. bf16 costs as f16; f16
    on a target without an f16 peak (TPU) costs at the bf16 peak; f32 on GPUs is the non-tensor
    FP32 peak (torch's default, TF32 off). Power/clock throttling in long GEMMs is not modelled.
  - The H100's dense, 2:4 and 64x64-block parameters were fitted to the table `sparsecc
    calibrate` measured there (sparsecc/cost/data/h100.jsonl: cuBLAS, our tuned cuSPARSELt path,
    our Triton BSR kernel; median relative error 13.9% over its 210 points); other targets'
    parameters are stated in their files' sources (mostly approximate).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ..errors import ConfigError
from ..patterns import Pattern, parse_pattern
from ..targets import DTYPE_BYTES, Target, get_target, normalize_dtype

_LINEAR_OPS = frozenset({"linear", "mm", "matmul", "addmm", "gemm"})
SOURCES = ("measured", "interpolated", "analytic")


@dataclasses.dataclass(frozen=True)
class Prediction:
    us: float
    source: str            # "measured" | "interpolated" | "analytic"
    note: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"prediction source must be one of {SOURCES}, got {self.source!r}")


def gemm_dims(layer_shape: Sequence[int], op: str, m_rows: int) -> tuple[int, int, int]:
    """(M, N, K) of the GEMM a layer of weight shape (out, in, *kernel) computes."""
    shape = tuple(int(d) for d in layer_shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ConfigError(f"layer shape {shape} is not (out, in, *kernel)")
    if int(m_rows) < 1:
        raise ConfigError(f"m_rows must be >= 1, got {m_rows}")
    if op in _LINEAR_OPS and len(shape) != 2:
        raise ConfigError(f"{op} weight of rank {len(shape)}, expected 2")
    return int(m_rows), shape[0], math.prod(shape[1:])


def _peak(t: Target, dtype: str, sparse: bool = False) -> float | None:
    p = t.peak(dtype, sparse)
    if p is None and dtype == "f16":
        p = t.peak("bf16", sparse)
    if p is None and not sparse:
        raise ConfigError(f"{t.name} has no {dtype} peak")
    return p


def _math_us(t: Target, M: int, N: int, K: float, tflops: float, split_k_max: int,
             tile: tuple[int, int] | None = None) -> float:
    """Wave-quantized math time of an M x N x K GEMM at `tflops` spread over the units."""
    tm, tn = tile or t.tile
    if t.kind == "tpu":                       # MXU: K and N in 128s, M streams in rows of 8
        return _waves_us(t, M, N, tn * math.ceil(K / tn), tflops, 1, min(tm, 8 * math.ceil(M / 8)), tn)
    if t.kind == "cpu":                       # register tiles shrink with M at no cost
        tm = min(tm, M)
    return _waves_us(t, M, N, K, tflops, split_k_max, tm, tn)


def _waves_us(t: Target, M: int, N: int, K: float, tflops: float, split_k_max: int,
              tm: int, tn: int) -> float:
    per_unit = tflops * 1e12 / t.compute_units
    base = math.ceil(M / tm) * math.ceil(N / tn)
    best = math.inf
    s = 1
    while s <= max(1, split_k_max) and (s == 1 or K / s >= 128):
        waves = math.ceil(base * s / t.compute_units)
        best = min(best, waves * 2.0 * tm * tn * (K / s) / per_unit * 1e6)
        s *= 2
    return best


def _mem_us(t: Target, bytes_moved: float, efficiency: float) -> float:
    return bytes_moved / (t.memory_gbs * 1e9 * efficiency) * 1e6


def _dense_us(t: Target, M: int, N: int, K: int, dtype: str) -> float:
    peak = _peak(t, dtype)
    b = DTYPE_BYTES[dtype]
    math_us = _math_us(t, M, N, K, peak * t.model.dense_efficiency, t.model.split_k_max)
    mem_us = _mem_us(t, (N * K + M * K + M * N) * b, t.model.memory_efficiency)
    return max(math_us, mem_us) + t.launch_us


def _nm_us(t: Target, M: int, N: int, K: int, dtype: str, n: int, m: int) -> float:
    sparse_peak = _peak(t, dtype, sparse=True)
    if (n, m) != (2, 4) or sparse_peak is None:
        return _dense_us(t, M, N, K, dtype)      # stored dense with zeros: no speedup
    b = DTYPE_BYTES[dtype]
    frac = n / m + n * math.ceil(math.log2(m)) / (m * 8 * b)   # values + index metadata
    prm = t.model
    math_us = _math_us(t, M, N, K, sparse_peak * prm.nm_efficiency, 1)
    mem_us = _mem_us(t, (frac * N * K + M * K + M * N) * b, prm.nm_memory_efficiency)
    return max(math_us, mem_us) + t.launch_us + prm.nm_overhead_us


def block_efficiency(t: Target, rows: int, cols: int) -> float:
    """Fraction of dense peak a block-sparse kernel reaches with rows x cols blocks."""
    table = sorted(t.model.block_efficiency.items())
    side = math.sqrt(rows * cols)
    if side <= table[0][0]:
        return table[0][1] * side / table[0][0]      # smaller blocks: proportionally worse
    if side >= table[-1][0]:
        return table[-1][1]
    for (s0, e0), (s1, e1) in zip(table, table[1:]):
        if s0 <= side <= s1:
            w = math.log(side / s0) / math.log(s1 / s0)
            return math.exp((1 - w) * math.log(e0) + w * math.log(e1))
    raise AssertionError("unreachable")


def _block_us(t: Target, M: int, N: int, K: int, dtype: str, rows: int, cols: int,
              density: float) -> float:
    if t.kind == "tpu" and (rows % t.tile[0] or cols % t.tile[1]):
        return _dense_us(t, M, N, K, dtype)      # the MXU can't skip unaligned blocks
    peak = _peak(t, dtype)
    b = DTYPE_BYTES[dtype]
    kept_k = max(1.0, density * K)               # per block row, on average
    rate = peak * block_efficiency(t, rows, cols)
    math_us = _math_us(t, M, N, kept_k, rate, 1, tile=(t.tile[0], rows) if t.kind == "gpu" else None)
    index_bytes = density * (N / rows) * (K / cols) * 4
    mem_us = _mem_us(t, (density * N * K + M * K + M * N) * b + index_bytes,
                     t.model.memory_efficiency)
    return max(math_us, mem_us) + t.launch_us + t.model.block_overhead_us


def _kept_n(t: Target, channel, N: int) -> int:
    kept = channel.kept_channels(N)
    pad = t.model.channel_pad
    return min(N, pad * math.ceil(kept / pad))


def predict_us(target: Target | str, layer_shape: Sequence[int], op: str,
               pattern: Pattern | str, m_rows: int, dtype: str = "f16") -> float:
    """Predicted µs of one layer's GEMM with `pattern` applied, on `target`."""
    t = get_target(target) if isinstance(target, str) else target
    d = normalize_dtype(dtype)
    p = parse_pattern(pattern)
    M, N, K = gemm_dims(layer_shape, op, m_rows)
    if p.kind == "dense":
        return _dense_us(t, M, N, K, d)
    if p.kind == "nm":
        return _nm_us(t, M, N, K, d, p.n, p.m)
    if p.kind == "block":
        return _block_us(t, M, N, K, d, p.rows, p.cols, p.density)
    if p.kind == "channel":
        return _dense_us(t, M, _kept_n(t, p, N), K, d)
    if p.kind == "composite":
        return _nm_us(t, M, _kept_n(t, p.channel, N), K, d, p.nm.n, p.nm.m)
    raise ConfigError(f"no cost model for pattern {p}")


def dense_us(target: Target | str, layer_shape: Sequence[int], op: str, m_rows: int,
             dtype: str = "f16") -> float:
    """The dense baseline of `predict_us`."""
    return predict_us(target, layer_shape, op, "dense", m_rows, dtype)


@dataclasses.dataclass(frozen=True)
class AnalyticCostModel:
    """`predict_us` behind the common cost-model interface."""
    target: Target

    @classmethod
    def for_target(cls, target: Target | str) -> "AnalyticCostModel":
        return cls(get_target(target) if isinstance(target, str) else target)

    def predict(self, layer_shape: Sequence[int], op: str, pattern: Pattern | str, m_rows: int,
                dtype: str = "f16") -> Prediction:
        return Prediction(predict_us(self.target, layer_shape, op, pattern, m_rows, dtype),
                          "analytic")

    def speedup(self, layer_shape: Sequence[int], op: str, pattern: Pattern | str, m_rows: int,
                dtype: str = "f16") -> float:
        dense = self.predict(layer_shape, op, "dense", m_rows, dtype).us
        return dense / self.predict(layer_shape, op, pattern, m_rows, dtype).us

    def predict_op(self, work) -> Prediction:
        """Time of a non-GEMM op (cost/ops.py's `OpWork`) by the analytic op model."""
        from .ops import analytic_op_us
        return Prediction(analytic_op_us(self.target, work), "analytic")
