"""ONNX layers as IR layers: MatMul/Gemm/Einsum, convolutions, pooling and normalizations.

  MatMul(x, B), B 2-D constant      linear(x, Bᵀ)           (+ Add(bias vector) joins as the bias)
  Gemm(A, B, C; α, β, tA, tB)       linear(Aᵀ?, B or Bᵀ, β·C) when B is constant and α = 1
  Einsum, one or two operands       sum over indices only one operand has, then permute → reshape
                                    → matmul → reshape → permute (linear by a constant matrix);
                                    repeated indices (diagonals) and 3+ operands are refused
  Conv / pooling, asymmetric pads   constant_pad_nd first, then the op without padding
  InstanceNormalization             group_norm with one group per channel
  GroupNormalization (opset 21)     group_norm
  RMSNormalization                  rms_norm over the axes from `axis` on
  GlobalAveragePool                 adaptive_avg_pool{1,2}d(output_size=1)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from .onnx_importer import Const, Entry, Importer, Missing, attrs, axis, handler
from .onnx_ops_shape import constant_pad


# -- matrix products ------------------------------------------------------------------------
@handler("MatMul", imports_as="linear (by a 2-D constant), else matmul", attributes="")
def matmul(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a, b = imp.input(0), imp.input(1)
    if isinstance(a, Const) and isinstance(b, Const):
        return [imp.new_const(np.matmul(a.array, b.array))]
    if isinstance(b, Const) and b.array.ndim == 2:
        return [imp.emit("linear", [imp.tensor(a), imp.param(b, transpose=True)], name=imp.out())]
    return [imp.emit("matmul", [imp.tensor(a), imp.tensor(b)], name=imp.out())]


@handler("Gemm", imports_as="linear (constant B), else mm; alpha/beta as mul.Scalar",
         attributes="alpha beta transA transB")
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


def _terms(imp: Importer, equation: str, ranks: Sequence[int]) -> tuple[list[list[str]], list[str]]:
    """The index tokens of each operand and of the output; "..." becomes one token per axis."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise imp.fail(f"equation {equation!r} names {len(terms)} operands, the node has "
                       f"{len(ranks)}")
    n_ell = max([r - (len(t) - 3) for t, r in zip(terms, ranks) if "..." in t] or [0])

    def tokens(term: str, rank: int | None) -> list[str]:
        head, dots, tail = term.partition("...")
        if not (head + tail).isalpha() and (head + tail):
            raise imp.fail(f"equation {equation!r}: bad subscripts {term!r}")
        k = (rank - len(head) - len(tail)) if rank is not None else n_ell
        ell = [f"…{n_ell - k + j}" for j in range(k)] if dots else []
        out = list(head) + ell + list(tail)
        if rank is not None and len(out) != rank:
            raise imp.fail(f"equation {equation!r}: {term!r} does not match rank {rank}")
        return out

    ins = [tokens(t, r) for t, r in zip(terms, ranks)]
    if arrow:
        out = tokens(rhs, None)
    else:
        flat = [x for t in ins for x in t]
        out = sorted({x for x in flat if x.startswith("…")}) + \
            sorted(x for x in set(flat) if flat.count(x) == 1 and not x.startswith("…"))
    for t in ins + [out]:
        if len(set(t)) != len(t):
            raise imp.fail(f"equation {equation!r}: a repeated index (a diagonal) is not "
                           f"supported")
    if set(out) - {x for t in ins for x in t}:
        raise imp.fail(f"equation {equation!r}: an output index no operand has")
    return ins, out


def _permute(imp: Importer, x: str, have: list[str], want: list[str]) -> str:
    order = [have.index(t) for t in want]
    return x if order == list(range(len(order))) else \
        imp.emit("permute", [x], {"dims": tuple(order)})


def _sum_out(imp: Importer, x: str, have: list[str], keep: set[str]) -> tuple[str, list[str]]:
    drop = [i for i, t in enumerate(have) if t not in keep]
    if not drop:
        return x, have
    x = imp.emit("sum.dim_IntList", [x], {"dim": tuple(drop), "keepdim": False})
    return x, [t for t in have if t in keep]


@handler("Einsum", imports_as="permute / sum.dim_IntList / reshape around one matmul (linear "
         "for a constant matrix); diagonals and 3+ operands refused", attributes="equation")
def einsum(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    operands = [imp.input(i) for i in range(len(node.input))]
    if len(operands) not in (1, 2):
        raise imp.fail(f"{len(operands)} operands: sparsecc reads one or two")
    ins, out = _terms(imp, attrs(node)["equation"], [imp.rank(o) for o in operands])
    if len(operands) == 1:
        x, have = _sum_out(imp, imp.tensor(operands[0]), ins[0], set(out))
        return [_permute(imp, x, have, out)]
    (ta, tb), (ea, eb) = ins, operands
    batch = [t for t in out if t in ta and t in tb]
    left = [t for t in out if t in ta and t not in tb]
    right = [t for t in out if t in tb and t not in ta]
    contr = [t for t in ta if t in tb and t not in out]
    if isinstance(eb, Const) and not batch and len(contr) == 1 and len(right) == 1:
        a, have = _sum_out(imp, imp.tensor(ea), ta, set(left + contr))
        a = _permute(imp, a, have, left + contr)
        w = imp.param(eb, transpose=tb == contr + right)  # the weight is [right, contr]
        y = imp.emit("linear", [a, w], name=None if left + right != out else imp.out())
        return [y if left + right == out else
                imp.emit("permute", [y], {"dims": tuple((left + right).index(t) for t in out)},
                         imp.out())]
    a, have_a = _sum_out(imp, imp.tensor(ea), ta, set(batch + left + contr))
    b, have_b = _sum_out(imp, imp.tensor(eb), tb, set(batch + contr + right))
    a = _permute(imp, a, have_a, batch + left + contr)
    b = _permute(imp, b, have_b, batch + contr + right)
    nb = len(batch)
    if len(left) != 1 or len(contr) != 1:
        d = imp.dims(a)
        a = imp.emit("reshape", [a], {"shape": tuple(d[:nb]) + (
            imp.product(d[nb:nb + len(left)]), imp.product(d[nb + len(left):]))})
    if len(contr) != 1 or len(right) != 1:
        d = imp.dims(b)
        b = imp.emit("reshape", [b], {"shape": tuple(d[:nb]) + (
            imp.product(d[nb:nb + len(contr)]), imp.product(d[nb + len(contr):]))})
    mine = batch + left + right
    y = imp.emit("matmul", [a, b], name=imp.out() if mine == out and len(left) == 1
                 and len(right) == 1 else None)
    if len(left) != 1 or len(right) != 1:
        sizes = imp.dims(y)[:nb] + [imp.dim(imp.tensor(ea), ta.index(t)) for t in left] + \
            [imp.dim(imp.tensor(eb), tb.index(t)) for t in right]
        y = imp.emit("reshape", [y], {"shape": tuple(sizes)},
                     name=imp.out() if mine == out else None)
    if mine != out:
        y = imp.emit("permute", [y], {"dims": tuple(mine.index(t) for t in out)}, imp.out())
    return [y]


# -- convolution and pooling ----------------------------------------------------------------
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


def _list(v: Any, n: int) -> list[int]:
    return list(v) if v is not None else [1] * n


@handler("Conv", imports_as="conv1d / conv2d (convolution for 3-D; constant_pad_nd first "
         "for asymmetric pads)", attributes="auto_pad dilations group kernel_shape pads strides")
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
        x, begin = constant_pad(imp, x, begin, end, 0.0), [0] * n
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


@handler("ConvTranspose", imports_as="convolution(transposed=True)",
         attributes="auto_pad dilations group kernel_shape output_padding output_shape pads "
         "strides")
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


@handler("MaxPool", "AveragePool", imports_as={
    "MaxPool": "max_pool1d / max_pool2d (constant_pad_nd first for asymmetric pads)",
    "AveragePool": "avg_pool1d / avg_pool2d (constant_pad_nd first for asymmetric pads)"},
    attributes="auto_pad ceil_mode count_include_pad dilations kernel_shape pads storage_order "
    "strides")
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
        x = constant_pad(imp, x, begin, end, -math.inf if is_max else 0.0)
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


@handler("GlobalAveragePool", "GlobalMaxPool", imports_as={
    "GlobalAveragePool": "adaptive_avg_pool1d / adaptive_avg_pool2d (mean.dim for 3-D)",
    "GlobalMaxPool": "amax over the spatial axes"}, attributes="")
def global_pool(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.tensor(imp.input(0))
    r = imp.rank(x)
    if node.op_type == "GlobalAveragePool" and r in (3, 4):
        return [imp.emit(f"adaptive_avg_pool{r - 2}d", [x], {"output_size": (1,) * (r - 2)},
                         imp.out())]
    op = "mean.dim" if node.op_type == "GlobalAveragePool" else "amax"
    return [imp.emit(op, [x], {"dim": tuple(range(2, r)), "keepdim": True}, imp.out())]


# -- normalization --------------------------------------------------------------------------
@handler("BatchNormalization", imports_as="batch_norm (inference)",
         attributes="epsilon momentum training_mode")
def batch_norm(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    if a.get("training_mode", 0):
        raise imp.fail("training-mode BatchNormalization")
    x, *rest = (imp.input(i) for i in range(5))
    stats = [imp.param(e) if isinstance(e, Const) else imp.tensor(e) for e in rest]
    return [imp.emit("batch_norm", [imp.tensor(x), *stats], {
        "training": False, "momentum": 0.1, "eps": float(a.get("epsilon", 1e-5)),
        "cudnn_enabled": False}, imp.out())]


def _affine(imp: Importer, e: Entry | None, shape: Sequence[int], tag: str) -> str | None:
    """A scale or bias as a tensor of exactly `shape` (a constant is broadcast)."""
    if isinstance(e, Const) and e.array.shape != tuple(shape):
        e = Const(np.broadcast_to(e.array, shape).copy(), e.name + tag)
    t = imp.tensor(e)
    if t is not None and imp.shape(t) != tuple(shape):
        raise imp.fail(f"a scale or bias of shape {list(imp.shape(t))} for normalized shape "
                       f"{list(shape)}")
    return t


def _normalized(imp: Importer, x: str, ax: int) -> tuple[int, ...]:
    shape = imp.shape(x)[axis(ax, imp.rank(x)):]
    if not all(isinstance(d, int) for d in shape):
        raise imp.fail(f"normalized shape {list(shape)} is not static")
    return tuple(shape)


@handler("LayerNormalization", imports_as="layer_norm", attributes="axis epsilon stash_type")
def layer_norm(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.tensor(imp.input(0))
    shape = _normalized(imp, x, a.get("axis", -1))
    affine = [_affine(imp, imp.input(i), shape, "_full") for i in (1, 2)]
    return [imp.emit("layer_norm", [x, *affine], {"normalized_shape": shape,
                                                  "eps": float(a.get("epsilon", 1e-5))},
                     imp.out()),
            Missing("the mean of a LayerNormalization"),
            Missing("the inverse std of a LayerNormalization")]


@handler("RMSNormalization", imports_as="rms_norm", attributes="axis epsilon stash_type")
def rms_norm(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.tensor(imp.input(0))
    shape = _normalized(imp, x, a.get("axis", -1))
    scale = _affine(imp, imp.input(1), shape, "_full")
    return [imp.emit("rms_norm", [x, scale], {"normalized_shape": shape,
                                              "eps": float(a.get("epsilon", 1e-5))}, imp.out())]


def _channels(imp: Importer, x: str) -> int:
    if imp.rank(x) < 3 or not isinstance(imp.shape(x)[1], int):
        raise imp.fail(f"input of shape {list(imp.shape(x))}: sparsecc needs [N, C, ...] with a "
                       f"static C")
    return imp.shape(x)[1]


@handler("InstanceNormalization", imports_as="group_norm with one group per channel",
         attributes="epsilon")
def instance_norm(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.tensor(imp.input(0))
    c = _channels(imp, x)
    scale, bias = (_affine(imp, imp.input(i), (c,), "_c") for i in (1, 2))
    return [imp.emit("group_norm", [x, scale, bias], {
        "num_groups": c, "eps": float(attrs(node).get("epsilon", 1e-5))}, imp.out())]


@handler("GroupNormalization", imports_as="group_norm", attributes="epsilon num_groups "
         "stash_type")
def group_norm(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    """Version 21 (per-channel scale and bias); the checker refuses the deprecated version 18."""
    a = attrs(node)
    x = imp.tensor(imp.input(0))
    c, groups = _channels(imp, x), int(a["num_groups"])
    if c % groups:
        raise imp.fail(f"{c} channels in {groups} groups")
    affine = [_affine(imp, imp.input(i), (c,), "_c") for i in (1, 2)]
    return [imp.emit("group_norm", [x, *affine], {
        "num_groups": groups, "eps": float(a.get("epsilon", 1e-5))}, imp.out())]

