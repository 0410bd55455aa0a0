"""Layers of a graph and the plan: one decision per layer, with its candidates and reason.

A layer is a node that multiplies by a weight parameter: `linear`, `conv1d`/`conv2d`, or
`mm`/`matmul`/`addmm` with a parameter operand. Its name is the weight's module path
(`layers.0.mlp.up_proj`). Shapes are (out_features, in_features, *kernel).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError
from .ir import Graph, Node

WEIGHT_OPS = {"linear": 1, "conv1d": 1, "conv2d": 1, "conv1d.padding": 1,
              "conv2d.padding": 1, "mm": 1, "matmul": 1, "addmm": 2}


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    op: str
    node: str          # the IR output name of the layer's node
    weight: str        # the IR parameter holding the weight
    shape: tuple[int, ...]   # (out, in, *kernel) in the layer's own terms

    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        return self.shape[1]


def layer_of(graph: Graph, node: Node) -> Layer | None:
    """The layer `node` computes, or None if it multiplies by no weight parameter."""
    index = WEIGHT_OPS.get(node.op)
    if index is None or len(node.inputs) <= index:
        return None
    weight = node.inputs[index]
    if weight is None or weight not in graph.param_names:
        return None
    shape = graph.values[weight].shape
    if node.op in ("mm", "matmul", "addmm"):
        if len(shape) != 2:
            return None
        shape = (shape[1], shape[0])  # x @ W with W [in, out]
    name = weight[:-len(".weight")] if weight.endswith(".weight") else weight
    return Layer(name, node.op, node.outputs[0], weight, tuple(int(d) for d in shape))


def param_readers(graph: Graph) -> dict[str, list[Node]]:
    """Every parameter read by more than one node (tied and shared weights: an embedding and
    its tied LM head, one Linear called twice), with the nodes that read it."""
    readers: dict[str, list[Node]] = {}
    params = set(graph.param_names)
    for node in graph.nodes:
        for i in dict.fromkeys(node.inputs):
            if i in params:
                readers.setdefault(i, []).append(node)
    return {p: nodes for p, nodes in readers.items() if len(nodes) > 1}


def shared_reason(param: str, readers: list[Node]) -> str:
    ops = ", ".join(f"{n.op} -> %{n.outputs[0]}" for n in readers[:3])
    return (f"weight {param} is shared by {len(readers)} readers ({ops}): a pattern on it "
            f"would change them all, and sparsecc applies patterns to unshared weights only")


def find_layers(graph: Graph) -> list[Layer]:
    layers = [l for l in (layer_of(graph, n) for n in graph.nodes) if l is not None]
    seen: dict[str, int] = {}
    out = []
    for layer in layers:  # a weight used twice (tied) gives two layers: number the repeats
        k = seen.get(layer.name, 0)
        seen[layer.name] = k + 1
        out.append(layer if k == 0 else dataclasses.replace(layer, name=f"{layer.name}#{k}"))
    return out



def layer_pattern(node: Node) -> str:
    """A node's sparsity annotation in its canonical form ("dense" when none)."""
    from .patterns import parse_pattern
    annotation = node.attrs.get("sparsity")
    return str(parse_pattern(annotation)) if annotation else "dense"


def sibling_groups(graph: Graph, patterns: Iterable[str] = ("dense", "2:4")
                   ) -> list[tuple[Node, ...]]:
    """Linear layers that can run as one GEMM over their weights stacked along N (q/k/v,
    gate/up), in graph order, groups of two or more: they read the same input, carry the same
    pattern (one of `patterns`), have the same K and weight dtype, and all have a bias of one
    dtype or none; every weight and bias is a parameter that no other node reads."""
    shared = param_readers(graph)
    params = set(graph.param_names)
    allowed = set(patterns)
    groups: dict[tuple, list[Node]] = {}
    for node in graph.nodes:
        if node.op != "linear" or len(node.inputs) < 2 or not node.inputs[0]:
            continue
        layer = layer_of(graph, node)
        pattern = layer_pattern(node)
        if layer is None or len(layer.shape) != 2 or pattern not in allowed:
            continue
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if layer.weight in shared or (bias is not None and (bias not in params or bias in shared)):
            continue
        key = (node.inputs[0], pattern, layer.shape[1], graph.values[layer.weight].dtype,
               None if bias is None else graph.values[bias].dtype)
        groups.setdefault(key, []).append(node)
    return [tuple(g) for g in groups.values() if len(g) > 1]

@dataclasses.dataclass(frozen=True)
class Candidate:
    pattern: str
    predicted_us: float | None = None
    error: float | None = None
    reason: str | None = None   # why it can't apply or was rejected, if so

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Decision:
    layer: Layer
    chosen: str
    reason: str
    candidates: tuple[Candidate, ...] = ()
    forced: bool = False     # set by a plan file or an override: selection leaves it alone
    predicted_us: float | None = None   # this layer's predicted time with the chosen pattern

    def candidate(self, pattern: str) -> Candidate | None:
        return next((c for c in self.candidates if c.pattern == pattern), None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.layer.name, "op": self.layer.op, "node": self.layer.node,
                "weight": self.layer.weight, "shape": list(self.layer.shape),
                "chosen": self.chosen, "reason": self.reason,
                "predicted_us": self.predicted_us,
                "candidates": [c.to_dict() for c in self.candidates]}


@dataclasses.dataclass(frozen=True)
class Plan:
    decisions: tuple[Decision, ...]

    def __getitem__(self, name: str) -> Decision:
        for d in self.decisions:
            if d.layer.name == name:
                return d
        raise KeyError(name)

    def chosen(self) -> dict[str, str]:
        return {d.layer.name: d.chosen for d in self.decisions}

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "layers": {d.layer.name: d.chosen for d in self.decisions},
                "decisions": [d.to_dict() for d in self.decisions]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def load_plan_file(path: str, layers: Iterable[Layer]) -> dict[str, str]:
    """Read a user plan file ({"layers": {name: pattern}}) and check it names real layers."""
    from .patterns import parse_pattern
    from .cache import load_json_file
    raw = load_json_file(path, "plan file")
    if not isinstance(raw, dict) or not isinstance(raw.get("layers"), dict):
        raise ConfigError(f"plan file {path}: expected an object with a \"layers\" object "
                          f"mapping layer names to patterns")
    known = {l.name for l in layers}
    out = {}
    for name, pattern in raw["layers"].items():
        if name not in known:
            raise ConfigError(f"plan file {path}: layer {name!r} does not exist in the model")
        try:
            out[name] = str(parse_pattern(pattern))
        except ConfigError as e:
            raise ConfigError(f"plan file {path}: layer {name!r}: {e}") from None
    return out


def audit(before: Graph, after: Graph, plan: "Plan") -> None:
    """Check that the plan says what the final graph is, layer by layer: a sparse annotation
    exactly where the plan chose N:M or block, fewer output channels exactly where it chose a
    channel pattern. A difference is an internal error (PipelineError), raised before anything
    is written, never a report that disagrees with the model. A layer the user named on its
    own (PlanLayers' "strict") that ended without its pattern is the user's error (ConfigError)."""
    from .errors import PipelineError
    from .patterns import parse_pattern
    for name, (wanted, source) in after.analyses.get("strict", {}).items():
        if plan[name].chosen != wanted:
            raise ConfigError(f"layer {name}: {wanted} (from {source}) can't apply: "
                              f"{plan[name].reason}")
    nodes = {o: n for n in after.nodes for o in n.outputs}
    for d in plan.decisions:
        p = parse_pattern(d.chosen)
        node = nodes.get(d.layer.node)
        if node is None or d.layer.weight not in after.values:
            raise PipelineError(f"layer {d.layer.name}: gone from the final graph")
        wants_mask = p.kind in ("nm", "block", "composite")
        annotation = node.attrs.get("sparsity")
        masked = parse_pattern(annotation).kind in ("nm", "block") if annotation else False
        out_axis = 1 if d.layer.op in ("mm", "matmul", "addmm") else 0
        n0 = before.values[d.layer.weight].shape[out_axis]
        n1 = after.values[d.layer.weight].shape[out_axis]
        shrunk = n1 != n0
        wants_shrink = p.kind in ("channel", "composite")
        if wants_mask != masked or wants_shrink != shrunk:
            raise PipelineError(
                f"layer {d.layer.name}: the plan says {d.chosen}, but the final graph has "
                f"{'sparsity ' + str(annotation) if annotation else 'no sparsity annotation'} "
                f"and {n1} of {n0} outputs (an internal error; nothing was written)")
