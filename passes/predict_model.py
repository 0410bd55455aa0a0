"""Predict the whole planned model, every node included, next to the dense model.

The weight layers alone overstate a plan's gain: norms, attention, elementwise ops and copies
take the same time before and after. This pass predicts every node of the final graph (what
the backend lowers) with `sparsecc.cost.graph.predict_graph`, at the workload, and compares it
with the dense graph's prediction that PredictLatency made before anything changed. Sibling
linear layers that the chosen backend runs as one GEMM (`Backend.fuses_siblings`) are priced
that way; the dense side stays the user's model, one GEMM per layer.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from sparsecc.cost.graph import predict_graph
from sparsecc.ir import Graph
from sparsecc.pipeline import Pass, PassContext, PassResult

from .predict_latency import workload_env


def _siblings(graph: Graph, ctx: PassContext) -> list:
    from sparsecc.backend import default_backend, get_backend
    from sparsecc.plan import sibling_groups
    name = getattr(ctx.config, "backend", None) or (default_backend(ctx.target)
                                                    if ctx.target is not None else None)
    fuses = get_backend(name).fuses_siblings if name else ()
    return sibling_groups(graph, fuses) if fuses else []


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


@dataclasses.dataclass(frozen=True)
class PredictModel(Pass):
    name: ClassVar[str] = "predict-model"
    requires: ClassVar[tuple[str, ...]] = ("plan", "dense_model")
    provides: ClassVar[tuple[str, ...]] = ("model_prediction",)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        from sparsecc.cost import default_cost_model
        model = ctx.cost_model or default_cost_model(ctx.target)
        env = {**graph.analyses.get("example_dims", {}),
               **workload_env(graph.analyses.get("workload", {}))}
        dtype = ctx.config.dtype if ctx.config is not None else "f16"
        dense = graph.analyses["dense_model"]
        siblings = _siblings(graph, ctx)
        planned = predict_graph(graph, model, env, dtype, siblings).to_dict()
        if siblings:
            planned["fused_siblings"] = len(siblings)
        out = {"dense": dense, "planned": planned,
               "speedup": _ratio(dense["total_us"], planned["total_us"]),
               "fused_speedup": _ratio(dense["fused_us"], planned["fused_us"])}
        g = graph.copy()
        g.analyses["model_prediction"] = out
        return PassResult(g, False, {"dense_us": dense["total_us"],
                                     "planned_us": planned["total_us"]})
