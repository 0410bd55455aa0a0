"""Cost models: how long a weight layer's GEMM takes on a target with a sparsity pattern.

Both models answer `model.predict(layer_shape, op, pattern, m_rows, dtype) -> Prediction(us,
source)`, where layer_shape is the weight's (out, in, *kernel), op its IR op (linear, conv2d, ...),
m_rows the GEMM's M (rows of activations: `workload_rows` for transformer layers, batch * H_out *
W_out for convolutions) and source says where the number came from ("measured", "interpolated",
"analytic").

    AnalyticCostModel     roofline with wave and tile quantization (analytic.py)
    CalibratedCostModel   measured tables, corrected analytic model between them (calibrated.py)
    default_cost_model(t) the calibrated model on the packaged table for h100, analytic elsewhere
"""
from __future__ import annotations

import functools
from importlib import resources
from typing import Protocol, Sequence

from ..errors import ConfigError
from ..patterns import Pattern
from ..targets import Target, get_target, target_names
from .analytic import AnalyticCostModel, Prediction, dense_us, gemm_dims, predict_us
from .calibrated import CalibratedCostModel

__all__ = ["AnalyticCostModel", "CalibratedCostModel", "CostModel", "Prediction",
           "default_cost_model", "dense_us", "gemm_dims", "packaged_table", "predict_us",
           "workload_rows"]

PACKAGED_TABLES = {"h100": "h100.jsonl"}     # target -> measured table in sparsecc/cost/data/


class CostModel(Protocol):
    target: Target

    def predict(self, layer_shape: Sequence[int], op: str, pattern: Pattern | str, m_rows: int,
                dtype: str = "f16") -> Prediction: ...


def packaged_table(target: Target | str) -> str | None:
    """Path of the measured table shipped for `target`, or None."""
    name = PACKAGED_TABLES.get(get_target(target).name if isinstance(target, str) else target.name)
    if name is None:
        return None
    return str(resources.files(__package__).joinpath("data", name))


def default_cost_model(target: Target | str) -> CostModel:
    """The calibrated model where a measured table ships (h100), else the analytic model."""
    t = get_target(target) if isinstance(target, str) else target
    if t.name in target_names() and t == get_target(t.name):
        return _default_for(t.name)          # built once per packaged target
    return _build_default(t)


@functools.cache
def _default_for(name: str) -> CostModel:
    return _build_default(get_target(name))


def _build_default(t: Target) -> CostModel:
    table = packaged_table(t)
    if table is not None:
        return CalibratedCostModel.from_jsonl(table, t)
    return AnalyticCostModel(t)


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
