"""`verify(g)`: the IR's invariants, and shape inference by running ops on meta tensors.

Structure: every value is defined once (input, parameter or node output) before it is read;
outputs exist; every op is in the IR's operator set; parameter tensors match their values.
Types: every node is run on `meta` tensors whose shapes are the declared ones with each
symbolic dimension replaced by a distinct small integer; the op's result must have the
declared shape (evaluated the same way) and dtype. `infer_shapes` uses the same machinery to
recompute the output types of rewritten nodes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import VerifyError
from . import ops
from .graph import SYM, Graph, Node, Value, dtype_name, torch_dtype
from .interpreter import bind_outputs, resolve_refs
from .symbolic import evaluate, free_symbols

# Sample values for symbolic dims: distinct, >1, and unlikely to collide with static sizes.
_SAMPLES = (7, 11, 13, 5, 17, 19, 23, 29, 31, 37)


def sample_env(graph: Graph, symbols: Mapping[str, int] | None = None) -> dict[str, int]:
    names: set[str] = set()
    for v in graph.values.values():
        for d in v.shape:
            if isinstance(d, str):
                names |= free_symbols(d)
    env = dict(symbols or {})
    free = sorted(n for n in names if n not in env)
    for i, n in enumerate(free):
        env[n] = _SAMPLES[i % len(_SAMPLES)] + 40 * (i // len(_SAMPLES))
    return env


def _meta(v: Value, env: Mapping[str, int]) -> Any:
    if v.dtype == SYM:
        raise VerifyError(f"%{v.name}: a sym value can't be a graph input or parameter")
    return torch.empty([evaluate(d, env) for d in v.shape], dtype=torch_dtype(v.dtype),
                       device="meta")


def check_structure(graph: Graph) -> None:
    defined: set[str] = set()

    def define(name: str, where: str) -> None:
        if name in defined:
            raise VerifyError(f"%{name} is defined twice ({where})")
        if name not in graph.values:
            raise VerifyError(f"%{name} ({where}) has no type")
        defined.add(name)

    for n in graph.inputs:
        define(n, "graph input")
    for p in graph.param_names:
        define(p, "parameter")
        t = graph.params.get(p)
        v = graph.values[p]
        if t is not None and (tuple(t.shape) != v.shape or dtype_name(t.dtype) != v.dtype):
            raise VerifyError(f"parameter %{p}: tensor {dtype_name(t.dtype)}{list(t.shape)} "
                              f"does not match its type {v.dtype}{list(v.shape)}")
    for i, node in enumerate(graph.nodes):
        where = f"node {i} {node.op}"
        if not ops.is_supported(node.op):
            raise VerifyError(f"{where}: op {node.op} is not in the IR's operator set")
        for name in node.uses():
            if name not in defined:
                raise VerifyError(f"{where} reads %{name}, which is not defined before it")
        for out in node.outputs:
            define(out, where)
    for out in graph.outputs:
        if out not in defined:
            raise VerifyError(f"graph output %{out} is not defined")


def _compare(node: Node, declared: Value, got: Any, env: Mapping[str, int]) -> None:
    where = f"node {node.op} -> %{declared.name}"
    if declared.dtype == SYM:
        if isinstance(got, torch.Tensor):
            raise VerifyError(f"{where}: declared sym, op gives a tensor")
        return
    if not isinstance(got, torch.Tensor):
        raise VerifyError(f"{where}: declared a tensor, op gives {type(got).__name__}")
    want = tuple(evaluate(d, env) for d in declared.shape)
    if tuple(got.shape) != want or got.dtype != torch_dtype(declared.dtype):
        shape = ", ".join(map(str, declared.shape))
        raise VerifyError(f"{where}: declared {declared.dtype}[{shape}], "
                          f"op gives {dtype_name(got.dtype)}{list(got.shape)} "
                          f"(with {dict(env)})")


def verify(graph: Graph, symbols: Mapping[str, int] | None = None) -> None:
    """Raise `VerifyError` naming the first broken invariant; return None if the graph is sound."""
    check_structure(graph)
    env_sym = sample_env(graph, symbols)
    env: dict[str, Any] = {}
    for name in [*graph.inputs, *graph.param_names]:
        env[name] = _meta(graph.values[name], env_sym)
    for node in graph.nodes:
        result = _run_meta(node, env)
        outs: dict[str, Any] = {}
        bind_outputs(node, result, outs)
        for name in node.outputs:
            _compare(node, graph.values[name], outs[name], env_sym)
        env.update(outs)


def _run_meta(node: Node, env: Mapping[str, Any]) -> Any:
    inputs = [None if i is None else env[i] for i in node.inputs]
    attrs = {k: resolve_refs(v, env) for k, v in node.attrs.items()}
    try:
        return ops.call(node.op, inputs, attrs, device="meta")
    except Exception as e:
        raise VerifyError(f"node {node.op} -> {', '.join(node.outputs)}: op refused its "
                          f"inputs: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


# ops whose first input is multiplied by a weight: it must be floating point
_FLOAT_INPUT_OPS = frozenset({"linear", "addmm", "mm", "matmul", "bmm", "conv1d", "conv2d",
                              "conv1d.padding", "conv2d.padding", "convolution"})
_FLOATS = frozenset({"f16", "bf16", "f32", "f64"})


def check_operand_dtypes(graph: Graph) -> None:
    """Refuse a graph whose weight layers read non-floating activations (an int64 tensor fed
    to a Linear): no backend runs it, and ONNX Runtime refuses such a model at load. One
    VerifyError naming the node and the input."""
    for node in graph.nodes:
        if node.op not in _FLOAT_INPUT_OPS:
            continue
        for name in node.inputs[:2] if node.op in ("mm", "matmul", "bmm") else node.inputs[:1]:
            v = graph.values.get(name) if name else None
            if v is not None and v.dtype not in _FLOATS and v.dtype != SYM:
                where = f"graph input %{name}" if name in graph.inputs else f"%{name}"
                raise VerifyError(f"node {node.op} -> %{node.outputs[0]}: its input {where} is "
                                  f"{v.dtype}; {node.op} needs floating-point inputs (cast the "
                                  f"input, or give float example inputs)")
