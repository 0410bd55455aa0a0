"""State passed in and out of a graph: an input the graph updates and returns, like a KV cache.

A decoder step takes each cache as an input and returns it updated (`index_copy(cache, dim,
positions, new)` as a graph output). Such an input/output pair is the model's state, not its
interface data: the caller allocates it from the model and hands it back each step. So a
channel group may shrink it (the caller then allocates the smaller state the compiled model
declares), and a backend may update it in place.
"""
from __future__ import annotations

from .graph import Graph

UPDATES = frozenset({"index_copy"})   # ops that write new entries into their first input


def state_pairs(graph: Graph) -> dict[str, str]:
    """{graph output: graph input} for every output that is an update (UPDATES) of an input
    which is not itself an output. Each input appears in at most one pair."""
    outputs, inputs = set(graph.outputs), set(graph.inputs)
    pairs: dict[str, str] = {}
    for n in graph.nodes:
        if n.op in UPDATES and n.outputs[0] in outputs and n.inputs[0] in inputs \
                and n.inputs[0] not in outputs and n.inputs[0] not in pairs.values():
            pairs[n.outputs[0]] = n.inputs[0]
    return pairs
