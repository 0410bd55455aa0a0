"""Price the final plan on the final graph: the one per-layer figure every report number uses.

Selection predicts each candidate on the layer's original shape and adds savings up; by the
time the plan is applied, layers have lost output channels (their own channel pattern or a
coupled one), input channels (a shrunk producer upstream), or a mask that could not apply.
This pass predicts each layer once more, at the workload's rows M, on the shape its weight has
in the final graph, with what its kernel runs there:

    us(layer) = cost(final shape, op, kernel pattern, M)
    kernel pattern = the N:M / block part of the chosen pattern, else dense

and sets the decision's `predicted_us` and its chosen candidate's figure to it (the dense
candidate keeps its figure on the original shape: it is the baseline). A chosen
pattern that was never offered as such (a composite `channel0.5+2:4`, a channel pattern taken
on through a coupled group) becomes a candidate, with the summed error of its parts. The
totals, the table, the charts, the header and the CLI line all read these figures.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from sparsecc.errors import ConfigError
from sparsecc.ir import Graph
from sparsecc.patterns import Block, Composite, NM, parse_pattern
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import Candidate, Decision, Plan, layer_of


def kernel_pattern(chosen: str) -> str:
    """What the layer's kernel runs on its final shape: the masked part, else dense."""
    p = parse_pattern(chosen)
    if isinstance(p, Composite):
        return str(p.nm)
    return str(p) if isinstance(p, (NM, Block)) else "dense"


def _error(d: Decision, pattern: str) -> float | None:
    """A pattern's predicted error on this layer: its candidate's, or the sum of its parts'."""
    c = d.candidate(pattern)
    if c is not None and c.error is not None:
        return c.error
    p = parse_pattern(pattern)
    if isinstance(p, Composite):
        parts = [_error(d, str(x)) for x in (p.channel, p.nm)]
        return None if None in parts else sum(parts)
    return 0.0 if p.kind == "dense" else None


@dataclasses.dataclass(frozen=True)
class PricePlan(Pass):
    name: ClassVar[str] = "price-plan"
    requires: ClassVar[tuple[str, ...]] = ("plan", "layer_rows")

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        from sparsecc.cost import default_cost_model
        model = ctx.cost_model or default_cost_model(ctx.target)
        dtype = ctx.config.dtype if ctx.config is not None else "f16"
        rows: dict[str, int] = graph.analyses["layer_rows"]
        nodes = {n.outputs[0]: n for n in graph.nodes if n.outputs}
        plan: Plan = graph.analyses["plan"]
        decisions = []
        for d in plan.decisions:
            node = nodes.get(d.layer.node)
            final = layer_of(graph, node) if node is not None else None
            us = None
            if final is not None and d.layer.name in rows:
                us = _predict(model, final.shape, d.layer.op, kernel_pattern(d.chosen),
                              rows[d.layer.name], dtype)
            decisions.append(_priced(d, us))
        g = graph.copy()
        g.analyses["plan"] = Plan(tuple(decisions))
        return PassResult(g, False, {"predicted_us": sum(d.predicted_us or 0.0
                                                         for d in decisions)})


def _predict(model: Any, shape: tuple[int, ...], op: str, pattern: str, rows: int,
             dtype: str) -> float | None:
    try:
        return float(model.predict(shape, op, pattern, rows, dtype).us)
    except ConfigError:
        return None


def _priced(d: Decision, us: float | None) -> Decision:
    """`d` with its final figure on the decision and on the chosen candidate (added if the
    chosen pattern was not among the candidates)."""
    if d.candidate(d.chosen) is None:
        cands = d.candidates + (Candidate(d.chosen, us, _error(d, d.chosen)),)
    else:
        cands = tuple(dataclasses.replace(c, predicted_us=us)
                      if c.pattern == d.chosen and c.pattern != "dense" else c
                      for c in d.candidates)
    return dataclasses.replace(d, candidates=cands, predicted_us=us)
