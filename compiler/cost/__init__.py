"""Cost models: how long a weight layer's GEMM takes on a target with a sparsity pattern.

Both models answer `model.predict(layer_shape, op, pattern, m_rows, dtype) -> Prediction(us,
source)`, where layer_shape is the weight's (out, in, *kernel), op its IR op (linear, conv2d, ...),
m_rows the GEMM's M (rows of activations: `workload_rows` for transformer layers, batch * H_out *
W_out for convolutions) and source says where the number came from ("measured", "interpolated",
"analytic").

    AnalyticCostModel     roofline with wave and tile quantization (analytic.py)
    CalibratedCostModel   measured tables, corrected analytic model between them (calibrated.py)
    default_cost_model(t) the calibrated model on the target's measured table (this machine's
                          `sparsecc calibrate` cache, else the one packaged as data/NAME.jsonl),
                          the analytic model where there is none
    OpWork, predict_op    non-GEMM work (norms, elementwise, softmax, attention, copies): ops.py
"""
from __future__ import annotations

import functools
import os
from importlib import resources
from typing import Any, Protocol, Sequence

from ..cache import cache_dir, warn
from ..errors import ConfigError
from ..patterns import Pattern
from ..targets import Target, get_target, target_names
from .analytic import AnalyticCostModel, Prediction, dense_us, gemm_dims, predict_us
from .calibrated import CalibratedCostModel
from .ops import OP_KINDS, OpWork, analytic_op_us, attention_work

__all__ = ["OP_KINDS", "AnalyticCostModel", "CalibratedCostModel", "CostModel", "OpWork",
           "Prediction", "analytic_op_us", "attention_work", "cached_table", "default_cost_model",
           "dense_us", "describe_costs", "gemm_dims", "packaged_table", "predict_us",
           "workload_rows"]

class CostModel(Protocol):
    target: Target

    def predict(self, layer_shape: Sequence[int], op: str, pattern: Pattern | str, m_rows: int,
                dtype: str = "f16") -> Prediction: ...


def packaged_table(target: Target | str) -> str | None:
    """Path of the measured table shipped for `target` (`data/NAME.jsonl`), or None."""
    name = get_target(target).name if isinstance(target, str) else target.name
    path = resources.files(__package__).joinpath("data", f"{name}.jsonl")
    return str(path) if path.is_file() else None


def cached_table(target: Target | str) -> str | None:
    """Path of the table `sparsecc calibrate` measured for `target` on this machine, or None."""
    name = get_target(target).name if isinstance(target, str) else target.name
    path = cache_dir() / "tables" / f"{name}.jsonl"
    return str(path) if path.is_file() else None


def default_cost_model(target: Target | str) -> CostModel:
    """The calibrated model on the target's measured table — the one `sparsecc calibrate`
    wrote on this machine, else the packaged one — or the analytic model when there is none.
    A table that can't be read is skipped with a warning."""
    t = get_target(target) if isinstance(target, str) else target
    tables = [p for p in (cached_table(t), packaged_table(t)) if p]
    key = tuple((p, os.stat(p).st_mtime_ns) for p in tables)
    if t.name in target_names() and t == get_target(t.name):
        return _default_for(t.name, key)          # built once per packaged target and table
    return _build_default(t, tables)


@functools.cache
def _default_for(name: str, key: tuple) -> CostModel:
    return _build_default(get_target(name), [p for p, _ in key])


def _build_default(t: Target, tables: Sequence[str]) -> CostModel:
    for path in tables:
        try:
            return CalibratedCostModel.from_jsonl(path, t)
        except ConfigError as e:
            warn(f"ignoring cost table {path}: {e}")
    return AnalyticCostModel(t)


def describe_costs(model: CostModel) -> dict[str, Any]:
    """What the report says of the cost model: measured or not, where, on what, when."""
    if isinstance(model, CalibratedCostModel):
        env = model.environment
        origin = "this machine's cache" if model.source.startswith(str(cache_dir())) else \
            "packaged" if model.source != "rows" else "given rows"
        return {"model": "calibrated", "measured": True, "table": model.source, "origin": origin,
                "measured_on": env.get("gpu") or env.get("cpu"), "date": env.get("date"),
                "points": len(model), "op_points": len(model.ops)}
    return {"model": "analytic", "measured": False, "table": None,
            "note": "no measured table for this target: predictions are the analytic model "
                    "(run `sparsecc calibrate --target auto` on the device to measure one)"}


def workload_rows(batch: int, seq: int | None = None, mode: str = "prefill") -> int:
    """GEMM rows (M) of a transformer layer: prefill batch * seq; decode batch (one token each).

    vision: batch * seq, where seq is the layer's spatial positions (H_out * W_out) if given.
    """
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError(f"batch must be a positive integer, got {batch!r}")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise ConfigError(f"seq must be a positive integer, got {seq!r}")
    if mode == "decode":
        return batch
    if mode in ("prefill", "vision"):
        if seq is None and mode == "prefill":
            raise ConfigError("prefill needs seq (tokens per sequence)")
        return batch * (seq or 1)
    raise ConfigError(f"unknown mode {mode!r}; known: prefill, decode, vision")
