"""Remove channels physically: smaller weights, biases, norms and activations.

Given channel groups (`group_channels`) and, per group, the channels to remove, every member
loses those channels' positions: parameters are re-sliced (new tensors; the originals, which
the user's model shares, are untouched), value shapes shrink, and attributes that spell out
sizes (view/reshape/expand sizes, split sizes, depthwise conv groups, full slices) are
rewritten. `zero_channels` builds the full-size reference instead: the same parameters with
the removed positions set to zero. The two compute the same function, and the tests hold
them to it.

Which channels go: the lowest-scoring ones, where a channel's score is the L2 norm of every
weight entry it owns (producer rows and consumer columns), or given importance scores.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from sparsecc.errors import ConfigError
from sparsecc.ir import Graph, Node, Value
from sparsecc.patterns import NM, Channel, Composite, parse_pattern
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import Decision, Plan

from .group_channels import ChannelGroup

Removals = Mapping[int, torch.Tensor]   # group index -> channel ids to remove


def _kept_positions(groups: list[ChannelGroup], removals: Removals
                    ) -> dict[tuple[str, int], torch.Tensor]:
    kept: dict[tuple[str, int], torch.Tensor] = {}
    for gi, removed in removals.items():
        grp = groups[gi]
        if not grp.prunable:
            raise ConfigError(f"channel group {grp.root} can't be pruned: {grp.reason}")
        removed = torch.as_tensor(removed, dtype=torch.int64)
        if len(removed) and (removed.min() < 0 or removed.max() >= grp.size):
            raise ConfigError(f"group {grp.root} has {grp.size} channels; asked to remove "
                              f"ids outside that range")
        if len(torch.unique(removed)) >= grp.size:
            raise ConfigError(f"group {grp.root}: removing all {grp.size} channels")
        for m in grp.members:
            keep = torch.nonzero(~torch.isin(m.channel, removed)).flatten()
            kept[(m.value, m.axis)] = keep
    return kept


def shrunk_inputs(graph: Graph, batch: Any, kept: Mapping[tuple[str, int], torch.Tensor]
                  ) -> tuple:
    """A positional input batch of the unshrunk graph, for the shrunk one: the graph inputs
    that lost positions (state such as a KV cache, `sparsecc.ir.state`) keep only theirs."""
    batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    out = list(batch)
    for (value, axis), keep in kept.items():
        if value in graph.inputs:
            i = graph.inputs.index(value)
            if i < len(out) and isinstance(out[i], torch.Tensor):
                out[i] = out[i].index_select(axis, keep.to(out[i].device))
    return tuple(out)


def zero_channels(graph: Graph, groups: list[ChannelGroup], removals: Removals) -> Graph:
    """The full-size reference: removed positions of every parameter member set to zero."""
    g = graph.copy()
    for gi, removed in removals.items():
        removed = torch.as_tensor(removed, dtype=torch.int64)
        for m in groups[gi].members:
            if m.is_param:
                drop = torch.nonzero(torch.isin(m.channel, removed)).flatten()
                t = g.params[m.value].clone()
                t.index_fill_(m.axis, drop, 0)
                g.params[m.value] = t
    return g


def shrink_graph(graph: Graph, groups: list[ChannelGroup], removals: Removals) -> Graph:
    """A new graph with the removed channels gone from every member of their groups."""
    kept = _kept_positions(groups, removals)
    by_value: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
    for (value, axis), keep in kept.items():
        by_value[value][axis] = keep
    g = graph.copy()
    for value, axes in by_value.items():
        v = g.values[value]
        shape = list(v.shape)
        for axis, keep in axes.items():
            shape[axis] = len(keep)
        g.values[value] = Value(v.name, tuple(shape), v.dtype)
        if value in g.params:
            t = g.params[value]
            for axis, keep in axes.items():
                t = t.index_select(axis, keep)
            g.params[value] = t.contiguous()
    g.nodes = [_fix_attrs(graph, g, n) for n in g.nodes]
    return g


def _fix_attrs(old: Graph, new: Graph, node: Node) -> Node:
    outs_old = [old.values[o].shape for o in node.outputs]
    outs_new = [new.values[o].shape for o in node.outputs]
    ins_changed = any(i is not None and old.values[i].shape != new.values[i].shape
                      for i in node.inputs)
    if outs_old == outs_new and not ins_changed:
        return node
    at = dict(node.attrs)
    op = node.op
    if op in ("view", "reshape", "_unsafe_view", "expand"):
        key = "shape" if op == "reshape" else "size"
        sizes = list(at[key])
        for i, (a, b) in enumerate(zip(outs_old[0], outs_new[0])):
            if a != b and isinstance(sizes[i], int) and sizes[i] != -1:
                sizes[i] = b
        at[key] = tuple(sizes)
    elif op in ("split.Tensor", "chunk", "split_with_sizes") and outs_old != outs_new:
        rank = len(old.values[node.inputs[0]].shape)
        d = at.get("dim", 0) % rank
        return Node("split_with_sizes", node.inputs, node.outputs,
                    {"split_sizes": tuple(s[d] for s in outs_new), "dim": at.get("dim", 0)})
    elif op in ("conv1d", "conv2d", "conv1d.padding", "conv2d.padding", "convolution"):
        groups = at.get("groups", 1)
        cin_old = old.values[node.inputs[0]].shape[1]
        if groups != 1 and groups == cin_old:
            at["groups"] = new.values[node.inputs[0]].shape[1]
    elif op == "slice.Tensor":
        rank = len(old.values[node.inputs[0]].shape)
        d = at.get("dim", 0) % rank
        old_size = old.values[node.inputs[0]].shape[d]
        if at.get("end") == old_size:
            at["end"] = new.values[node.inputs[0]].shape[d]
    return node.replace(attrs=at) if at != node.attrs else node


def channel_scores(graph: Graph, group: ChannelGroup) -> torch.Tensor:
    """Per channel: the L2 norm of all weight entries of its producer rows and consumer columns."""
    total = torch.zeros(group.size, dtype=torch.float64)
    for m in group.members:
        if not m.is_param or graph.values[m.value].shape.__len__() < 2:
            continue
        t = graph.params[m.value].detach().double()
        sq = t.pow(2).movedim(m.axis, 0).reshape(t.shape[m.axis], -1).sum(1)
        total.index_add_(0, m.channel, sq)
    return total.sqrt()


def choose_removals(graph: Graph, group: ChannelGroup, pattern: Channel,
                    scores: torch.Tensor | None = None) -> torch.Tensor:
    """The lowest-scoring channels to remove so that `pattern.kept_channels` remain."""
    scores = channel_scores(graph, group) if scores is None else scores
    keep = pattern.kept_channels(group.size)
    order = torch.argsort(scores, stable=True)
    return torch.sort(order[:group.size - keep]).values


@dataclasses.dataclass(frozen=True)
class ShrinkChannels(Pass):
    """Apply the plan's channel patterns group by group; layers of unprunable groups stay dense."""
    name: ClassVar[str] = "shrink-channels"
    requires: ClassVar[tuple[str, ...]] = ("plan", "channel_groups")
    provides: ClassVar[tuple[str, ...]] = ("removed_channels",)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        plan: Plan = graph.analyses["plan"]
        groups: list[ChannelGroup] = graph.analyses["channel_groups"]
        chosen = {d.layer.name: parse_pattern(d.chosen) for d in plan.decisions}
        removals, reasons, applied, inputs, coupled = {}, {}, {}, {}, {}
        for gi, grp in enumerate(groups):
            asked = {name: _channel_part(chosen[name]) for name in grp.producers
                     if name in chosen and _channel_part(chosen[name]) is not None}
            if not asked:
                continue
            distinct = set(asked.values())
            if len(distinct) > 1:
                raise ConfigError(f"layers {sorted(asked)} share channels (group {grp.root}) "
                                  f"but were given different channel patterns "
                                  f"{sorted(map(str, distinct))}")
            pattern = distinct.pop()
            if not grp.prunable:
                for name in asked:
                    reasons[name] = f"channels can't be removed: {grp.reason}"
                continue
            removals[gi] = choose_removals(graph, grp, pattern)
            for name in asked:
                applied[name] = f"{len(removals[gi])} of {grp.size} channels of group " \
                                f"{grp.root} removed"
            for name in grp.producers:       # producers that share the channels lose them too
                if name not in asked and name in chosen:
                    coupled[name] = (pattern, f"{pattern}: its outputs are channels of group "
                                              f"{grp.root}, which {', '.join(sorted(asked))} "
                                              f"chose ({len(removals[gi])} of {grp.size} "
                                              f"removed)")
            for name in grp.consumers:
                inputs[name] = f"reads group {grp.root}: {len(removals[gi])} of its " \
                               f"{grp.size} input channels removed"
        g = shrink_graph(graph, groups, removals) if removals else graph.copy()
        g.analyses["removed_channels"] = {groups[gi].root: r for gi, r in removals.items()}
        if removals:   # for reconstruction: the graph before, and what each value kept
            g.analyses["unshrunk"] = graph
            g.analyses["kept_positions"] = _kept_positions(groups, removals)
        g.analyses["plan"] = Plan(tuple(_update(d, reasons, applied, inputs, coupled)
                                        for d in plan.decisions))
        return PassResult(g, bool(removals), {"groups_shrunk": len(removals),
                                              "left_dense": reasons})


def _channel_part(p) -> Channel | None:
    if isinstance(p, Channel):
        return p
    return getattr(p, "channel", None)


def _update(d: Decision, reasons: dict[str, str], applied: dict[str, str],
            inputs: dict[str, str], coupled: dict[str, tuple[Channel, str]]) -> Decision:
    name = d.layer.name
    if name in coupled:
        pattern, why = coupled[name]
        own = parse_pattern(d.chosen)
        if isinstance(own, NM):
            chosen, why = str(Composite(pattern, own)), f"{why}; {own} kept"
        else:
            chosen = str(pattern)
            if own.kind != "dense":
                why += f"; {own} dropped: it was chosen for the unshrunk layer"
        d = dataclasses.replace(d, chosen=chosen, reason=why)
    if name in reasons:
        d = dataclasses.replace(d, chosen="dense", reason=reasons[name])
    elif name in applied:
        d = dataclasses.replace(d, reason=f"{d.reason}; {applied[name]}")
    if name in inputs:
        d = dataclasses.replace(d, reason=f"{d.reason}; {inputs[name]}")
    return d
