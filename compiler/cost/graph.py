"""Whole-model prediction: a predicted time for every node of a graph, not only its GEMMs.

    predict_graph(graph, model, env, dtype) -> GraphPrediction

Every node is one of:
  * a weight layer (linear, conv, mm with a weight): the cost model's GEMM prediction for its
    current shape and its `sparsity` annotation (dense when none), at its M rows;
  * attention (`scaled_dot_product_attention`): its FLOPs and bytes (`attention_work`);
  * a matmul of two activations (attention written out as `q @ kᵀ`): a dense GEMM;
  * a view (reshape, permute, slice, ...) or a size computation: no kernel, 0 µs;
  * a norm, softmax, copy (`contiguous`, `cat`, ...) or any other op: memory-bound, from the
    bytes its tensor inputs and outputs move (`OpWork`), with a launch each.

Times come from the measured op table where it covers the op (`model.predict_op`), else the
analytic model. The sum assumes one kernel per node replayed back to back (as in a CUDA
graph): what an eager artifact runs. `fused_us` assumes what inductor does: connected elementwise ops, norms,
softmax and casts (through views) run as one kernel that moves its external inputs and the
outputs read outside it once and pays one launch (`_fused`).

`siblings` (groups of sibling linear layers, `sparsecc.plan.sibling_groups`) are priced as the
backend runs them: one GEMM over their weights stacked along N, its time on the first member
(source "fused" on the others, at 0 µs).
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..ir import Graph, Node
from ..ir.graph import SYM, torch_dtype
from ..ir.symbolic import evaluate
from ..targets import DTYPE_BYTES, normalize_dtype
from .ops import OpWork, attention_work

VIEWS = frozenset("""
    reshape view _unsafe_view permute transpose.int t numpy_T expand expand_as slice.Tensor
    split.Tensor split_with_sizes chunk unbind.int unsqueeze squeeze squeeze.dim squeeze.dims
    flatten.using_ints alias detach lift_fresh_copy select.int narrow sym_size.int
    dropout feature_dropout
""".split())
NORMS = frozenset({"batch_norm", "_native_batch_norm_legit_no_training", "layer_norm",
                   "rms_norm", "group_norm"})
SOFTMAX = frozenset({"softmax.int", "_softmax", "log_softmax.int"})
COPIES = frozenset({"contiguous", "clone", "cat", "stack", "repeat", "repeat_interleave.self_int",
                    "to.dtype", "to.dtype_layout", "to.other", "_to_copy", "type_as",
                    "index_select", "gather", "index.Tensor", "embedding",
                    "constant_pad_nd"})
ACT_GEMMS = frozenset({"matmul", "bmm", "mm", "baddbmm"})
# elementwise ops inductor fuses with their neighbours
POINTWISE = frozenset("""
    relu gelu silu sigmoid tanh hardtanh hardswish hardsigmoid leaky_relu elu erf
    add.Tensor add.Scalar sub.Tensor sub.Scalar rsub.Scalar mul.Tensor mul.Scalar div.Tensor
    div.Scalar neg pow.Tensor_Scalar rsqrt sqrt exp log abs reciprocal cos sin clamp clamp_min
    clamp_max minimum maximum to.dtype _to_copy type_as where.self masked_fill.Scalar
""".split())


@dataclasses.dataclass(frozen=True)
class NodeTime:
    node: str        # the node's first output
    op: str
    kind: str        # layer | attention | gemm | view | norm | softmax | copy | elementwise
    us: float
    source: str      # measured | interpolated | analytic | none


@dataclasses.dataclass(frozen=True)
class GraphPrediction:
    nodes: tuple[NodeTime, ...]
    fused_us: float
    unpredicted: tuple[str, ...] = ()     # "op -> %value: why" for nodes with no prediction
    fused_kernels: int = 0                # kernels in the fused prediction

    @property
    def total_us(self) -> float:
        return sum(n.us for n in self.nodes)

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for n in self.nodes:
            out[n.kind] += n.us
        return {k: round(v, 3) for k, v in sorted(out.items())}

    def to_dict(self) -> dict[str, Any]:
        measured = sum(n.us for n in self.nodes if n.source in ("measured", "interpolated"))
        if self.unpredicted:
            return {"total_us": None, "fused_us": None, "unpredicted": list(self.unpredicted[:5]),
                    "unpredicted_count": len(self.unpredicted)}
        return {"total_us": round(self.total_us, 3), "fused_us": round(self.fused_us, 3),
                "by_kind": self.by_kind(), "kernels": sum(n.kind != "view" for n in self.nodes),
                "fused_kernels": self.fused_kernels,
                "from_measurements": round(measured / self.total_us, 3) if self.total_us else 0}


def _shape(graph: Graph, name: str, env: Mapping[str, int]) -> list[int]:
    return [evaluate(d, env) if isinstance(d, str) else int(d) for d in graph.values[name].shape]


def _bytes(graph: Graph, name: str | None, env: Mapping[str, int], dtype: str) -> float:
    """Bytes of a value at the workload; floats in the compute dtype."""
    if name is None or name not in graph.values or graph.values[name].dtype == SYM:
        return 0.0
    v = graph.values[name]
    size = DTYPE_BYTES.get(normalize_dtype(dtype), 2) if torch_dtype(v.dtype).is_floating_point \
        else torch_dtype(v.dtype).itemsize
    return float(math.prod(_shape(graph, name, env)) * size)


def predict_graph(graph: Graph, model: Any, env: Mapping[str, int], dtype: str = "f16",
                  siblings: Sequence[Sequence[Node]] = ()) -> GraphPrediction:
    """Predicted µs of every node of `graph` at the workload whose symbol values are `env`."""
    from ..plan import layer_of
    dtype = normalize_dtype(dtype)
    stacked: dict[str, int] = {}          # first member's output -> the group's N
    fused_into: dict[str, str] = {}       # other members' outputs -> the first's
    for group in siblings:
        first = group[0].outputs[0]
        stacked[first] = sum(int(graph.values[n.inputs[1]].shape[0]) for n in group)
        fused_into.update({n.outputs[0]: first for n in group[1:]})
    times: list[NodeTime] = []
    missing: list[str] = []
    readers: dict[str, list[Node]] = defaultdict(list)
    for node in graph.nodes:
        for i in node.inputs:
            if i is not None:
                readers[i].append(node)
    for node in graph.nodes:
        out = node.outputs[0] if node.outputs else ""
        if out in fused_into:
            times.append(NodeTime(out, node.op, "layer", 0.0, "fused"))
            continue
        try:
            layer = layer_of(graph, node)
            if out in stacked:
                layer = dataclasses.replace(layer, shape=(stacked[out], *layer.shape[1:]))
            times.append(_node_time(graph, node, model, env, dtype, layer))
        except (ConfigError, ValueError, KeyError) as e:
            missing.append(f"{node.op} -> %{out}: {e}")
            times.append(NodeTime(out, node.op, "unknown", 0.0, "none"))
    fused, kernels = (0.0, 0) if missing else _fused(graph, times, readers, model, env, dtype)
    return GraphPrediction(tuple(times), fused, tuple(missing), kernels)


def _op_time(model: Any, work: OpWork):
    predict = getattr(model, "predict_op", None)
    if predict is None:
        raise ConfigError(f"the cost model {type(model).__name__} predicts no non-GEMM ops")
    return predict(work)


def _node_time(graph: Graph, node: Node, model: Any, env, dtype: str, layer) -> NodeTime:
    out = node.outputs[0] if node.outputs else ""
    if node.op.startswith("sym.") or node.op in VIEWS:
        return NodeTime(out, node.op, "view", 0.0, "none")
    if layer is not None:
        shape = layer.shape
        o = _shape(graph, out, env)
        rows = math.prod([o[0], *o[2:]]) if node.op.startswith("conv") else math.prod(o[:-1])
        pattern = node.attrs.get("sparsity") or "dense"
        p = model.predict(shape, layer.op, pattern, max(1, rows), dtype)
        return NodeTime(out, node.op, "layer", float(p.us), p.source)
    if node.op == "scaled_dot_product_attention":
        q, k = _shape(graph, node.inputs[0], env), _shape(graph, node.inputs[1], env)
        batch = math.prod(q[:-3]) if len(q) > 3 else 1
        work = attention_work(batch, q[-3], q[-2], k[-2], q[-1], dtype, kv_heads=k[-3])
        p = _op_time(model, work)
        return NodeTime(out, node.op, "attention", float(p.us), p.source)
    if node.op in ACT_GEMMS and len(node.inputs) >= 2:
        a = _shape(graph, node.inputs[-2], env)
        b = _shape(graph, node.inputs[-1], env)
        o = _shape(graph, out, env)
        k, n = a[-1], b[-1]
        rows = math.prod(o[:-1])
        p = model.predict((n, k), "linear", "dense", max(1, rows), dtype)
        return NodeTime(out, node.op, "gemm", float(p.us), p.source)
    moved = sum(_bytes(graph, i, env, dtype) for i in node.inputs) + \
        sum(_bytes(graph, o, env, dtype) for o in node.outputs)
    kind = ("norm" if node.op in NORMS else "softmax" if node.op in SOFTMAX
            else "copy" if node.op in COPIES else "elementwise")
    if moved <= 0:
        return NodeTime(out, node.op, "view", 0.0, "none")
    p = _op_time(model, OpWork(kind, moved, 0.0, dtype))
    return NodeTime(out, node.op, kind, float(p.us), p.source)


# what inductor fuses into one kernel with its neighbours: elementwise ops, norms and softmax
# (a reduction with its prologue and epilogue), and copies it writes straight from their
# producers (casts, contiguous copies, padding). Not `cat`: counted as its own copy, the fused
# prediction of llama3-8b-layer came within 6% of torch.compile on the H200 at M = 1, 16 and
# 4096 for the dense model and three plans (docs/results/h200/fused/NOTES.md); fusing it too
# predicted 4-18% under, and fusing only pointwise chains 1-20% over.
FUSABLE = POINTWISE | NORMS | SOFTMAX | frozenset(
    {"contiguous", "clone", "to.dtype_layout", "to.other", "constant_pad_nd"})


def _fused(graph: Graph, times: list[NodeTime], readers: Mapping[str, list[Node]],
           model: Any, env, dtype: str) -> tuple[float, int]:
    """The total with fusable ops (FUSABLE) fused as inductor does: connected fusable nodes —
    through views, which cost nothing — form one kernel; each kernel moves the bytes of its
    inputs from outside and of its outputs read outside (or returned) once, with one launch.
    GEMMs, attention and the other ops stay as predicted. Returns (µs, kernels)."""
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    group_of: dict[str, int] = {}     # value -> the fusable node (index) it comes from
    total, kernels = 0.0, 0
    members: list[int] = []
    for idx, (node, t) in enumerate(zip(graph.nodes, times)):
        if node.op in VIEWS or node.op.startswith("sym."):
            src = next((group_of[i] for i in node.inputs[:1] if i in group_of), None)
            if src is not None:
                for o in node.outputs:
                    group_of[o] = src
            total += t.us
            continue
        if node.op not in FUSABLE:
            total += t.us
            kernels += t.kind != "view" and t.us > 0
            continue
        parent[idx] = idx
        members.append(idx)
        for i in node.inputs:
            if i in group_of:
                parent[find(group_of[i])] = idx
        for o in node.outputs:
            group_of[o] = idx
    groups: dict[int, list[Node]] = defaultdict(list)
    for idx in members:
        groups[find(idx)].append(graph.nodes[idx])
    for root, nodes in groups.items():
        # the group's values: its nodes' outputs and the views of them
        inside = {v for v, idx in group_of.items() if find(idx) == root}
        ids = {id(n) for n in nodes}

        def written(v: str) -> bool:
            """Whether the kernel must write `v`: returned, or read (maybe through views)
            by a node outside the group."""
            return v in graph.outputs or any(
                any(written(o) for o in r.outputs) if r.op in VIEWS else id(r) not in ids
                for r in readers.get(v, ()))

        reads = {i for n in nodes for i in n.inputs if i is not None and i not in inside}
        moved = sum(_bytes(graph, i, env, dtype) for i in reads)
        moved += sum(_bytes(graph, o, env, dtype) for n in nodes for o in n.outputs if written(o))
        if moved > 0:
            total += float(_op_time(model, OpWork("elementwise", moved, 0.0, dtype)).us)
            kernels += 1
    return total, kernels
