"""How each operator couples the axes of its operands: the rules behind channel grouping.

For one node, `couple(graph, node, sink)` reports
- `sink.edge(a, b, kind, k)`: axis `a` = (value, axis) and axis `b` are one channel axis:
  "id" (position i of a is position i of b), "div" (position p of the larger axis a is
  position p // k of b: a reshape merging or splitting an outer axis), or "offset"
  (position i of a is position k + i of b: a concat or split piece);
- `sink.block(a, why)`: removing positions of axis `a` would change numbers or break the op
  (a reduction or normalization over it, an index into it, a graph boundary).
Ops with no rule block every axis they touch, so an unknown op can only make a group
unprunable, never wrong.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sparsecc.ir import Graph, Node
from sparsecc.ir.symbolic import parse_dim

Axis = tuple[str, int]

UNARY = frozenset("""
    relu gelu silu sigmoid tanh hardtanh hardswish hardsigmoid leaky_relu elu erf neg rsqrt
    sqrt exp log abs reciprocal cos sin clamp clamp_min clamp_max pow.Tensor_Scalar
    add.Scalar sub.Scalar rsub.Scalar mul.Scalar div.Scalar ge.Scalar gt.Scalar le.Scalar
    lt.Scalar eq.Scalar ne.Scalar logical_not bitwise_not dropout native_dropout
    feature_dropout to.dtype to.dtype_layout to.device to.other _to_copy contiguous clone alias
    detach lift_fresh_copy ones_like zeros_like full_like masked_fill.Scalar type_as
""".split())
BINARY = frozenset("""
    add.Tensor sub.Tensor mul.Tensor div.Tensor div.Tensor_mode pow.Tensor_Tensor pow.Scalar
    where.self masked_fill.Tensor minimum maximum __and__.Tensor __or__.Tensor
    bitwise_and.Tensor bitwise_or.Tensor logical_and logical_or ge.Tensor gt.Tensor le.Tensor
    lt.Tensor eq.Tensor ne.Tensor
""".split())
LAYERS = frozenset({"linear", "conv1d", "conv2d", "conv1d.padding", "conv2d.padding",
                    "convolution", "mm", "matmul", "bmm", "addmm", "embedding"})
RESHAPES = frozenset({"reshape", "view", "_unsafe_view", "flatten.using_ints"})
REDUCTIONS = frozenset({"mean.dim", "sum.dim_IntList", "amax", "amin", "var.correction",
                        "max.dim"})
POOLS = {"max_pool1d": 1, "avg_pool1d": 1, "adaptive_avg_pool1d": 1, "max_pool2d": 2,
         "avg_pool2d": 2, "adaptive_avg_pool2d": 2, "adaptive_max_pool2d": 2}
NORMS = frozenset({"layer_norm", "rms_norm", "group_norm"})
BATCH_NORMS = frozenset({"batch_norm", "_native_batch_norm_legit_no_training"})


class Sink(Protocol):
    def edge(self, a: Axis, b: Axis, kind: str = "id", k: int = 0) -> None: ...
    def block(self, a: Axis, why: str) -> None: ...


def _shape(g: Graph, name: str | None) -> tuple:
    return () if name is None else g.values[name].shape


def _rank(g: Graph, name: str | None) -> int:
    return len(_shape(g, name))


def _axis(rank: int, a: int) -> int:
    return a % rank if rank else 0


def block_all(g: Graph, node: Node, sink: Sink, why: str) -> None:
    for name in [*node.inputs, *node.outputs]:
        if name is not None:
            for a in range(_rank(g, name)):
                sink.block((name, a), why)


def broadcast(g: Graph, ins: Sequence[str | None], out: str, sink: Sink) -> None:
    """Right-aligned broadcasting: equal-size axes are one axis; broadcast ones are not."""
    oshape = _shape(g, out)
    for name in ins:
        if name is None:
            continue
        shape = _shape(g, name)
        off = len(oshape) - len(shape)
        for a, d in enumerate(shape):
            if d == oshape[a + off]:
                sink.edge((name, a), (out, a + off))


def reshape_segments(src: tuple, dst: tuple) -> list[tuple[list[int], list[int]]] | None:
    """Pair runs of axes whose sizes multiply to the same number; size-1 axes are skipped.
    Where symbolic sizes are merged or split (`x.view(-1, x.size(-1))`: [batch, seq, C] ->
    [batch*seq, C]), equal leading and trailing axes pair one to one and the axes between
    them are one run. None when the pairing is unclear."""
    runs = _pair_runs(src, dst)
    return runs if runs is not None else _pair_ends(src, dst)


def _pair_ends(src: tuple, dst: tuple) -> list[tuple[list[int], list[int]]] | None:
    """Equal sizes paired from both ends, the rest one run if its sizes multiply to the same
    expression. A row-major reshape keeps a trailing (or leading) axis of equal size, and
    whatever is between merges or splits only within itself."""
    head = 0
    while head < min(len(src), len(dst)) and src[head] == dst[head]:
        head += 1
    tail = 0
    while tail < min(len(src), len(dst)) - head and src[-1 - tail] == dst[-1 - tail]:
        tail += 1
    mid_a, mid_b = list(range(head, len(src) - tail)), list(range(head, len(dst) - tail))

    def product(shape: tuple, axes: list[int]):
        p = 1
        for x in axes:
            p *= parse_dim(shape[x]) if isinstance(shape[x], str) else shape[x]
        return p
    try:
        if (product(src, mid_a) - product(dst, mid_b)) != 0:
            return None
    except ValueError:
        return None
    pairs = [([x], [x]) for x in range(head)]
    if mid_a or mid_b:
        pairs.append((mid_a, mid_b))
    return pairs + [([len(src) - tail + x], [len(dst) - tail + x]) for x in range(tail)]


def _pair_runs(src: tuple, dst: tuple) -> list[tuple[list[int], list[int]]] | None:
    i, j, out = 0, 0, []
    while True:
        while i < len(src) and src[i] == 1:
            i += 1
        while j < len(dst) and dst[j] == 1:
            j += 1
        if i == len(src) or j == len(dst):
            return out if i == len(src) and j == len(dst) else None
        if src[i] == dst[j]:
            out.append(([i], [j]))
            i, j = i + 1, j + 1
            continue
        if not (isinstance(src[i], int) and isinstance(dst[j], int)):
            return None
        a, b, pa, pb = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                if i == len(src) or not isinstance(src[i], int):
                    return None
                pa *= src[i]
                a.append(i)
                i += 1
            else:
                if j == len(dst) or not isinstance(dst[j], int):
                    return None
                pb *= dst[j]
                b.append(j)
                j += 1
        out.append((a, b))


def _reshape(g: Graph, node: Node, sink: Sink) -> None:
    src, dst = node.inputs[0], node.outputs[0]
    ss, ds = _shape(g, src), _shape(g, dst)
    segs = reshape_segments(ss, ds)
    if segs is None:
        block_all(g, node, sink, f"{node.op} with symbolic sizes mixes axes")
        return
    for a, b in segs:
        a = [x for x in a if ss[x] != 1]
        b = [x for x in b if ds[x] != 1]
        if len(a) == 1 and len(b) == 1:
            sink.edge((src, a[0]), (dst, b[0]))
            continue
        if any(isinstance(ss[x], str) for x in a) or any(isinstance(ds[x], str) for x in b):
            for name, axes in ((src, a), (dst, b)):       # batch*seq merged or split
                for x in axes:
                    sink.block((name, x), f"{node.op} merges or splits symbolic axes")
            continue
        if len(a) == 1 or len(b) == 1:
            # one axis split into (outer, inner...) or merged from them: only the outer
            # axis is a channel axis, at the granularity of the inner block
            (big, small) = ((src, a), (dst, b)) if len(a) == 1 else ((dst, b), (src, a))
            inner = 1
            shape = _shape(g, small[0])
            for x in small[1][1:]:
                inner *= shape[x]
            sink.edge((big[0], big[1][0]), (small[0], small[1][0]), "div", inner)
            for x in small[1][1:]:
                sink.block((small[0], x), f"{node.op}: inner axis of a split or merge")
            continue
        for x in a:
            sink.block((src, x), f"{node.op} regroups axes {ss} -> {ds}")
        for x in b:
            sink.block((dst, x), f"{node.op} regroups axes {ss} -> {ds}")


def _map_axes(g: Graph, src: str, dst: str, pairs: Sequence[tuple[int, int]], sink: Sink) -> None:
    for a, b in pairs:
        sink.edge((src, a), (dst, b))


def couple(g: Graph, node: Node, sink: Sink) -> None:  # noqa: C901 (one branch per op family)
    op, ins, outs, at = node.op, node.inputs, node.outputs, node.attrs
    x = ins[0] if ins else None
    out = outs[0] if outs else None
    if op in UNARY:
        broadcast(g, ins[:1], out, sink)
    elif op in BINARY:
        broadcast(g, ins, out, sink)
    elif op == "scalar_tensor" or op.startswith("sym.") or op in (
            "arange", "arange.start", "arange.start_step"):
        return
    elif op in ("ones", "zeros", "full", "new_ones", "new_zeros", "new_full"):
        block_all(g, Node(op, (), outs), sink, f"{op} has sizes fixed in its attributes")
    elif op == "sym_size.int":
        sink.block((x, _axis(_rank(g, x), at.get("dim", 0))), "its size is read (sym_size)")
    elif op in LAYERS:
        _layer(g, node, sink)
    elif op == "scaled_dot_product_attention":
        _attention(g, node, sink)
    elif op in NORMS:
        rank = _rank(g, x)
        n = len(at["normalized_shape"]) if op != "group_norm" else rank - 1
        first = rank - n if op != "group_norm" else 1
        _map_axes(g, x, out, [(a, a) for a in range(first)], sink)
        for a in range(first, rank):
            sink.block((x, a), f"{op} normalizes over this axis")
            sink.block((out, a), f"{op} normalizes over this axis")
        for p in ins[1:]:
            if p is not None and _rank(g, p):
                sink.block((p, 0), f"{op} normalizes over this axis")
    elif op in BATCH_NORMS:
        _map_axes(g, x, out, [(a, a) for a in range(_rank(g, x))], sink)
        for p in ins[1:5]:
            if p is not None:
                sink.edge((x, 1), (p, 0))
    elif op in ("softmax.int", "_softmax", "log_softmax.int", "cumsum"):
        rank = _rank(g, x)
        d = _axis(rank, at.get("dim", -1))
        _map_axes(g, x, out, [(a, a) for a in range(rank) if a != d], sink)
        sink.block((x, d), f"{op} mixes positions along this axis")
        sink.block((out, d), f"{op} mixes positions along this axis")
    elif op == "constant_pad_nd":
        # pad = (last-axis begin, end, next-to-last begin, end, ...): padded axes change size
        rank, pad = _rank(g, x), list(at.get("pad", ()))
        padded = {rank - 1 - i // 2 for i in range(len(pad)) if pad[i] != 0}
        _map_axes(g, x, out, [(a, a) for a in range(rank) if a not in padded], sink)
        for a in padded:
            sink.block((x, a), "constant_pad_nd pads this axis")
            sink.block((out, a), "constant_pad_nd pads this axis")
    elif op in RESHAPES:
        _reshape(g, node, sink)
    elif op in ("permute", "transpose.int", "t", "numpy_T"):
        rank = _rank(g, x)
        if op == "permute":
            order = [_axis(rank, d) for d in at["dims"]]
        else:
            d0, d1 = (at.get("dim0", 0), at.get("dim1", 1)) if op == "transpose.int" else (0, -1)
            order = list(range(rank))
            d0, d1 = _axis(rank, d0), _axis(rank, d1)
            order[d0], order[d1] = order[d1], order[d0]
        _map_axes(g, x, out, [(src, i) for i, src in enumerate(order)], sink)
    elif op == "unsqueeze":
        rank = _rank(g, out)
        d = _axis(rank, at["dim"])
        _map_axes(g, x, out, [(a, a if a < d else a + 1) for a in range(rank - 1)], sink)
    elif op in ("squeeze", "squeeze.dim", "squeeze.dims", "expand", "expand_as"):
        if op.startswith("expand"):
            broadcast(g, [x], out, sink)
        else:
            kept = [a for a, d in enumerate(_shape(g, x)) if d != 1 or not _squeezed(op, at, a,
                                                                                   _rank(g, x))]
            _map_axes(g, x, out, list(zip(kept, range(len(kept)))), sink)
    elif op in ("slice.Tensor", "narrow", "select.int"):
        _slice(g, node, sink)
    elif op == "index_copy":
        # index_copy(self, dim, index, source): self's entries, `source` written at `index`
        # along `dim`; every other axis of source is the same axis as self's and out's
        rank = _rank(g, out)
        d = _axis(rank, at.get("dim", 0))
        _map_axes(g, x, out, [(a, a) for a in range(rank)], sink)
        _map_axes(g, ins[2], out, [(a, a) for a in range(rank) if a != d], sink)
        sink.block((ins[2], d), "index_copy writes it at given positions of this axis")
        sink.block((ins[1], 0), "an index (index_copy)")
    elif op in ("cat", "stack"):
        rank = _rank(g, out)
        d = _axis(rank, at.get("dim", 0))
        offset = 0
        for name in ins:
            if op == "stack":
                _map_axes(g, name, out, [(a, a if a < d else a + 1) for a in range(rank - 1)],
                          sink)
                continue
            _map_axes(g, name, out, [(a, a) for a in range(rank) if a != d], sink)
            size = _shape(g, name)[d]
            if isinstance(size, int) and isinstance(_shape(g, out)[d], int):
                sink.edge((name, d), (out, d), "offset", offset)
                offset += size
            else:
                sink.block((name, d), "concatenated along a symbolic axis")
    elif op in ("split.Tensor", "split_with_sizes", "chunk"):
        rank = _rank(g, x)
        d = _axis(rank, at.get("dim", 0))
        offset = 0
        for piece in outs:
            _map_axes(g, x, piece, [(a, a) for a in range(rank) if a != d], sink)
            size = _shape(g, piece)[d]
            if isinstance(size, int):
                sink.edge((piece, d), (x, d), "offset", offset)
                offset += size
            else:
                sink.block((x, d), "split along a symbolic axis")
    elif op in REDUCTIONS or op in ("mean", "sum"):
        _reduction(g, node, sink)
    elif op in POOLS:
        rank = _rank(g, x)
        spatial = POOLS[op]
        for o in outs[:1]:
            _map_axes(g, x, o, [(a, a) for a in range(rank - spatial)], sink)
    else:
        block_all(g, node, sink, f"no channel rule for op {op}")


def _squeezed(op: str, at: dict, a: int, rank: int) -> bool:
    if op == "squeeze":
        return True
    dims = at.get("dim", at.get("dims", ()))
    dims = dims if isinstance(dims, tuple) else (dims,)
    return a in {_axis(rank, d) for d in dims}


def _slice(g: Graph, node: Node, sink: Sink) -> None:
    x, out, at = node.inputs[0], node.outputs[0], node.attrs
    rank = _rank(g, x)
    d = _axis(rank, at.get("dim", 0))
    if node.op == "select.int":
        _map_axes(g, x, out, [(a, a if a < d else a - 1) for a in range(rank) if a != d], sink)
        sink.block((x, d), "an index into this axis (select)")
        return
    _map_axes(g, x, out, [(a, a) for a in range(rank) if a != d], sink)
    full = _shape(g, x)[d] == _shape(g, out)[d] and at.get("step", 1) == 1
    if full:
        sink.edge((x, d), (out, d))
    else:
        sink.block((x, d), f"{node.op} takes part of this axis")
        sink.block((out, d), f"{node.op} takes part of this axis")


def _reduction(g: Graph, node: Node, sink: Sink) -> None:
    x, at = node.inputs[0], node.attrs
    rank = _rank(g, x)
    dims = at.get("dim")
    if dims is None or dims == ():
        block_all(g, node, sink, f"{node.op} reduces every axis")
        return
    dims = {_axis(rank, d) for d in (dims if isinstance(dims, tuple) else (dims,))}
    keep = at.get("keepdim", False)
    j = 0
    for a in range(rank):
        if a in dims:
            sink.block((x, a), f"{node.op} reduces over this axis")
            if keep:
                j += 1
            continue
        for o in node.outputs:
            sink.edge((x, a), (o, j))
        j += 1


def _layer(g: Graph, node: Node, sink: Sink) -> None:
    op, ins, out, at = node.op, node.inputs, node.outputs[0], node.attrs
    if op == "embedding":
        w, idx = ins[0], ins[1]
        sink.edge((out, _rank(g, out) - 1), (w, 1))
        _map_axes(g, idx, out, [(a, a) for a in range(_rank(g, idx))], sink)
        return
    if op == "addmm":
        bias, x, w = ins[0], ins[1], ins[2]
    elif op in ("mm", "matmul", "bmm"):
        bias, x, w = None, ins[0], ins[1]
    else:
        x, w = ins[0], ins[1]
        bias = ins[2] if len(ins) > 2 else None
    param = w in g.param_names
    xr, orank = _rank(g, x), _rank(g, out)
    if op.startswith("conv") or op == "convolution":
        groups = at.get("groups", 1)
        if op == "convolution" and at.get("transposed", False):
            block_all(g, node, sink, "transposed convolution")
            return
        sink.edge((x, 0), (out, 0))
        sink.edge((out, 1), (w, 0))
        if bias is not None:
            sink.edge((out, 1), (bias, 0))
        cin = _shape(g, x)[1]
        if groups == 1:
            sink.edge((x, 1), (w, 1))
        elif groups == cin == _shape(g, out)[1]:
            sink.edge((x, 1), (out, 1))  # depthwise: channel c in makes channel c out
        else:
            sink.block((x, 1), f"grouped convolution (groups={groups})")
            sink.block((out, 1), f"grouped convolution (groups={groups})")
        return
    if op == "linear":
        k_axis, n_axis = 1, 0
    else:  # x @ w
        k_axis, n_axis = _rank(g, w) - 2, _rank(g, w) - 1
    if not param:
        why = f"{op} contracts two activations over this axis"
        sink.block((x, xr - 1), why)
        sink.block((w, k_axis), why)
        sink.edge((w, n_axis), (out, orank - 1))
        if xr >= 2 and orank >= 2:
            sink.edge((x, xr - 2), (out, orank - 2))
        # batch axes: both operands' map to the result's (attention written as q @ kᵀ and
        # p @ v ties K's and V's heads to Q's this way); a size-1 axis that broadcasts
        # maps to nothing
        wr = _rank(g, w)
        oshape = _shape(g, out)
        for a in range(orank - 2):
            oa = orank - 3 - a
            for t, tr in ((x, xr), (w, wr)):
                ta = tr - 3 - a
                if ta >= 0 and tr >= 2 and _shape(g, t)[ta] == oshape[oa]:
                    sink.edge((t, ta), (out, oa))
        return
    sink.edge((x, xr - 1), (w, k_axis))
    sink.edge((out, orank - 1), (w, n_axis))
    if bias is not None:
        sink.edge((out, orank - 1), (bias, _rank(g, bias) - 1))
    _map_axes(g, x, out, [(a, a) for a in range(xr - 1)], sink)


def _attention(g: Graph, node: Node, sink: Sink) -> None:
    q, k, v = node.inputs[:3]
    mask = node.inputs[3] if len(node.inputs) > 3 else None
    out = node.outputs[0]
    r = _rank(g, q)
    hq, hk = _shape(g, q)[r - 3], _shape(g, k)[r - 3]
    for a in range(r - 3):  # batch axes
        for t in (k, v, out):
            sink.edge((q, a), (t, a))
    sink.edge((q, r - 3), (out, r - 3))
    sink.edge((k, r - 3), (v, r - 3))
    if hq == hk:
        sink.edge((q, r - 3), (k, r - 3))
    elif isinstance(hq, int) and isinstance(hk, int) and hq % hk == 0:
        sink.edge((q, r - 3), (k, r - 3), "div", hq // hk)  # GQA: query head h reads kv h//(hq/hk)
    else:
        sink.block((q, r - 3), "attention heads that don't divide")
    sink.edge((q, r - 2), (out, r - 2))
    sink.edge((k, r - 2), (v, r - 2))
    sink.edge((v, r - 1), (out, r - 1))
    sink.block((q, r - 1), "attention contracts q and k over the head dim")
    sink.block((k, r - 1), "attention contracts q and k over the head dim")
    if mask is not None:  # the mask broadcasts to [..., heads, L, S]
        logical = [(q, a) for a in range(r - 2)] + [(q, r - 2), (k, r - 2)]
        sizes = [_shape(g, t)[a] for t, a in logical]
        mshape = _shape(g, mask)
        off = r - len(mshape)
        for a, d in enumerate(mshape):
            if d == sizes[a + off]:
                sink.edge((mask, a), logical[a + off])
