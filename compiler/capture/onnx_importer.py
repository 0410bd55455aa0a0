"""The state of one ONNX import: the handler registry, the entries ONNX values map to, `Importer`.

While importing, an ONNX value is one of three things:
  - a tensor: an IR value (a graph input, a parameter or a node output);
  - a `Const`: a numpy array known at import time (initializers, Constant nodes, folded ops). It
    becomes an IR parameter, named like the ONNX value, only when a tensor op reads it;
  - `Sizes`: a tensor of rank 0 or 1 whose elements are known ints or bools, or `Ref`s to sym
    values (`Shape`, and the Gather/Concat/Equal/Where/arithmetic on it, see `onnx_sizes`).
    Reshape, Expand, Slice, Range, Tile and ConstantOfShape read them as attributes, as
    torch.export writes sizes: `Reshape(x, Concat(Shape(x)[:1], [-1]))` becomes
    `reshape(%x) {shape=[%batch_size, -1]}`.
A handler (`@handler("Relu")`) maps one ONNX node to IR nodes and returns one entry per output.
It names what it imports as (the docs table is built from it) and, for ops whose attributes
change the result, the attributes it reads: any other attribute is refused, never ignored.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import sympy
import torch
from onnx import TensorProto, helper

from ..errors import CaptureError, SparseccError
from ..ir import ops
from ..ir.graph import DType, Graph, Node, Ref, Value, dtype_name, torch_dtype
from ..ir.symbolic import parse_dim
from .onnx_shape_inference import ShapeInference


class OnnxImportError(CaptureError):
    """The ONNX model can't be read or holds something the IR can't represent."""


IR_DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "f32", TensorProto.DOUBLE: "f64", TensorProto.FLOAT16: "f16",
    TensorProto.BFLOAT16: "bf16", TensorProto.INT64: "i64", TensorProto.INT32: "i32",
    TensorProto.INT16: "i16", TensorProto.INT8: "i8", TensorProto.UINT8: "u8",
    TensorProto.BOOL: "bool",
}
FLOATS = ("f32", "f64", "f16", "bf16")


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


Item = int | float | bool | Ref


@dataclasses.dataclass(frozen=True)
class Sizes:
    """A tensor of rank 0 or 1 whose elements are known (ints, bools, floats) or `Ref`s to sym
    values; a `Ref` in a float `Sizes` is the size cast to float (`Cast(Shape(x)[1], FLOAT)`)."""
    items: tuple[Item, ...]
    rank: int
    dtype: str = "i64"


@dataclasses.dataclass(frozen=True)
class Missing:
    """An output the importer does not produce (a Dropout mask); reading it is an error."""
    why: str


Entry = str | Const | Sizes | Missing
Handler = Callable[["Importer", onnx.NodeProto], Sequence[Entry]]


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one ONNX op imports: the handler, what it becomes in the IR (for the docs table) and
    the attributes it reads (None: the handler checks them itself)."""
    fn: Handler
    imports_as: str
    attributes: frozenset[str] | None


HANDLERS: dict[str, Rule] = {}
# ONNX ops refused on purpose, with the reason given to the user.
REFUSED: dict[str, str] = {}


def handler(*op_types: str, imports_as: str | Mapping[str, str],
            attributes: str | None = None) -> Callable[[Handler], Handler]:
    """Register `fn(importer, node) -> one entry per ONNX output` for the ONNX ops named;
    `imports_as` says what each becomes (one text for all, or one per op)."""
    known = None if attributes is None else frozenset(attributes.split())

    def register(fn: Handler) -> Handler:
        for op in op_types:
            text = imports_as if isinstance(imports_as, str) else imports_as[op]
            HANDLERS[op] = Rule(fn, text, known)
        return fn
    return register


def refuse(reason: str, *op_types: str) -> None:
    for op in op_types:
        REFUSED[op] = reason


# -- small helpers --------------------------------------------------------------------------
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
    if array.size == 0:  # a fresh tensor: numpy gives empty arrays odd (zero) strides
        return torch.empty(array.shape, dtype=torch_dtype(np_dtype_name(array.dtype)))
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(np.array(array, order="C").view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True, order="C"))


def node_label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


_NAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def sanitize(name: str) -> str:
    return _NAME_BAD.sub("_", name) or "v"


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


def number(array: np.ndarray) -> int | float | bool:
    """The one element of `array` as a Python number."""
    v = array.reshape(-1)[0].item()
    return float(v) if array.dtype.kind == "f" or array.dtype.name == "bfloat16" else v


def scalar(e: Entry | None) -> np.ndarray | None:
    """A constant holding one element."""
    return e.array if isinstance(e, Const) and e.array.size == 1 else None


def subgraphs(graph: onnx.GraphProto) -> Iterable[onnx.GraphProto]:
    """`graph` and every graph nested in its nodes' attributes (If branches, Loop bodies)."""
    yield graph
    for n in graph.node:
        for a in n.attribute:
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield from subgraphs(g)


# -- the importer ---------------------------------------------------------------------------
class Importer:
    """Builds the IR graph node by node; handlers call `emit`, `tensor`, `const`, `sizes`..."""

    def __init__(self, model: onnx.ModelProto, types: dict[str, tuple[str | None, tuple | None]],
                 label: str, name: str) -> None:
        self.label = label
        self.opset = opset_of(model)
        self.graph = Graph(name=name)
        self.env: dict[str, Entry] = {}
        self.shapes = ShapeInference()
        self.node: onnx.NodeProto | None = None
        self.unfolded: dict[str, str] = {}           # IR value -> why its sizes aren't known
        self._taken: set[str] = set()
        self._reserved: dict[str, str] = {}
        self._params: dict[tuple, str] = {}
        self._refs: dict[str, Ref] = {}              # dim text -> the sym value holding it
        self._types = types
        g = model.graph
        graphs = list(subgraphs(g))
        self.uses = collections.Counter(i for sg in graphs for n in sg.node for i in n.input if i)
        self.uses.update(o.name for o in g.output)
        inits = {t.name for sg in graphs for t in sg.initializer}
        for name in itertools.chain((i.name for i in g.input if i.name not in inits), inits,
                                    (o for sg in graphs for n in sg.node for o in n.output if o)):
            if name not in self._reserved:
                self._reserved[name] = self.unique(sanitize(name))

    # -- running nodes -------------------------------------------------------------------
    def run_nodes(self, nodes: Iterable[onnx.NodeProto]) -> None:
        """Import ONNX nodes in order, binding their outputs in `env`."""
        for node in nodes:
            self.node = node
            if node.domain not in ("", "ai.onnx") or node.op_type not in HANDLERS:
                raise unsupported(self.label, node)
            rule = HANDLERS[node.op_type]
            if rule.attributes is not None:
                extra = sorted(a.name for a in node.attribute if a.name not in rule.attributes)
                if extra:
                    raise self.fail(f"attribute {', '.join(extra)} is not supported")
            try:
                entries = list(rule.fn(self, node))
            except SparseccError:
                raise
            except Exception as e:  # noqa: BLE001 - one line naming the node, never a traceback
                raise self.fail(f"can't import it: {type(e).__name__}: {first_line(e)}") from e
            for out, entry in itertools.zip_longest(node.output, entries):
                if not out:
                    continue
                if entry is None:
                    entry = Missing(f"output {out} of {node.op_type} is not computed")
                self.env[out] = entry
                if isinstance(entry, str):
                    self.check_types(out, entry)

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
            msg = first_line(e)
            sizes = ", ".join(f"{s}={h}" for s, h in self.shapes.hints.items() if s.isidentifier())
            if sizes and "only works when" not in msg:
                msg += f" (sizing symbols as {sizes})"
            raise self.fail(f"{op} refused its inputs: {msg}") from e
        self.graph.add_node(node, [Value(n, *t) for n, t in zip(names, types)])
        why = next((self.unfolded[i] for i in inputs if i in self.unfolded), None)
        if why is not None:  # a shape read from this value can't be computed, and here is why
            self.unfolded.update((n, why) for n in names)
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

    def static_shape(self, e: Entry) -> tuple[int | str, ...]:
        if isinstance(e, Const):
            return e.array.shape
        if isinstance(e, Sizes):
            return (len(e.items),) if e.rank else ()
        return self.shape(e)

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

    def ints(self, i: int, what: str) -> list[int] | None:
        """Input `i` as a list of ints (axes, pads): None if absent; it must be a constant."""
        e = self.input(i)
        if e is None:
            return None
        items = self.sizes(e)
        if items is None or any(isinstance(x, Ref) for x in items):
            raise self.fail(f"{what} must be a constant")
        return [int(x) for x in items]

    def shape_arg(self, i: int) -> list[int | Ref]:
        """Input `i`, a shape (of Reshape, Expand, ...): ints and `Ref`s, or a clear error."""
        e = self.input(i)
        items = self.sizes(e)
        if items is None:
            why = self.unfolded.get(e) if isinstance(e, str) else None
            raise self.fail(f"its shape input '{self.node.input[i]}' comes from tensor data"
                            + (f" ({why})" if why else "") + "; sparsecc needs shapes it can "
                            "compute from input sizes")
        return items

    def new_const(self, array: np.ndarray | Any, i: int = 0) -> Const:
        """A folded constant for output `i` of the current node."""
        return Const(np.asarray(array), self.node.output[i])

    def sizes_entry(self, items: Sequence[Item], rank: int, dtype: str = "i64") -> Entry:
        """Sizes, or a constant when every element is known."""
        if all(not isinstance(v, Ref) for v in items):
            array = np.array(list(items) if rank else items[0], np_dtype(dtype))
            return Const(array, self.node.output[0])
        return Sizes(tuple(items), rank, dtype)

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

    def product(self, items: Iterable[int | Ref]) -> int | Ref:
        out: int | Ref = 1
        for v in items:
            out = self.sym("mul", out, v)
        return out

    def expr(self, item: int | Ref) -> sympy.Expr:
        """A size as a sympy expression over non-negative integer symbols (for comparisons)."""
        if not isinstance(item, Ref):
            return sympy.Integer(int(item))         # a size is an int here, never text
        text = self.shapes.dim(self.shapes.fakes[item.name])
        if isinstance(text, int):
            return sympy.Integer(text)
        e = parse_dim(text)
        return e.xreplace({s: sympy.Symbol(s.name, integer=True, nonnegative=True)
                           for s in e.free_symbols})

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


def unsupported(label: str, node: onnx.NodeProto) -> OnnxImportError:
    """The error for an ONNX op with no handler (with the reason when it is refused on purpose)."""
    custom = node.domain not in ("", "ai.onnx")
    op = f"{node.domain}.{node.op_type}" if custom else node.op_type
    why = "" if custom or node.op_type not in REFUSED else f": {REFUSED[node.op_type]}"
    return OnnxImportError(f"{label}: unsupported ONNX op {op} (node '{node_label(node)}'){why}")
