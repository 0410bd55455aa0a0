"""ONNX shape and layout ops as IR ops; sizes computed from `Shape` stay symbolic.

  Shape, Size, Gather/Concat/Slice/Squeeze/Unsqueeze/Reshape of sizes   folded to `Sizes`
  Reshape / Expand / Tile / ConstantOfShape / Range / Slice by sizes    the ATen op with `Ref`s
  Expand(x, shape)                  expand, a 1 in `shape` kept as -1 (ONNX broadcasts both ways)
  Pad, constant mode                constant_pad_nd (negative pads crop)
  Pad, reflect / edge / wrap        index_select along each padded axis by a reflected/clamped/
                                    wrapped index (a constant over static sizes, else arange math)
  Slice with a negative step        index_select by a constant index (static sizes only)
  Trilu(x, k)                       where(column − row ≥ k (upper) or ≤ k (lower), x, 0)
  DepthToSpace / SpaceToDepth       reshape → permute → reshape (DCR and CRD modes)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx

from ..ir.graph import DType, Ref
from .onnx_importer import (IR_DTYPES, Const, Entry, Importer, Sizes, attrs, axis, handler,
                            np_dtype, number)

INT64_MAX = 2**63 - 1


@handler("Shape", imports_as="folded: sizes (sym_size.int for symbolic dims)",
         attributes="start end")
def shape(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, a = imp.input(0), attrs(node)
    r = imp.rank(x)
    start = max(0, min(r, axis(a.get("start", 0), r)))
    end = max(0, min(r, axis(a.get("end", r), r)))
    if isinstance(x, str):
        return [imp.sizes_entry([imp.dim(x, d) for d in range(start, end)], 1)]
    return [imp.new_const(np.array(imp.static_shape(x)[start:end], np.int64))]


@handler("Size", imports_as="folded: a size (sym.mul of the dims)", attributes="")
def size(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    dims = imp.dims(x) if isinstance(x, str) else list(imp.static_shape(x))
    return [imp.sizes_entry([imp.product(dims)], 0)]


@handler("Reshape", imports_as="reshape (sizes from Shape arithmetic as Refs)",
         attributes="allowzero")
def reshape(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, items = imp.input(0), imp.shape_arg(1)
    if not attrs(node).get("allowzero", 0):  # 0 copies the input's size
        for i, v in enumerate(items):
            if isinstance(v, int) and v == 0:
                items[i] = imp.dim(x, i) if isinstance(x, str) else imp.static_shape(x)[i]
    if isinstance(x, Const) and all(isinstance(v, int) for v in items):
        return [imp.new_const(x.array.reshape(items))]
    if isinstance(x, Sizes) and len(items) <= 1:
        return [Sizes(x.items, len(items), x.dtype)]
    return [imp.emit("reshape", [imp.tensor(x)], {"shape": tuple(items)}, imp.out())]


@handler("Flatten", imports_as="flatten.using_ints / reshape", attributes="axis")
def flatten(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    r = imp.rank(x)
    ax = axis(attrs(node).get("axis", 1), r)
    if isinstance(x, Const):
        return [imp.new_const(x.array.reshape(int(np.prod(x.array.shape[:ax])), -1))]
    t = imp.tensor(x)
    if ax == 0 or ax == r:
        shape = (1, -1) if ax == 0 else (-1, 1)
        return [imp.emit("reshape", [t], {"shape": shape}, imp.out())]
    if ax > 1:
        t = imp.emit("flatten.using_ints", [t], {"end_dim": ax - 1},
                     name=imp.out() if ax == r - 1 else None)
    if ax < r - 1:
        t = imp.emit("flatten.using_ints", [t], {"start_dim": 1}, imp.out())
    return [t]


@handler("Transpose", imports_as="permute", attributes="perm")
def transpose(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    r = imp.rank(x)
    perm = [axis(p, r) for p in attrs(node).get("perm", range(r - 1, -1, -1))]
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
    return list(axes) if axes is not None else imp.ints(1, "the axes")


@handler("Unsqueeze", imports_as="unsqueeze (one per axis)", attributes="axes")
def unsqueeze(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    axes = _axes(imp, node) or []
    r = imp.rank(x) + len(axes)
    axes = sorted(axis(a, r) for a in axes)
    if isinstance(x, Const):
        return [imp.new_const(np.expand_dims(x.array, tuple(axes)))]
    if isinstance(x, Sizes) and r <= 1:
        return [Sizes(x.items, r, x.dtype)]
    t = imp.tensor(x)
    for k, a in enumerate(axes):
        t = imp.emit("unsqueeze", [t], {"dim": a}, imp.out() if k == len(axes) - 1 else None)
    return [t]


@handler("Squeeze", imports_as="squeeze.dim / squeeze.dims", attributes="axes")
def squeeze(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    shape, r = imp.static_shape(x), imp.rank(x)
    axes = _axes(imp, node)
    axes = [a for a in range(r) if shape[a] == 1] if axes is None else \
        sorted(axis(a, r) for a in axes)
    if any(shape[a] != 1 for a in axes):
        raise imp.fail(f"axes {axes} of shape {list(shape)} are not all of size 1")
    if isinstance(x, Const):
        return [imp.new_const(np.squeeze(x.array, tuple(axes)))]
    if isinstance(x, Sizes):
        return [Sizes(x.items, x.rank - len(axes), x.dtype)]
    if not axes:
        return [x]
    if len(axes) == 1:
        return [imp.emit("squeeze.dim", [x], {"dim": axes[0]}, imp.out())]
    return [imp.emit("squeeze.dims", [x], {"dim": tuple(axes)}, imp.out())]


@handler("Concat", imports_as="cat (sizes concatenated at import)", attributes="axis")
def concat(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    parts = [imp.input(i) for i in range(len(node.input))]
    r = imp.rank(parts[0])
    ax = axis(attrs(node)["axis"], r)
    if len(parts) > 1:  # an empty constant adds nothing
        parts = [p for p in parts if not (isinstance(p, Const) and p.array.size == 0)] or parts[:1]
    if all(isinstance(p, Const) for p in parts):
        return [imp.new_const(np.concatenate([p.array for p in parts], ax))]
    if r == 1 and all(isinstance(p, (Const, Sizes)) and imp.rank(p) == 1 and
                      (isinstance(p, Sizes) or p.array.size <= 64) for p in parts):
        items = [v for p in parts for v in (p.items if isinstance(p, Sizes) else
                                            [x.item() for x in p.array])]
        return [imp.sizes_entry(items, 1, imp.dtype(parts[0]))]
    if len(parts) == 1:
        return [imp.tensor(parts[0])]
    return [imp.emit("cat", [imp.tensor(p) for p in parts], {"dim": ax}, imp.out())]


@handler("Split", imports_as="split_with_sizes / chunk", attributes="axis num_outputs split")
def split(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, a = imp.input(0), attrs(node)
    n = len(node.output)
    ax = axis(a.get("axis", 0), imp.rank(x))
    if imp.input(1) is not None:
        sizes = imp.sizes(imp.input(1))
        if sizes is None:
            raise imp.fail(f"the split sizes '{node.input[1]}' come from tensor data")
    else:
        sizes = a.get("split")
    if sizes is not None and len(sizes) != n:
        raise imp.fail(f"{len(sizes)} split sizes for {n} outputs")
    total = imp.static_shape(x)[ax]
    if sizes is None and isinstance(total, int):
        per = -(-total // n)
        sizes = [per] * (n - 1) + [total - per * (n - 1)]
    if sizes is not None and not isinstance(x, str) and all(isinstance(v, int) for v in sizes):
        bounds = np.cumsum([0] + list(sizes))
        if isinstance(x, Const):
            return [Const(np.take(x.array, range(lo, hi), ax), out)
                    for lo, hi, out in zip(bounds, bounds[1:], node.output)]
        return [imp.sizes_entry(x.items[lo:hi], 1, x.dtype) for lo, hi in zip(bounds, bounds[1:])]
    names = [imp.out(i) for i in range(n)]
    t = imp.tensor(x)
    if sizes is None:
        outs = imp.emit("chunk", [t], {"chunks": n, "dim": ax}, names=names, n_outputs=n)
    else:
        outs = imp.emit("split_with_sizes", [t], {"split_sizes": tuple(sizes), "dim": ax},
                        names=names, n_outputs=n)
    return outs if n > 1 else [outs]


@handler("Slice", imports_as="slice.Tensor (index_select for negative steps)", attributes="")
def slice_(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x = imp.input(0)
    starts, ends = imp.shape_arg(1), imp.shape_arg(2)
    r = imp.rank(x)
    axes = [axis(a, r) for a in (imp.ints(3, "the axes") or range(len(starts)))]
    steps = imp.ints(4, "the steps") or [1] * len(starts)
    static = all(isinstance(v, int) for v in starts + ends)
    if static and not isinstance(x, str):
        index = [slice(None)] * r
        for a, s, e, k in zip(axes, starts, ends, steps):
            index[a] = slice(s, e, k)
        if isinstance(x, Const):
            return [imp.new_const(x.array[tuple(index)])]
        return [imp.sizes_entry(x.items[index[0]], 1, x.dtype) if r == 1 else x]
    t = imp.tensor(x)
    shape = imp.shape(t)
    todo = []
    for a, s, e, k in zip(axes, starts, ends, steps):
        e = min(e, INT64_MAX) if isinstance(e, int) else e
        if s == 0 and k == 1 and isinstance(e, int) and (e == INT64_MAX or e == shape[a]):
            continue
        todo.append((a, s, e, k))
    for i, (a, s, e, k) in enumerate(todo):
        name = imp.out() if i == len(todo) - 1 else None
        if k < 0:
            t = imp.emit("index_select", [t, _backward(imp, t, a, s, e, k)], {"dim": a}, name)
            continue
        at = {"dim": a} if a else {}
        if not (isinstance(s, int) and s == 0):
            at["start"] = s
        at["end"] = e
        if k != 1:
            at["step"] = k
        t = imp.emit("slice.Tensor", [t], at, name)
    return [t]


def _backward(imp: Importer, t: str, a: int, start: int | Ref, end: int | Ref, step: int) -> str:
    """The indices a negative-step slice reads: a constant over a static axis; over a symbolic
    one, the whole axis backwards (`torch.flip`: start -1 or past the end, end before the
    start)."""
    n = imp.shape(t)[a]
    if all(isinstance(v, int) for v in (n, start, end)):
        return imp.constant(np.arange(n)[slice(start, end, step)].astype(np.int64), "index")
    whole = isinstance(start, int) and (start == -1 or start >= 2**31) and \
        isinstance(end, int) and end <= -2**31
    if not whole:
        raise imp.fail(f"step {step} over axis {a} of symbolic size {n}: sparsecc reads the "
                       f"whole axis reversed only")
    last = imp.dim(t, a)
    return imp.emit("arange.start_step", [], {"start": imp.sym("sub", last, 1), "end": -1,
                                              "step": step, "dtype": DType("i64")})


@handler("Expand", imports_as="expand (full for a scalar constant)", attributes="")
def expand(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, shape = imp.input(0), imp.shape_arg(1)
    xr = imp.rank(x)
    n = max(len(shape), xr)
    shape = [1] * (n - len(shape)) + shape
    if isinstance(x, Const):
        if all(isinstance(v, int) for v in shape):
            out = np.broadcast_to(x.array, np.broadcast_shapes(x.array.shape, tuple(shape)))
            return [imp.new_const(out.copy())]
        if x.array.size == 1:
            return [imp.emit("full", [], {"size": tuple(shape), "fill_value": number(x.array),
                                          "dtype": DType(x.dtype)}, imp.out())]
    size = [-1 if isinstance(v, int) and v == 1 and i >= n - xr else v
            for i, v in enumerate(shape)]
    t = imp.tensor(x)
    if n == xr and all(v == -1 for v in size):
        return [t]
    return [imp.emit("expand", [t], {"size": tuple(size)}, imp.out())]


@handler("Tile", imports_as="repeat", attributes="")
def tile(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, repeats = imp.input(0), imp.shape_arg(1)
    if isinstance(x, Const) and all(isinstance(v, int) for v in repeats):
        return [imp.new_const(np.tile(x.array, repeats))]
    return [imp.emit("repeat", [imp.tensor(x)], {"repeats": tuple(repeats)}, imp.out())]


@handler("ConstantOfShape", imports_as="full (a constant when small and static)",
         attributes="value")
def constant_of_shape(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    shape = imp.shape_arg(0)
    value = attrs(node).get("value")
    v = onnx.numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    if all(isinstance(d, int) for d in shape) and math.prod(shape) <= 4096:
        return [imp.new_const(np.full(shape, v.reshape(-1)[0], v.dtype))]
    dtype = IR_DTYPES[value.data_type] if value is not None else "f32"
    return [imp.emit("full", [], {"size": tuple(shape), "fill_value": number(v),
                                  "dtype": DType(dtype)}, imp.out())]


@handler("Range", imports_as="arange.start_step (bounds may be sizes)", attributes="")
def range_(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    args = [imp.input(i) for i in range(3)]
    if all(isinstance(e, Const) for e in args):
        start, limit, delta = (e.array.reshape(-1)[0] for e in args)
        return [imp.new_const(np.arange(start, limit, delta, dtype=args[0].array.dtype))]
    bounds = []
    for e in args:
        if isinstance(e, Const) and e.array.size == 1:
            bounds.append(number(e.array))
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


# -- padding --------------------------------------------------------------------------------
def constant_pad(imp: Importer, x: str, begin: Sequence[int], end: Sequence[int], value: float,
                 name: str | None = None) -> str:
    """Pad the last len(begin) axes of x with `value` (constant_pad_nd; negative pads crop)."""
    pairs = list(zip(begin, end))
    while pairs and pairs[0] == (0, 0):
        pairs.pop(0)
    if not pairs:
        return x
    pad = tuple(p for lo, hi in reversed(pairs) for p in (lo, hi))
    if imp.dtype(x) not in ("f32", "f64", "f16", "bf16"):
        value = int(value) if math.isfinite(value) else value
    return imp.emit("constant_pad_nd", [x], {"pad": pad, "value": value}, name)


def _pad_index(imp: Importer, n: int | Ref, lo: int, hi: int, mode: str) -> str:
    """The source index of each output position along an axis of size n padded by (lo, hi)."""
    if isinstance(n, int):
        i = np.arange(-lo, n + hi)
        if mode == "reflect":
            if max(lo, hi) >= n:
                raise imp.fail(f"reflect pads {lo}, {hi} over an axis of size {n}")
            idx = (n - 1) - np.abs((n - 1) - np.abs(i))
        elif mode == "edge":
            idx = np.clip(i, 0, n - 1)
        else:
            idx = np.mod(i, n)
        return imp.constant(idx.astype(np.int64), "index")
    if mode == "wrap":
        raise imp.fail("wrap padding over a symbolic size")
    last = imp.sym("sub", n, 1)
    i = imp.emit("arange.start_step", [], {"start": -lo, "end": imp.sym("add", n, hi),
                                           "step": 1, "dtype": DType("i64")})
    if mode == "edge":
        return imp.emit("clamp", [i], {"min": 0, "max": last})
    folded = imp.emit("rsub.Scalar", [imp.emit("abs", [i])], {"other": last})
    return imp.emit("rsub.Scalar", [imp.emit("abs", [folded])], {"other": last})


@handler("Pad", imports_as="constant_pad_nd; reflect/edge/wrap: index_select by a computed "
         "index", attributes="mode")
def pad(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    mode = attrs(node).get("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise imp.fail(f"mode={mode!r}")
    x = imp.input(0)
    r = imp.rank(x)
    pads = imp.ints(1, "the pads")
    value = imp.const(2)
    if imp.input(2) is not None and value is None:
        raise imp.fail("the pad value must be a constant")
    fill = number(value) if value is not None and value.size else 0
    axes = [axis(v, r) for v in (imp.ints(3, "the axes") or range(r))]
    if len(pads) != 2 * len(axes):
        raise imp.fail(f"{len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * r, [0] * r
    for i, ax in enumerate(axes):
        begin[ax], end[ax] = pads[i], pads[len(axes) + i]
    if isinstance(x, Const) and min(begin + end) >= 0:
        kw = {"constant_values": fill} if mode == "constant" else {}
        return [imp.new_const(np.pad(x.array, list(zip(begin, end)), mode=mode, **kw))]
    t = imp.tensor(x)
    if mode == "constant":
        out = constant_pad(imp, t, begin, end, fill, imp.out())
        return [out]
    if min(begin + end) < 0:
        raise imp.fail(f"negative pads in {mode} mode")
    todo = [a for a in range(r) if begin[a] or end[a]]
    for k, a in enumerate(todo):
        idx = _pad_index(imp, imp.dim(t, a), begin[a], end[a], mode)
        t = imp.emit("index_select", [t, idx], {"dim": a},
                     imp.out() if k == len(todo) - 1 else None)
    return [t]


# -- layout ---------------------------------------------------------------------------------
@handler("Trilu", imports_as="where(column − row ≥ k | ≤ k, x, 0)", attributes="upper")
def trilu(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, k_in = imp.input(0), imp.input(1)
    upper = bool(attrs(node).get("upper", 1))
    k: int | Ref = 0
    if k_in is not None:
        items = imp.sizes(k_in)
        if items is None or len(items) != 1:
            raise imp.fail("k must be a constant or a size")
        k = items[0]
    if isinstance(x, Const) and isinstance(k, int):
        return [imp.new_const((np.triu if upper else np.tril)(x.array, k))]
    t = imp.tensor(x)
    rows, cols = imp.dim(t, -2 % imp.rank(t)), imp.dim(t, -1 % imp.rank(t))
    if all(isinstance(v, int) for v in (rows, cols, k)):
        diff = np.arange(cols)[None, :] - np.arange(rows)[:, None]
        mask = imp.constant(diff >= k if upper else diff <= k, "mask")
    else:
        col = imp.emit("arange.start_step", [], {"start": 0, "end": cols, "step": 1,
                                                 "dtype": DType("i64")})
        row = imp.emit("unsqueeze", [imp.emit("arange.start_step", [], {
            "start": 0, "end": rows, "step": 1, "dtype": DType("i64")})], {"dim": 1})
        diff = imp.emit("sub.Tensor", [col, row])
        mask = imp.emit("ge.Scalar" if upper else "le.Scalar", [diff], {"other": k})
    zero = imp.constant(np.zeros((), np_dtype(imp.dtype(t))), "zero")
    return [imp.emit("where.self", [mask, t, zero], name=imp.out())]


def _blocks(imp: Importer, node: onnx.NodeProto) -> tuple[str, int, list[int | Ref]]:
    x = imp.tensor(imp.input(0))
    if imp.rank(x) != 4 or not isinstance(imp.shape(x)[1], int):
        raise imp.fail(f"input of shape {list(imp.shape(x))}: sparsecc needs [N, C, H, W] with "
                       f"a static C")
    return x, int(attrs(node)["blocksize"]), imp.dims(x)


@handler("DepthToSpace", imports_as="reshape → permute → reshape", attributes="blocksize mode")
def depth_to_space(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, b, (n, c, h, w) = _blocks(imp, node)
    mode = attrs(node).get("mode", "DCR")
    if c % (b * b):
        raise imp.fail(f"{c} channels are not a multiple of blocksize² = {b * b}")
    if mode == "DCR":
        split, perm = (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        split, perm = (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
    else:
        raise imp.fail(f"mode={mode!r}")
    y = imp.emit("permute", [imp.emit("reshape", [x], {"shape": split})], {"dims": perm})
    return [imp.emit("reshape", [y], {"shape": (n, c // (b * b), imp.sym("mul", h, b),
                                                imp.sym("mul", w, b))}, imp.out())]


@handler("SpaceToDepth", imports_as="reshape → permute → reshape", attributes="blocksize")
def space_to_depth(imp: Importer, node: onnx.NodeProto) -> list[Entry]:
    x, b, (n, c, h, w) = _blocks(imp, node)
    hb, wb = imp.sym("floordiv", h, b), imp.sym("floordiv", w, b)
    y = imp.emit("reshape", [x], {"shape": (n, c, hb, b, wb, b)})
    y = imp.emit("permute", [y], {"dims": (0, 3, 5, 1, 2, 4)})
    return [imp.emit("reshape", [y], {"shape": (n, c * b * b, hb, wb)}, imp.out())]
