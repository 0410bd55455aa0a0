"""Remove operators that compute nothing at inference time, then dead code.

A node is a no-op when its single output equals its first input in shape and dtype and the
op is one of: dropout/feature_dropout with train=False, alias, detach, lift_fresh_copy,
contiguous, clone, or a `to`/`_to_copy`/`type_as` that keeps the dtype. Its readers are
pointed at the input. Nodes whose outputs nobody reads are then dropped.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from sparsecc.ir import Graph, Node
from sparsecc.ir.rewrite import replace_uses
from sparsecc.pipeline import Pass, PassContext, PassResult

_ALWAYS = frozenset({"alias", "detach", "lift_fresh_copy", "contiguous", "clone"})
_CASTS = frozenset({"to.dtype", "to.dtype_layout", "to.device", "to.other", "_to_copy",
                    "type_as"})
_DROPOUTS = frozenset({"dropout", "feature_dropout"})


def is_noop(graph: Graph, node: Node) -> bool:
    if len(node.outputs) != 1 or not node.inputs or node.inputs[0] is None:
        return False
    src, out = graph.values[node.inputs[0]], graph.values[node.outputs[0]]
    if (src.shape, src.dtype) != (out.shape, out.dtype):
        return False
    if node.op in _DROPOUTS:
        return node.attrs.get("train") is False
    return node.op in _ALWAYS or node.op in _CASTS


@dataclasses.dataclass(frozen=True)
class EliminateNoops(Pass):
    name: ClassVar[str] = "eliminate-noops"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        g = graph.copy()
        mapping: dict[str, str] = {}
        kept = []
        removed: dict[str, int] = {}
        for node in g.nodes:
            if is_noop(g, node) and node.outputs[0] not in g.outputs:
                mapping[node.outputs[0]] = mapping.get(node.inputs[0], node.inputs[0])
                removed[node.op] = removed.get(node.op, 0) + 1
            else:
                kept.append(node)
        g.nodes = kept
        replace_uses(g, mapping)
        before = len(g.nodes)
        g.prune_unused()
        dead = before - len(g.nodes)
        return PassResult(g, bool(mapping) or dead > 0,
                          {"removed": removed, "dead_nodes": dead})
