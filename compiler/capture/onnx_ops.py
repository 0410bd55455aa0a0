"""ONNX op handlers of the importer: each maps one ONNX node to IR nodes over ATen ops.

A handler returns one entry per ONNX output (an IR value name, a `Const` or `Sizes`, see
`onnx_import`). Constants are folded with numpy, following ONNX semantics (integer Div truncates;
Mod with fmod=0 takes the divisor's sign). Arithmetic on sizes (Shape → Gather → Mul → Concat)
stays symbolic as `sym.*` nodes. Mappings that need care:
  MatMul(x, B), B 2-D constant     linear(x, Bᵀ)           (+ Add(bias vector) joins as the bias)
  Gemm(A, B, C; α, β, tA, tB)      linear(Aᵀ?, B or Bᵀ, β·C) when B is constant and α = 1
  Conv / pooling, asymmetric pads  the input padded by `cat` with `full` blocks, then no padding
  Div on ints                      div(a, b, rounding_mode="trunc")
  Mod(a, b), fmod=0 | 1            a − b·div(a, b, "floor" | "trunc")
  Floor(x), Ceil(x)                div(x, 1, "floor"), −div(−x, 1, "floor")
  HardSigmoid(α, β)                hardsigmoid if (α, β) = (1/6, 1/2), else clamp(α·x + β, 0, 1)
  Expand(x, shape)                 expand, a 1 in `shape` kept as -1 (ONNX broadcasts both ways)
  Gather(W, ids), W 2-D constant   embedding(W, ids); Gather(x, i), i a constant scalar: select
  GlobalAveragePool                adaptive_avg_pool{1,2}d(output_size=1)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..ir.graph import DType, Ref
from .onnx_import import IR_DTYPES, Const, Entry, Importer, Missing, Sizes, handler, np_dtype

INT64_MAX = 2**63 - 1
_FLOATS = ("f32", "f64", "f16", "bf16")


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _number(array: np.ndarray) -> int | float | bool:
    v = array.reshape(-1)[0].item()
    return float(v) if array.dtype.kind == "f" or array.dtype.name == "bfloat16" else v


def _scalar(e: Entry | None) -> np.ndarray | None:
    """A constant holding one element."""
    return e.array if isinstance(e, Const) and e.array.size == 1 else None


def _const(imp: Importer, array: np.ndarray) -> Const:
    return Const(np.asarray(array), imp.node.output[0])


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _ints(imp: Importer, i: int, what: str) -> list[int] | None:
    """Input `i` as a list of ints (axes, pads): None if absent; it must be a constant."""
    e = imp.input(i)
    if e is None:
        return None
    items = imp.sizes(e)
    if items is None or any(isinstance(x, Ref) for x in items):
        raise imp.fail(f"{what} must be a constant")
    return [int(x) for x in items]


# -- elementwise --------------------------------------------------------------------------
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Neg": "neg",
          "Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Abs": "abs", "Reciprocal": "reciprocal",
          "Cos": "cos", "Sin": "sin", "HardSwish": "hardswish", "Not": "logical_not",
          "BitwiseNot": "bitwise_not"}
_NP_UNARY = {"Relu": lambda a: np.maximum(a, 0), "Neg": np.negative, "Sqrt": np.sqrt,
             "Exp": np.exp, "Log": np.log, "Abs": np.abs, "Reciprocal": np.reciprocal,
             "Not": np.logical_not, "Floor": np.floor, "Ceil": np.ceil}


@handler(*_UNARY)
def unary(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    if isinstance(x, Const) and node.op_type in _NP_UNARY:
        return [_const(imp, _NP_UNARY[node.op_type](x.array).astype(x.array.dtype))]
    if node.op_type == "Neg" and isinstance(x, Sizes):
        return [Sizes(tuple(imp.sym("mul", v, -1) for v in x.items), x.rank, x.dtype)]
    return [imp.emit(_UNARY[node.op_type], [imp.tensor(x)], name=imp.out())]


@handler("Floor", "Ceil")
def floor_ceil(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    if isinstance(x, Const):
        return [_const(imp, _NP_UNARY[node.op_type](x.array))]
    t = imp.tensor(x)
    if imp.dtype(t) not in _FLOATS:
        return [t]
    one = imp.constant(np.array(1, np_dtype(imp.dtype(t))), "one")
    if node.op_type == "Floor":
        return [imp.emit("div.Tensor_mode", [t, one], {"rounding_mode": "floor"}, imp.out())]
    down = imp.emit("div.Tensor_mode", [imp.emit("neg", [t]), one], {"rounding_mode": "floor"})
    return [imp.emit("neg", [down], name=imp.out())]


@handler("Gelu")
def gelu(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    approximate = attrs(node).get("approximate", "none")
    a = {"approximate": "tanh"} if approximate == "tanh" else {}
    return [imp.emit("gelu", [imp.tensor(imp.input(0))], a, imp.out())]


@handler("LeakyRelu", "Elu")
def leaky(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    alpha = float(attrs(node).get("alpha", 0.01 if node.op_type == "LeakyRelu" else 1.0))
    x = imp.tensor(imp.input(0))
    if node.op_type == "LeakyRelu":
        return [imp.emit("leaky_relu", [x], {"negative_slope": alpha}, imp.out())]
    return [imp.emit("elu", [x], {"alpha": alpha} if alpha != 1.0 else {}, imp.out())]


@handler("HardSigmoid")
def hardsigmoid(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    x = imp.tensor(imp.input(0))
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return [imp.emit("hardsigmoid", [x], name=imp.out())]
    y = imp.emit("add.Scalar", [imp.emit("mul.Scalar", [x], {"other": alpha})], {"other": beta})
    return [imp.emit("clamp", [y], {"min": 0.0, "max": 1.0}, imp.out())]


@handler("PRelu")
def prelu(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, slope = imp.tensor(imp.input(0)), imp.tensor(imp.input(1))
    negative = imp.emit("lt.Scalar", [x], {"other": 0})
    return [imp.emit("where.self", [negative, imp.emit("mul.Tensor", [x, slope]), x],
                     name=imp.out())]


@handler("Clip")
def clip(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, lo, hi = imp.input(0), imp.input(1), imp.input(2)
    if isinstance(x, Const) and all(v is None or isinstance(v, Const) for v in (lo, hi)):
        out = x.array
        out = out if lo is None else np.maximum(out, lo.array)
        out = out if hi is None else np.minimum(out, hi.array)
        return [_const(imp, out.astype(x.array.dtype))]
    t = imp.tensor(x)
    if all(v is None or _scalar(v) is not None for v in (lo, hi)):
        a = {k: _number(v.array) for k, v in (("min", lo), ("max", hi)) if v is not None}
        return [imp.emit("clamp", [t], a, imp.out())] if a else [t]
    if lo is not None:
        t = imp.emit("maximum", [t, imp.tensor(lo)])
    if hi is not None:
        t = imp.emit("minimum", [t, imp.tensor(hi)])
    return [t]


def _fold_binary(kind: str, a: np.ndarray, b: np.ndarray, fmod: int = 0) -> np.ndarray:
    ints = a.dtype.kind in "iu"
    if kind == "Div" and ints:
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(a.dtype)
    if kind == "Mod":
        return np.fmod(a, b) if fmod else np.mod(a, b)
    fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
          "Pow": np.power, "Max": np.maximum, "Min": np.minimum, "Equal": np.equal,
          "Greater": np.greater, "Less": np.less, "GreaterOrEqual": np.greater_equal,
          "LessOrEqual": np.less_equal, "And": np.logical_and, "Or": np.logical_or,
          "Xor": np.logical_xor, "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or}[kind]
    out = fn(a, b)
    return out if out.dtype == np.bool_ else out.astype(a.dtype)


def _sizes_binary(imp: Importer, kind: str, a: list, ra: int, b: list, rb: int) -> Entry:
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise imp.fail(f"can't broadcast sizes {a} and {b}")
    n = max(len(a), len(b))
    a, b = (a * n if len(a) == 1 else a), (b * n if len(b) == 1 else b)
    out = []
    for x, y in zip(a, b):
        if kind == "Div":  # sizes are >= 0: truncation is floor division
            if isinstance(y, int) and y < 0:
                out.append(imp.sym("mul", imp.sym("floordiv", x, -y), -1))
            else:
                out.append(imp.sym("floordiv", x, y))
        else:
            out.append(imp.sym({"Add": "add", "Sub": "sub", "Mul": "mul", "Mod": "mod"}[kind],
                               x, y))
    return _sizes(imp, out, max(ra, rb))


_SCALAR_OPS = {"Add": "add.Scalar", "Sub": "sub.Scalar", "Mul": "mul.Scalar",
               "Div": "div.Scalar", "Pow": "pow.Tensor_Scalar", "Max": "clamp_min",
               "Min": "clamp_max", "Equal": "eq.Scalar", "Greater": "gt.Scalar",
               "Less": "lt.Scalar", "GreaterOrEqual": "ge.Scalar", "LessOrEqual": "le.Scalar"}
_TENSOR_OPS = {"Add": "add.Tensor", "Sub": "sub.Tensor", "Mul": "mul.Tensor",
               "Div": "div.Tensor", "Pow": "pow.Tensor_Tensor", "Max": "maximum",
               "Min": "minimum", "Equal": "eq.Tensor", "Greater": "gt.Tensor",
               "Less": "lt.Tensor", "GreaterOrEqual": "ge.Tensor", "LessOrEqual": "le.Tensor",
               "And": "logical_and", "Or": "logical_or", "Xor": "ne.Tensor",
               "BitwiseAnd": "bitwise_and.Tensor", "BitwiseOr": "bitwise_or.Tensor"}
_SWAPPED = {"Add": "Add", "Mul": "Mul", "Max": "Max", "Min": "Min", "Equal": "Equal",
            "Greater": "Less", "Less": "Greater", "GreaterOrEqual": "LessOrEqual",
            "LessOrEqual": "GreaterOrEqual"}
_SCALAR_ARG = {"clamp_min": "min", "clamp_max": "max", "pow.Tensor_Scalar": "exponent"}


@handler(*_TENSOR_OPS, "Mod")
def binary(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    kind, a, b = node.op_type, imp.input(0), imp.input(1)
    fmod = attrs(node).get("fmod", 0)
    if isinstance(a, Const) and isinstance(b, Const):
        return [_const(imp, _fold_binary(kind, a.array, b.array, fmod))]
    sa, sb = imp.sizes(a), imp.sizes(b)
    if sa is not None and sb is not None and kind in ("Add", "Sub", "Mul", "Div", "Mod") \
            and not fmod:
        return [_sizes_binary(imp, kind, sa, imp.rank(a), sb, imp.rank(b))]
    if kind == "Mod":
        return [_mod(imp, imp.tensor(a), imp.tensor(b), fmod)]
    if kind == "Add":
        fused = _linear_bias(imp, node.input[0], b) or _linear_bias(imp, node.input[1], a)
        if fused:
            return [fused]
    if kind == "Div" and imp.dtype(a) not in _FLOATS:
        return [imp.emit("div.Tensor_mode", [imp.tensor(a), imp.tensor(b)],
                         {"rounding_mode": "trunc"}, imp.out())]
    if _scalar(a) is not None and _scalar(b) is None and kind in _SWAPPED:
        a, b, kind = b, a, _SWAPPED[kind]
    c = _scalar(b)
    if c is not None and c.ndim <= imp.rank(a) and kind in _SCALAR_OPS:
        op = _SCALAR_OPS[kind]
        return [imp.emit(op, [imp.tensor(a)], {_SCALAR_ARG.get(op, "other"): _number(c)},
                         imp.out())]
    c = _scalar(a)
    if c is not None and c.ndim <= imp.rank(b) and kind in ("Sub", "Pow"):
        if kind == "Sub":
            return [imp.emit("rsub.Scalar", [imp.tensor(b)], {"other": _number(c)}, imp.out())]
        return [imp.emit("pow.Scalar", [imp.tensor(b)], {"self": _number(c)}, imp.out())]
    return [imp.emit(_TENSOR_OPS[kind], [imp.tensor(a), imp.tensor(b)], name=imp.out())]


def _mod(imp: Importer, a: str, b: str, fmod: int) -> str:
    mode = "trunc" if fmod else "floor"
    q = imp.emit("div.Tensor_mode", [a, b], {"rounding_mode": mode})
    return imp.emit("sub.Tensor", [a, imp.emit("mul.Tensor", [q, b])], name=imp.out())


def _linear_bias(imp: Importer, onnx_y: str, bias: Entry) -> str | None:
    """Add(linear(x, W), b), b a constant vector read by nothing else: b joins as the bias."""
    y = imp.env[onnx_y]
    if not isinstance(y, str) or not isinstance(bias, Const) or imp.uses[onnx_y] != 1:
        return None
    at = next((i for i in range(len(imp.graph.nodes) - 1, -1, -1)
               if imp.graph.nodes[i].outputs[0] == y), None)
    node = imp.graph.nodes[at] if at is not None else None
    if node is None or node.op != "linear" or any(i is not None for i in node.inputs[2:]):
        return None
    w = imp.value(node.inputs[1])
    if w.rank != 2 or bias.array.shape != (w.shape[0],) or bias.dtype != w.dtype:
        return None
    del imp.graph.nodes[at]
    del imp.graph.values[y]
    return imp.emit("linear", [node.inputs[0], node.inputs[1], imp.param(bias)], name=imp.out())


@handler("Sum", "Mean")
def variadic(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    parts = [imp.tensor(imp.input(i)) for i in range(len(node.input))]
    out = parts[0]
    for k, p in enumerate(parts[1:], 1):
        last = k == len(parts) - 1 and node.op_type == "Sum"
        out = imp.emit("add.Tensor", [out, p], name=imp.out() if last else None)
    if node.op_type == "Mean":
        out = imp.emit("div.Scalar", [out], {"other": float(len(parts))}, imp.out())
    return [out]


@handler("Where")
def where(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    c, x, y = imp.input(0), imp.input(1), imp.input(2)
    if all(isinstance(e, Const) for e in (c, x, y)):
        return [_const(imp, np.where(c.array, x.array, y.array).astype(x.array.dtype))]
    return [imp.emit("where.self", [imp.tensor(c), imp.tensor(x), imp.tensor(y)],
                     name=imp.out())]


@handler("Cast", "CastLike")
def cast(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    if node.op_type == "Cast":
        to = attrs(node)["to"]
        if to not in IR_DTYPES:
            raise imp.fail(f"cast to {onnx.TensorProto.DataType.Name(to)}")
        dtype = IR_DTYPES[to]
    else:
        dtype = imp.dtype(imp.input(1))
    if isinstance(x, Const):
        return [_const(imp, x.array.astype(np_dtype(dtype)))]
    if isinstance(x, Sizes) and dtype != "bool":
        return [Sizes(x.items, x.rank, dtype)]
    t = imp.tensor(x)
    if imp.dtype(t) == dtype:
        return [t]
    return [imp.emit("to.dtype", [t], {"dtype": DType(dtype)}, imp.out())]


@handler("Identity", "Dropout")
def identity(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    if node.op_type == "Dropout":
        train = imp.const(2)
        if train is not None and bool(train.reshape(-1)[0]) or imp.input(2) is not None \
                and train is None:
            raise imp.fail("training-mode dropout is random")
        return [imp.input(0), Missing("the mask of a Dropout")]
    return [imp.input(0)]


@handler("Constant")
def constant(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if "value" in a:
        return [_const(imp, onnx.numpy_helper.to_array(a["value"]))]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return [_const(imp, np.array(a[key], dtype))]
    raise imp.fail(f"constant of kind {sorted(a)} is not supported")


@handler("Softmax", "LogSoftmax")
def softmax(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    op = "softmax.int" if node.op_type == "Softmax" else "log_softmax.int"
    return [imp.emit(op, [imp.tensor(imp.input(0))], {"dim": attrs(node).get("axis", -1)},
                     imp.out())]


@handler("CumSum")
def cumsum(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if a.get("exclusive", 0) or a.get("reverse", 0):
        raise imp.fail("exclusive or reverse CumSum")
    axis = _ints(imp, 1, "the axis")[0]
    return [imp.emit("cumsum", [imp.tensor(imp.input(0))], {"dim": axis}, imp.out())]


# -- reductions ---------------------------------------------------------------------------
_REDUCE = {"ReduceMean": "mean.dim", "ReduceSum": "sum.dim_IntList", "ReduceMax": "amax",
           "ReduceMin": "amin", "ReduceSumSquare": "sum.dim_IntList",
           "ReduceL2": "sum.dim_IntList", "ReduceL1": "sum.dim_IntList"}
_NP_REDUCE = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min}


@handler(*_REDUCE)
def reduce(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.input(0)
    r = imp.rank(x)
    axes = a.get("axes")
    if axes is None:
        axes = _ints(imp, 1, "the axes")
    keep = bool(a.get("keepdims", 1))
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(r))
    axes = sorted(_axis(d, r) for d in axes)
    if isinstance(x, Const) and node.op_type in _NP_REDUCE:
        out = _NP_REDUCE[node.op_type](x.array, axis=tuple(axes), keepdims=keep)
        return [_const(imp, np.asarray(out).astype(x.array.dtype))]
    t = imp.tensor(x)
    if node.op_type in ("ReduceSumSquare", "ReduceL2"):
        t = imp.emit("mul.Tensor", [t, t])
    elif node.op_type == "ReduceL1":
        t = imp.emit("abs", [t])
    last = node.op_type != "ReduceL2"
    out = imp.emit(_REDUCE[node.op_type], [t], {"dim": tuple(axes), "keepdim": keep},
                   imp.out() if last else None)
    return [out if last else imp.emit("sqrt", [out], name=imp.out())]


@handler("ArgMax", "ArgMin")
def argmax(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if a.get("select_last_index", 0):
        raise imp.fail("select_last_index=1")
    x = imp.tensor(imp.input(0))
    if node.op_type == "ArgMin":
        x = imp.emit("neg", [x])
    outs = imp.emit("max.dim", [x], {"dim": a.get("axis", 0), "keepdim": bool(a.get(
        "keepdims", 1))}, names=[imp.tmp("values"), imp.out()], n_outputs=2)
    return [outs[1]]


# -- layers -------------------------------------------------------------------------------
@handler("MatMul")
def matmul(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a, b = imp.input(0), imp.input(1)
    if isinstance(a, Const) and isinstance(b, Const):
        return [_const(imp, np.matmul(a.array, b.array))]
    if isinstance(b, Const) and b.array.ndim == 2:
        return [imp.emit("linear", [imp.tensor(a), imp.param(b, transpose=True)], name=imp.out())]
    return [imp.emit("matmul", [imp.tensor(a), imp.tensor(b)], name=imp.out())]


@handler("Gemm")
def gemm(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    at = attrs(node)
    alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
    a, b, c = imp.input(0), imp.input(1), imp.input(2)
    x = imp.tensor(a)
    if at.get("transA", 0):
        x = imp.emit("permute", [x], {"dims": (1, 0)})
    trans_b = at.get("transB", 0)
    if isinstance(b, Const):
        w = imp.param(b, transpose=not trans_b)
        n = b.array.shape[0 if trans_b else 1]
        bias = None
        if isinstance(c, Const) and alpha == 1.0 and c.array.size in (1, n) and \
                (c.array.ndim <= 1 or c.array.shape[0] == 1):  # a row: one bias per output
            vec = np.broadcast_to(c.array.reshape(-1), (n,)) * np.asarray(beta, c.array.dtype)
            bias = imp.param(Const(vec.astype(c.array.dtype),
                                   c.name if beta == 1.0 and c.array.shape == (n,)
                                   else f"{c.name}_bias"))
            c = None
        y = imp.emit("linear", [x, w, bias], name=None if (c is not None or alpha != 1.0)
                     else imp.out())
    else:
        wt = imp.tensor(b)
        if trans_b:
            wt = imp.emit("permute", [wt], {"dims": (1, 0)})
        y = imp.emit("mm", [x, wt], name=None if (c is not None or alpha != 1.0) else imp.out())
    if alpha != 1.0:
        y = imp.emit("mul.Scalar", [y], {"other": float(alpha)},
                     name=imp.out() if c is None else None)
    if c is not None:
        ct = imp.tensor(c)
        if beta != 1.0:
            ct = imp.emit("mul.Scalar", [ct], {"other": float(beta)})
        y = imp.emit("add.Tensor", [y, ct], name=imp.out())
    return [y]


def _pads(imp: Importer, a: dict, x: str, kernel: Sequence[int], strides: Sequence[int],
          dilations: Sequence[int]) -> tuple[list[int], list[int]]:
    """(begin, end) pads per spatial axis, from `pads` or `auto_pad`."""
    n = len(kernel)
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(a.get("pads", [0] * 2 * n))
        return pads[:n], pads[n:]
    if auto == "VALID":
        return [0] * n, [0] * n
    begin, end = [], []
    for size, k, s, d in zip(imp.shape(x)[2:], kernel, strides, dilations):
        if isinstance(size, int):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        elif s == 1:
            total = (k - 1) * d
        else:
            raise imp.fail(f"auto_pad={auto} with stride {s} over symbolic size {size}")
        small = total // 2
        begin.append(small if auto == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return begin, end


def _pad(imp: Importer, x: str, begin: Sequence[int], end: Sequence[int], value: float) -> str:
    """Pad the last len(begin) axes of x with `value` (cat with `full` blocks)."""
    r, n = imp.rank(x), len(begin)
    for i, (lo, hi) in enumerate(zip(begin, end)):
        axis = r - n + i
        if lo < 0 or hi < 0:
            raise imp.fail("negative pads")
        parts = []
        for width in (lo, hi):
            size = imp.dims(x)
            size[axis] = width
            parts.append(imp.emit("full", [], {"size": tuple(size), "fill_value": value,
                                               "dtype": DType(imp.dtype(x))}) if width else None)
        if lo or hi:
            x = imp.emit("cat", [p for p in (parts[0], x, parts[1]) if p], {"dim": axis})
    return x


def _list(v: Any, n: int) -> list[int]:
    return list(v) if v is not None else [1] * n


@handler("Conv")
def conv(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x, w = imp.tensor(imp.input(0)), imp.input(1)
    w = imp.param(w) if isinstance(w, Const) else imp.tensor(w)
    bias = imp.tensor(imp.input(2))
    kernel = imp.shape(w)[2:]
    n = len(kernel)
    strides, dilations = _list(a.get("strides"), n), _list(a.get("dilations"), n)
    begin, end = _pads(imp, a, x, kernel, strides, dilations)
    if begin != end:
        x, begin = _pad(imp, x, begin, end, 0.0), [0] * n
    groups = a.get("group", 1)
    if n > 2:
        return [imp.emit("convolution", [x, w, bias], {
            "stride": tuple(strides), "padding": tuple(begin), "dilation": tuple(dilations),
            "transposed": False, "output_padding": (0,) * n, "groups": groups}, imp.out())]
    at: dict[str, Any] = {}
    for key, v, default in (("stride", strides, 1), ("padding", begin, 0),
                            ("dilation", dilations, 1)):
        if any(d != default for d in v):
            at[key] = tuple(v)
    if groups != 1:
        at["groups"] = groups
    return [imp.emit(f"conv{n}d", [x, w, bias], at, imp.out())]


@handler("ConvTranspose")
def conv_transpose(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if a.get("output_shape") or a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise imp.fail("output_shape or auto_pad")
    x, w = imp.tensor(imp.input(0)), imp.input(1)
    w = imp.param(w) if isinstance(w, Const) else imp.tensor(w)
    n = imp.rank(w) - 2
    pads = list(a.get("pads", [0] * 2 * n))
    if pads[:n] != pads[n:]:
        raise imp.fail(f"asymmetric pads {pads}")
    return [imp.emit("convolution", [x, w, imp.tensor(imp.input(2))], {
        "stride": tuple(_list(a.get("strides"), n)), "padding": tuple(pads[:n]),
        "dilation": tuple(_list(a.get("dilations"), n)), "transposed": True,
        "output_padding": tuple(a.get("output_padding", [0] * n)),
        "groups": a.get("group", 1)}, imp.out())]


@handler("BatchNormalization")
def batch_norm(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if a.get("training_mode", 0):
        raise imp.fail("training-mode BatchNormalization")
    x, *rest = (imp.input(i) for i in range(5))
    stats = [imp.param(e) if isinstance(e, Const) else imp.tensor(e) for e in rest]
    return [imp.emit("batch_norm", [imp.tensor(x), *stats], {
        "training": False, "momentum": 0.1, "eps": float(a.get("epsilon", 1e-5)),
        "cudnn_enabled": False}, imp.out())]


@handler("LayerNormalization")
def layer_norm(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.tensor(imp.input(0))
    shape = imp.shape(x)[_axis(a.get("axis", -1), imp.rank(x)):]
    if not all(isinstance(d, int) for d in shape):
        raise imp.fail(f"normalized shape {list(shape)} is not static")
    affine = []
    for e in (imp.input(1), imp.input(2)):
        if isinstance(e, Const) and e.array.shape != tuple(shape):
            e = Const(np.broadcast_to(e.array, shape).copy(), e.name + "_full")
        affine.append(imp.tensor(e))
    return [imp.emit("layer_norm", [x, *affine], {"normalized_shape": tuple(shape),
                                                  "eps": float(a.get("epsilon", 1e-5))},
                     imp.out())]


@handler("MaxPool", "AveragePool")
def pool(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.tensor(imp.input(0))
    kernel = list(a["kernel_shape"])
    n = len(kernel)
    if n > 2:
        raise imp.fail(f"{n}-d pooling")
    strides, dilations = _list(a.get("strides"), n), _list(a.get("dilations"), n)
    begin, end = _pads(imp, a, x, kernel, strides, dilations)
    is_max = node.op_type == "MaxPool"
    include_pad = bool(a.get("count_include_pad", 0))
    if begin != end or any(2 * p > k for p, k in zip(begin, kernel)):
        if not is_max and not include_pad:
            raise imp.fail("asymmetric pads with count_include_pad=0")
        x = _pad(imp, x, begin, end, -math.inf if is_max else 0.0)
        begin = [0] * n
    at: dict[str, Any] = {"kernel_size": tuple(kernel), "stride": tuple(strides)}
    if any(begin):
        at["padding"] = tuple(begin)
    if is_max and any(d != 1 for d in dilations):
        at["dilation"] = tuple(dilations)
    elif not is_max and any(d != 1 for d in dilations):
        raise imp.fail("dilated AveragePool")
    if a.get("ceil_mode", 0):
        at["ceil_mode"] = True
    if not is_max and not include_pad and any(begin):
        at["count_include_pad"] = False
    op = f"{'max' if is_max else 'avg'}_pool{n}d"
    return [imp.emit(op, [x], at, imp.out()), Missing("the indices of a MaxPool")]


@handler("GlobalAveragePool", "GlobalMaxPool")
def global_pool(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.tensor(imp.input(0))
    r = imp.rank(x)
    if node.op_type == "GlobalAveragePool" and r in (3, 4):
        return [imp.emit(f"adaptive_avg_pool{r - 2}d", [x], {"output_size": (1,) * (r - 2)},
                         imp.out())]
    op = "mean.dim" if node.op_type == "GlobalAveragePool" else "amax"
    return [imp.emit(op, [x], {"dim": tuple(range(2, r)), "keepdim": True}, imp.out())]


# -- shapes -------------------------------------------------------------------------------
def _sizes(imp: Importer, items: Sequence[int | Ref], rank: int, dtype: str = "i64") -> Entry:
    """Sizes, or a constant when every element is known."""
    if all(isinstance(v, int) for v in items):
        array = np.array(list(items) if rank else items[0], np_dtype(dtype))
        return Const(array, imp.node.output[0])
    return Sizes(tuple(items), rank, dtype)


def _shape_arg(imp: Importer, i: int) -> list[int | Ref]:
    items = imp.sizes(imp.input(i))
    if items is None:
        raise imp.fail(f"its shape input comes from tensor data: value '{imp.node.output[0]}' "
                       f"has a data-dependent shape")
    return items


def _static_shape(imp: Importer, e: Entry) -> tuple[int | str, ...]:
    if isinstance(e, Const):
        return e.array.shape
    if isinstance(e, Sizes):
        return (len(e.items),) if e.rank else ()
    return imp.shape(e)


@handler("Shape")
def shape(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, a = imp.input(0), attrs(node)
    r = imp.rank(x)
    start = max(0, min(r, _axis(a.get("start", 0), r)))
    end = max(0, min(r, _axis(a.get("end", r), r)))
    if isinstance(x, str):
        return [_sizes(imp, [imp.dim(x, axis) for axis in range(start, end)], 1)]
    return [_const(imp, np.array(_static_shape(imp, x)[start:end], np.int64))]


@handler("Size")
def size(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    dims = imp.dims(x) if isinstance(x, str) else list(_static_shape(imp, x))
    total: int | Ref = 1
    for d in dims:
        total = imp.sym("mul", total, d)
    return [_sizes(imp, [total], 0)]


@handler("Reshape")
def reshape(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, items = imp.input(0), _shape_arg(imp, 1)
    if not attrs(node).get("allowzero", 0):  # 0 copies the input's size
        for i, v in enumerate(items):
            if isinstance(v, int) and v == 0:
                items[i] = imp.dim(x, i) if isinstance(x, str) else _static_shape(imp, x)[i]
    if isinstance(x, Const) and all(isinstance(v, int) for v in items):
        return [_const(imp, x.array.reshape(items))]
    if isinstance(x, Sizes) and len(items) <= 1:
        return [Sizes(x.items, len(items), x.dtype)]
    return [imp.emit("reshape", [imp.tensor(x)], {"shape": tuple(items)}, imp.out())]


@handler("Flatten")
def flatten(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    r = imp.rank(x)
    axis = _axis(attrs(node).get("axis", 1), r)
    if isinstance(x, Const):
        return [_const(imp, x.array.reshape(int(np.prod(x.array.shape[:axis])), -1))]
    t = imp.tensor(x)
    if axis == 0 or axis == r:
        shape = (1, -1) if axis == 0 else (-1, 1)
        return [imp.emit("reshape", [t], {"shape": shape}, imp.out())]
    if axis > 1:
        t = imp.emit("flatten.using_ints", [t], {"end_dim": axis - 1},
                     name=imp.out() if axis == r - 1 else None)
    if axis < r - 1:
        t = imp.emit("flatten.using_ints", [t], {"start_dim": 1}, imp.out())
    return [t]


@handler("Transpose")
def transpose(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    r = imp.rank(x)
    perm = list(attrs(node).get("perm", range(r - 1, -1, -1)))
    if isinstance(x, Const):
        if x.transpose_of is not None and perm == [1, 0]:
            return [x.transpose_of]
        of = x if perm == [1, 0] else None
        return [Const(x.array.transpose(perm), node.output[0], of)]
    if perm == list(range(r)) or isinstance(x, Sizes):
        return [x]
    return [imp.emit("permute", [imp.tensor(x)], {"dims": tuple(perm)}, imp.out())]


def _axes(imp: Importer, node: onnx.NodeProto) -> list[int] | None:
    axes = attrs(node).get("axes")
    return list(axes) if axes is not None else _ints(imp, 1, "the axes")


@handler("Unsqueeze")
def unsqueeze(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    axes = _axes(imp, node) or []
    r = imp.rank(x) + len(axes)
    axes = sorted(_axis(a, r) for a in axes)
    if isinstance(x, Const):
        return [_const(imp, np.expand_dims(x.array, tuple(axes)))]
    if isinstance(x, Sizes) and r <= 1:
        return [Sizes(x.items, r, x.dtype)]
    t = imp.tensor(x)
    for k, a in enumerate(axes):
        t = imp.emit("unsqueeze", [t], {"dim": a}, imp.out() if k == len(axes) - 1 else None)
    return [t]


@handler("Squeeze")
def squeeze(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    shape, r = _static_shape(imp, x), imp.rank(x)
    axes = _axes(imp, node)
    axes = [a for a in range(r) if shape[a] == 1] if axes is None else \
        sorted(_axis(a, r) for a in axes)
    if any(shape[a] != 1 for a in axes):
        raise imp.fail(f"axes {axes} of shape {list(shape)} are not all of size 1")
    if isinstance(x, Const):
        return [_const(imp, np.squeeze(x.array, tuple(axes)))]
    if isinstance(x, Sizes):
        return [Sizes(x.items, x.rank - len(axes), x.dtype)]
    if not axes:
        return [x]
    if len(axes) == 1:
        return [imp.emit("squeeze.dim", [x], {"dim": axes[0]}, imp.out())]
    return [imp.emit("squeeze.dims", [x], {"dim": tuple(axes)}, imp.out())]


@handler("Concat")
def concat(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    parts = [imp.input(i) for i in range(len(node.input))]
    r = imp.rank(parts[0])
    axis = _axis(attrs(node)["axis"], r)
    if len(parts) > 1:  # an empty constant adds nothing
        parts = [p for p in parts if not (isinstance(p, Const) and p.array.size == 0)] or parts[:1]
    if all(isinstance(p, Const) for p in parts):
        return [_const(imp, np.concatenate([p.array for p in parts], axis))]
    items = [imp.sizes(p) for p in parts]
    if r == 1 and all(i is not None for i in items):
        return [_sizes(imp, [v for i in items for v in i], 1, imp.dtype(parts[0]))]
    if len(parts) == 1:
        return [imp.tensor(parts[0])]
    return [imp.emit("cat", [imp.tensor(p) for p in parts], {"dim": axis}, imp.out())]


@handler("Split")
def split(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, a = imp.input(0), attrs(node)
    n = len(node.output)
    r = imp.rank(x)
    axis = _axis(a.get("axis", 0), r)
    sizes = imp.sizes(imp.input(1)) if imp.input(1) is not None else a.get("split")
    total = _static_shape(imp, x)[axis]
    if sizes is None and isinstance(total, int):
        per = -(-total // n)
        sizes = [per] * (n - 1) + [total - per * (n - 1)]
    if sizes is not None and not isinstance(x, str) and all(isinstance(v, int) for v in sizes):
        bounds = np.cumsum([0] + list(sizes))
        if isinstance(x, Const):
            return [Const(np.take(x.array, range(lo, hi), axis), out)
                    for lo, hi, out in zip(bounds, bounds[1:], node.output)]
        return [_sizes(imp, x.items[lo:hi], 1, x.dtype) for lo, hi in zip(bounds, bounds[1:])]
    names = [imp.out(i) for i in range(n)]
    t = imp.tensor(x)
    if sizes is None:
        outs = imp.emit("chunk", [t], {"chunks": n, "dim": axis}, names=names, n_outputs=n)
    else:
        outs = imp.emit("split_with_sizes", [t], {"split_sizes": tuple(sizes), "dim": axis},
                        names=names, n_outputs=n)
    return outs if n > 1 else [outs]


@handler("Slice")
def slice_(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    starts, ends = _shape_arg(imp, 1), _shape_arg(imp, 2)
    r = imp.rank(x)
    axes = [_axis(a, r) for a in (_ints(imp, 3, "the axes") or range(len(starts)))]
    steps = _ints(imp, 4, "the steps") or [1] * len(starts)
    static = all(isinstance(v, int) for v in starts + ends)
    if static and not isinstance(x, str):
        index = [slice(None)] * r
        for a, s, e, k in zip(axes, starts, ends, steps):
            index[a] = slice(s, e, k)
        if isinstance(x, Const):
            return [_const(imp, x.array[tuple(index)])]
        return [_sizes(imp, x.items[index[0]], 1, x.dtype) if r == 1 else x]
    t = imp.tensor(x)
    shape = imp.shape(t)
    todo = []
    for a, s, e, k in zip(axes, starts, ends, steps):
        if k <= 0:
            raise imp.fail(f"step {k}: torch slices only forward")
        e = min(e, INT64_MAX) if isinstance(e, int) else e
        if s == 0 and k == 1 and isinstance(e, int) and (e == INT64_MAX or e == shape[a]):
            continue
        todo.append((a, s, e, k))
    for i, (a, s, e, k) in enumerate(todo):
        at = {"dim": a} if a else {}
        if not (isinstance(s, int) and s == 0):
            at["start"] = s
        at["end"] = e
        if k != 1:
            at["step"] = k
        t = imp.emit("slice.Tensor", [t], at, imp.out() if i == len(todo) - 1 else None)
    return [t]


@handler("Gather")
def gather(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, idx = imp.input(0), imp.input(1)
    axis = _axis(attrs(node).get("axis", 0), imp.rank(x))
    ci = idx.array if isinstance(idx, Const) else None
    if isinstance(x, Const) and ci is not None:
        return [_const(imp, np.take(x.array, ci, axis))]
    if isinstance(x, Sizes) and ci is not None and ci.ndim <= 1:
        return [_sizes(imp, [x.items[int(i)] for i in ci.reshape(-1)], ci.ndim, x.dtype)]
    if isinstance(x, Const) and x.array.ndim == 2 and axis == 0 and ci is None:
        return [imp.emit("embedding", [imp.param(x), imp.tensor(idx)], name=imp.out())]
    t = imp.tensor(x)
    if ci is not None and ci.ndim == 0:
        return [imp.emit("select.int", [t], {"dim": axis, "index": int(ci)}, imp.out())]
    if ci is not None and ci.ndim == 1 and (ci >= 0).all():
        return [imp.emit("index_select", [t, imp.tensor(idx, "i64")], {"dim": axis},
                         imp.out())]
    return [imp.emit("index.Tensor", [t, *[None] * axis, imp.tensor(idx, "i64")],
                     name=imp.out())]


@handler("GatherND")
def gather_nd(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    """GatherND(x, idx[..., k]) = x[idx[..., 0], ..., idx[..., k-1]]: k index tensors."""
    if attrs(node).get("batch_dims", 0):
        raise imp.fail("batch_dims != 0")
    x, idx = imp.tensor(imp.input(0)), imp.tensor(imp.input(1), "i64")
    k = imp.shape(idx)[-1]
    if not isinstance(k, int):
        raise imp.fail(f"index depth {k} is not static")
    parts = [imp.emit("select.int", [idx], {"dim": -1, "index": j}) for j in range(k)]
    return [imp.emit("index.Tensor", [x, *parts], name=imp.out())]


@handler("GatherElements")
def gather_elements(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.tensor(imp.input(0))
    axis = _axis(attrs(node).get("axis", 0), imp.rank(x))
    return [imp.emit("gather", [x, imp.tensor(imp.input(1), "i64")], {"dim": axis}, imp.out())]


@handler("Expand")
def expand(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, shape = imp.input(0), _shape_arg(imp, 1)
    xr = imp.rank(x)
    n = max(len(shape), xr)
    shape = [1] * (n - len(shape)) + shape
    if isinstance(x, Const):
        if all(isinstance(v, int) for v in shape):
            out = np.broadcast_to(x.array, np.broadcast_shapes(x.array.shape, tuple(shape)))
            return [_const(imp, out.copy())]
        if x.array.size == 1:
            return [imp.emit("full", [], {"size": tuple(shape), "fill_value": _number(x.array),
                                          "dtype": DType(x.dtype)}, imp.out())]
    size = [-1 if isinstance(v, int) and v == 1 and i >= n - xr else v
            for i, v in enumerate(shape)]
    t = imp.tensor(x)
    if n == xr and all(v == -1 for v in size):
        return [t]
    return [imp.emit("expand", [t], {"size": tuple(size)}, imp.out())]


@handler("Tile")
def tile(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, repeats = imp.input(0), _shape_arg(imp, 1)
    if isinstance(x, Const) and all(isinstance(v, int) for v in repeats):
        return [_const(imp, np.tile(x.array, repeats))]
    return [imp.emit("repeat", [imp.tensor(x)], {"repeats": tuple(repeats)}, imp.out())]


@handler("ConstantOfShape")
def constant_of_shape(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    shape = _shape_arg(imp, 0)
    value = attrs(node).get("value")
    v = onnx.numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    if all(isinstance(d, int) for d in shape) and math.prod(shape) <= 4096:
        return [_const(imp, np.full(shape, v.reshape(-1)[0], v.dtype))]
    dtype = IR_DTYPES[value.data_type] if value is not None else "f32"
    return [imp.emit("full", [], {"size": tuple(shape), "fill_value": _number(v),
                                  "dtype": DType(dtype)}, imp.out())]


@handler("Range")
def range_(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    args = [imp.input(i) for i in range(3)]
    if all(isinstance(e, Const) for e in args):
        start, limit, delta = (e.array.reshape(-1)[0] for e in args)
        return [_const(imp, np.arange(start, limit, delta, dtype=args[0].array.dtype))]
    bounds = []
    for e in args:
        if isinstance(e, Const) and e.array.size == 1:
            bounds.append(_number(e.array))
        elif isinstance(e, Sizes) and len(e.items) == 1:
            bounds.append(e.items[0])
        else:
            raise imp.fail(f"its bounds come from tensor data: value '{node.output[0]}' has a "
                           f"data-dependent shape")
    if all(isinstance(b, Ref) or float(b).is_integer() for b in bounds):
        bounds = [b if isinstance(b, Ref) else int(b) for b in bounds]  # exact sizes
    start, end, step = bounds
    return [imp.emit("arange.start_step", [], {"start": start, "end": end, "step": step,
                                               "dtype": DType(imp.dtype(args[0]))}, imp.out())]


@handler("Pad")
def pad(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if a.get("mode", "constant") != "constant":
        raise imp.fail(f"mode={a['mode']!r}")
    x = imp.input(0)
    r = imp.rank(x)
    pads = _ints(imp, 1, "the pads")
    value = imp.const(2)
    if imp.input(2) is not None and value is None:
        raise imp.fail("the pad value must be a constant")
    fill = _number(value) if value is not None else 0
    axes = [_axis(v, r) for v in (_ints(imp, 3, "the axes") or range(r))]
    begin, end = [0] * r, [0] * r
    for i, ax in enumerate(axes):
        begin[ax], end[ax] = pads[i], pads[len(axes) + i]
    if isinstance(x, Const):
        return [_const(imp, np.pad(x.array, list(zip(begin, end)), constant_values=fill))]
    return [_pad(imp, imp.tensor(x), begin, end, fill)]
