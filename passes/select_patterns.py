"""Choose each layer's pattern from predicted time and error, under the accuracy budget.

Items: every layer not fixed by a plan file or override picks one of {dense, its N:M and
block candidates that fit}; every prunable channel group picks one of {keep all, each listed
channel ratio}. A layer option costs its predicted time; a group option costs the time it
saves on its producer layers (fewer outputs) and consumer layers (fewer inputs), and carries
the group's error. Minimize total predicted time subject to total error <= budget (or, with
`speedup`, total error subject to time <= dense / speedup): a multiple-choice knapsack solved
exactly on a grid (`knapsack.py` states the bound). Options predicted slower than dense are
never offered, and after combining a group's channels with a layer's N:M choice the layer is
checked again on its shrunk shape.

A channel option also saves on the ops between its layers whose outputs carry the group's
channels (attention over fewer heads, a cache with fewer KV heads, the MLP's activation on
fewer features): their predicted dense time, scaled by the share of positions removed.

Modelling assumption: a channel option's saving and an N:M option's saving on the same layer
add up; each decision's prediction uses the joint shape (so do the frontier's plans), and
PricePlan re-predicts the applied plan on the final graph: that is what is reported.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from sparsecc.errors import ConfigError
from sparsecc.ir import Graph
from sparsecc.patterns import Channel, Composite, Dense, NM, parse_pattern
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import Decision, Layer, Plan

from .group_channels import ChannelGroup
from .knapsack import solve_min_cost, solve_min_weight


def _speed(dense: float, us: float) -> str:
    return f"{dense / us:.2f}x" if us > 0 else "inf"


@dataclasses.dataclass
class _Item:
    kind: str                      # "layer" | "group"
    key: Any                       # layer name | group index
    labels: list[str]              # option names ("dense", "2:4", "channel0.5", "keep")
    options: list[tuple[float, float]]   # (time or time delta µs, error)


class _Costs:
    def __init__(self, model: Any, rows: dict[str, int], dtype: str) -> None:
        self.model, self.rows, self.dtype = model, rows, dtype

    def us(self, layer: Layer, shape: tuple[int, ...], pattern: str) -> float:
        return float(self.model.predict(shape, layer.op, pattern, self.rows[layer.name],
                                        self.dtype).us)


def _between_layers(graph: Graph, plan: Plan, groups: list[ChannelGroup]) -> dict[int, float]:
    """Per prunable group, the predicted dense µs of the non-layer nodes whose output carries
    the group's channels (PredictLatency's "node_us"; none when it has not run)."""
    node_us = graph.analyses.get("node_us") or {}
    layers = {d.layer.node for d in plan.decisions}
    out: dict[int, float] = {}
    for gi, grp in enumerate(groups):
        if grp.prunable:
            values = {m.value for m in grp.members if not m.is_param} - layers
            out[gi] = sum(node_us.get(v, 0.0) for v in values)
    return out


def _kept_positions(size: int, channels: int, kept: int) -> int:
    return max(1, round(size * kept / channels))


@dataclasses.dataclass(frozen=True)
class SelectPatterns(Pass):
    name: ClassVar[str] = "select-patterns"
    requires: ClassVar[tuple[str, ...]] = ("plan", "channel_groups", "layer_rows", "dense_model",
                                          "node_us")
    resolution: int = 2000

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        from sparsecc.cost import default_cost_model
        config = ctx.config
        plan: Plan = graph.analyses["plan"]
        groups: list[ChannelGroup] = graph.analyses["channel_groups"]
        costs = _Costs(ctx.cost_model or default_cost_model(ctx.target), graph.analyses["layer_rows"],
                       config.dtype)
        by_name = {d.layer.name: d for d in plan.decisions}
        dense_us = {n: d.candidate("dense").predicted_us for n, d in by_name.items()}
        between = _between_layers(graph, plan, groups)
        items = self._layer_items(plan) + self._group_items(plan, groups, by_name, costs,
                                                            dense_us, between)
        forced_err = sum(_err(d, d.chosen) for d in plan.decisions if d.forced)
        forced_us = sum(_us(d, d.chosen) or 0.0 for d in plan.decisions if d.forced)
        if config.speedup:
            total_dense = sum(v or 0.0 for v in dense_us.values())
            picks = solve_min_weight([o.options for o in items],
                                     total_dense / config.speedup - forced_us, self.resolution)
            if picks is None:
                fastest = forced_us + sum(min(t for t, _ in o.options) for o in items)
                best = f"{total_dense / fastest:.2f}x" if fastest > 0 else "none"
                raise ConfigError(f"no plan reaches a predicted {config.speedup}x with the "
                                  f"patterns {list(config.patterns)}; the most these layers "
                                  f"reach is {best} (weight layers, predicted)")
        else:
            # layers fixed by a plan file or override are honored; what they use of the
            # budget is gone, and past it every other layer stays dense
            picks = solve_min_cost([o.options for o in items],
                                   max(0.0, config.budget - forced_err), self.resolution)
            assert picks is not None  # all-dense (weight 0) always fits

        def decide(picks: list[int]) -> list[Decision]:
            layer_pick = {it.key: it.labels[p] for it, p in zip(items, picks)
                          if it.kind == "layer"}
            group_pick = {it.key: it.labels[p] for it, p in zip(items, picks)
                          if it.kind == "group"}
            return [self._decide(d, layer_pick, group_pick, groups, costs, config.budget,
                                 between) for d in plan.decisions]
        group_pick = {it.key: it.labels[p] for it, p in zip(items, picks) if it.kind == "group"}
        decisions = decide(picks)
        if not config.speedup:
            kept = self._worth_it(plan.decisions, decisions, graph, config.min_gain)
            if kept is not decisions:    # reverted to dense: the frontier's chosen plan is too
                picks = [0] * len(items)     # option 0 is "dense" / "keep"
            decisions = kept
        g = graph.copy()
        g.analyses["plan"] = Plan(tuple(decisions))
        g.analyses["frontier"] = self._frontier(items, picks, forced_err, decide)
        return PassResult(g, True, {"items": len(items), "groups": group_pick,
                                    "fixed_error": forced_err,
                                    "error": sum(_err(d, d.chosen) for d in decisions)})

    @staticmethod
    def _worth_it(before: tuple[Decision, ...], decisions: list[Decision], graph: Graph,
                  min_gain: float) -> list[Decision]:
        """The selected changes, unless the whole model (every node, as PredictLatency
        predicted it dense) gains less than `min_gain` from them: a gain inside the cost
        model's error is no reason to change the model, and may be a slowdown."""
        whole = (graph.analyses.get("dense_model") or {}).get("total_us")
        if not whole or min_gain <= 0:
            return decisions
        saved = 0.0
        for old, d in zip(before, decisions):
            dense = old.candidate("dense")
            if not d.forced and dense is not None and dense.predicted_us is not None \
                    and d.predicted_us is not None:
                saved += dense.predicted_us - d.predicted_us
        changed = [d for d in decisions if not d.forced and d.chosen != "dense"]
        if not changed or saved <= 0 or whole - saved <= 0:
            return decisions
        gain = whole / (whole - saved)
        if gain >= 1.0 + min_gain:
            return decisions
        why = (f"dense: the selected plan ({len(changed)} layers) gains {gain:.3f}x on the "
               f"whole model, under the {1 + min_gain:.2f}x minimum (min_gain): not worth "
               f"changing the model")
        return [d if d.forced else dataclasses.replace(
                    d, chosen="dense", reason=why,
                    predicted_us=(d.candidate("dense").predicted_us
                                  if d.candidate("dense") else d.predicted_us))
                for d in decisions]

    def _frontier(self, items: list[_Item], chosen: list[int], forced_err: float,
                  decide) -> list[dict[str, Any]]:
        """Best predicted time at a range of error budgets: the error/latency Pareto front.
        A point's time is its plan's weight layers, each predicted on its joint shape as the
        decisions are (`decide`), so the points are on the scale of the report's totals."""
        def point(picks: list[int], label: str, is_chosen: bool) -> dict[str, Any]:
            us = sum(d.predicted_us or 0.0 for d in decide(picks))
            err = forced_err + sum(it.options[p][1] for it, p in zip(items, picks))
            return {"predicted_us": us, "error": err, "label": label, "chosen": is_chosen}
        out = [point(chosen, "chosen plan", True)]
        budgets = [0.0] + [10 ** (k / 4) for k in range(-16, 5)]
        seen = {tuple(chosen)}
        for b in budgets:
            picks = solve_min_cost([it.options for it in items], b, self.resolution)
            if picks is None or tuple(picks) in seen:
                continue
            seen.add(tuple(picks))
            out.append(point(picks, f"budget {b:.3g}", False))
        return out

    # -- items ---------------------------------------------------------------------------
    def _layer_items(self, plan: Plan) -> list[_Item]:
        items = []
        for d in plan.decisions:
            dense = d.candidate("dense").predicted_us
            if d.forced or dense is None:
                continue
            labels, options = ["dense"], [(dense, 0.0)]
            for c in d.candidates:
                p = _parse(c.pattern)
                if isinstance(p, (Dense, Channel, Composite)) or p is None or c.reason:
                    continue
                if c.predicted_us is None or c.error is None or c.predicted_us >= dense:
                    continue
                labels.append(c.pattern)
                options.append((c.predicted_us, c.error))
            items.append(_Item("layer", d.layer.name, labels, options))
        return items

    def _group_items(self, plan, groups, by_name, costs, dense_us, between) -> list[_Item]:
        items = []
        for gi, grp in enumerate(groups):
            if not grp.prunable:
                continue
            layers = [by_name[n] for n in (*grp.producers, *grp.consumers) if n in by_name]
            if any(d.forced for d in layers) or not grp.producers:
                continue
            root = by_name.get(grp.producers[0])
            if root is None:
                continue
            labels, options = ["keep"], [(0.0, 0.0)]
            for c in root.candidates:
                p = _parse(c.pattern)
                if not isinstance(p, Channel) or c.reason or c.error is None:
                    continue
                kept = p.kept_channels(grp.size)
                delta = 0.0
                for d in layers:
                    base = dense_us[d.layer.name]
                    if base is None:
                        delta = math.inf
                        break
                    shape = list(d.layer.shape)
                    axis = 0 if d.layer.name in grp.producers else 1
                    shape[axis] = _kept_positions(shape[axis], grp.size, kept)
                    delta += costs.us(d.layer, tuple(shape), "dense") - base
                delta -= between.get(gi, 0.0) * (1 - kept / grp.size)
                if delta < 0:
                    labels.append(c.pattern)
                    options.append((delta, c.error))
            if len(options) > 1:
                items.append(_Item("group", gi, labels, options))
        return items

    # -- the decision per layer ----------------------------------------------------------
    def _decide(self, d: Decision, layer_pick, group_pick, groups, costs, budget,
                between) -> Decision:
        name = d.layer.name
        if d.forced:
            return dataclasses.replace(d, predicted_us=self._forced_us(d, costs))
        dense = d.candidate("dense").predicted_us
        own = layer_pick.get(name, "dense")
        channel, shape = None, list(d.layer.shape)
        notes = []
        for gi, grp in enumerate(groups):
            pick = group_pick.get(gi, "keep")
            if pick == "keep":
                continue
            p = parse_pattern(pick)
            kept = p.kept_channels(grp.size)
            if name in grp.producers:
                channel = p
                shape[0] = _kept_positions(shape[0], grp.size, kept)
                saved = between.get(gi, 0.0) * (1 - kept / grp.size)
                if saved > 0 and name == grp.producers[0]:
                    notes.append(f"the group also saves {saved:.1f} µs predicted on the ops "
                                 f"between its layers")
            if name in grp.consumers:
                shape[1] = _kept_positions(shape[1], grp.size, kept)
                notes.append(f"inputs shrink with group {grp.root} ({pick})")
        base_us = costs.us(d.layer, tuple(shape), "dense") if dense is not None else None
        chosen = own
        if channel is not None:
            nm = _parse(own)
            chosen = str(Composite(channel, nm)) if isinstance(nm, NM) else str(channel)
            if isinstance(nm, NM):
                joint = costs.us(d.layer, tuple(shape), own)
                if joint >= base_us:
                    chosen, notes = str(channel), notes + [f"{own} dropped: slower on the "
                                                           f"shrunk layer"]
        us = base_us if chosen in ("dense",) or isinstance(_parse(chosen), Channel) else (
            costs.us(d.layer, tuple(shape), own) if dense is not None else None)
        reason = self._reason(d, chosen, dense, us, budget)
        if notes:
            reason += "; " + "; ".join(notes)
        return dataclasses.replace(d, chosen=chosen, reason=reason, predicted_us=us)

    @staticmethod
    def _forced_us(d: Decision, costs: _Costs) -> float | None:
        c = d.candidate(d.chosen)
        if c is not None and c.predicted_us is not None:
            return c.predicted_us
        try:
            return costs.us(d.layer, d.layer.shape, d.chosen)
        except (ConfigError, KeyError):
            return None

    @staticmethod
    def _reason(d: Decision, chosen: str, dense: float | None, us: float | None,
                budget: float) -> str:
        if dense is None:
            return f"{chosen}: no prediction for this layer"
        if chosen != "dense" and us is not None:
            err = _err(d, chosen)
            return (f"{chosen}: {dense:.1f} -> {us:.1f} µs predicted ({_speed(dense, us)}), "
                    f"error {err:.2g}")
        why = []
        for c in d.candidates:
            if c.pattern == "dense":
                continue
            if c.reason:
                why.append(f"{c.pattern}: {c.reason}")
            elif c.predicted_us is not None and c.predicted_us >= dense:
                why.append(f"{c.pattern} predicted {_speed(dense, c.predicted_us)} "
                           f"(not faster)")
            elif c.error is not None:
                why.append(f"{c.pattern} ({_speed(dense, c.predicted_us or dense)}, error "
                           f"{c.error:.2g}) not worth it within budget {budget:g}")
        return "dense: " + ("; ".join(why) if why else "no sparse candidate")


def _parse(text: str) -> Any:
    try:
        return parse_pattern(text)
    except ConfigError:
        return None


def _err(d: Decision, pattern: str) -> float:
    c = d.candidate(pattern)
    if c is not None and c.error is not None:
        return c.error
    p = _parse(pattern)
    if isinstance(p, Composite):
        return sum(_err(d, str(x)) for x in (p.channel, p.nm))
    return 0.0


def _us(d: Decision, pattern: str) -> float | None:
    c = d.candidate(pattern)
    return c.predicted_us if c is not None else None
