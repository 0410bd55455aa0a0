"""Find the weight layers and write the plan: one decision per layer.

The candidates of every layer are the config's patterns (plus dense), each with the reason it
can't apply to this layer if so: the pattern doesn't fit the weight (`Pattern.check`), or the
backend has no kernel of that pattern for this op on the target (`Backend.check`), so nothing
is planned that the artifact would run dense. A layer named by the plan file, or else by
the config's first matching override, is fixed to that pattern (dense, with the reason, when
it doesn't fit); every other layer starts dense and is left to the selection pass.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from sparsecc.backend import get_backend
from sparsecc.errors import ConfigError
from sparsecc.ir import Graph
from sparsecc.patterns import Dense, parse_pattern
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import (Candidate, Decision, Layer, Plan, find_layers, param_readers,
                           shared_reason)


def _check(pattern, layer: Layer, backend, target, shared: str | None = None) -> str | None:
    if isinstance(pattern, Dense):
        return None
    if shared is not None:
        return shared
    why = pattern.check(layer.shape, layer.op)
    if why is None and backend is not None and target is not None:
        why = backend.check(pattern, layer.op, target)
    return why


@dataclasses.dataclass(frozen=True)
class PlanLayers(Pass):
    name: ClassVar[str] = "plan-layers"
    provides: ClassVar[tuple[str, ...]] = ("layers", "plan", "strict")
    forced: tuple[tuple[str, str], ...] = ()   # (layer, pattern) from a plan file

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        config = ctx.config
        layers = find_layers(graph)
        shared = {p: shared_reason(p, nodes) for p, nodes in param_readers(graph).items()}
        forced = dict(self.forced)
        listed = list(config.patterns) if config is not None else ["dense"]
        backend = get_backend(config.backend) if config is not None else None
        decisions, strict_layers = [], {}
        for layer in layers:
            wanted, source = forced.get(layer.name), "the plan file"
            strict = wanted is not None      # a layer named on its own must get its pattern
            if wanted is None and config is not None:
                o = config.override_for(layer.name)
                wanted, source = (str(o), "an override") if o is not None else (None, "")
                strict = o is not None and any(k == layer.name for k, _ in config.overrides)
            names = list(dict.fromkeys([*listed, *([wanted] if wanted else []), "dense"]))
            cands = []
            for text in names:
                why = _check(parse_pattern(text), layer, backend, ctx.target,
                             shared.get(layer.weight))
                cands.append(Candidate(text, reason=why))
            fits = {c.pattern: c.reason is None for c in cands}
            if strict:
                strict_layers[layer.name] = (wanted, source)
            if wanted is not None:
                if fits[wanted]:
                    chosen, reason = wanted, f"{wanted}: asked for by {source}"
                else:
                    why = next(c.reason for c in cands if c.pattern == wanted)
                    if strict:
                        raise ConfigError(f"layer {layer.name}: {wanted} (from {source}) can't "
                                          f"apply: {why}")
                    chosen, reason = "dense", f"{wanted} asked for by {source} can't apply: {why}"
            else:
                chosen, reason = "dense", "dense: not selected yet"
            decisions.append(Decision(layer, chosen, reason, tuple(cands),
                                      forced=wanted is not None))
        g = graph.copy()
        g.analyses["layers"] = layers
        g.analyses["plan"] = Plan(tuple(decisions))
        # layers named on their own (not by a regex): a pattern they end without is an error
        g.analyses["strict"] = strict_layers
        return PassResult(g, False, {"layers": len(layers),
                                     "sparse": sum(d.chosen != "dense" for d in decisions)})
