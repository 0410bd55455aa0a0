"""Find the weight layers and write the plan: one decision per layer.

The candidates of every layer are the config's patterns (plus dense). The chosen pattern is,
in order: the plan file's entry for the layer; the config's first override matching the
layer's name; otherwise the first candidate that fits the layer (`Pattern.check`), in the
order the user listed them. Picking by predicted time and error instead is the job of the
selection pass when a cost model is configured; this pass only records what was asked and
why a pattern can't apply.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from sparsecc.ir import Graph
from sparsecc.patterns import Dense, parse_pattern
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import Candidate, Decision, Layer, Plan, find_layers


def _check(pattern, layer: Layer) -> str | None:
    return None if isinstance(pattern, Dense) else pattern.check(layer.shape, layer.op)


@dataclasses.dataclass(frozen=True)
class PlanLayers(Pass):
    name: ClassVar[str] = "plan-layers"
    provides: ClassVar[tuple[str, ...]] = ("layers", "plan")
    forced: tuple[tuple[str, str], ...] = ()   # (layer, pattern) from a plan file

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        config = ctx.config
        layers = find_layers(graph)
        forced = dict(self.forced)
        listed = list(config.patterns) if config is not None else ["dense"]
        decisions = []
        for layer in layers:
            wanted, source = forced.get(layer.name), "the plan file"
            if wanted is None and config is not None:
                o = config.override_for(layer.name)
                wanted, source = (str(o), "an override") if o is not None else (None, "")
            names = list(dict.fromkeys([*listed, *([wanted] if wanted else []), "dense"]))
            cands = []
            for text in names:
                why = _check(parse_pattern(text), layer)
                cands.append(Candidate(text, reason=why))
            fits = {c.pattern: c.reason is None for c in cands}
            if wanted is not None:
                if fits[wanted]:
                    chosen, reason = wanted, f"{wanted}: asked for by {source}"
                else:
                    why = next(c.reason for c in cands if c.pattern == wanted)
                    chosen, reason = "dense", f"{wanted} asked for by {source} can't apply: {why}"
            else:
                chosen = next(p for p in names if fits[p])
                reason = (f"{chosen}: the first listed pattern that fits" if chosen != "dense"
                          else "dense: no listed pattern fits" if listed != ["dense"]
                          else "dense: no sparse pattern was asked for")
                skipped = [f"{c.pattern} ({c.reason})" for c in cands
                           if c.reason and names.index(c.pattern) < names.index(chosen)]
                if skipped:
                    reason += "; skipped " + ", ".join(skipped)
            decisions.append(Decision(layer, chosen, reason, tuple(cands),
                                      forced=wanted is not None))
        g = graph.copy()
        g.analyses["layers"] = layers
        g.analyses["plan"] = Plan(tuple(decisions))
        return PassResult(g, False, {"layers": len(layers),
                                     "sparse": sum(d.chosen != "dense" for d in decisions)})
