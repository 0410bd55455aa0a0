"""IR -> TVM Relax, built directly with `relax.BlockBuilder` (no TVM frontend in between).

Every IR value becomes a Relax variable; symbolic dims ("batch", "seq") become int64 TIR
variables shared by every tensor that has them, and `sym_size` nodes become those variables (no
Relax node). Parameters become constants. Each IR op maps to Relax ops (`_OPS`); a block-sparse
linear layer (`sparsity="blockRxC@d"`) calls the BSR prim_func of `bsr_tir.py` through
`relax.call_tir`. An op without a mapping raises `TvmLoweringError` naming the op and the node:
nothing is silently replaced, so the numbers are the IR's.

Semantics follow ATen: `slice.Tensor` clamps its end, `expand` keeps dims given as -1,
`scaled_dot_product_attention` is softmax(q kᵀ · scale + mask) v with the causal mask when asked
(built from matmul/softmax, so any head layout the IR has works), `batch_norm` in eval mode.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sparsecc.errors import SparseccError
from sparsecc.ir import Graph, Node
from sparsecc.ir.graph import DType, Ref, torch_dtype
from sparsecc.patterns import Block, parse_pattern

INT64_MAX = 2**63 - 1


class TvmLoweringError(SparseccError):
    """The IR has something the Relax builder can't lower (named in the message)."""


def _same_dim(a: Any, b: Any) -> bool:
    """A Relax shape value (IntImm / PrimExpr) equals an IR dim (int / shared TIR var)."""
    if isinstance(b, int):
        return getattr(a, "value", None) == b
    return str(a) == str(b)


def _np_dtype(t: torch.dtype) -> str:
    return str(t).replace("torch.", "")


class _Builder:
    def __init__(self, graph: Graph, bsr: bool, external: Any = None) -> None:
        from tvm import relax
        from tvm import tirx as tir
        self.relax, self.tir = relax, tir
        self.graph = graph
        self.bsr = bsr
        self.external = external             # ExternalKernels (external.py) or None
        self.bb = relax.BlockBuilder()
        self.syms: dict[str, Any] = {}       # symbolic dim name -> tir.Var
        self.env: dict[str, Any] = {}        # IR value -> relax expr / PrimExpr (sym values)
        self.kernels: list[dict[str, Any]] = []

    # -- helpers --------------------------------------------------------------------------
    def dim(self, d: Any) -> Any:
        if isinstance(d, int):
            return d
        if str(d) not in self.syms:
            self.syms[str(d)] = self.tir.Var(str(d), "int64")
        return self.syms[str(d)]

    def ir_shape(self, name: str) -> list[Any]:
        """A value's shape from the IR (symbolic dims as the shared TIR variables)."""
        out = []
        for d in self.graph.values[name].shape:
            if not isinstance(d, int) and not str(d).isidentifier():
                raise TvmLoweringError(f"value {name}: dim {d!r} is an expression; only named "
                                       f"symbolic dims are lowered")
            out.append(self.dim(d))
        return out

    def in_shape(self, node: Node, i: int = 0) -> list[Any]:
        return self.ir_shape(node.inputs[i])

    def out_shape(self, node: Node) -> list[Any]:
        return self.ir_shape(node.outputs[0])

    def attr(self, v: Any) -> Any:
        if isinstance(v, Ref):
            return self.env[v.name]
        if isinstance(v, tuple):
            return [self.attr(x) for x in v]
        return v

    def const(self, t: torch.Tensor) -> Any:
        a = t.detach().cpu()
        if a.dtype == torch.bfloat16:
            raise TvmLoweringError("bfloat16 parameters: cast the model to float32 first")
        return self.relax.const(a.numpy())

    def get(self, name: str) -> Any:
        """The Relax value of IR value `name` (a parameter becomes a constant when first used,
        so weights that only external kernels read never enter the module)."""
        if name not in self.env and name in self.graph.params:
            self.env[name] = self.const(self.graph.params[name])
        return self.env[name]

    def emit(self, e: Any) -> Any:
        return self.bb.emit(e)

    def typed(self, name: str, expr: Any) -> Any:
        """`expr`, match-cast to the IR's shape of `name` where Relax lost it (a slice with a
        symbolic end, a reshape with -1), so later ops legalize."""
        v = self.graph.values[name]
        if v.dtype == "sym" or not isinstance(expr, self.relax.Expr):
            return expr
        ty = getattr(expr, "ty", None)
        want = self.ir_shape(name)
        values = getattr(getattr(ty, "shape", None), "values", None)
        if values is not None and len(values) == len(want) and all(
                _same_dim(a, b) for a, b in zip(values, want)):
            return expr
        return self.bb.match_cast(expr, self.relax.TensorType(want, ty.dtype))

    # -- the walk -------------------------------------------------------------------------
    def build(self):
        relax = self.relax
        g = self.graph
        params = []
        for name in g.inputs:
            v = g.values[name]
            if v.dtype == "sym":
                raise TvmLoweringError(f"graph input {name} is a symbolic scalar")
            sinfo = relax.TensorType([self.dim(d) for d in v.shape], _np_dtype(torch_dtype(v.dtype)))
            params.append(relax.Var(name, sinfo))
        with self.bb.function("main", params):
            with self.bb.dataflow():
                for p, name in zip(params, g.inputs):
                    self.env[name] = p
                for node in g.nodes:
                    self.lower(node)
                outs = [self.get(o) for o in g.outputs]
                out = self.bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
            self.bb.emit_func_output(out)
        return self.bb.get()

    def lower(self, node: Node) -> None:
        fn = _OPS.get(node.op)
        if fn is None:
            raise TvmLoweringError(f"op {node.op} (node {', '.join(node.outputs)}) has no Relax "
                                   f"lowering")
        try:
            if self.external is not None and self.external.handles(node):
                result = self.external_call(node)
            else:
                ins = [None if i is None else self.get(i) for i in node.inputs]
                attrs = {k: self.attr(v) for k, v in node.attrs.items() if k != "sparsity"}
                result = fn(self, node, ins, attrs)
        except TvmLoweringError:
            raise
        except Exception as e:  # noqa: BLE001 - TVM raises many types; name the node
            raise TvmLoweringError(f"op {node.op} (node {', '.join(node.outputs)}): {e}") from e
        if len(node.outputs) == 1:
            self.env[node.outputs[0]] = self.typed(node.outputs[0], result)
        else:
            for name, r in zip(node.outputs, result):
                self.env[name] = r

    def external_call(self, node: Node) -> Any:
        """`node` through `relax.call_dps_packed` to the external kernel registered for it: the
        activations go in (a linear layer's as [M, K], its output [M, N]); parameters stay
        with the kernel."""
        relax = self.relax
        name, acts = self.external.register(node)
        out = node.outputs[0]
        dtype = _np_dtype(torch_dtype(self.graph.values[out].dtype))
        args = [self.get(a) for a in acts]
        self.kernels.append({"node": out, "kernel": f"external:{name}"})
        if node.op != "linear":
            return self.emit(relax.call_dps_packed(
                name, args, relax.TensorType(self.out_shape(node), dtype)))
        shape = self.in_shape(node)
        n, k = self.graph.params[node.inputs[1]].shape
        m = 1
        for d in shape[:-1]:
            m = m * d
        x2 = self.emit(relax.op.reshape(args[0], [m, k]))
        y2 = self.emit(relax.call_dps_packed(name, [x2], relax.TensorType([m, n], dtype)))
        return self.emit(relax.op.reshape(y2, shape[:-1] + [n]))


# -- op lowerings: (builder, node, inputs, attrs) -> relax expr -----------------------------
def _binary(name: str) -> Callable:
    def f(b: _Builder, node: Node, ins: list, attrs: dict) -> Any:
        if attrs.get("alpha", 1) != 1:
            raise TvmLoweringError(f"op {node.op} (node {node.outputs[0]}): alpha != 1")
        x, y = ins
        op = getattr(b.relax.op, name)
        return b.emit(op(x, y))
    return f


def _unary(fn: Callable[[Any], Any]) -> Callable:
    return lambda b, node, ins, attrs: b.emit(fn(b.relax)(ins[0]))


def _axis(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


def _linear(b: _Builder, node: Node, ins: list, attrs: dict) -> Any:
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    annotation = node.attrs.get("sparsity")
    pattern = parse_pattern(annotation) if annotation else None
    if b.bsr and isinstance(pattern, Block):
        from .bsr_tir import bsr_linear_call
        y = bsr_linear_call(b, node, x, b.in_shape(node), b.graph.params[node.inputs[1]],
                            pattern)
        b.kernels.append({"node": node.outputs[0], "kernel": f"tir-bsr{pattern.rows}x{pattern.cols}"})
    else:
        y = b.emit(b.relax.op.matmul(x, b.relax.op.permute_dims(w)))
    if bias is not None:
        y = b.emit(b.relax.op.add(y, bias))
    return y


def _view(b: _Builder, node: Node, ins: list, attrs: dict) -> Any:
    return b.emit(b.relax.op.reshape(ins[0], b.out_shape(node)))


def _transpose(b, node, ins, attrs):
    x = ins[0]
    rank = len(b.in_shape(node))
    axes = list(range(rank))
    d0, d1 = _axis(attrs["dim0"], rank), _axis(attrs["dim1"], rank)
    axes[d0], axes[d1] = axes[d1], axes[d0]
    return b.emit(b.relax.op.permute_dims(x, axes))


def _slice(b, node, ins, attrs):
    x = ins[0]
    shape = b.in_shape(node)
    dim = _axis(attrs.get("dim", 0), len(shape))
    start = attrs.get("start") or 0
    end = attrs.get("end")
    if end is None or (isinstance(end, int) and end >= INT64_MAX // 2):
        end = shape[dim]
    step = attrs.get("step", 1)
    # a symbolic end the IR's output dim equals (x[:seq] with the export's guard seq <= size)
    # needs no clamping; clamped, its shape is a min/max expression TVM's CUDA pipeline
    # crashes on (KillAfterLastUse, TVM 0.27)
    inbound = (start == 0 and step == 1 and not isinstance(end, int)
               and str(b.out_shape(node)[dim]) == str(end))
    return b.emit(b.relax.op.strided_slice(x, [dim], [start], [end], [step],
                                           assume_inbound=inbound))


def _cat(b, node, ins, attrs):
    rank = len(b.in_shape(node))
    return b.emit(b.relax.op.concat(ins, axis=_axis(attrs.get("dim", 0), rank)))


def _expand(b, node, ins, attrs):
    return b.emit(b.relax.op.broadcast_to(ins[0], b.out_shape(node)))


def _unsqueeze(b, node, ins, attrs):
    rank = len(b.in_shape(node)) + 1
    return b.emit(b.relax.op.expand_dims(ins[0], _axis(attrs["dim"], rank)))


def _embedding(b, node, ins, attrs):
    weight, ids = ins
    return b.emit(b.relax.op.take(weight, ids, axis=0))


def _rms_norm(b, node, ins, attrs):
    n = len(attrs["normalized_shape"])
    eps = attrs.get("eps")
    if eps is None:
        raise TvmLoweringError(f"rms_norm (node {node.outputs[0]}) without eps: ATen uses the "
                               f"dtype's epsilon, not lowered")
    x, w = ins[0], ins[1]
    if w is None:
        raise TvmLoweringError(f"rms_norm (node {node.outputs[0]}) without weight")
    return b.emit(b.relax.op.nn.rms_norm(x, w, axes=list(range(-n, 0)), epsilon=eps))


def _layer_norm(b, node, ins, attrs):
    n = len(attrs["normalized_shape"])
    x, w, bias = (ins + [None, None])[:3]
    shape = b.in_shape(node)[-n:]
    if w is None:
        w = b.emit(b.relax.op.ones(shape, x.ty.dtype))
    if bias is None:
        bias = b.emit(b.relax.op.zeros(shape, x.ty.dtype))
    return b.emit(b.relax.op.nn.layer_norm(x, w, bias, axes=list(range(-n, 0)),
                                           epsilon=attrs.get("eps", 1e-5)))


def _sdpa(b, node, ins, attrs):
    op = b.relax.op
    q, k, v = ins[:3]
    mask = ins[3] if len(ins) > 3 else None
    if attrs.get("dropout_p", 0.0):
        raise TvmLoweringError(f"sdpa (node {node.outputs[0]}) with dropout")
    if attrs.get("enable_gqa"):
        raise TvmLoweringError(f"sdpa (node {node.outputs[0]}) with enable_gqa")
    rank = len(b.in_shape(node, 0))
    head_dim = b.in_shape(node, 0)[-1]
    scale = attrs.get("scale")
    if scale is None:
        scale = 1.0 / math.sqrt(int(head_dim))
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    s = b.emit(op.matmul(q, op.permute_dims(k, perm)))
    s = b.emit(op.multiply(s, b.relax.const(scale, q.ty.dtype)))
    if mask is not None:
        if mask.ty.dtype == "bool":
            neg = b.relax.const(-np.inf, q.ty.dtype)
            s = b.emit(op.where(mask, s, neg))
        else:
            s = b.emit(op.add(s, mask))
    if attrs.get("is_causal"):
        lq, lk = b.in_shape(node, 0)[-2], b.in_shape(node, 1)[-2]
        ones = b.emit(op.ones([lq, lk], "bool"))
        keep = b.emit(op.tril(ones, 0))
        s = b.emit(op.where(keep, s, b.relax.const(-np.inf, q.ty.dtype)))
    p = b.emit(op.nn.softmax(s, axis=-1))
    return b.emit(op.matmul(p, v))


def _conv2d(b, node, ins, attrs):
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    pad = attrs.get("padding", [0, 0])
    if isinstance(pad, str):
        raise TvmLoweringError(f"conv2d (node {node.outputs[0]}) with padding={pad!r}")
    y = b.emit(b.relax.op.nn.conv2d(x, w, strides=attrs.get("stride", [1, 1]), padding=pad,
                                    dilation=attrs.get("dilation", [1, 1]),
                                    groups=attrs.get("groups", 1)))
    if bias is not None:
        y = b.emit(b.relax.op.add(y, b.relax.op.reshape(bias, [1, -1, 1, 1])))
    return y


def _batch_norm(b, node, ins, attrs):
    if attrs.get("training"):
        raise TvmLoweringError(f"batch_norm (node {node.outputs[0]}) in training mode")
    op = b.relax.op
    x, w, bias, mean, var = ins[:5]
    eps = b.relax.const(attrs.get("eps", 1e-5), x.ty.dtype)
    rank = len(b.in_shape(node))
    bshape = [1, -1] + [1] * (rank - 2)
    scale = b.emit(op.rsqrt(op.add(var, eps)))
    if w is not None:
        scale = b.emit(op.multiply(scale, w))
    centred = b.emit(op.subtract(x, b.emit(op.reshape(mean, bshape))))
    y = b.emit(op.multiply(centred, b.emit(op.reshape(scale, bshape))))
    if bias is not None:
        y = b.emit(op.add(y, b.emit(op.reshape(bias, bshape))))
    return y


def _max_pool2d(b, node, ins, attrs):
    k = attrs["kernel_size"]
    stride = attrs.get("stride") or k
    return b.emit(b.relax.op.nn.max_pool2d(ins[0], pool_size=k, strides=stride,
                                           padding=attrs.get("padding", [0, 0]),
                                           dilation=attrs.get("dilation", [1, 1]),
                                           ceil_mode=attrs.get("ceil_mode", False)))


def _adaptive_avg_pool2d(b, node, ins, attrs):
    return b.emit(b.relax.op.nn.adaptive_avg_pool2d(ins[0], output_size=attrs["output_size"]))


def _flatten(b, node, ins, attrs):
    return b.emit(b.relax.op.reshape(ins[0], b.out_shape(node)))


def _pad(b, node, ins, attrs):
    # torch: (last begin, last end, next-to-last begin, end, ...); Relax: per axis, in order
    rank, pad = len(b.in_shape(node)), list(attrs["pad"])
    width = [0] * (2 * rank)
    for i in range(0, len(pad), 2):
        axis = rank - 1 - i // 2
        width[2 * axis], width[2 * axis + 1] = pad[i], pad[i + 1]
    if any(w < 0 for w in width):
        raise TvmLoweringError(f"constant_pad_nd (node {node.outputs[0]}) with negative pads")
    return b.emit(b.relax.op.nn.pad(ins[0], width, "constant",
                                    float(attrs.get("value", 0.0))))


def _sum(b, node, ins, attrs):
    if attrs.get("dtype") is not None:
        raise TvmLoweringError(f"sum (node {node.outputs[0]}) with dtype")
    dims = attrs.get("dim")
    return b.emit(b.relax.op.sum(ins[0], axis=dims, keepdims=bool(attrs.get("keepdim", False))))


def _to_dtype(b, node, ins, attrs):
    dt = attrs["dtype"]
    name = _np_dtype(torch_dtype(dt.name if isinstance(dt, DType) else dt))
    return b.emit(b.relax.op.astype(ins[0], name))


def _hardsigmoid(b, x):
    """relu6(x + 3) / 6 = clip(x / 6 + 1/2, 0, 1), in x's dtype."""
    op, dt = b.relax.op, x.ty.dtype
    y = b.emit(op.add(op.multiply(x, b.relax.const(1 / 6, dt)), b.relax.const(0.5, dt)))
    return b.emit(op.minimum(op.maximum(y, b.relax.const(0.0, dt)), b.relax.const(1.0, dt)))


def _permute(b, node, ins, attrs):
    rank = len(b.in_shape(node))
    return b.emit(b.relax.op.permute_dims(ins[0], [_axis(d, rank) for d in attrs["dims"]]))


def _scalar_tensor(b, node, ins, attrs):
    dt = attrs.get("dtype")
    name = _np_dtype(torch_dtype(dt.name)) if isinstance(dt, DType) else "float32"
    return b.relax.const(np.array(attrs["s"], dtype=name))


def _sym_size(b, node, ins, attrs):
    return b.in_shape(node)[attrs["dim"]]


_OPS: dict[str, Callable] = {
    "add.Tensor": _binary("add"), "sub.Tensor": _binary("subtract"),
    "mul.Tensor": _binary("multiply"), "div.Tensor": _binary("divide"),
    "neg": _unary(lambda r: r.op.negative), "relu": _unary(lambda r: r.op.nn.relu),
    "silu": _unary(lambda r: r.op.nn.silu), "sigmoid": _unary(lambda r: r.op.sigmoid),
    "hardsigmoid": lambda b, node, ins, attrs: _hardsigmoid(b, ins[0]),
    "hardswish": lambda b, node, ins, attrs: b.emit(b.relax.op.multiply(
        ins[0], _hardsigmoid(b, ins[0]))),
    "permute": _permute, "gelu": lambda b, node, ins, attrs: b.emit(
        (b.relax.op.nn.gelu_tanh if attrs.get("approximate") == "tanh" else b.relax.op.nn.gelu)(
            ins[0])),
    "linear": _linear, "view": _view, "reshape": _view, "transpose.int": _transpose,
    "slice.Tensor": _slice, "cat": _cat, "expand": _expand, "unsqueeze": _unsqueeze,
    "embedding": _embedding, "rms_norm": _rms_norm, "layer_norm": _layer_norm,
    "scaled_dot_product_attention": _sdpa, "conv2d": _conv2d, "batch_norm": _batch_norm,
    "max_pool2d": _max_pool2d, "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "flatten.using_ints": _flatten, "sum.dim_IntList": _sum, "to.dtype": _to_dtype,
    "scalar_tensor": _scalar_tensor, "sym_size.int": _sym_size, "constant_pad_nd": _pad,
    "contiguous": lambda b, node, ins, attrs: ins[0],    # layouts are TVM's own
}


def lowerable_ops() -> set[str]:
    return set(_OPS)


def constant_bytes(mod) -> int:
    """Bytes of the constants the module's "main" holds (parameters lowered into TVM)."""
    import tvm
    from tvm import relax
    total = [0]

    def visit(e: Any) -> None:
        if isinstance(e, tvm.ir.expr.Constant):
            v = e.value
            total[0] += v.numpy().nbytes if hasattr(v, "numpy") else 8     # a scalar

    relax.analysis.post_order_visit(mod["main"], visit)
    return total[0]


def build_relax(graph: Graph, *, bsr: bool = True, external: Any = None):
    """(IRModule, kernels): the graph as a Relax module with function "main".

    `external` (an `ExternalKernels`) takes the nodes it `handles` out of TVM: each becomes a
    `relax.call_dps_packed` to the function it registers for the node."""
    b = _Builder(graph, bsr, external)
    return b.build(), b.kernels
