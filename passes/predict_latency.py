"""Predict every candidate's time on the target at the configured workload.

Each layer is a GEMM of M rows: for a linear layer M is the product of its output's leading
dims; for a convolution, batch x output height x width. Symbolic dims take the workload's
values (`batch`, `seq`; in decode mode `seq` = 1); any other symbol is an error. A
candidate's `predicted_us` is this layer's own time under that pattern (a channel pattern:
the layer with its output channels reduced). The cost model is the target's default
(`sparsecc.cost.default_cost_model`): measured tables where they exist, else analytic.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from sparsecc.cost.graph import predict_graph
from sparsecc.errors import ConfigError
from sparsecc.ir import Graph
from sparsecc.ir.symbolic import evaluate, free_symbols
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import Layer, Plan

CONV_OPS = ("conv1d", "conv2d", "conv1d.padding", "conv2d.padding", "convolution")


def workload_env(workload: Mapping[str, Any]) -> dict[str, int]:
    """Symbol values of the workload's batch and seq (decode: seq = 1)."""
    env: dict[str, int] = {}
    if workload.get("batch"):
        env["batch"] = int(workload["batch"])
    if workload.get("mode") == "decode":
        env["seq"] = 1
    elif workload.get("seq"):
        env["seq"] = int(workload["seq"])
    return env


def layer_rows(graph: Graph, layer: Layer, env: Mapping[str, int]) -> int:
    """M: how many rows the layer's GEMM multiplies at this workload."""
    shape = graph.values[layer.node].shape
    dims = [shape[0], *shape[2:]] if layer.op in CONV_OPS else list(shape[:-1])
    rows = 1
    for d in dims:
        if isinstance(d, str):
            missing = free_symbols(d) - set(env)
            if missing:
                raise ConfigError(f"layer {layer.name}: dim {d!r} needs a workload value for "
                                  f"{sorted(missing)} (give --batch/--seq)")
        rows *= evaluate(d, env)
    return max(1, rows)


def _predict(model: Any, layer: Layer, pattern: str, rows: int, dtype: str) -> float | None:
    try:
        return float(model.predict(layer.shape, layer.op, pattern, rows, dtype).us)
    except ConfigError:
        return None


@dataclasses.dataclass(frozen=True)
class PredictLatency(Pass):
    name: ClassVar[str] = "predict-latency"
    requires: ClassVar[tuple[str, ...]] = ("plan",)
    provides: ClassVar[tuple[str, ...]] = ("layer_rows", "dense_model", "node_us")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        from sparsecc.cost import default_cost_model
        plan: Plan = graph.analyses["plan"]
        model = ctx.cost_model or default_cost_model(ctx.target)
        env = {**graph.analyses.get("example_dims", {}),
               **workload_env(graph.analyses.get("workload", {}))}
        dtype = ctx.config.dtype if ctx.config is not None else "f16"
        rows: dict[str, int] = {}
        decisions = []
        for d in plan.decisions:
            m = rows[d.layer.name] = layer_rows(graph, d.layer, env)
            cands = []
            for c in d.candidates:
                us = None if c.reason else _predict(model, d.layer, c.pattern, m, dtype)
                cands.append(dataclasses.replace(c, predicted_us=us))
            decisions.append(dataclasses.replace(d, candidates=tuple(cands)))
        g = graph.copy()
        g.analyses["plan"] = Plan(tuple(decisions))
        g.analyses["layer_rows"] = rows
        # the whole model before anything changes (PredictModel compares the planned one)
        whole = predict_graph(graph, model, env, dtype)
        g.analyses["dense_model"] = whole.to_dict()
        # each node's own predicted µs, dense: what removing channels saves between layers
        g.analyses["node_us"] = {n.node: n.us for n in whole.nodes}
        total = sum(c.predicted_us or 0 for d in decisions for c in d.candidates
                    if c.pattern == "dense")
        return PassResult(g, False, {"dense_us": total, "rows": rows,
                                     "cost_model": type(model).__name__})
