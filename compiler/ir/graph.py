"""The sparsecc graph IR: a small typed SSA graph.

A `Graph` is an ordered list of `Node`s over named `Value`s. Every value is defined exactly
once: as a graph input, as a parameter (weights, buffers and constants, held by reference in
`Graph.params`, never copied by a pass), or as an output of one node. Shapes are tuples whose
entries are ints or symbolic dimension expressions written as strings ("batch", "seq",
"2*seq"). Node attributes are static: ints, floats, bools, strings, None, dtypes, tuples of
those, and `Ref`s to scalar values computed in the graph (symbolic sizes).

Operators are named after the ATen overload they compute (`linear`, `add.Tensor`,
`split.Tensor`); `sparsecc.ir.ops` holds the supported set and how each runs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

DTYPES: dict[str, torch.dtype] = {
    "f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
    "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8,
    "u8": torch.uint8, "bool": torch.bool,
}
# Scalar values (symbolic sizes from `sym_size`, arithmetic on them) have dtype "sym" and shape ().
SYM = "sym"
_NAMES = {v: k for k, v in DTYPES.items()}

Dim = int | str
Shape = tuple[Dim, ...]


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return _NAMES[dtype]
    except KeyError:
        raise ValueError(f"dtype {dtype} has no sparsecc IR name") from None


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None


@dataclasses.dataclass(frozen=True)
class DType:
    """A dtype used as an attribute value (e.g. the target dtype of `to.dtype`)."""
    name: str

    def __post_init__(self) -> None:
        torch_dtype(self.name)

    def __repr__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Ref:
    """A reference, inside an attribute, to a scalar value computed in the graph."""
    name: str

    def __repr__(self) -> str:
        return f"%{self.name}"


@dataclasses.dataclass(frozen=True)
class Value:
    name: str
    shape: Shape
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype != SYM:
            torch_dtype(self.dtype)
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)


@dataclasses.dataclass(frozen=True)
class Node:
    """One operator application. `inputs` name values (None for an absent optional tensor)."""
    op: str
    inputs: tuple[str | None, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "attrs", dict(self.attrs))

    def __hash__(self) -> int:
        return hash((self.op, self.inputs, self.outputs))

    def uses(self) -> list[str]:
        """Every value this node reads: its inputs and the `Ref`s in its attributes."""
        names = [i for i in self.inputs if i is not None]
        names.extend(r.name for r in _refs(self.attrs.values()))
        return names

    @property
    def output(self) -> str:
        if len(self.outputs) != 1:
            raise ValueError(f"node {self.op} -> {self.outputs} has {len(self.outputs)} outputs")
        return self.outputs[0]

    def replace(self, **changes: Any) -> "Node":
        return dataclasses.replace(self, **changes)


def _refs(items: Iterable[Any]) -> Iterator[Ref]:
    for item in items:
        if isinstance(item, Ref):
            yield item
        elif isinstance(item, (tuple, list)):
            yield from _refs(item)


class Graph:
    """Inputs, parameters, nodes in a topological order, and outputs.

    `values` maps every name to its `Value`; `params` maps parameter names to tensors (by
    reference; a parsed graph may have parameter values without tensors). `analyses` is a table
    where analysis passes leave their results; it is not part of equality or the text form.
    """

    def __init__(self, inputs: Iterable[Value] = (), params: Iterable[Value] = (),
                 nodes: Iterable[Node] = (), outputs: Iterable[str] = (),
                 values: Iterable[Value] = (), tensors: Mapping[str, torch.Tensor] | None = None,
                 name: str = "main") -> None:
        self.name = name
        self.inputs: list[str] = []
        self.param_names: list[str] = []
        self.values: dict[str, Value] = {}
        self.params: dict[str, torch.Tensor] = dict(tensors or {})
        self.nodes: list[Node] = list(nodes)
        self.outputs: list[str] = list(outputs)
        self.analyses: dict[str, Any] = {}
        for v in inputs:
            self.inputs.append(v.name)
            self.values[v.name] = v
        for v in params:
            self.param_names.append(v.name)
            self.values[v.name] = v
        for v in values:
            self.values[v.name] = v

    # -- queries -------------------------------------------------------------------------
    def value(self, name: str) -> Value:
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(f"graph {self.name} has no value %{name}") from None

    def is_param(self, name: str | None) -> bool:
        return name is not None and (name in self.params or name in self.param_names)

    def producers(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.uses():
                users.setdefault(name, []).append(node)
        return users

    def find(self, op: str | tuple[str, ...]) -> list[Node]:
        ops = (op,) if isinstance(op, str) else op
        return [n for n in self.nodes if n.op in ops]

    def symbols(self) -> set[str]:
        """Free symbol names in the shapes of the graph inputs (the dynamic dims)."""
        from .symbolic import free_symbols
        out: set[str] = set()
        for name in self.inputs:
            for d in self.values[name].shape:
                if isinstance(d, str):
                    out |= free_symbols(d)
        return out

    # -- building ------------------------------------------------------------------------
    def add_node(self, node: Node, outputs: Iterable[Value] = ()) -> Node:
        self.nodes.append(node)
        for v in outputs:
            self.values[v.name] = v
        return node

    def add_param(self, value: Value, tensor: torch.Tensor | None) -> None:
        self.param_names.append(value.name)
        self.values[value.name] = value
        if tensor is not None:
            self.params[value.name] = tensor

    def copy(self) -> "Graph":
        """A new graph structure sharing the parameter tensors (no weight copies)."""
        g = Graph(name=self.name)
        g.inputs = list(self.inputs)
        g.param_names = list(self.param_names)
        g.values = dict(self.values)
        g.params = dict(self.params)
        g.nodes = list(self.nodes)
        g.outputs = list(self.outputs)
        g.analyses = dict(self.analyses)
        return g

    def prune_unused(self) -> "Graph":
        """Drop nodes whose outputs nobody reads, and values no longer defined (in place)."""
        live = set(self.outputs)
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(o in live for o in node.outputs):
                kept.append(node)
                live.update(node.uses())
        self.nodes = kept[::-1]
        self.param_names = [p for p in self.param_names if p in live]
        self.params = {k: v for k, v in self.params.items() if k in live}
        defined = set(self.inputs) | set(self.param_names)
        defined.update(o for n in self.nodes for o in n.outputs)
        self.values = {k: v for k, v in self.values.items() if k in defined}
        return self

    # -- views ---------------------------------------------------------------------------
    def to_networkx(self):
        """A networkx DiGraph view: one vertex per node (by index), edges along values."""
        import networkx as nx
        dg = nx.DiGraph()
        producers = {}
        for i, node in enumerate(self.nodes):
            dg.add_node(i, op=node.op, node=node)
            for out in node.outputs:
                producers[out] = i
        for i, node in enumerate(self.nodes):
            for name in node.uses():
                if name in producers:
                    dg.add_edge(producers[name], i, value=name)
        return dg

    # -- equality and text ---------------------------------------------------------------
    def _key(self) -> tuple:
        return (self.inputs, self.param_names, self.outputs,
                [(n.op, n.inputs, n.outputs, _attr_key(n.attrs)) for n in self.nodes],
                sorted((k, v.shape, v.dtype) for k, v in self.values.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        from .text import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        return (f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.param_names)} params, "
                f"{len(self.nodes)} nodes>")


def _attr_key(attrs: Mapping[str, Any]) -> tuple:
    def norm(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(norm(x) for x in v)
        if isinstance(v, float) and v != v:
            return "nan"
        return (type(v).__name__, v)
    return tuple(sorted((k, norm(v)) for k, v in attrs.items()))
