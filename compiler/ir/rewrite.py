"""Small helpers for passes that rewrite graphs."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .graph import Graph, Node, Ref


def _rename_attr(v: Any, mapping: Mapping[str, str]) -> Any:
    if isinstance(v, Ref):
        return Ref(mapping.get(v.name, v.name))
    if isinstance(v, tuple):
        return tuple(_rename_attr(x, mapping) for x in v)
    return v


def replace_uses(graph: Graph, mapping: Mapping[str, str]) -> None:
    """Make every reader of a value in `mapping` read its replacement instead (in place)."""
    if not mapping:
        return
    nodes = []
    for node in graph.nodes:
        inputs = tuple(None if i is None else mapping.get(i, i) for i in node.inputs)
        attrs = {k: _rename_attr(v, mapping) for k, v in node.attrs.items()}
        if inputs != node.inputs or attrs != node.attrs:
            node = Node(node.op, inputs, node.outputs, attrs)
        nodes.append(node)
    graph.nodes = nodes
    graph.outputs = [mapping.get(o, o) for o in graph.outputs]
