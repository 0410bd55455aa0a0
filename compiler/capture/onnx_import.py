"""Import an ONNX model into the IR: `import_onnx(path_or_model) -> Graph`.

Each ONNX node becomes one or more IR nodes over ATen ops (the handlers are in `onnx_ops`). While
importing, an ONNX value is one of three things:
  - a tensor: an IR value (a graph input, a parameter or a node output);
  - a `Const`: a numpy array known at import time (initializers, Constant nodes, folded ops). It
    becomes an IR parameter, named like the ONNX value, only when a tensor op reads it;
  - `Sizes`: an int tensor of rank 0 or 1 whose elements are ints or `Ref`s to sym values
    (`Shape`, and the Gather/Concat/Slice/arithmetic on it). Reshape, Expand, Slice, Range and
    ConstantOfShape read them as attributes, as torch.export writes sizes:
    `Reshape(x, Concat(Shape(x)[:1], [-1]))` becomes `reshape(%x) {shape=[%batch_size, -1]}`.
Layers stay layers: MatMul by a 2-D initializer B is `linear` with the weight Bᵀ (B itself when it
is the Transpose of an initializer, as the exporter writes it), and a following Add of a bias
vector joins it; Gemm with a constant B is `linear`, Conv is `conv1d`/`conv2d`, BatchNormalization
is `batch_norm` (inference), Gather from a 2-D initializer on axis 0 is `embedding`.

Shapes: the ONNX checker and shape inference (strict mode) run on the model without its large
initializers and type its values; the dims of every IR value come from `ShapeInference`, which
runs each IR node on fake tensors whose dynamic sizes are symbols (torch's ShapeEnv), so dims ONNX
inference gives up on ("unk__3") get exact expressions ("batch", "2*seq", "floor(seq/2)+1").
Where both know a dim or a dtype, they must agree. The symbols are sized small and even while
this runs (6, 10, 14, ...); a shape that would differ at other sizes (`x[:, :7]` over `seq`), or
that pins a symbol to one size, is an error rather than a silent constant.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import sympy
import torch
from onnx import TensorProto, numpy_helper

from ..errors import SparseccError
from ..ir import ops
from ..ir.graph import SYM, DType, Graph, Node, Ref, Value, dtype_name, torch_dtype
from ..ir.interpreter import bind_outputs, resolve_refs
from ..ir.symbolic import RESERVED_NAMES, free_symbols, normalize_dim, parse_dim

MIN_OPSET = 13


class OnnxImportError(SparseccError):
    """The ONNX model can't be read or holds something the IR can't represent."""


IR_DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "f32", TensorProto.DOUBLE: "f64", TensorProto.FLOAT16: "f16",
    TensorProto.BFLOAT16: "bf16", TensorProto.INT64: "i64", TensorProto.INT32: "i32",
    TensorProto.INT16: "i16", TensorProto.INT8: "i8", TensorProto.UINT8: "u8",
    TensorProto.BOOL: "bool",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Const:
    """A value known at import time. `name` is the ONNX value it came from; `transpose_of` is set
    when it is the 2-D transpose of another constant (a weight stored as Wᵀ for a MatMul)."""
    array: np.ndarray
    name: str
    transpose_of: "Const | None" = None

    @property
    def dtype(self) -> str:
        return np_dtype_name(self.array.dtype)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """A tensor of rank 0 or 1 whose elements are ints or `Ref`s to sym values (its dtype may
    be a float one: `Cast(Shape(x)[1], FLOAT)` feeding a Range)."""
    items: tuple[int | Ref, ...]
    rank: int
    dtype: str = "i64"


@dataclasses.dataclass(frozen=True)
class Missing:
    """An output the importer does not produce (a Dropout mask); reading it is an error."""
    why: str


Entry = str | Const | Sizes | Missing
Handler = Callable[["Importer", onnx.NodeProto], Sequence[Entry]]
HANDLERS: dict[str, Handler] = {}


def handler(*op_types: str) -> Callable[[Handler], Handler]:
    """Register `fn(importer, node) -> one entry per ONNX output` for the ONNX ops named."""
    def register(fn: Handler) -> Handler:
        for op in op_types:
            HANDLERS[op] = fn
        return fn
    return register


def np_dtype_name(dtype: np.dtype) -> str:
    if dtype.name == "bfloat16":
        return "bf16"
    return dtype_name(torch.from_numpy(np.empty(0, dtype)).dtype)


def np_dtype(name: str) -> np.dtype:
    if name == "bf16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return torch.empty(0, dtype=torch_dtype(name)).numpy().dtype


def to_torch(array: np.ndarray) -> torch.Tensor:
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(np.array(array, order="C").view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True, order="C"))


def node_label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


_NAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def sanitize(name: str) -> str:
    return _NAME_BAD.sub("_", name) or "v"


# -- shapes: IR rules checked on meta tensors, else a symbolic run on fake tensors -----------
# Sizes the symbols take while shapes are derived: distinct (torch unifies symbols of equal
# hints), even (a reshape may halve a dim), and small: a slice by `seq` of a table of 16 rows
# must see seq <= 16, as the model assumes. A guard that holds at the hints but not at size 2
# ("16 < seq") would bake the hint into the graph: it is an error.
_HINTS = (6, 10, 14, 22, 26, 34, 38, 46, 58, 62, 74, 82, 86, 94, 106, 118)
# Ops whose output 0 has the shape of input 0, and ops that broadcast their tensor inputs.
_SAME = frozenset("""relu gelu silu sigmoid tanh hardtanh hardswish hardsigmoid leaky_relu elu
    erf softmax.int log_softmax.int neg rsqrt sqrt exp log abs reciprocal cos sin clamp
    clamp_min clamp_max add.Scalar sub.Scalar rsub.Scalar mul.Scalar div.Scalar
    pow.Tensor_Scalar pow.Scalar batch_norm layer_norm to.dtype alias cumsum logical_not
    bitwise_not eq.Scalar ne.Scalar ge.Scalar gt.Scalar le.Scalar lt.Scalar""".split())
_BROADCAST = frozenset("""add.Tensor sub.Tensor mul.Tensor div.Tensor div.Tensor_mode
    pow.Tensor_Tensor minimum maximum eq.Tensor ne.Tensor ge.Tensor gt.Tensor le.Tensor
    lt.Tensor logical_and logical_or bitwise_and.Tensor bitwise_or.Tensor where.self""".split())
Type = tuple[tuple[int | str, ...], str]


class ShapeInference:
    """Output types of IR nodes, with symbolic dims.

    Shape-preserving, broadcasting, permuting and linear ops get their shape by a rule on the IR
    dims, checked (and typed) by running the op on meta tensors at the symbols' hint sizes. Every
    other op runs on fake tensors whose sizes are torch SymInts (a ShapeEnv), and the sizes it
    gives are read back as sympy expressions over the IR's symbol names.
    """

    def __init__(self) -> None:
        from torch._dynamo.source import ConstantSource
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv
        self._source, self._dynamic = ConstantSource, DimDynamic.DYNAMIC
        self.env = ShapeEnv()
        self.mode = FakeTensorMode(shape_env=self.env)
        self.fakes: dict[str, Any] = {}              # value name -> fake tensor or SymInt
        self.dims: dict[str, Any] = {}               # dim text -> SymInt
        self.hints: dict[str, int] = {}              # dim text -> its size at the hints
        self.names: dict[sympy.Symbol, sympy.Symbol] = {}

    # -- dims ----------------------------------------------------------------------------
    def _symbol(self, name: str) -> torch.SymInt:
        if name not in self.dims:
            k = len(self.names)
            hint = _HINTS[k % len(_HINTS)] + 200 * (k // len(_HINTS))
            s = self.env.create_symbol(hint, self._source(name), dynamic_dim=self._dynamic)
            self.dims[name], self.hints[name] = self.env.create_symintnode(s, hint=hint), hint
            self.names[s] = sympy.Symbol(name)
        return self.dims[name]

    def size(self, d: int | str) -> Any:
        if isinstance(d, int):
            return d
        if d not in self.dims:
            expr = parse_dim(d)
            self.dims[d] = _evaluate(expr, self._symbol)
            self.hints[d] = self.hint(d)
        return self.dims[d]

    def hint(self, d: int | str) -> int:
        if isinstance(d, int):
            return d
        if d not in self.hints:
            expr = parse_dim(d)
            for s in expr.free_symbols:
                self._symbol(s.name)
            self.hints[d] = int(expr.xreplace({sympy.Symbol(k): v for k, v in self.hints.items()
                                               if k.isidentifier()}))
        return self.hints[d]

    def dim(self, d: Any) -> int | str:
        """An IR dim (int or expression text) from a fake tensor's size or a SymInt."""
        if isinstance(d, int):
            return d
        expr = self.env.simplify(d.node.expr)
        if expr.is_number:
            return int(expr)
        text = normalize_dim(_plain(expr.xreplace(self.names)))
        self.dims.setdefault(text, d)
        hint = d.node.hint
        self.hints.setdefault(text, int(hint) if hint is not None else self.hint(text))
        return text

    # -- values --------------------------------------------------------------------------
    def define(self, v: Value) -> None:
        for d in v.shape:
            self.size(d)

    def _fake(self, v: Value) -> Any:
        if v.name not in self.fakes:
            with self.mode:
                self.fakes[v.name] = torch.empty([self.size(d) for d in v.shape],
                                                 dtype=torch_dtype(v.dtype))
        return self.fakes[v.name]

    def infer(self, node: Node, values: dict[str, Value]) -> list[Type]:
        """(shape, dtype) of each output of `node`; dtype SYM for a size."""
        fast = self._rule(node, values)
        return fast if fast is not None else self._run(node, values)

    def _run(self, node: Node, values: dict[str, Value]) -> list[Type]:
        inputs = [None if i is None else self._fake(values[i]) for i in node.inputs]
        for r in node.uses():
            if r not in self.fakes:
                self._fake(values[r])
        attrs = {k: resolve_refs(v, self.fakes) for k, v in node.attrs.items()}
        known = len(self.env.guards)
        with self.mode:
            result = ops.call(node.op, inputs, attrs, device="cpu")
        for symbol, value in self.env.replacements.items():
            if symbol in self.names and value.is_number:
                raise ValueError(f"it only works when {self.names[symbol]} = {value}; the "
                                 f"model is not dynamic in {self.names[symbol]}")
        for guard in self.env.guards[known:]:
            expr = guard.expr
            if isinstance(expr, sympy.core.relational.Relational) and not isinstance(
                    expr, (sympy.Eq, sympy.Ne)) and expr.free_symbols and \
                    expr.xreplace({x: 2 for x in expr.free_symbols}) == sympy.false:
                raise ValueError(f"the output shape depends on "
                                 f"{_plain(expr.xreplace(self.names))}, which sparsecc can't "
                                 f"keep symbolic")
        outs: dict[str, Any] = {}
        bind_outputs(node, result, outs)
        self.fakes.update(outs)
        types = []
        for name in node.outputs:
            r = outs[name]
            if isinstance(r, torch.Tensor):
                types.append((tuple(self.dim(d) for d in r.shape), dtype_name(r.dtype)))
            else:
                types.append(((), SYM))
        return types

    def _rule(self, node: Node, values: dict[str, Value]) -> list[Type] | None:
        op = node.op
        if len(node.outputs) != 1 or (op not in ("reshape", "expand") and any(
                isinstance(r, Ref) for v in node.attrs.values()
                for r in (v if isinstance(v, tuple) else (v,)))):
            return None
        shapes = [None if i is None else values[i].shape for i in node.inputs]
        if op in _SAME:
            shape = shapes[0]
        elif op in _BROADCAST:
            shape = _broadcast([s for s in shapes if s is not None])
        elif op == "permute":
            shape = tuple(shapes[0][d] for d in node.attrs["dims"])
        elif op == "linear" and len(shapes[1]) == 2:
            shape = shapes[0][:-1] + shapes[1][:1]
        elif op == "matmul" and min(len(shapes[0]), len(shapes[1])) >= 2:
            batch = _broadcast([shapes[0][:-2], shapes[1][:-2]])
            shape = None if batch is None else batch + (shapes[0][-2], shapes[1][-1])
        elif op == "unsqueeze":
            d = node.attrs["dim"] % (len(shapes[0]) + 1)
            shape = shapes[0][:d] + (1,) + shapes[0][d:]
        elif op == "reshape":
            shape = _reshaped(shapes[0], [self._text(v) for v in node.attrs["shape"]])
        elif op == "expand":
            size = [self._text(v) for v in node.attrs["size"]]
            old = (None,) * (len(size) - len(shapes[0])) + tuple(shapes[0])
            shape = tuple(o if isinstance(d, int) and d == -1 else d for o, d in zip(old, size))
            shape = None if None in shape else shape
        else:
            return None
        if shape is None:
            return None
        metas = [None if i is None else torch.empty([self.hint(d) for d in values[i].shape],
                                                    dtype=torch_dtype(values[i].dtype),
                                                    device="meta") for i in node.inputs]
        attrs = {k: resolve_refs(v, self.fakes) for k, v in node.attrs.items()}
        attrs = {k: tuple(self.hint(self.dim(x)) if isinstance(x, torch.SymInt) else x
                          for x in v) if isinstance(v, tuple) else v for k, v in attrs.items()}
        out = ops.call(op, metas, attrs, device="meta")
        if tuple(out.shape) != tuple(self.hint(d) for d in shape):
            return None
        return [(shape, dtype_name(out.dtype))]

    def _text(self, item: int | Ref) -> int | str:
        return self.dim(self.fakes[item.name]) if isinstance(item, Ref) else item


def _dim_expr(d: int | str) -> sympy.Expr:
    return sympy.Integer(d) if isinstance(d, int) else parse_dim(d)


def _reshaped(old: tuple, new: list[int | str]) -> tuple | None:
    """`new` with its -1 worked out from the element count of `old`; None if not exact."""
    if sum(1 for d in new if isinstance(d, int) and d == -1) != 1:
        return tuple(new) if -1 not in new else None
    known = [_dim_expr(d) for d in new if not (isinstance(d, int) and d == -1)]
    rest = sympy.cancel(sympy.Mul(*[_dim_expr(d) for d in old]) / sympy.Mul(*known))
    num, den = sympy.fraction(rest)
    if den != 1 or not (num.is_Integer or num.is_polynomial()):
        return None
    return tuple(normalize_dim(rest) if isinstance(d, int) and d == -1 else d for d in new)


def _broadcast(shapes: Sequence[tuple]) -> tuple | None:
    """numpy broadcasting of IR shapes; None where dims differ other than by 1."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _evaluate(expr: sympy.Expr, symbol: Callable[[str], Any]) -> Any:
    if expr.is_Integer:
        return int(expr)
    if expr.is_Symbol:
        return symbol(expr.name)
    args = [_evaluate(a, symbol) for a in expr.args]
    if expr.is_Add:
        return sum(args[1:], args[0])
    if expr.is_Mul:
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if expr.is_Pow and isinstance(args[1], int) and args[1] >= 0:
        return args[0] ** args[1]
    raise ValueError(f"can't evaluate {expr}")


def _plain(expr: sympy.Expr) -> sympy.Expr:
    """torch's integer sympy functions as plain sympy (the IR's dim texts)."""
    from torch.utils._sympy import functions as F
    table = {"FloorDiv": lambda a, b: sympy.floor(a / b), "CleanDiv": lambda a, b: a / b,
             "IntTrueDiv": lambda a, b: a / b, "PythonMod": sympy.Mod, "Mod": sympy.Mod,
             "ModularIndexing": lambda x, a, b: sympy.Mod(sympy.floor(x / a), b),
             "FloorToInt": sympy.floor, "CeilToInt": sympy.ceiling, "Max": sympy.Max,
             "Min": sympy.Min, "Identity": lambda x: x}
    for name, fn in table.items():
        cls = getattr(F, name, None)
        if cls is not None:
            expr = expr.replace(cls, fn)
    known = (sympy.floor, sympy.ceiling, sympy.Mod, sympy.Max, sympy.Min)
    for f in expr.atoms(sympy.Function):
        if not isinstance(f, known):
            raise ValueError(f"dimension {expr} uses {type(f).__name__}")
    return expr


# -- the importer --------------------------------------------------------------------------
class Importer:
    """Builds the IR graph node by node; handlers call `emit`, `tensor`, `const`, `sizes`..."""

    def __init__(self, model: onnx.ModelProto, types: dict[str, tuple[str | None, tuple | None]],
                 label: str, name: str) -> None:
        self.label = label
        self.graph = Graph(name=name)
        self.env: dict[str, Entry] = {}
        self.shapes = ShapeInference()
        self.node: onnx.NodeProto | None = None
        self._taken: set[str] = set()
        self._reserved: dict[str, str] = {}
        self._params: dict[tuple, str] = {}
        self._refs: dict[str, Ref] = {}              # dim text -> the sym value holding it
        self._types = types
        g = model.graph
        self.uses = collections.Counter(i for n in g.node for i in n.input if i)
        self.uses.update(o.name for o in g.output)
        inits = {t.name for t in g.initializer}
        for name in itertools.chain((i.name for i in g.input if i.name not in inits), inits,
                                    (o for n in g.node for o in n.output if o)):
            self._reserved[name] = self.unique(sanitize(name))

    # -- names ---------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        base = sanitize(base)
        name, k = base, 1
        while name in self._taken:
            name = f"{base}_{k}"
            k += 1
        self._taken.add(name)
        return name

    def out(self, i: int = 0) -> str:
        """The IR name reserved for output `i` of the node being imported."""
        name = self.node.output[i] if i < len(self.node.output) else ""
        return self._reserved[name] if name else self.unique(f"{self.out(0)}_{i}")

    def tmp(self, tag: str) -> str:
        return self.unique(f"{self.out(0)}_{tag}")

    def fail(self, why: str) -> OnnxImportError:
        return OnnxImportError(f"{self.label}: {self.node.op_type} node '{node_label(self.node)}'"
                               f": {why}")

    # -- building ------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[str | None], attrs: dict[str, Any] | None = None,
             name: str | None = None, n_outputs: int = 1, names: Sequence[str] = ()) -> Any:
        """Append an IR node (output types from the fake run); its output name(s)."""
        names = list(names) or [name or self.tmp(op.split(".")[0])]
        names += [self.tmp(op.split(".")[0]) for _ in range(n_outputs - len(names))]
        node = Node(op, tuple(inputs), tuple(names), attrs or {})
        try:
            types = self.shapes.infer(node, self.graph.values)
        except Exception as e:
            msg = _first_line(e)
            sizes = ", ".join(f"{s}={h}" for s, h in self.shapes.hints.items() if s.isidentifier())
            if sizes and "only works when" not in msg:
                msg += f" (sizing symbols as {sizes})"
            raise self.fail(f"{op} refused its inputs: {msg}") from e
        self.graph.add_node(node, [Value(n, *t) for n, t in zip(names, types)])
        return names[0] if n_outputs == 1 else names

    def value(self, name: str) -> Value:
        return self.graph.value(name)

    def shape(self, name: str) -> tuple[int | str, ...]:
        return self.graph.value(name).shape

    def rank(self, e: Entry) -> int:
        if isinstance(e, Const):
            return e.array.ndim
        if isinstance(e, Sizes):
            return e.rank
        return self.value(e).rank

    def dtype(self, entry: Entry) -> str:
        if isinstance(entry, (Const, Sizes)):
            return entry.dtype
        return self.value(entry).dtype

    # -- reading ONNX values -------------------------------------------------------------
    def entry(self, onnx_name: str) -> Entry:
        e = self.env[onnx_name]
        if isinstance(e, Missing):
            raise self.fail(f"reads '{onnx_name}', which sparsecc does not compute: {e.why}")
        return e

    def input(self, i: int) -> Entry | None:
        """Input `i` of the current node, or None when absent."""
        n = self.node.input
        return self.entry(n[i]) if i < len(n) and n[i] else None

    def const(self, i: int) -> np.ndarray | None:
        e = self.input(i)
        return e.array if isinstance(e, Const) else None

    def sizes(self, e: Entry | None) -> list[int | Ref] | None:
        """The elements of a rank-0/1 int constant or `Sizes`; None for anything else."""
        if isinstance(e, Sizes):
            return list(e.items) if e.dtype[0] in "iu" else None
        if isinstance(e, Const) and e.array.ndim <= 1 and e.array.dtype.kind in "iu":
            return [int(v) for v in e.array.reshape(-1)]
        return None

    def tensor(self, e: Entry | None, dtype: str | None = None) -> str | None:
        """An entry as an IR tensor value (constants and sizes are materialized)."""
        if e is None:
            return None
        if isinstance(e, Const):
            name = self.param(e)
        elif isinstance(e, Sizes):
            name = self._sizes_tensor(e)
        else:
            name = e
        if dtype is not None and self.value(name).dtype != dtype:
            name = self.emit("to.dtype", [name], {"dtype": DType(dtype)})
        return name

    def param(self, c: Const, transpose: bool = False) -> str:
        """`c` (or its 2-D transpose) as an IR parameter named like its ONNX value."""
        if transpose and c.transpose_of is not None:
            return self.param(c.transpose_of)
        key = (c.name, transpose)
        if key not in self._params:
            name = self._reserved.get(c.name)
            if name is None or name in self.graph.values:
                name = self.unique(c.name + ("_T" if transpose else ""))
            array = c.array.T if transpose else c.array
            v = Value(name, array.shape, c.dtype)
            self.graph.add_param(v, to_torch(array))
            self.shapes.define(v)
            self._params[key] = name
        return self._params[key]

    def constant(self, array: np.ndarray, tag: str) -> str:
        """A new parameter holding `array` (a helper constant of the current node)."""
        v = Value(self.tmp(tag), array.shape, np_dtype_name(array.dtype))
        self.graph.add_param(v, to_torch(array))
        self.shapes.define(v)
        return v.name

    def _sizes_tensor(self, s: Sizes) -> str:
        parts = [self.emit("scalar_tensor", [], {"s": item, "dtype": DType(s.dtype)})
                 for item in s.items]
        return parts[0] if s.rank == 0 else self.emit("stack", parts)

    # -- symbolic sizes ------------------------------------------------------------------
    def dim(self, name: str, axis: int) -> int | Ref:
        """The size of one axis of an IR tensor: an int, or a `Ref` to a sym value."""
        d = self.shape(name)[axis]
        if isinstance(d, int):
            return d
        if d not in self._refs:
            self._refs[d] = Ref(self.emit("sym_size.int", [name], {"dim": axis},
                                          name=self.unique(f"sym_{d}")))
        return self._refs[d]

    def dims(self, name: str) -> list[int | Ref]:
        return [self.dim(name, a) for a in range(self.value(name).rank)]

    def sym(self, op: str, a: int | Ref, b: int | Ref) -> int | Ref:
        """`a op b` for sizes (op: add sub mul floordiv mod): folded, or a deduplicated sym node."""
        if isinstance(a, int) and isinstance(b, int):
            return ops.SCALAR_OPS[f"sym.{op}"](a, b)
        node = Node(f"sym.{op}", (), ("_probe",), {"a": a, "b": b})
        self.shapes.infer(node, self.graph.values)
        d = self.shapes.dim(self.shapes.fakes.pop("_probe"))
        if isinstance(d, int):
            return d
        if d not in self._refs:
            self._refs[d] = Ref(self.emit(f"sym.{op}", [], {"a": a, "b": b},
                                          name=self.unique(f"sym_{op}")))
        return self._refs[d]

    # -- finishing -----------------------------------------------------------------------
    def check_types(self, onnx_name: str, ir_name: str) -> None:
        """ONNX inference and the fake run must agree on the dtype and on static dims."""
        known = self._types.get(onnx_name)
        if known is None:
            return
        dtype, dims = known
        v = self.value(ir_name)
        if dtype is not None and dtype != v.dtype:
            raise self.fail(f"internal error: '{onnx_name}' is {dtype} in ONNX, {v.dtype} here")
        if dims is not None and (len(dims) != v.rank or any(
                isinstance(a, int) and isinstance(b, int) and a != b
                for a, b in zip(dims, v.shape))):
            raise self.fail(f"internal error: '{onnx_name}' has shape {list(dims)} in ONNX, "
                            f"{list(v.shape)} here")


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 0


def _inferred_types(model: onnx.ModelProto) -> dict[str, tuple[str | None, tuple | None]]:
    out = {}
    for vi in itertools.chain(model.graph.value_info, model.graph.output):
        t = vi.type.tensor_type
        dims = None
        if t.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        out[vi.name] = (IR_DTYPES.get(t.elem_type), dims)
    return out


# -- loading and checking -------------------------------------------------------------------
def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _parse(source: onnx.ModelProto | str | os.PathLike, label: str
           ) -> tuple[onnx.ModelProto, str | None]:
    """The model (external data not loaded yet) and the folder its external data is in."""
    if isinstance(source, onnx.ModelProto):
        return source, None
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise OnnxImportError(f"{label} does not exist")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise OnnxImportError(f"{label} is not a valid ONNX model: {_first_line(e)}") from None
    return model, os.path.dirname(os.path.abspath(path))


def _external(model: onnx.ModelProto, base: str | None, label: str) -> bool:
    """Check that every external data file is there; whether there are any."""
    helper = onnx.external_data_helper
    external = [t for t in helper._get_all_tensors(model) if helper.uses_external_data(t)]
    for t in external:
        location = {e.key: e.value for e in t.external_data}.get("location", "")
        if base is None:
            raise OnnxImportError(f"{label}: tensor '{t.name}' is stored in the external file "
                                  f"{location}; import the model from its path")
        if not os.path.isfile(os.path.join(base, location)):
            raise OnnxImportError(f"{label}: external data file {location} of tensor "
                                  f"'{t.name}' is missing (looked in {base})")
    return bool(external)


def _check_inputs(model: onnx.ModelProto, label: str) -> None:
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:  # before the checker, which calls this invalid
        if vi.name not in inits and vi.type.HasField("tensor_type") and \
                not vi.type.tensor_type.HasField("shape"):
            raise OnnxImportError(f"{label}: value '{vi.name}' has unknown rank")


def _copy_fields(src: Any, dst: Any, skip: str) -> None:
    for field, value in src.ListFields():
        if field.name == skip:
            continue
        if hasattr(value, "extend"):
            getattr(dst, field.name).extend(value)
        elif hasattr(value, "CopyFrom"):
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with each large or external initializer turned into a typed graph input.

    The checker and shape inference read types, not weights, but serialize whatever they get
    (seconds for a large model, and an error past 2 GiB)."""
    skel = onnx.ModelProto()
    _copy_fields(model, skel, "graph")
    _copy_fields(model.graph, skel.graph, "initializer")
    inputs = {vi.name for vi in model.graph.input}
    for t in model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL and t.ByteSize() <= 1024:
            skel.graph.initializer.append(t)
        elif t.name not in inputs:
            skel.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type,
                                                                       list(t.dims)))
    return skel


def _check(model: onnx.ModelProto, label: str) -> None:
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise OnnxImportError(f"{label} is not a valid ONNX model: {_first_line(e)}") from None


def _check_supported(model: onnx.ModelProto, label: str) -> None:
    from . import onnx_ops  # noqa: F401  (registers the handlers)
    opset = opset_of(model)
    if opset < MIN_OPSET:
        raise OnnxImportError(f"{label}: opset {opset} is too old; sparsecc reads opset "
                              f"{MIN_OPSET} and newer")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in HANDLERS:
            op = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") \
                else node.op_type
            raise OnnxImportError(f"{label}: unsupported ONNX op {op} "
                                  f"(node '{node_label(node)}')")
    if model.graph.sparse_initializer:
        raise OnnxImportError(f"{label}: sparse initializers are not supported")
    for t in model.graph.initializer:
        if t.data_type not in IR_DTYPES:
            raise OnnxImportError(f"{label}: initializer '{t.name}' has element type "
                                  f"{TensorProto.DataType.Name(t.data_type)}, which sparsecc "
                                  f"can't represent")


def _infer(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:
        raise OnnxImportError(f"{label}: ONNX shape inference failed: {_first_line(e)}") from None


# -- inputs ---------------------------------------------------------------------------------
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_dim_expr(text: str) -> bool:
    """A dim_param the IR can hold as is: a sympy expression over plain identifiers."""
    try:
        expr = parse_dim(text)
    except ValueError:
        return False
    if not isinstance(expr, sympy.Expr) or expr.atoms(sympy.Function) or expr.has(
            sympy.I, sympy.E, sympy.pi, sympy.oo, sympy.zoo, sympy.nan):
        return False
    names = set(_IDENT.findall(text)) - {"Max", "Min"}
    if names & RESERVED_NAMES:
        return False
    return bool(names) and {s.name for s in expr.free_symbols} == names and \
        not expr.is_number and free_symbols(normalize_dim(expr)) == names


def _dim_names(inputs: Sequence[onnx.ValueInfoProto]) -> dict[str, str]:
    """IR dim texts for the inputs' dim_params: kept when the IR can hold them, else made into
    identifiers ("batch size" -> batch_size, "len" -> len_: sympy reads `len` as a function)."""
    texts = list(dict.fromkeys(d.dim_param for vi in inputs
                               for d in vi.type.tensor_type.shape.dim if d.HasField("dim_param")))
    out = {t: str(normalize_dim(t)) for t in texts if _is_dim_expr(t)}
    taken = {s for t in out.values() for s in free_symbols(t)}
    for t in texts:
        if t in out:
            continue
        base = re.sub(r"\W+", "_", t).strip("_") or "dim"
        base = base if base[0].isalpha() else f"d_{base}"
        name = next(c for c in itertools.chain([base, base + "_"],
                                               (f"{base}_{k}" for k in itertools.count()))
                    if c not in taken and _is_dim_expr(c))
        out[t] = name
        taken.add(name)
    return out


def _input_value(imp: Importer, vi: onnx.ValueInfoProto, names: dict[str, str],
                 fresh: Callable[[], str]) -> Value:
    name = imp._reserved[vi.name]
    if not vi.type.HasField("tensor_type"):
        raise OnnxImportError(f"{imp.label}: input '{vi.name}' is not a tensor")
    t = vi.type.tensor_type
    if t.elem_type not in IR_DTYPES:
        raise OnnxImportError(f"{imp.label}: input '{vi.name}' has element type "
                              f"{TensorProto.DataType.Name(t.elem_type)}, which sparsecc can't "
                              f"represent")
    dims: list[int | str] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(normalize_dim(names[d.dim_param]))
        else:
            dims.append(fresh())
    return Value(name, tuple(dims), IR_DTYPES[t.elem_type])


# -- the entry point ------------------------------------------------------------------------
def import_onnx(path_or_model: onnx.ModelProto | str | os.PathLike, *,
                name: str | None = None) -> Graph:
    """Read an ONNX model (a path or a `ModelProto`) into an IR graph.

    Raises `OnnxImportError` for a file that isn't a valid model, an opset older than 13, an op
    or a dtype the importer doesn't know, a value of unknown rank, or missing external data.
    """
    from_file = not isinstance(path_or_model, onnx.ModelProto)
    label = os.fspath(path_or_model) if from_file else \
        f"ONNX model '{name or path_or_model.graph.name or 'model'}'"
    model, types = _read(path_or_model, label)
    if name is None:
        stem = os.path.splitext(os.path.basename(label))[0] if from_file else ""
        name = model.graph.name or stem or "main"
    imp = Importer(model, types, label, sanitize(name))
    g = model.graph
    _define_inputs(imp, [vi for vi in g.input  # inputs with initializers: constants
                         if vi.name not in {t.name for t in g.initializer}])
    for t in g.initializer:
        imp.env[t.name] = Const(numpy_helper.to_array(t), t.name)
    for node in g.node:
        imp.node = node
        entries = list(HANDLERS[node.op_type](imp, node))
        for out, entry in itertools.zip_longest(node.output, entries):
            if not out:
                continue
            if entry is None:
                entry = Missing(f"output {out} of {node.op_type} is not computed")
            imp.env[out] = entry
            if isinstance(entry, str):
                imp.check_types(out, entry)
    for out in g.output:
        imp.node = onnx.helper.make_node("Identity", [out.name], [out.name], name=out.name)
        ir, want = imp.tensor(imp.entry(out.name)), imp._reserved[out.name]
        if ir != want:  # the output is another value (Identity, a constant): name it
            ir = imp.emit("alias", [ir], name=want if want not in imp.graph.values else None)
        imp.graph.outputs.append(ir)
    return imp.graph.prune_unused()


def _read(source: onnx.ModelProto | str | os.PathLike, label: str
          ) -> tuple[onnx.ModelProto, dict[str, tuple[str | None, tuple | None]]]:
    """The checked model with its external data, and the types ONNX inference gives."""
    model, base = _parse(source, label)
    external = _external(model, base, label)
    _check_inputs(model, label)
    skeleton = _skeleton(model)
    _check(skeleton, label)
    _check_supported(model, label)
    types = _inferred_types(_infer(skeleton, label))
    if external:
        if isinstance(source, onnx.ModelProto):  # never modify the caller's model
            model = onnx.ModelProto()
            model.CopyFrom(source)
        try:
            onnx.external_data_helper.load_external_data_for_model(model, base)
        except Exception as e:
            raise OnnxImportError(f"{label}: can't read external data: {_first_line(e)}") from None
    return model, types


def _define_inputs(imp: Importer, inputs: list[onnx.ValueInfoProto]) -> None:
    names = _dim_names(inputs)
    symbols = {s for t in names.values() for s in free_symbols(t)}
    counter = itertools.count()

    def fresh() -> str:
        while (s := f"dim{next(counter)}") in symbols:
            pass
        symbols.add(s)
        return s

    for vi in inputs:
        v = _input_value(imp, vi, names, fresh)
        imp.graph.inputs.append(v.name)
        imp.graph.values[v.name] = v
        imp.shapes.define(v)
        imp.env[vi.name] = v.name
