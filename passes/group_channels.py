"""Coupled channels: which weights must lose the same channels together.

Every static axis of every value is a vertex; each op's rule (`channel_rules.couple`) joins
the axes it ties together, position by position: a residual add ties its operands' channel
axes, a concat ties each piece to a range of the result, a reshape of [B,T,H*D] into
[B,T,H,D] ties feature p to head p // D, attention ties each KV head to its query heads
(GQA), a depthwise conv ties its input and output channels. A connected set of axes is a
`ChannelGroup`; the connected sets of *positions* inside it are its channels (a channel of an
attention group is one KV head with its query heads: many positions per weight).

Removing channel c removes every position of c from every member: rows of the weights that
produce it, columns of the weights that read it, entries of biases and batch norms. That is
exact, not approximate, when no op reduces over or indexes into the group's axes and no graph
input or output carries them; otherwise the group is not prunable and says why. State passed
in and out (`sparsecc.ir.state`: a KV cache the graph updates and returns) is the exception:
it shrinks on both sides, and the compiled model declares the smaller state its caller
allocates (a cache of 2 KV heads instead of 4).
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import ClassVar

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import torch

from sparsecc.ir import Graph
from sparsecc.ir.state import state_pairs
from sparsecc.pipeline import Pass, PassContext, PassResult
from sparsecc.plan import find_layers, param_readers, shared_reason

from .channel_rules import Axis, couple


@dataclasses.dataclass(frozen=True, eq=False)
class Member:
    """One axis of one value in a group; `channel[p]` is the group channel of position p."""
    value: str
    axis: int
    channel: torch.Tensor   # int64 [size of the axis]
    is_param: bool


@dataclasses.dataclass(frozen=True, eq=False)
class ChannelGroup:
    root: str                       # the first layer that produces the group's channels
    members: tuple[Member, ...]
    size: int                       # number of channels
    producers: tuple[str, ...]      # layers whose output rows are channels of the group
    consumers: tuple[str, ...]      # layers whose input columns are channels of the group
    reason: str | None = None       # why it can't be pruned; None if it can

    @property
    def prunable(self) -> bool:
        return self.reason is None

    def member(self, value: str, axis: int | None = None) -> Member:
        for m in self.members:
            if m.value == value and (axis is None or m.axis == axis):
                return m
        raise KeyError(f"{value} axis {axis} is not in group {self.root}")

    def positions(self, value: str, axis: int, channels: torch.Tensor) -> torch.Tensor:
        """The positions of `value`'s `axis` that belong to `channels`."""
        ch = self.member(value, axis).channel
        return torch.nonzero(torch.isin(ch, channels)).flatten()


class _Collector:
    def __init__(self) -> None:
        self.edges: list[tuple[Axis, Axis, str, int]] = []
        self.blocked: dict[Axis, str] = {}

    def edge(self, a: Axis, b: Axis, kind: str = "id", k: int = 0) -> None:
        self.edges.append((a, b, kind, k))

    def block(self, a: Axis, why: str) -> None:
        self.blocked.setdefault(a, why)


def _static_axes(g: Graph) -> dict[Axis, int]:
    return {(name, a): d for name, v in g.values.items() for a, d in enumerate(v.shape)
            if isinstance(d, int) and d > 1 and v.dtype != "sym"}


def group_channels(graph: Graph) -> list[ChannelGroup]:
    """Every group of coupled channel axes that contains the output axis of a weight layer."""
    sink = _Collector()
    for node in graph.nodes:
        couple(graph, node, sink)
    state = state_pairs(graph)      # a cache passed in and out shrinks on both sides
    for name in [*graph.inputs, *graph.outputs]:
        if name in state or name in state.values():
            continue
        for a in range(len(graph.values[name].shape)):
            sink.block((name, a), f"%{name} is a graph {'input' if name in graph.inputs else 'output'}")
    axes = _static_axes(graph)
    base, total = {}, 0
    for ax, size in axes.items():
        base[ax] = total
        total += size
    us, vs = [], []
    node_u, node_v = [], []
    index = {ax: i for i, ax in enumerate(axes)}
    for a, b, kind, k in sink.edges:
        if a not in axes or b not in axes:
            for ax in (a, b):  # a channel axis tied to a symbolic or unit axis can't shrink
                if ax in axes:
                    sink.block(ax, "tied to an axis of symbolic or unit size")
            continue
        na, nb = axes[a], axes[b]
        pa = np.arange(na)
        if kind == "id":
            if na != nb:
                sink.block(a, f"sizes {na} and {nb} disagree")
                continue
            pb = pa
        elif kind == "div":
            pb = pa // k
            if pb[-1] >= nb:
                sink.block(a, "reshape sizes disagree")
                continue
        else:  # offset
            pb = pa + k
            if pb[-1] >= nb:
                sink.block(a, "concat ranges disagree")
                continue
        us.append(base[a] + pa)
        vs.append(base[b] + pb)
        node_u.append(index[a])
        node_v.append(index[b])
    pos_labels = _components(total, us, vs)
    node_labels = _components(len(axes), [np.array(node_u, dtype=np.int64)],
                              [np.array(node_v, dtype=np.int64)])
    by_node = defaultdict(list)
    for ax, i in index.items():
        by_node[node_labels[i]].append(ax)
    return _groups(graph, by_node, axes, base, pos_labels, sink.blocked)


def _components(n: int, us: list, vs: list) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    u = np.concatenate(us) if us else np.zeros(0, dtype=np.int64)
    v = np.concatenate(vs) if vs else np.zeros(0, dtype=np.int64)
    adj = scipy.sparse.coo_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n, n))
    return scipy.sparse.csgraph.connected_components(adj, directed=False)[1]


def _groups(graph, by_node, axes, base, pos_labels, blocked) -> list[ChannelGroup]:
    layers = find_layers(graph)
    producer_axes, consumer_axes = {}, {}
    for layer in layers:
        w = layer.weight
        if layer.op in ("mm", "matmul", "addmm"):
            producer_axes[(w, 1)], consumer_axes[(w, 0)] = layer.name, layer.name
        else:
            producer_axes[(w, 0)], consumer_axes[(w, 1)] = layer.name, layer.name
    for node in graph.nodes:
        if node.op == "embedding" and node.inputs[0] in graph.param_names:
            producer_axes[(node.inputs[0], 1)] = node.inputs[0].removesuffix(".weight")
    order = {name: i for i, name in enumerate([*graph.inputs, *graph.param_names,
                                                *[o for n in graph.nodes for o in n.outputs]])}
    shared = param_readers(graph)
    groups = []
    for members in by_node.values():
        producers = [producer_axes[a] for a in members if a in producer_axes]
        if not producers:
            continue
        members.sort(key=lambda ax: (order.get(ax[0], 0), ax[1]))
        root_axis = next(a for a in members if a in producer_axes)
        # number channels in the order the root's positions meet them
        remap: dict[int, int] = {}
        for lab in pos_labels[base[root_axis]:base[root_axis] + axes[root_axis]]:
            remap.setdefault(int(lab), len(remap))
        built, reason = [], None
        for ax in members:
            labs = pos_labels[base[ax]:base[ax] + axes[ax]]
            for lab in labs:
                remap.setdefault(int(lab), len(remap))
            ch = torch.tensor([remap[int(l)] for l in labs], dtype=torch.int64)
            built.append(Member(ax[0], ax[1], ch, ax[0] in graph.param_names))
            if reason is None and ax in blocked:
                reason = f"%{ax[0]} axis {ax[1]}: {blocked[ax]}"
        if reason is None:
            reason = next((shared_reason(ax[0], shared[ax[0]]) for ax in members
                           if ax[0] in shared), None)
        if reason is None and len(remap) < 2:
            reason = "only one channel"
        groups.append(ChannelGroup(
            root=producer_axes[root_axis], members=tuple(built), size=len(remap),
            producers=tuple(dict.fromkeys(producers)),
            consumers=tuple(dict.fromkeys(consumer_axes[a] for a in members
                                          if a in consumer_axes)),
            reason=reason))
    groups.sort(key=lambda grp: order.get(grp.members[0].value, 0))
    return groups


@dataclasses.dataclass(frozen=True)
class GroupChannels(Pass):
    """Provides "channel_groups": the coupled channel groups of the graph."""
    name: ClassVar[str] = "group-channels"
    provides: ClassVar[tuple[str, ...]] = ("channel_groups",)

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        g = graph.copy()
        groups = group_channels(g)
        g.analyses["channel_groups"] = groups
        return PassResult(g, False, {
            "groups": len(groups), "prunable": sum(grp.prunable for grp in groups),
            "blocked": {grp.root: grp.reason for grp in groups if not grp.prunable}})
