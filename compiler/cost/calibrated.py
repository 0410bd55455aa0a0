"""Calibrated cost model: measured GEMM times, interpolated, with the analytic model around them.

A table holds measured µs per (pattern, dtype, K, N, M). `from_jsonl` reads two formats, one JSON
object per line (or a list of dicts):

  own format (what `sparsecc calibrate` writes):
      {"target": "h100", "op": "gemm", "K": 4096, "N": 14336, "M": 16, "dtype": "f16",
       "pattern": "2:4", "us": 43.7}
  kernel benchmarks (kernels-h100.jsonl): "kind": "n:m" rows give dense (dense_us), 2:4
      (sparse_us) and channel0.5 (dense_us / chan50_speedup); "kind": "bsr" rows give dense and
      blockBxB@D (fp16). The environment line and rows with "err" are skipped.

  other ops (what `sparsecc calibrate` measures besides GEMMs, for whole-model prediction):
      {"target": "h200", "op": "norm", "dtype": "f16", "bytes": 33554432, "flops": 0,
       "us": 12.1, "shape": [4096, 4096]}        op: elementwise, norm, softmax, attention, copy
      read by `predict_op` (cost/ops.py).

An {"environment": {...}} line says where and when the table was measured (`environment`).
Repeated points are merged by their geometric mean. A prediction corrects the analytic model by
the measured/analytic ratio of the closest measured series:

  1. The series: same dtype and pattern family (block sizes must match; densities may differ)
     whose (K, N, density) are each within a factor 2 of the query, nearest in summed |log ratio|.
     A channel pattern with no series of its own uses the dense series at its kept width, and
     channel+2:4 the 2:4 series.
  2. r(M) = log(measured / analytic) at the series' measured M values, interpolated linearly in
     log M (held at the end values outside the measured range).
  3. us = analytic(query) * exp(r(M)).

source: "measured" when the query is a measured point (the measured value is returned as is),
"interpolated" when M lies within a nearby series' measured range, "analytic" otherwise (outside
the measured M range, with the correction held at the nearest end; or no nearby series: the plain
analytic model). The note says which series was used.
"""
from __future__ import annotations

import bisect
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..patterns import Block, Pattern, parse_pattern
from ..targets import Target, get_target, normalize_dtype
from .analytic import Prediction, gemm_dims, predict_us
from .ops import OP_KINDS, OpTable, OpWork

NEAR = math.log(2.0) + 1e-9          # a series within a factor 2 on every axis can correct
_OWN_KEYS = ("K", "N", "M", "dtype", "pattern", "us")

Key = tuple[str, str]                # (pattern string, dtype)
Shape = tuple[int, int]              # (K, N)


def _kernel_rows(r: Mapping[str, Any]) -> list[tuple[str, str, int, int, int, float]]:
    """(pattern, dtype, K, N, M, us) points of one kernels-h100.jsonl row."""
    K, N, M = int(r["K"]), int(r["N"]), int(r["M"])
    if r["kind"] == "n:m":
        d = normalize_dtype(r["dtype"])
        pts = [("dense", d, K, N, M, r["dense_us"]), ("2:4", d, K, N, M, r["sparse_us"])]
        if r.get("chan50_speedup"):
            pts.append(("channel0.5", d, K, N, M, r["dense_us"] / r["chan50_speedup"]))
        return pts
    if r["kind"] == "bsr":
        d = normalize_dtype(r.get("dtype", "f16"))
        block = str(Block(int(r["bs"]), int(r["bs"]), float(r["density"])))
        return [("dense", d, K, N, M, r["dense_us"]), (block, d, K, N, M, r["sparse_us"])]
    raise ConfigError(f"unknown kernel row kind {r['kind']!r}")


def _points(rows: Iterable[Mapping[str, Any]], target: str, where: str, ops: list | None = None):
    """GEMM points of the rows; rows of the other op kinds go to `ops` as (kind, dtype, size, us)."""
    for i, r in enumerate(rows, 1):
        if not isinstance(r, Mapping):
            raise ConfigError(f"{where} row {i}: expected a JSON object")
        if "err" in r or ("kind" not in r and "K" not in r and "op" not in r):
            continue                             # failures, the environment line
        if "kind" in r:
            yield from _kernel_rows(r)
            continue
        if r.get("target", target) != target:
            raise ConfigError(f"{where} row {i}: measured on {r['target']!r}, not {target!r}")
        op = r.get("op", "gemm")
        if op != "gemm":
            if op not in OP_KINDS:
                raise ConfigError(f"{where} row {i}: op must be 'gemm' or one of "
                                  f"{', '.join(OP_KINDS)}, got {op!r}")
            try:
                work = OpWork(op, float(r["bytes"]), float(r.get("flops", 0)), r["dtype"])
                us = float(r["us"])
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"{where} row {i}: bad {op} row ({e})") from None
            if not us > 0:
                raise ConfigError(f"{where} row {i}: us must be positive, got {r['us']!r}")
            if ops is not None:
                ops.append((op, work.dtype, work.size, us))
            continue
        missing = [k for k in _OWN_KEYS if k not in r]
        if missing:
            raise ConfigError(f"{where} row {i}: missing key {missing[0]!r}")
        try:
            us = float(r["us"])
            K, N, M = int(r["K"]), int(r["N"]), int(r["M"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where} row {i}: K, N, M and us must be numbers") from None
        if not us > 0:
            raise ConfigError(f"{where} row {i}: us must be positive, got {r['us']!r}")
        if min(K, N, M) < 1:
            raise ConfigError(f"{where} row {i}: K, N and M must be positive")
        yield (str(parse_pattern(r["pattern"])), normalize_dtype(r["dtype"]), K, N, M, us)


def read_jsonl(path: str) -> list[Any]:
    """The rows of a JSON-lines table; a file that can't be read or parsed is a ConfigError
    naming it and the line."""
    rows = []
    try:
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line.decode("utf-8")))
                except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                    raise ConfigError(f"{path} line {n}: not a JSON object "
                                      f"({str(e).splitlines()[0][:80]})") from None
    except OSError as e:
        raise ConfigError(f"{path}: can't read the cost table: {e.strerror}") from None
    return rows


def _family(p: Pattern) -> str:
    return f"block{p.rows}x{p.cols}" if isinstance(p, Block) else str(p)


class CalibratedCostModel:
    """Measured times where they exist, the analytic model corrected by them elsewhere."""

    def __init__(self, target: Target | str, points: Iterable[tuple[str, str, int, int, int, float]],
                 ops: Iterable[tuple[str, str, float, float]] = (),
                 environment: Mapping[str, Any] | None = None, source: str = "rows"):
        self.target = get_target(target) if isinstance(target, str) else target
        self.ops = OpTable(self.target, ops)
        self.environment = dict(environment or {})
        self.source = source                 # the table's path, or "rows"
        logs: dict[tuple[Key, Shape, int], list[float]] = defaultdict(list)
        for pattern, dtype, K, N, M, us in points:
            logs[((pattern, dtype), (K, N), M)].append(math.log(us))
        self.table: dict[Key, dict[Shape, list[tuple[int, float]]]] = defaultdict(dict)
        for (key, shape, M), ls in sorted(logs.items()):
            self.table[key].setdefault(shape, []).append((M, math.exp(sum(ls) / len(ls))))
        self._ratios: dict[tuple[Key, Shape], tuple[list[float], list[float]]] = {}

    @classmethod
    def from_jsonl(cls, path_or_rows: str | os.PathLike | Iterable[Mapping[str, Any]],
                   target: Target | str = "h100") -> "CalibratedCostModel":
        t = get_target(target) if isinstance(target, str) else target
        if isinstance(path_or_rows, (str, os.PathLike)):
            where = os.fspath(path_or_rows)
            rows = read_jsonl(where)
        else:
            where, rows = "rows", list(path_or_rows)
        env = next((r["environment"] for r in rows
                    if isinstance(r, Mapping) and isinstance(r.get("environment"), Mapping)), {})
        ops: list = []
        points = list(_points(rows, t.name, where, ops))
        if not points and not ops:
            raise ConfigError(f"{where}: no measured rows")
        return cls(t, points, ops, env, where)

    def rows(self) -> list[dict[str, Any]]:
        """The table in the own format (one dict per measured point)."""
        return [{"target": self.target.name, "op": "gemm", "K": K, "N": N, "M": M, "dtype": d,
                 "pattern": p, "us": round(us, 4)}
                for (p, d), shapes in sorted(self.table.items())
                for (K, N), series in sorted(shapes.items()) for M, us in series]

    def __len__(self) -> int:
        return sum(len(s) for shapes in self.table.values() for s in shapes.values())

    def _log_ratios(self, key: Key, shape: Shape) -> tuple[list[float], list[float]]:
        if (key, shape) not in self._ratios:
            K, N = shape
            xs, ys = [], []
            for M, us in self.table[key][shape]:
                xs.append(math.log(M))
                ys.append(math.log(us / predict_us(self.target, (N, K), "linear", key[0], M, key[1])))
            self._ratios[(key, shape)] = (xs, ys)
        return self._ratios[(key, shape)]

    def predict_op(self, work: OpWork) -> Prediction:
        """Time of a non-GEMM op (norm, elementwise, softmax, attention, copy): see cost/ops.py."""
        return self.ops.predict(work)

    def _dtype(self, dtype: str) -> str:
        """CPUs run f16/bf16 models in float32: their table is measured in f32."""
        if self.target.kind == "cpu" and not any(k[1] == dtype for k in self.table):
            return "f32"
        return dtype

    def _nearest(self, pattern: Pattern, dtype: str, K: int, N: int):
        """(distance, key, shape) of the closest series of this pattern family, or None."""
        best = None
        fam, dens = _family(pattern), pattern.density
        for key, shapes in self.table.items():
            if key[1] != dtype:
                continue
            p = parse_pattern(key[0])
            if _family(p) != fam:
                continue
            dd = abs(math.log(p.density / dens))
            for shape in shapes:
                dk, dn = abs(math.log(shape[0] / K)), abs(math.log(shape[1] / N))
                if max(dk, dn, dd) <= NEAR and (best is None or dk + dn + dd < best[0]):
                    best = (dk + dn + dd, key, shape)
        return best

    def predict(self, layer_shape: Sequence[int], op: str, pattern: Pattern | str, m_rows: int,
                dtype: str = "f16") -> Prediction:
        p, d = parse_pattern(pattern), self._dtype(normalize_dtype(dtype))
        M, N, K = gemm_dims(layer_shape, op, m_rows)
        analytic = predict_us(self.target, layer_shape, op, p, M, d)
        exact = self.table.get((str(p), d), {}).get((K, N))
        if exact:
            i = bisect.bisect_left([m for m, _ in exact], M)
            if i < len(exact) and exact[i][0] == M:
                return Prediction(exact[i][1], "measured", f"{p} {d} K={K} N={N} M={M}")
        near = self._nearest(p, d, K, N)
        if near is None and p.kind in ("channel", "composite"):
            ch = p if p.kind == "channel" else p.channel
            base = parse_pattern("dense") if p.kind == "channel" else p.nm
            near = self._nearest(base, d, K, ch.kept_channels(N))
        if near is None:
            return Prediction(analytic, "analytic", f"no measured {p} {d} series near K={K} N={N}")
        _, key, (sk, sn) = near
        xs, ys = self._log_ratios(key, (sk, sn))
        lm = math.log(M)
        inside = xs[0] - 1e-12 <= lm <= xs[-1] + 1e-12
        if not inside or len(xs) == 1:
            r = ys[0] if lm <= xs[0] else ys[-1]
        else:
            j = min(max(bisect.bisect_right(xs, lm), 1), len(xs) - 1)
            w = (lm - xs[j - 1]) / (xs[j] - xs[j - 1])
            r = ys[j - 1] + w * (ys[j] - ys[j - 1])
        what = f"{key[0]} {key[1]} K={sk} N={sn} M={math.exp(xs[0]):.0f}..{math.exp(xs[-1]):.0f}"
        if inside:
            return Prediction(analytic * math.exp(r), "interpolated", f"corrected by {what}")
        return Prediction(analytic * math.exp(r), "analytic",
                          f"outside the measured M range; scaled by the end ratio of {what}")

    def speedup(self, layer_shape: Sequence[int], op: str, pattern: Pattern | str, m_rows: int,
                dtype: str = "f16") -> float:
        dense = self.predict(layer_shape, op, "dense", m_rows, dtype).us
        return dense / self.predict(layer_shape, op, pattern, m_rows, dtype).us
