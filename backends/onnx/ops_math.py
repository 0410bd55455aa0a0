"""ONNX lowerings of elementwise math, activations, comparisons, logic, reductions and casts.

Type promotion: torch computes an arithmetic op in its result dtype, which the IR records as the
node's output dtype, so operands are cast to the output dtype first (an int tensor times 0.5 is
computed in f32, as in torch). Comparisons cast both operands to `torch.result_type` of the IR
operands (0-d values and sym sizes take part as torch's scalars do), then compare.

Formulas (exact, never approximated):
  gelu(x)                = 0.5·x·(1 + erf(x/√2))
  gelu(x, "tanh")        = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
  silu(x)                = x·σ(x);   rsqrt(x) = 1/√x;   hardsigmoid(x) = clip(x/6 + 1/2, 0, 1)
  elu(x; α, s, s_in)     = s·x if x > 0 else s·α·(exp(s_in·x) − 1)
  div(a, b, "floor"), ints: (a − mod(a, b)) / b with Python's mod; floats: floor(a / b)
  div(a, b, "trunc"): ints: ONNX Div (truncates); floats: ceil(q) if q < 0 else floor(q)
  var(x, dims, c)        = Σ(x − mean)² / max(N − c, 0), N = size(x) / size(mean)
"""
from __future__ import annotations

import math
from typing import Any

import torch

from sparsecc.ir import SYM, Node, Ref, dtype_name, torch_dtype

from .export import ONNX_DTYPES, Builder, lowering

_UNARY = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "erf": "Erf", "neg": "Neg",
          "sqrt": "Sqrt", "exp": "Exp", "log": "Log", "abs": "Abs", "reciprocal": "Reciprocal",
          "cos": "Cos", "sin": "Sin", "hardswish": "HardSwish"}


@lowering(*_UNARY)
def unary(b: Builder, node: Node) -> list[str]:
    return [b.op(_UNARY[node.op], b.input(node, 0, b.out_dtype(node)))]


@lowering("rsqrt")
def rsqrt(b: Builder, node: Node) -> list[str]:
    return [b.op("Reciprocal", b.op("Sqrt", b.input(node, 0, b.out_dtype(node))))]


@lowering("silu")
def silu(b: Builder, node: Node) -> list[str]:
    x = b.input(node, 0, b.out_dtype(node))
    return [b.op("Mul", x, b.op("Sigmoid", x))]


@lowering("gelu")
def gelu(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    x = b.input(node, 0, dt)
    approximate = node.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise b.fail(node, f"approximate={approximate!r}")
    if b.opset >= 20:
        return [b.op("Gelu", x, approximate=approximate)]
    if approximate == "none":
        inner = b.op("Erf", b.op("Mul", x, b.const(1 / math.sqrt(2), dt)))
    else:
        cube = b.op("Mul", b.op("Mul", x, x), x)
        poly = b.op("Add", x, b.op("Mul", cube, b.const(0.044715, dt)))
        inner = b.op("Tanh", b.op("Mul", poly, b.const(math.sqrt(2 / math.pi), dt)))
    half_x = b.op("Mul", x, b.const(0.5, dt))
    return [b.op("Mul", half_x, b.op("Add", inner, b.const(1.0, dt)))]


@lowering("hardtanh")
def hardtanh(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    lo, hi = node.attrs.get("min_val", -1.0), node.attrs.get("max_val", 1.0)
    return [b.op("Clip", b.input(node, 0, dt), b.scalar(lo, dt), b.scalar(hi, dt))]


@lowering("hardsigmoid")
def hardsigmoid(b: Builder, node: Node) -> list[str]:
    return [b.op("HardSigmoid", b.input(node, 0, b.out_dtype(node)), alpha=1 / 6, beta=0.5)]


@lowering("leaky_relu")
def leaky_relu(b: Builder, node: Node) -> list[str]:
    slope = float(node.attrs.get("negative_slope", 0.01))
    return [b.op("LeakyRelu", b.input(node, 0, b.out_dtype(node)), alpha=slope)]


@lowering("elu")
def elu(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    x = b.input(node, 0, dt)
    alpha = float(node.attrs.get("alpha", 1.0))
    scale, in_scale = node.attrs.get("scale", 1.0), node.attrs.get("input_scale", 1.0)
    if scale == 1 and in_scale == 1:
        return [b.op("Elu", x, alpha=alpha)]
    neg = b.op("Sub", b.op("Exp", b.op("Mul", x, b.const(in_scale, dt))), b.const(1.0, dt))
    neg = b.op("Mul", neg, b.const(alpha * scale, dt))
    pos = b.op("Mul", x, b.const(scale, dt))
    return [b.op("Where", b.op("Greater", x, b.const(0.0, dt)), pos, neg)]


@lowering("softmax.int", "_softmax", "log_softmax.int")
def softmax(b: Builder, node: Node) -> list[str]:
    kind = "LogSoftmax" if node.op.startswith("log") else "Softmax"
    return [b.op(kind, b.input(node, 0, b.out_dtype(node)), axis=node.attrs["dim"])]


# -- binary arithmetic --------------------------------------------------------------------
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
           "minimum": "Min", "maximum": "Max"}


def _other(b: Builder, node: Node, dt: str) -> str:
    """The second operand: input 1 (`.Tensor`) or the `other` attribute (`.Scalar`)."""
    if node.op.endswith(".Scalar") and "other" in node.attrs:
        return b.scalar(node.attrs["other"], dt)
    return b.input(node, 1, dt)


@lowering("add.Tensor", "add.Scalar", "sub.Tensor", "sub.Scalar", "rsub.Scalar", "mul.Tensor",
          "mul.Scalar", "div.Tensor", "div.Scalar", "minimum", "maximum", "pow.Tensor_Tensor")
def binary(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    x, y = b.input(node, 0, dt), _other(b, node, dt)
    if node.op == "rsub.Scalar":  # other - alpha * self
        x, y = y, x
    alpha = node.attrs.get("alpha", 1)
    if alpha != 1:
        y = b.op("Mul", y, b.scalar(alpha, dt))
    kind = node.op.split(".")[0].replace("rsub", "sub")
    return [b.op(_BINARY[kind], x, y)]


@lowering("div.Tensor_mode")
def div_mode(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    x, y = b.input(node, 0, dt), b.input(node, 1, dt)
    mode = node.attrs.get("rounding_mode")
    if mode is None:
        return [b.op("Div", x, y)]
    integral = not torch_dtype(dt).is_floating_point
    if mode == "trunc" and integral:
        return [b.op("Div", x, y)]
    if mode == "floor" and integral:
        return [b.op("Div", b.op("Sub", x, b.op("Mod", x, y, fmod=0)), y)]
    q = b.op("Div", x, y)
    if mode == "floor":
        return [b.op("Floor", q)]
    if mode == "trunc":
        return [b.op("Where", b.op("Less", q, b.const(0, dt)), b.op("Ceil", q), b.op("Floor", q))]
    raise b.fail(node, f"rounding_mode={mode!r}")


@lowering("pow.Tensor_Scalar", "pow.Scalar")
def pow_scalar(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    if node.op == "pow.Scalar":
        return [b.op("Pow", b.scalar(node.attrs["self"], dt), b.input(node, 0, dt))]
    return [b.op("Pow", b.input(node, 0, dt), b.scalar(node.attrs["exponent"], dt))]


@lowering("clamp", "clamp_min", "clamp_max")
def clamp(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    x = b.input(node, 0, dt)
    if node.attrs.get("min") is not None:
        x = b.op("Max", x, b.scalar(node.attrs["min"], dt))
    if node.attrs.get("max") is not None:
        x = b.op("Min", x, b.scalar(node.attrs["max"], dt))
    return [x]


# -- comparisons and logic ----------------------------------------------------------------
_COMPARE = {"ge": "GreaterOrEqual", "gt": "Greater", "le": "LessOrEqual", "lt": "Less",
            "eq": "Equal", "ne": "Equal"}


def _torch_operand(b: Builder, item: Any) -> Any:
    """A stand-in for an operand that `torch.result_type` promotes like the real one."""
    if isinstance(item, Ref):  # a sym size is an int to torch
        item = item.name
    if not isinstance(item, str):
        return item
    v = b.value(item)
    if v.dtype == SYM:
        return 1
    return torch.empty((1,) * min(v.rank, 1), dtype=torch_dtype(v.dtype))


def _common_dtype(b: Builder, x: Any, y: Any) -> str:
    return dtype_name(torch.result_type(_torch_operand(b, x), _torch_operand(b, y)))


@lowering(*(f"{k}.{v}" for k in _COMPARE for v in ("Scalar", "Tensor")))
def compare(b: Builder, node: Node) -> list[str]:
    other = node.attrs["other"] if node.op.endswith(".Scalar") else node.inputs[1]
    dt = _common_dtype(b, node.inputs[0], other)
    out = b.op(_COMPARE[node.op.split(".")[0]], b.input(node, 0, dt), _other(b, node, dt))
    return [b.op("Not", out) if node.op.startswith("ne.") else out]


_LOGIC = {"__and__.Tensor": ("And", "BitwiseAnd"), "bitwise_and.Tensor": ("And", "BitwiseAnd"),
          "__or__.Tensor": ("Or", "BitwiseOr"), "bitwise_or.Tensor": ("Or", "BitwiseOr"),
          "logical_and": ("And", "And"), "logical_or": ("Or", "Or")}


@lowering(*_LOGIC)
def logic(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    bool_op, int_op = _LOGIC[node.op]
    kind, operand_dt = (bool_op, "bool") if dt == "bool" or bool_op == int_op else (int_op, dt)
    out = b.op(kind, b.input(node, 0, operand_dt), b.input(node, 1, operand_dt))
    return [b.cast(out, dt) if operand_dt != dt else out]


@lowering("logical_not", "bitwise_not")
def logical_not(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    if node.op == "bitwise_not" and dt != "bool":
        return [b.op("BitwiseNot", b.input(node, 0, dt))]
    return [b.cast(b.op("Not", b.input(node, 0, "bool"), dtype="bool"), dt)]


@lowering("masked_fill.Scalar", "masked_fill.Tensor", "where.self")
def where(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    if node.op == "where.self":
        return [b.op("Where", b.input(node, 0, "bool"), b.input(node, 1, dt), b.input(node, 2, dt))]
    fill = (b.scalar(node.attrs["value"], dt) if node.op == "masked_fill.Scalar"
            else b.input(node, 2, dt))
    return [b.op("Where", b.input(node, 1, "bool"), fill, b.input(node, 0, dt))]


# -- reductions ---------------------------------------------------------------------------
def _axes(b: Builder, node: Node) -> str | None:
    dim = node.attrs.get("dim")
    if dim is None or dim == ():
        return None
    return b.ints(dim if isinstance(dim, tuple) else (dim,))


_REDUCE = {"mean": "ReduceMean", "sum": "ReduceSum", "amax": "ReduceMax", "amin": "ReduceMin"}


@lowering("mean", "mean.dim", "sum", "sum.dim_IntList", "amax", "amin")
def reduce(b: Builder, node: Node) -> list[str]:
    x = b.input(node, 0, b.out_dtype(node))
    keep = int(bool(node.attrs.get("keepdim", False)))
    return [b.op(_REDUCE[node.op.split(".")[0]], x, _axes(b, node), keepdims=keep)]


@lowering("max.dim")
def max_dim(b: Builder, node: Node) -> list[str]:
    x, dim = b.input(node, 0), node.attrs["dim"]
    keep = int(bool(node.attrs.get("keepdim", False)))
    values = b.op("ReduceMax", x, b.const([dim], "i64"), keepdims=keep)
    return [values, b.op("ArgMax", x, axis=dim, keepdims=keep)]


@lowering("var.correction")
def var(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    x, axes = b.input(node, 0, dt), _axes(b, node)
    correction = node.attrs.get("correction")
    correction = 1 if correction is None else correction
    mean = b.op("ReduceMean", x, axes, keepdims=1)
    diff = b.op("Sub", x, mean)
    keep = int(bool(node.attrs.get("keepdim", False)))
    total = b.op("ReduceSum", b.op("Mul", diff, diff), axes, keepdims=keep)
    count = b.op("Cast", b.op("Div", b.op("Size", x), b.op("Size", mean)), to=ONNX_DTYPES[dt])
    count = b.op("Sub", count, b.scalar(correction, dt))
    return [b.op("Div", total, b.op("Max", count, b.const(0, dt)))]


@lowering("cumsum")
def cumsum(b: Builder, node: Node) -> list[str]:
    return [b.op("CumSum", b.input(node, 0, b.out_dtype(node)), b.const(node.attrs["dim"], "i64"))]


# -- casts and identities -----------------------------------------------------------------
@lowering("to.dtype", "to.dtype_layout", "to.device", "to.other", "_to_copy", "type_as")
def to(b: Builder, node: Node) -> list[str]:
    x, dt = b.input(node, 0), b.out_dtype(node)
    return [x if b.dtype(x) == dt else b.op("Cast", x, to=ONNX_DTYPES[dt])]


@lowering("contiguous", "clone", "alias", "detach", "lift_fresh_copy")
def identity(b: Builder, node: Node) -> list[str]:
    return [b.input(node, 0)]
