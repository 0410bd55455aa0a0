"""Apply the plan's N:M and block patterns: W <- W * M, and mark the layer's node.

For every decision whose chosen pattern is N:M or block (or the N:M part of a channel+N:M
composite; the channel part is a physical shrink done by the channel passes), the mask M is
`pattern.mask(W, S)` with S the "importance" scores when present (else |W|), and the weight
parameter is replaced by a new tensor where(M, W, 0); tensors are never changed in place,
since the user's model shares them. The layer's node gets the annotation `sparsity="2:4"`
(the pattern its weight now obeys).

A pattern whose `check` fails on the weight's current shape leaves the layer dense: the plan's
decision becomes chosen="dense" with the reason, and the pass report lists it. Layers that
share one weight (tied) are masked once, and only if they all chose the same pattern.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from sparsecc.errors import ConfigError
from sparsecc.ir import Graph
from sparsecc.patterns import NM, Block, Composite, Pattern, parse_pattern
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import Candidate, Decision, Plan

from .score_importance import layer_weight, to_param_layout


def masked_part(pattern: Pattern) -> NM | Block | None:
    """The part of `pattern` this pass applies as a mask (None: nothing to mask)."""
    if isinstance(pattern, (NM, Block)):
        return pattern
    if isinstance(pattern, Composite):
        return pattern.nm
    return None


def apply_mask(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A new tensor: weight where mask is True, else 0 (never in place)."""
    return torch.where(mask, weight, torch.zeros((), dtype=weight.dtype))


def _scores_for(importance: dict[str, torch.Tensor], name: str,
                weight: torch.Tensor) -> torch.Tensor | None:
    s = importance.get(name)
    return s if s is not None and tuple(s.shape) == tuple(weight.shape) else None


def _dense(decision: Decision, reason: str) -> Decision:
    chosen = decision.chosen
    cands = tuple(dataclasses.replace(c, reason=c.reason or reason) if c.pattern == chosen else c
                  for c in decision.candidates)
    if not any(c.pattern == chosen for c in cands):
        cands = cands + (Candidate(chosen, reason=reason),)
    # a channel+N:M layer whose mask can't apply keeps its channels (they are gone already)
    kept = getattr(parse_pattern(chosen), "channel", None)
    return dataclasses.replace(decision, chosen=str(kept) if kept is not None else "dense",
                               reason=f"{chosen} not applied: {reason}", candidates=cands)


@dataclasses.dataclass(frozen=True)
class ApplyMasks(Pass):
    name: ClassVar[str] = "apply-masks"
    requires: ClassVar[tuple[str, ...]] = ("plan",)
    provides: ClassVar[tuple[str, ...]] = ("dense_weights",)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        plan: Plan = graph.analyses["plan"]
        importance: dict[str, torch.Tensor] = graph.analyses.get("importance") or {}
        g = graph.copy()
        skipped: dict[str, str] = {}
        applied: dict[str, str] = {}
        to_mask: dict[str, list[tuple[Decision, NM | Block]]] = {}
        dense_weights: dict[str, torch.Tensor] = {}   # weight name -> before masking

        for d in plan.decisions:
            try:
                part = masked_part(parse_pattern(d.chosen))
            except ConfigError as e:
                skipped[d.layer.name] = str(e)
                continue
            if part is None:
                continue
            layer = d.layer
            shape = tuple(int(s) for s in layer_weight(g, layer).shape)
            reason = part.check(shape, layer.op)
            if reason:
                skipped[layer.name] = reason
            else:
                to_mask.setdefault(layer.weight, []).append((d, part))

        sparsity: dict[str, str] = {}   # node output -> pattern string
        for weight_name, users in to_mask.items():
            names = [d.layer.name for d, _ in users]
            tied = [d.layer.name for d in plan.decisions
                    if d.layer.weight == weight_name and d.layer.name not in names]
            if tied or len({str(p) for _, p in users}) > 1:
                for d, _ in users:
                    skipped[d.layer.name] = (f"weight {weight_name} is shared by layers "
                                             f"{sorted(names + tied)} with different plans")
                continue
            d, part = users[0]
            w = layer_weight(g, d.layer)
            mask = part.mask(w, _scores_for(importance, d.layer.name, w))
            dense_weights[weight_name] = g.params[weight_name]
            g.params[weight_name] = to_param_layout(d.layer, apply_mask(w, mask))
            for d, p in users:
                sparsity[d.layer.node] = str(p)
                applied[d.layer.name] = str(p)

        g.nodes = [n.replace(attrs={**n.attrs, "sparsity": sparsity[n.outputs[0]]})
                   if n.outputs and n.outputs[0] in sparsity else n for n in g.nodes]
        g.analyses["plan"] = Plan(tuple(_dense(d, skipped[d.layer.name])
                                        if d.layer.name in skipped else d
                                        for d in plan.decisions))
        g.analyses["dense_weights"] = dense_weights
        report: dict[str, Any] = {"applied": applied, "skipped": skipped}
        return PassResult(g, bool(applied), report)
