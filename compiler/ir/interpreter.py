"""The reference interpreter: runs any IR graph with torch ops, on CPU or GPU.

Every backend is checked against it. Parameters are moved to the chosen device once per call
(`Interpreter` caches them across calls).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..errors import SparseccError
from . import ops
from .graph import Graph, Node, Ref


Observer = Callable[[Node, list[Any], Any], None]


def resolve_refs(value: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(value, Ref):
        return env[value.name]
    if isinstance(value, tuple):
        return tuple(resolve_refs(v, env) for v in value)
    return value


def bind_outputs(node: Node, result: Any, env: dict[str, Any]) -> None:
    if len(node.outputs) == 1 and not isinstance(result, (tuple, list)):
        env[node.outputs[0]] = result
        return
    if isinstance(result, (tuple, list)) and len(result) >= len(node.outputs):
        for name, r in zip(node.outputs, result):
            env[name] = r
        return
    raise SparseccError(f"node {node.op} -> {node.outputs}: got {type(result).__name__} "
                        f"with {len(result) if isinstance(result, (tuple, list)) else 1} results")


def execute(graph: Graph, env: dict[str, Any], device: torch.device,
            observe: Observer | None = None) -> list[Any]:
    """Run every node of `graph` over `env` (inputs and parameters bound); return the outputs."""
    for node in graph.nodes:
        inputs = [None if i is None else env[i] for i in node.inputs]
        attrs = {k: resolve_refs(v, env) for k, v in node.attrs.items()}
        try:
            result = ops.call(node.op, inputs, attrs, device)
        except Exception as e:
            raise SparseccError(f"interpreter: node {node.op} -> "
                                f"{', '.join(node.outputs)} failed: {e}") from e
        if observe is not None:
            observe(node, inputs, result)
        bind_outputs(node, result, env)
    return [env[o] for o in graph.outputs]


class Interpreter:
    def __init__(self, graph: Graph, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None) -> None:
        missing = [p for p in graph.param_names if p not in graph.params]
        if missing:
            raise SparseccError(f"graph has parameters without tensors: {missing[:3]}")
        self.graph = graph
        self.device = torch.device(device)
        self.params = {k: _place(v, self.device, dtype) for k, v in graph.params.items()}

    def bind_inputs(self, args: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
        g = self.graph
        if isinstance(args, Mapping):
            unknown = set(args) - set(g.inputs)
            missing = [n for n in g.inputs if n not in args]
            if unknown or missing:
                raise SparseccError(f"inputs: graph takes {g.inputs}; unknown {sorted(unknown)}, "
                                    f"missing {missing}")
            values = [args[n] for n in g.inputs]
        else:
            if len(args) != len(g.inputs):
                raise SparseccError(f"graph takes {len(g.inputs)} inputs {g.inputs}, "
                                    f"got {len(args)}")
            values = list(args)
        env: dict[str, Any] = dict(self.params)
        for name, v in zip(g.inputs, values):
            env[name] = v.to(self.device) if isinstance(v, torch.Tensor) else v
        return env

    def run(self, args: Sequence[Any] | Mapping[str, Any],
            observe: Observer | None = None, *, grad: bool = False) -> list[Any]:
        """Run the graph. `observe(node, inputs, result)` is called after every node (to
        collect calibration statistics); `grad=True` keeps autograd on (for Taylor scores)."""
        with torch.set_grad_enabled(grad):
            return execute(self.graph, self.bind_inputs(args), self.device, observe)


def _place(t: torch.Tensor, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)
    return t.to(device)


def run(graph: Graph, args: Sequence[Any] | Mapping[str, Any], device: str = "cpu",
        dtype: torch.dtype | None = None) -> list[Any]:
    """Run `graph` on `args` (positional, or by input name) and return its outputs."""
    return Interpreter(graph, device, dtype).run(args)
