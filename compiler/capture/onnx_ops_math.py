"""ONNX elementwise ops, reductions and (de)quantization as IR ops.

Constants fold with numpy and sizes fold symbolically (`onnx_sizes`); tensors map as follows:
  Add/Sub/Mul/Div/Pow/compare/logic  the ATen op (`.Scalar` for a one-element constant)
  Div on ints                        div(a, b, rounding_mode="trunc")
  Mod(a, b) on ints, fmod=0 | 1      a − b·div(a, b, "floor" | "trunc")
  Mod on floats                      remainder (fmod=0) | fmod (fmod=1): exact, ±inf divisors too
  Max/Min/Sum/Mean(x1, ..., xn)      maximum/minimum/add folded over every input (÷ n for Mean)
  Floor(x), Ceil(x)                  div(x, 1, "floor"), −div(−x, 1, "floor")
  HardSigmoid(α, β)                  hardsigmoid if (α, β) = (1/6, 1/2), else clamp(α·x + β, 0, 1)
  Selu(α, γ), Celu(α)                elu(x, α, scale=γ), elu(x, α, input_scale=1/α)
  DequantizeLinear(x, s, z)          (x − z)·s in float, s and z reshaped along `axis`
  QuantizeLinear(x, s, z)            clamp(round(x / s) + z, qmin, qmax) cast to int8/uint8
  ReduceLogSumExp                    log(sum(exp(x − max))) + max
"""
from __future__ import annotations

import math

import numpy as np
import onnx

from ..ir.graph import DType
from .onnx_importer import (FLOATS, IR_DTYPES, Const, Entry, Importer, Sizes, attrs, axis,
                            handler, np_dtype, number, scalar)
from .onnx_sizes import cast as cast_sizes
from .onnx_sizes import Unfoldable, fold_numpy, fold_or_none
from .onnx_sizes import reduce as reduce_sizes


def _unfolded(imp: Importer, out: str, why: str | None) -> str:
    if why is not None:
        imp.unfolded[out] = why
    return out


# -- unary ----------------------------------------------------------------------------------
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Neg": "neg",
          "Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Abs": "abs", "Reciprocal": "reciprocal",
          "Cos": "cos", "Sin": "sin", "Tan": "tan", "Atan": "atan", "Asin": "asin",
          "Acos": "acos", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh",
          "Atanh": "atanh", "HardSwish": "hardswish", "Not": "logical_not",
          "BitwiseNot": "bitwise_not", "Round": "round", "Sign": "sign", "Softplus": "softplus",
          "Mish": "mish", "IsNaN": "isnan"}
_NP_UNARY = {"Relu": lambda a: np.maximum(a, 0), "Neg": np.negative, "Sqrt": np.sqrt,
             "Exp": np.exp, "Log": np.log, "Abs": np.abs, "Reciprocal": np.reciprocal,
             "Not": np.logical_not, "Floor": np.floor, "Ceil": np.ceil, "Round": np.round,
             "Sign": np.sign, "IsNaN": np.isnan}


@handler(*_UNARY, imports_as=_UNARY, attributes="")
def unary(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    if isinstance(x, Const) and node.op_type in _NP_UNARY:
        out = _NP_UNARY[node.op_type](x.array)
        return [imp.new_const(out if out.dtype == np.bool_ else out.astype(x.array.dtype))]
    if node.op_type in ("Neg", "Abs", "Not") and isinstance(x, Sizes):
        folded, why = fold_or_none(imp, node.op_type, [x])
        if folded is not None:
            return [folded]
    return [imp.emit(_UNARY[node.op_type], [imp.tensor(x)], name=imp.out())]


@handler("Floor", "Ceil", imports_as={"Floor": "div.Tensor_mode(x, 1, floor)",
                                     "Ceil": "−div.Tensor_mode(−x, 1, floor)"}, attributes="")
def floor_ceil(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    if isinstance(x, Const):
        return [imp.new_const(_NP_UNARY[node.op_type](x.array))]
    if isinstance(x, Sizes) and all(not isinstance(v, float) for v in x.items):
        return [x]  # sizes are whole numbers
    t = imp.tensor(x)
    if imp.dtype(t) not in FLOATS:
        return [t]
    one = imp.constant(np.array(1, np_dtype(imp.dtype(t))), "one")
    if node.op_type == "Floor":
        return [imp.emit("div.Tensor_mode", [t, one], {"rounding_mode": "floor"}, imp.out())]
    down = imp.emit("div.Tensor_mode", [imp.emit("neg", [t]), one], {"rounding_mode": "floor"})
    return [imp.emit("neg", [down], name=imp.out())]


@handler("IsInf", imports_as="isinf (and a sign test when one side is off)",
         attributes="detect_negative detect_positive")
def isinf(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    neg, pos = a.get("detect_negative", 1), a.get("detect_positive", 1)
    x = imp.tensor(imp.input(0))
    inf = imp.emit("isinf", [x], name=imp.out() if neg and pos else None)
    if neg and pos:
        return [inf]
    if not (neg or pos):
        return [imp.emit("logical_and", [inf, imp.emit("logical_not", [inf])], name=imp.out())]
    side = imp.emit("gt.Scalar" if pos else "lt.Scalar", [x], {"other": 0})
    return [imp.emit("logical_and", [inf, side], name=imp.out())]


@handler("Gelu", imports_as="gelu (approximate='tanh' kept)", attributes="approximate")
def gelu(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    approximate = attrs(node).get("approximate", "none")
    a = {"approximate": "tanh"} if approximate == "tanh" else {}
    return [imp.emit("gelu", [imp.tensor(imp.input(0))], a, imp.out())]


@handler("LeakyRelu", "Elu", "Selu", "Celu", imports_as={
    "LeakyRelu": "leaky_relu", "Elu": "elu", "Selu": "elu(alpha, scale=gamma)",
    "Celu": "elu(alpha, input_scale=1/alpha)"}, attributes="alpha gamma")
def leaky(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a, op = attrs(node), node.op_type
    default = {"LeakyRelu": 0.01, "Elu": 1.0, "Selu": 1.67326319217681884765625, "Celu": 1.0}
    alpha = float(a.get("alpha", default[op]))
    x = imp.tensor(imp.input(0))
    if op == "LeakyRelu":
        return [imp.emit("leaky_relu", [x], {"negative_slope": alpha}, imp.out())]
    at = {"alpha": alpha} if alpha != 1.0 else {}
    if op == "Selu":
        at = {"alpha": alpha, "scale": float(a.get("gamma", 1.05070102214813232421875))}
    elif op == "Celu" and alpha != 1.0:
        at["input_scale"] = 1.0 / alpha
    return [imp.emit("elu", [x], at, imp.out())]


@handler("Softsign", imports_as="x / (1 + abs(x))", attributes="")
def softsign(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.tensor(imp.input(0))
    den = imp.emit("add.Scalar", [imp.emit("abs", [x])], {"other": 1.0})
    return [imp.emit("div.Tensor", [x, den], name=imp.out())]


@handler("ThresholdedRelu", imports_as="where(x > alpha, x, 0)", attributes="alpha")
def thresholded_relu(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.tensor(imp.input(0))
    zero = imp.constant(np.zeros((), np_dtype(imp.dtype(x))), "zero")
    above = imp.emit("gt.Scalar", [x], {"other": float(attrs(node).get("alpha", 1.0))})
    return [imp.emit("where.self", [above, x, zero], name=imp.out())]


@handler("Swish", imports_as="silu (alpha = 1), else x·sigmoid(alpha·x)", attributes="alpha")
def swish(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    alpha = float(attrs(node).get("alpha", 1.0))
    x = imp.tensor(imp.input(0))
    if alpha == 1.0:
        return [imp.emit("silu", [x], name=imp.out())]
    gate = imp.emit("sigmoid", [imp.emit("mul.Scalar", [x], {"other": alpha})])
    return [imp.emit("mul.Tensor", [x, gate], name=imp.out())]


@handler("HardSigmoid", imports_as="hardsigmoid, or clamp(alpha·x + beta, 0, 1)",
         attributes="alpha beta")
def hardsigmoid(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    x = imp.tensor(imp.input(0))
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return [imp.emit("hardsigmoid", [x], name=imp.out())]
    y = imp.emit("add.Scalar", [imp.emit("mul.Scalar", [x], {"other": alpha})], {"other": beta})
    return [imp.emit("clamp", [y], {"min": 0.0, "max": 1.0}, imp.out())]


@handler("PRelu", imports_as="where(x < 0, x·slope, x)", attributes="")
def prelu(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, slope = imp.tensor(imp.input(0)), imp.tensor(imp.input(1))
    negative = imp.emit("lt.Scalar", [x], {"other": 0})
    return [imp.emit("where.self", [negative, imp.emit("mul.Tensor", [x, slope]), x],
                     name=imp.out())]


@handler("Clip", imports_as="clamp (constant bounds), else maximum/minimum", attributes="")
def clip(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, lo, hi = imp.input(0), imp.input(1), imp.input(2)
    if isinstance(x, Const) and all(v is None or isinstance(v, Const) for v in (lo, hi)):
        out = x.array
        out = out if lo is None else np.maximum(out, lo.array)
        out = out if hi is None else np.minimum(out, hi.array)
        return [imp.new_const(out.astype(x.array.dtype))]
    t = imp.tensor(x)
    if all(v is None or scalar(v) is not None for v in (lo, hi)):
        a = {k: number(v.array) for k, v in (("min", lo), ("max", hi)) if v is not None}
        return [imp.emit("clamp", [t], a, imp.out())] if a else [t]
    if lo is not None:
        t = imp.emit("maximum", [t, imp.tensor(lo)], name=imp.out() if hi is None else None)
    if hi is not None:
        t = imp.emit("minimum", [t, imp.tensor(hi)], name=imp.out())
    return [t]


# -- binary and variadic --------------------------------------------------------------------
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
_BINARY = [k for k in _TENSOR_OPS if k not in ("Max", "Min")]


@handler(*_BINARY, "Mod", imports_as={
    **{k: f"{_TENSOR_OPS[k]}" + (f" ({_SCALAR_OPS[k]} by a one-element constant)"
                                 if k in _SCALAR_OPS else "") for k in _BINARY},
    "Div": "div.Tensor (div.Scalar by a one-element constant; div.Tensor_mode trunc on ints)",
    "Mod": "remainder.Tensor / fmod.Tensor on floats; a − b·div.Tensor_mode on ints"},
    attributes="fmod")
def binary(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    kind, a, b = node.op_type, imp.input(0), imp.input(1)
    if kind == "Add" and not isinstance(a, Sizes) and not isinstance(b, Sizes):
        fused = _linear_bias(imp, node.input[0], b) or _linear_bias(imp, node.input[1], a)
        if fused:
            return [fused]
    return [combine(imp, kind, a, b, imp.out(), attrs(node).get("fmod", 0))]


def combine(imp: Importer, kind: str, a: Entry, b: Entry, name: str | None,
            fmod: int = 0) -> Entry:
    """ONNX binary op `kind` on two entries: folded when both are known, else IR ops."""
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(fold_numpy(kind, [a.array, b.array], fmod), imp.node.output[0])
    folded, why = fold_or_none(imp, kind, [a, b], fmod)
    if folded is not None:
        return folded
    return _unfolded(imp, _binary_tensor(imp, kind, a, b, name, fmod), why)


def _binary_tensor(imp: Importer, kind: str, a: Entry, b: Entry, name: str | None,
                   fmod: int) -> str:
    if kind == "Mod":
        return _mod(imp, imp.tensor(a), imp.tensor(b), fmod, name)
    if kind == "Div" and imp.dtype(a) not in FLOATS:
        return imp.emit("div.Tensor_mode", [imp.tensor(a), imp.tensor(b)],
                        {"rounding_mode": "trunc"}, name)
    if kind == "Pow" and imp.dtype(a) != imp.dtype(b) and scalar(b) is None:
        out = imp.emit("pow.Tensor_Tensor", [imp.tensor(a), imp.tensor(b)])
        return imp.tensor(out, imp.dtype(a)) if imp.dtype(out) != imp.dtype(a) else out
    if scalar(a) is not None and scalar(b) is None and kind in _SWAPPED:
        a, b, kind = b, a, _SWAPPED[kind]
    c = scalar(b)
    if c is not None and c.ndim <= imp.rank(a) and kind in _SCALAR_OPS:
        op = _SCALAR_OPS[kind]
        return imp.emit(op, [imp.tensor(a)], {_SCALAR_ARG.get(op, "other"): number(c)}, name)
    c = scalar(a)
    if c is not None and c.ndim <= imp.rank(b) and kind in ("Sub", "Pow"):
        if kind == "Sub":
            return imp.emit("rsub.Scalar", [imp.tensor(b)], {"other": number(c)}, name)
        return imp.emit("pow.Scalar", [imp.tensor(b)], {"self": number(c)}, name)
    return imp.emit(_TENSOR_OPS[kind], [imp.tensor(a), imp.tensor(b)], name=name)


def _mod(imp: Importer, a: str, b: str, fmod: int, name: str | None) -> str:
    if imp.dtype(a) in FLOATS:  # a − b·q loses x for a ±inf divisor and precision for large a/b
        return imp.emit("fmod.Tensor" if fmod else "remainder.Tensor", [a, b], name=name)
    q = imp.emit("div.Tensor_mode", [a, b], {"rounding_mode": "trunc" if fmod else "floor"})
    return imp.emit("sub.Tensor", [a, imp.emit("mul.Tensor", [q, b])], name=name)


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


@handler("Max", "Min", "Sum", "Mean", imports_as={
    "Max": "maximum over every input (clamp_min by a one-element constant)",
    "Min": "minimum over every input (clamp_max by a one-element constant)",
    "Sum": "add.Tensor over every input", "Mean": "add.Tensor over every input, div.Scalar by n"},
    attributes="")
def variadic(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    """Every input counts: Max(a, b, c) is maximum(maximum(a, b), c)."""
    kind = {"Sum": "Add", "Mean": "Add"}.get(node.op_type, node.op_type)
    parts = [imp.input(i) for i in range(len(node.input))]
    if any(p is None for p in parts):
        raise imp.fail("an input is empty")
    out = parts[0]
    for k, p in enumerate(parts[1:], 1):
        last = k == len(parts) - 1 and node.op_type != "Mean"
        out = combine(imp, kind, out, p, imp.out() if last else None)
    if node.op_type == "Mean" and len(parts) > 1:
        if isinstance(out, Const):
            return [imp.new_const((out.array / len(parts)).astype(out.array.dtype))]
        out = imp.emit("div.Scalar", [imp.tensor(out)], {"other": float(len(parts))}, imp.out())
    return [out]


@handler("Where", imports_as="where.self (folded over known conditions and sizes)",
         attributes="")
def where(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    c, x, y = imp.input(0), imp.input(1), imp.input(2)
    if all(isinstance(e, Const) for e in (c, x, y)):
        return [imp.new_const(fold_numpy("Where", [c.array, x.array, y.array]))]
    folded, why = fold_or_none(imp, "Where", [c, x, y])
    if folded is not None:
        return [folded]
    out = imp.emit("where.self", [imp.tensor(c), imp.tensor(x), imp.tensor(y)], name=imp.out())
    return [_unfolded(imp, out, why)]


@handler("Cast", "CastLike", imports_as="to.dtype (sizes and constants: folded)",
         attributes="to saturate round_mode")
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
        return [imp.new_const(x.array.astype(np_dtype(dtype)))]
    why = None
    if isinstance(x, Sizes):
        try:
            return [cast_sizes(imp, x, dtype)]
        except Unfoldable as e:  # "seq != 0" is not known: cast at run time
            why = str(e)
    t = imp.tensor(x)
    if imp.dtype(t) == dtype:
        return [t]
    return [_unfolded(imp, imp.emit("to.dtype", [t], {"dtype": DType(dtype)}, imp.out()), why)]


# -- reductions -----------------------------------------------------------------------------
_REDUCE = {"ReduceMean": "mean.dim", "ReduceSum": "sum.dim_IntList", "ReduceMax": "amax",
           "ReduceMin": "amin", "ReduceSumSquare": "sum.dim_IntList",
           "ReduceL2": "sum.dim_IntList", "ReduceL1": "sum.dim_IntList",
           "ReduceLogSum": "sum.dim_IntList", "ReduceProd": "prod.dim_int",
           "ReduceLogSumExp": "sum.dim_IntList"}
_NP_REDUCE = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max,
              "ReduceMin": np.min, "ReduceProd": np.prod}


@handler(*_REDUCE, imports_as={
    **_REDUCE, "ReduceProd": "prod.dim_int, one per axis (sizes: folded)",
    "ReduceSum": "sum.dim_IntList (sizes: folded)", "ReduceL1": "abs, sum.dim_IntList",
    "ReduceL2": "mul, sum.dim_IntList, sqrt", "ReduceSumSquare": "mul, sum.dim_IntList",
    "ReduceLogSum": "sum.dim_IntList, log", "ReduceLogSumExp": "amax, exp, sum.dim_IntList, "
    "log, add"}, attributes="axes keepdims noop_with_empty_axes")
def reduce(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.input(0)
    r = imp.rank(x)
    axes = a.get("axes")
    if axes is None:
        axes = imp.ints(1, "the axes")
    keep = bool(a.get("keepdims", 1))
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(r))
    axes = sorted({axis(d, r) for d in axes})
    kind = node.op_type
    if isinstance(x, Const) and kind in _NP_REDUCE:
        out = _NP_REDUCE[kind](x.array, axis=tuple(axes), keepdims=keep)
        return [imp.new_const(np.asarray(out).astype(x.array.dtype))]
    if isinstance(x, Sizes) and r == 1 and kind in ("ReduceSum", "ReduceProd", "ReduceMax",
                                                    "ReduceMin"):
        try:
            item = reduce_sizes(imp, kind, x)
            return [imp.sizes_entry([item], 1 if keep else 0, x.dtype)]
        except Unfoldable:  # the max of sizes the model doesn't order: run it on tensors
            pass
    t = imp.tensor(x)
    if kind == "ReduceProd":
        for k, d in enumerate(reversed(axes)):  # from the last axis: earlier axes keep places
            last = k == len(axes) - 1
            t = imp.emit("prod.dim_int", [t], {"dim": d, "keepdim": keep},
                         imp.out() if last else None)
        return [t]
    if kind in ("ReduceSumSquare", "ReduceL2"):
        t = imp.emit("mul.Tensor", [t, t])
    elif kind == "ReduceL1":
        t = imp.emit("abs", [t])
    at = {"dim": tuple(axes), "keepdim": keep}
    if kind == "ReduceLogSumExp":
        top = imp.emit("amax", [t], {"dim": tuple(axes), "keepdim": True})
        shifted = imp.emit("exp", [imp.emit("sub.Tensor", [t, top])])
        total = imp.emit("log", [imp.emit("sum.dim_IntList", [shifted], at)])
        if not keep:
            top = imp.emit("squeeze.dims", [top], {"dim": tuple(axes)})
        return [imp.emit("add.Tensor", [total, top], name=imp.out())]
    last = kind not in ("ReduceL2", "ReduceLogSum")
    out = imp.emit(_REDUCE[kind], [t], at, imp.out() if last else None)
    if last:
        return [out]
    return [imp.emit("sqrt" if kind == "ReduceL2" else "log", [out], name=imp.out())]


@handler("ArgMax", "ArgMin", imports_as={"ArgMax": "max.dim (its indices)",
                                         "ArgMin": "max.dim of −x (its indices)"},
         attributes="axis keepdims select_last_index")
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


@handler("Softmax", "LogSoftmax", imports_as={"Softmax": "softmax.int",
                                              "LogSoftmax": "log_softmax.int"}, attributes="axis")
def softmax(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    op = "softmax.int" if node.op_type == "Softmax" else "log_softmax.int"
    return [imp.emit(op, [imp.tensor(imp.input(0))], {"dim": attrs(node).get("axis", -1)},
                     imp.out())]


@handler("CumSum", imports_as="cumsum (exclusive and reverse refused)",
         attributes="exclusive reverse")
def cumsum(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if a.get("exclusive", 0) or a.get("reverse", 0):
        raise imp.fail("exclusive or reverse CumSum")
    ax = imp.ints(1, "the axis")[0]
    return [imp.emit("cumsum", [imp.tensor(imp.input(0))], {"dim": ax}, imp.out())]


# -- quantization ---------------------------------------------------------------------------
_QRANGE = {"i8": (-128, 127), "u8": (0, 255)}


def _along(imp: Importer, e: Entry, ax: int, rank: int) -> Entry:
    """A per-axis scale or zero point as a tensor broadcasting along `ax` of a rank-`rank` x."""
    if imp.rank(e) == 0 or (imp.rank(e) == 1 and imp.static_shape(e)[0] == 1 and rank != 1):
        return e
    shape = [1] * rank
    shape[ax] = -1
    if isinstance(e, Const):
        return Const(e.array.reshape(shape), e.name + "_axis")
    return imp.emit("reshape", [imp.tensor(e)], {"shape": tuple(shape)})


def _quant_args(imp: Importer, node: onnx.NodeProto, x: Entry) -> tuple[Entry, Entry | None]:
    a = attrs(node)
    if a.get("block_size", 0):
        raise imp.fail("blocked quantization (block_size > 0)")
    r = imp.rank(x)
    ax = axis(a.get("axis", 1), r) if r else 0
    scale, zero = imp.input(1), imp.input(2)
    scale = _along(imp, scale, ax, r)
    return scale, (None if zero is None else _along(imp, zero, ax, r))


@handler("DequantizeLinear", imports_as="(x − zero_point)·scale (folded for constant x)",
         attributes="axis block_size output_dtype")
def dequantize(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    if imp.dtype(x) not in ("i8", "u8", "i32"):
        raise imp.fail(f"{imp.dtype(x)} input: sparsecc reads int8, uint8 and int32")
    scale, zero = _quant_args(imp, node, x)
    to = attrs(node).get("output_dtype", 0)
    dtype = IR_DTYPES.get(to, imp.dtype(scale)) if to else imp.dtype(scale)
    if isinstance(x, Const) and isinstance(scale, Const) and not isinstance(zero, str):
        q = x.array.astype(np.int32) - (0 if zero is None else zero.array.astype(np.int32))
        out = q.astype(np.float32) * scale.array.astype(np.float32)
        return [imp.new_const(out.astype(np_dtype(dtype)))]
    t = imp.tensor(x, "f32")
    if zero is not None:
        t = imp.emit("sub.Tensor", [t, imp.tensor(zero, "f32")])
    out = imp.emit("mul.Tensor", [t, imp.tensor(scale, "f32")],
                   name=imp.out() if dtype == "f32" else None)
    return [out if dtype == "f32" else imp.emit("to.dtype", [out], {"dtype": DType(dtype)},
                                                imp.out())]


@handler("QuantizeLinear", imports_as="clamp(round(x / scale) + zero_point) to int8/uint8",
         attributes="axis block_size output_dtype saturate")
def quantize(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    scale, zero = _quant_args(imp, node, x)
    to = attrs(node).get("output_dtype", 0)
    dtype = IR_DTYPES.get(to) if to else (imp.dtype(zero) if zero is not None else "u8")
    if dtype not in _QRANGE:
        raise imp.fail(f"quantizing to {dtype}: sparsecc writes int8 and uint8")
    lo, hi = _QRANGE[dtype]
    if isinstance(x, Const) and isinstance(scale, Const) and not isinstance(zero, str):
        q = np.rint(x.array.astype(np.float32) / scale.array.astype(np.float32))
        q = q + (0 if zero is None else zero.array.astype(np.float32))
        return [imp.new_const(np.clip(q, lo, hi).astype(np_dtype(dtype)))]
    t = imp.emit("round", [imp.emit("div.Tensor", [imp.tensor(x, "f32"),
                                                   imp.tensor(scale, "f32")])])
    if zero is not None:
        t = imp.emit("add.Tensor", [t, imp.tensor(zero, "f32")])
    t = imp.emit("clamp", [t], {"min": float(lo), "max": float(hi)})
    return [imp.emit("to.dtype", [t], {"dtype": DType(dtype)}, imp.out())]
