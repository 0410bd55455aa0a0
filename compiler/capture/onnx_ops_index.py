"""ONNX gathers, scatters, TopK and OneHot as IR ops.

ONNX indices may be negative (counted from the end of the axis); ATen's gather, scatter and
embedding refuse them, so they are wrapped first: idx + n where idx < 0 (a constant is wrapped at
import time). index.Tensor and index_put wrap negative indices themselves.
  Gather(W, ids), W 2-D constant     embedding(W, ids)
  Gather(x, i), i constant scalar    select.int; constant vector: index_select; else index.Tensor
  GatherElements / ScatterElements   gather / scatter.src, scatter_reduce.two (add mul max min)
  GatherND / ScatterND               index.Tensor / index_put over the k index columns
  TopK                               topk (sorted; ONNX leaves the order of sorted=0 open)
  OneHot(idx, depth, [off, on])      where(unsqueeze(idx) == arange(depth), on, off)
"""
from __future__ import annotations

import numpy as np
import onnx

from ..ir.graph import DType, Ref
from .onnx_importer import Const, Entry, Importer, Sizes, attrs, axis, handler


def wrapped(imp: Importer, idx: Entry, n: int | Ref) -> str:
    """An int64 index tensor with negative entries wrapped around an axis of size n."""
    if isinstance(idx, Const) and isinstance(n, int):
        a = idx.array.astype(np.int64)
        if (a < 0).any():
            return imp.constant(np.where(a < 0, a + n, a), "index")
        return imp.param(Const(a, idx.name)) if idx.array.dtype == np.int64 else \
            imp.constant(a, "index")
    t = imp.tensor(idx, "i64")
    negative = imp.emit("lt.Scalar", [t], {"other": 0})
    return imp.emit("where.self", [negative, imp.emit("add.Scalar", [t], {"other": n}), t])


@handler("Gather", imports_as="embedding (2-D constant table) / select.int / index_select / "
         "index.Tensor", attributes="axis")
def gather(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, idx = imp.input(0), imp.input(1)
    ax = axis(attrs(node).get("axis", 0), imp.rank(x))
    ci = idx.array if isinstance(idx, Const) else None
    if isinstance(x, Const) and ci is not None:
        return [imp.new_const(np.take(x.array, ci, ax))]
    if isinstance(x, Sizes) and ci is not None and ci.ndim <= 1:
        return [imp.sizes_entry([x.items[int(i)] for i in ci.reshape(-1)], ci.ndim, x.dtype)]
    if isinstance(x, Const) and x.array.ndim == 2 and ax == 0 and ci is None:
        ids = wrapped(imp, idx, x.array.shape[0])
        return [imp.emit("embedding", [imp.param(x), ids], name=imp.out())]
    t = imp.tensor(x)
    if ci is not None and ci.ndim == 0:
        return [imp.emit("select.int", [t], {"dim": ax, "index": int(ci)}, imp.out())]
    if ci is not None and ci.ndim == 1:
        return [imp.emit("index_select", [t, wrapped(imp, idx, imp.dim(t, ax))], {"dim": ax},
                         imp.out())]
    return [imp.emit("index.Tensor", [t, *[None] * ax, imp.tensor(idx, "i64")],
                     name=imp.out())]


@handler("GatherND", imports_as="index.Tensor over the index columns", attributes="batch_dims")
def gather_nd(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    """GatherND(x, idx[..., k]) = x[idx[..., 0], ..., idx[..., k-1]]: k index tensors."""
    if attrs(node).get("batch_dims", 0):
        raise imp.fail("batch_dims != 0")
    x, parts = imp.tensor(imp.input(0)), _columns(imp, imp.input(1))
    return [imp.emit("index.Tensor", [x, *parts], name=imp.out())]


def _columns(imp: Importer, idx: Entry) -> list[str]:
    t = imp.tensor(idx, "i64")
    k = imp.shape(t)[-1]
    if not isinstance(k, int):
        raise imp.fail(f"index depth {k} is not static")
    return [imp.emit("select.int", [t], {"dim": -1, "index": j}) for j in range(k)]


@handler("GatherElements", imports_as="gather (negative indices wrapped)", attributes="axis")
def gather_elements(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.tensor(imp.input(0))
    ax = axis(attrs(node).get("axis", 0), imp.rank(x))
    idx = wrapped(imp, imp.input(1), imp.dim(x, ax))
    return [imp.emit("gather", [x, idx], {"dim": ax}, imp.out())]


_REDUCTIONS = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


@handler("ScatterElements", imports_as="scatter.src; scatter_reduce.two for add/mul/max/min",
         attributes="axis reduction")
def scatter_elements(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.tensor(imp.input(0))
    ax = axis(a.get("axis", 0), imp.rank(x))
    idx = wrapped(imp, imp.input(1), imp.dim(x, ax))
    src = imp.tensor(imp.input(2))
    reduction = a.get("reduction", "none")
    if reduction == "none":
        return [imp.emit("scatter.src", [x, idx, src], {"dim": ax}, imp.out())]
    if reduction not in _REDUCTIONS:
        raise imp.fail(f"reduction={reduction!r}")
    return [imp.emit("scatter_reduce.two", [x, idx, src], {
        "dim": ax, "reduce": _REDUCTIONS[reduction], "include_self": True}, imp.out())]


@handler("ScatterND", imports_as="index_put (accumulate for reduction=add)",
         attributes="reduction")
def scatter_nd(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    reduction = attrs(node).get("reduction", "none")
    if reduction not in ("none", "add"):
        raise imp.fail(f"reduction={reduction!r}: sparsecc reads none and add")
    x, parts = imp.tensor(imp.input(0)), _columns(imp, imp.input(1))
    return [imp.emit("index_put", [x, *parts, imp.tensor(imp.input(2))],
                     {"accumulate": reduction == "add"}, imp.out())]


@handler("TopK", imports_as="topk (values, indices)", attributes="axis largest sorted")
def topk(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    a = attrs(node)
    x = imp.tensor(imp.input(0))
    k = imp.sizes(imp.input(1))
    if k is None or len(k) != 1:
        raise imp.fail(f"k '{node.input[1]}' comes from tensor data")
    at = {"k": k[0], "dim": axis(a.get("axis", -1), imp.rank(x))}
    if not a.get("largest", 1):
        at["largest"] = False
    outs = imp.emit("topk", [x], at, names=[imp.out(0), imp.out(1)], n_outputs=2)
    return list(outs)


@handler("OneHot", imports_as="where(unsqueeze(idx) == arange(depth), on, off)",
         attributes="axis")
def one_hot(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    idx, depth, values = imp.input(0), imp.input(1), imp.input(2)
    d = imp.sizes(depth) if not isinstance(depth, Const) or depth.dtype[0] in "iu" else \
        [int(depth.array.reshape(-1)[0])]
    if d is None or len(d) != 1 or not isinstance(values, Const):
        raise imp.fail("depth and values must be constants")
    n = d[0]
    r = imp.rank(idx) + 1
    ax = axis(attrs(node).get("axis", -1), r)
    t = wrapped(imp, idx, n)
    classes = imp.emit("arange.start_step", [], {"start": 0, "end": n, "step": 1,
                                                 "dtype": DType("i64")})
    if ax != r - 1:
        classes = imp.emit("reshape", [classes], {"shape": (-1,) + (1,) * (r - 1 - ax)})
    hit = imp.emit("eq.Tensor", [imp.emit("unsqueeze", [t], {"dim": ax}), classes])
    off, on = (Const(np.asarray(v), f"{values.name}_{k}")
               for k, v in zip(("off", "on"), values.array.reshape(-1)))
    return [imp.emit("where.self", [hit, imp.param(on), imp.param(off)], name=imp.out())]
