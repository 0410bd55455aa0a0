"""Find the weight layers and write the plan: one decision per layer.

This version plans every layer dense: sparse patterns are listed as candidates with the reason
they were not applied, since no cost model or mask application exists yet. Overrides and plan
files are recorded but also stay dense, and the reason says so.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from sparsecc.ir import Graph
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import Candidate, Decision, Plan, find_layers

NOT_YET = "not applied: this version has no cost model or mask application, plans are dense"


@dataclasses.dataclass(frozen=True)
class PlanLayers(Pass):
    name: ClassVar[str] = "plan-layers"
    provides: ClassVar[tuple[str, ...]] = ("layers", "plan")
    forced: tuple[tuple[str, str], ...] = ()   # (layer, pattern) from a plan file

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        config = ctx.config
        layers = find_layers(graph)
        forced = dict(self.forced)
        decisions = []
        for layer in layers:
            wanted = forced.get(layer.name)
            if wanted is None and config is not None:
                o = config.override_for(layer.name)
                wanted = str(o) if o is not None else None
            patterns = list(config.patterns) if config is not None else ["dense"]
            if wanted and wanted not in patterns:
                patterns.append(wanted)
            cands = tuple(Candidate(p, reason=None if p == "dense" else NOT_YET)
                          for p in patterns)
            if wanted and wanted != "dense":
                reason = f"asked for {wanted}; {NOT_YET}"
            else:
                reason = "dense: " + NOT_YET.split(": ", 1)[1]
            decisions.append(Decision(layer, "dense", reason, cands))
        g = graph.copy()
        g.analyses["layers"] = layers
        g.analyses["plan"] = Plan(tuple(decisions))
        return PassResult(g, False, {"layers": len(layers)})
