"""ONNX lowerings of shape ops, indexing, tensor creation and symbolic sizes.

Shapes and sizes in attributes (`view {size=[%s0, %s1, -1, 32]}`, `slice {end=%s}`) become 1-D
int64 tensors: runs of literal ints are constants, each `Ref` is its sym value ([1] int64), and a
Concat joins them. `expand` maps torch's -1 ("keep this size") to ONNX's 1, which Expand's
broadcasting keeps. Splits whose sizes depend on a symbolic dim (`split`, `chunk`) compute the
last piece at run time: [s, ..., s, D − (n−1)·s], n being the number of outputs the IR recorded.

Advanced indexing `x[i0, :, i2]` (`index.Tensor`): one index tensor is a Gather; several are
broadcast, stacked on a last axis, and read with GatherND from `x` transposed so the indexed axes
lead. As in torch, the broadcast index dims go where the indexed axes were when those axes are
adjacent, and first otherwise. Boolean (mask) indices are not lowered.
"""
from __future__ import annotations

from sparsecc.ir import Node, Ref

from .export import Builder, lowering

INT64_MAX = 2**63 - 1


@lowering("reshape", "view", "_unsafe_view")
def reshape(b: Builder, node: Node) -> list[str]:
    shape = node.attrs.get("shape", node.attrs.get("size"))
    zero = any(d == 0 and not isinstance(d, Ref) for d in shape)
    return [b.op("Reshape", b.input(node, 0), b.ints(shape), allowzero=1 if zero else None)]


def _transpose(b: Builder, x: str, perm: list[int]) -> str:
    return x if perm == sorted(perm) else b.op("Transpose", x, perm=perm)


@lowering("constant_pad_nd")
def constant_pad_nd(b: Builder, node: Node) -> list[str]:
    # torch: (last begin, last end, next-to-last begin, end, ...); ONNX: all begins, all ends
    r, pad = b.rank(node.inputs[0]), list(node.attrs["pad"])
    begins, ends = [0] * r, [0] * r
    for i in range(0, len(pad), 2):
        begins[r - 1 - i // 2], ends[r - 1 - i // 2] = pad[i], pad[i + 1]
    value = float(node.attrs.get("value", 0.0))
    dtype = b.value(node.outputs[0]).dtype
    return [b.op("Pad", b.input(node, 0), b.ints(begins + ends),
                 b.const(value, dtype) if value else None, mode="constant")]


@lowering("permute")
def permute(b: Builder, node: Node) -> list[str]:
    r = b.rank(node.inputs[0])
    return [_transpose(b, b.input(node, 0), [d % r for d in node.attrs["dims"]])]


@lowering("transpose.int", "t")
def transpose(b: Builder, node: Node) -> list[str]:
    r = b.rank(node.inputs[0])
    perm = list(range(r))
    if r >= 2:
        d0, d1 = (node.attrs["dim0"] % r, node.attrs["dim1"] % r) if node.op != "t" else (0, 1)
        perm[d0], perm[d1] = perm[d1], perm[d0]
    return [_transpose(b, b.input(node, 0), perm)]


@lowering("numpy_T")
def numpy_t(b: Builder, node: Node) -> list[str]:
    return [_transpose(b, b.input(node, 0), list(range(b.rank(node.inputs[0])))[::-1])]


@lowering("repeat")
def repeat(b: Builder, node: Node) -> list[str]:
    repeats, x = node.attrs["repeats"], b.input(node, 0)
    extra = len(repeats) - b.rank(node.inputs[0])
    if extra > 0:  # torch treats x as having leading size-1 dims
        x = b.op("Unsqueeze", x, b.const(list(range(extra)), "i64"))
    return [b.op("Tile", x, b.ints(repeats))]


@lowering("repeat_interleave.self_int")
def repeat_interleave(b: Builder, node: Node) -> list[str]:
    """Each element `repeats` times along `dim`: unsqueeze after dim, expand, merge the two."""
    name, dim, x = node.inputs[0], node.attrs.get("dim"), b.input(node, 0)
    if dim is None:  # torch flattens first
        x, dim, rank = b.op("Reshape", x, b.const([-1], "i64")), 0, 1
        lead, size, tail = None, b.shape(x), None
    else:
        rank = b.rank(name)
        dim %= rank
        lead, size, tail = b.shape(name, 0, dim), b.size(name, dim), b.shape(name, dim + 1, rank)
    r = b.sym(node.attrs["repeats"])
    up = b.op("Unsqueeze", x, b.const([dim + 1], "i64"))
    spread = b.op("Concat", *filter(None, [lead, size, r, tail]), axis=0)
    merged = b.op("Concat", *filter(None, [lead, b.op("Mul", size, r), tail]), axis=0)
    return [b.op("Reshape", b.op("Expand", up, spread), merged)]


@lowering("expand", "expand_as")
def expand(b: Builder, node: Node) -> list[str]:
    if node.op == "expand_as":
        return [b.op("Expand", b.input(node, 0), b.shape(node.inputs[1]))]
    size = [1 if (isinstance(d, int) and d == -1) else d for d in node.attrs["size"]]
    return [b.op("Expand", b.input(node, 0), b.ints(size))]


@lowering("slice.Tensor", "narrow")
def slice_(b: Builder, node: Node) -> list[str]:
    a = node.attrs
    dim = a.get("dim", 0)
    start = a.get("start")
    start = 0 if start is None else start
    if node.op == "narrow":
        end: str = b.op("Add", b.sym(start), b.sym(a["length"]))
    else:
        end = b.sym(INT64_MAX if a.get("end") is None else a["end"])
    return [b.op("Slice", b.input(node, 0), b.sym(start), end, b.const([dim], "i64"),
                 b.sym(a.get("step", 1)))]


@lowering("select.int")
def select(b: Builder, node: Node) -> list[str]:
    index = node.attrs["index"]
    return [b.op("Gather", b.input(node, 0), b.scalar(index, "i64"), axis=node.attrs["dim"])]


@lowering("cat", "stack")
def cat(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    dim = node.attrs.get("dim", 0) % b.rank(node.outputs[0])
    parts = [b.input(node, i, dt) for i in range(len(node.inputs))]
    if node.op == "stack":
        parts = [b.op("Unsqueeze", p, b.const([dim], "i64")) for p in parts]
    return [b.op("Concat", *parts, axis=dim)]


def _split(b: Builder, node: Node, x: str, sizes: str, dim: int) -> list[str]:
    return list(b.op("Split", x, sizes, axis=dim, outputs=len(node.outputs)))


def _even_sizes(b: Builder, node: Node, size: int | Ref | str, dim: int) -> str:
    """Sizes [s, ..., s, D - (n-1)s] for n outputs of `s` (an int or a run-time [1] tensor)."""
    n, x = len(node.outputs), node.inputs[0]
    total = b.value(x).shape[dim]
    if isinstance(total, int) and isinstance(size, int):
        return b.const([size] * (n - 1) + [total - size * (n - 1)], "i64")
    s = size if isinstance(size, str) else b.sym(size)
    rest = b.op("Sub", b.size(x, dim), b.op("Mul", s, b.const([n - 1], "i64")))
    return b.op("Concat", *([s] * (n - 1)), rest, axis=0)


@lowering("split.Tensor", "split_with_sizes")
def split(b: Builder, node: Node) -> list[str]:
    dim = node.attrs.get("dim", 0) % b.rank(node.inputs[0])
    if node.op == "split_with_sizes":
        sizes = b.ints(node.attrs["split_sizes"])
    else:
        sizes = _even_sizes(b, node, node.attrs["split_size"], dim)
    return _split(b, node, b.input(node, 0), sizes, dim)


@lowering("chunk")
def chunk(b: Builder, node: Node) -> list[str]:
    x, chunks = node.inputs[0], node.attrs["chunks"]
    dim = node.attrs.get("dim", 0) % b.rank(x)
    total = b.value(x).shape[dim]
    if isinstance(total, int):
        size: int | str = -(-total // chunks)
    else:  # ceil(D / chunks) at run time
        c = b.const([chunks], "i64")
        size = b.op("Div", b.op("Add", b.size(x, dim), b.const([chunks - 1], "i64")), c)
    return _split(b, node, b.input(node, 0), _even_sizes(b, node, size, dim), dim)


@lowering("unbind.int")
def unbind(b: Builder, node: Node) -> list[str]:
    dim = node.attrs.get("dim", 0) % b.rank(node.inputs[0])
    sizes = b.const([1] * len(node.outputs), "i64")
    parts = _split(b, node, b.input(node, 0), sizes, dim)
    return [b.op("Squeeze", p, b.const([dim], "i64")) for p in parts]


@lowering("unsqueeze")
def unsqueeze(b: Builder, node: Node) -> list[str]:
    dim = node.attrs["dim"] % b.rank(node.outputs[0])
    return [b.op("Unsqueeze", b.input(node, 0), b.const([dim], "i64"))]


@lowering("squeeze", "squeeze.dim", "squeeze.dims")
def squeeze(b: Builder, node: Node) -> list[str]:
    """Squeeze the listed axes (all, for `squeeze`) that the IR's output type shows removed."""
    x = node.inputs[0]
    shape, r = b.value(x).shape, b.rank(x)
    dims = node.attrs.get("dim", tuple(range(r)))
    dims = sorted({d % r for d in (dims if isinstance(dims, tuple) else (dims,))})
    axes = [d for d in dims if shape[d] == 1]
    if r - len(axes) != b.rank(node.outputs[0]):
        raise b.fail(node, f"can't tell which of axes {dims} of {list(shape)} are size 1")
    if not axes:
        return [b.input(node, 0)]
    return [b.op("Squeeze", b.input(node, 0), b.const(axes, "i64"))]


@lowering("flatten.using_ints")
def flatten(b: Builder, node: Node) -> list[str]:
    x = node.inputs[0]
    r = b.rank(x)
    if r == 0:
        return [b.op("Reshape", b.input(node, 0), b.const([1], "i64"))]
    start, end = node.attrs.get("start_dim", 0) % r, node.attrs.get("end_dim", -1) % r
    pieces = [b.shape(x, 0, start)] if start else []
    pieces.append(b.const([-1], "i64"))
    if end + 1 < r:
        pieces.append(b.shape(x, end + 1, r))
    shape = pieces[0] if len(pieces) == 1 else b.op("Concat", *pieces, axis=0)
    return [b.op("Reshape", b.input(node, 0), shape)]


# -- indexing -----------------------------------------------------------------------------
@lowering("gather")
def gather(b: Builder, node: Node) -> list[str]:
    index = b.input(node, 1, "i64")
    return [b.op("GatherElements", b.input(node, 0), index, axis=node.attrs["dim"])]


@lowering("index_select")
def index_select(b: Builder, node: Node) -> list[str]:
    index = b.op("Reshape", b.input(node, 1, "i64"), b.const([-1], "i64"))
    return [b.op("Gather", b.input(node, 0), index, axis=node.attrs["dim"])]


@lowering("index.Tensor")
def index(b: Builder, node: Node) -> list[str]:
    x, indices = node.inputs[0], list(node.inputs[1:])
    r = b.rank(x)
    where = [i for i, t in enumerate(indices) if t is not None]
    if any(b.value(indices[i]).dtype in ("bool", "u8") for i in where):
        raise b.fail(node, "boolean mask indices give data-dependent shapes")
    if len(where) == 1:
        return [b.op("Gather", b.input(node, 0), b.input(node, 1 + where[0], "i64"),
                     axis=where[0])]
    idx = [b.input(node, 1 + i, "i64") for i in where]
    total = idx[0]
    for i in idx[1:]:  # broadcast every index to the shape of their sum
        total = b.op("Add", total, i)
    common = b.shape(total)
    stacked = b.op("Concat", *(b.op("Unsqueeze", b.op("Expand", i, common), b.const([-1], "i64"))
                               for i in idx), axis=-1)
    rest = [d for d in range(r) if d not in where]
    out = b.op("GatherND", _transpose(b, b.input(node, 0), where + rest), stacked)
    nb = max(b.rank(indices[i]) for i in where)
    first, adjacent = where[0], where == list(range(where[0], where[0] + len(where)))
    if adjacent and first > 0:  # torch puts the index dims where the indexed axes were
        k = len(where)
        perm = ([nb + i for i in range(first)] + list(range(nb))
                + [nb + first + j for j in range(r - k - first)])
        out = _transpose(b, out, perm)
    return [out]


# -- creation -----------------------------------------------------------------------------
_FILL = {"new_ones": 1, "ones": 1, "ones_like": 1, "new_zeros": 0, "zeros": 0, "zeros_like": 0}


@lowering("new_ones", "new_zeros", "new_full", "ones", "zeros", "full",
          "ones_like", "zeros_like", "full_like")
def fill(b: Builder, node: Node) -> list[str]:
    dt = b.out_dtype(node)
    value = b.scalar(_FILL.get(node.op, node.attrs.get("fill_value")), dt)
    shape = (b.shape(node.inputs[0]) if node.op.endswith("_like")
             else b.ints(node.attrs["size"]))
    return [b.op("Expand", value, shape)]


@lowering("scalar_tensor")
def scalar_tensor(b: Builder, node: Node) -> list[str]:
    s, dt = node.attrs["s"], b.out_dtype(node)
    return [b.scalar(s, dt) if isinstance(s, Ref) else b.const(s, dt, name=node.output)]


@lowering("arange", "arange.start", "arange.start_step")
def arange(b: Builder, node: Node) -> list[str]:
    dt, a = b.out_dtype(node), node.attrs
    start, step = a.get("start", 0), a.get("step", 1)
    return [b.op("Range", b.scalar(start, dt), b.scalar(a["end"], dt), b.scalar(step, dt))]


# -- symbolic sizes -----------------------------------------------------------------------
@lowering("sym_size.int")
def sym_size(b: Builder, node: Node) -> list[str]:
    x = node.inputs[0]
    axis = node.attrs["dim"] % b.rank(x)
    b.remember(("shape", x, axis, axis + 1), node.output)  # later size queries read the sym
    return [b.op("Shape", x, start=axis, end=axis + 1)]


@lowering("sym.add", "sym.sub", "sym.mul", "sym.floordiv", "sym.mod")
def sym_arith(b: Builder, node: Node) -> list[str]:
    x, y = b.sym(node.attrs["a"]), b.sym(node.attrs["b"])
    kind = node.op.split(".")[1]
    if kind == "floordiv":  # Python's floor division: (a - a mod b) / b is exact
        return [b.op("Div", b.op("Sub", x, b.op("Mod", x, y, fmod=0)), y)]
    if kind == "mod":
        return [b.op("Mod", x, y, fmod=0)]
    return [b.op({"add": "Add", "sub": "Sub", "mul": "Mul"}[kind], x, y)]
