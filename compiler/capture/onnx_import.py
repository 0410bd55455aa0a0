"""Import an ONNX model into the IR: `import_onnx(path_or_model) -> Graph`.

Each ONNX node becomes one or more IR nodes over ATen ops: the handlers are in the `onnx_ops_*`
modules (registered in `onnx_ops`), the state of an import in `onnx_importer`; a value known at
import time stays a constant, and arithmetic on `Shape` values stays symbolic (`onnx_sizes`).
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

import itertools
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import onnx
import sympy
from onnx import TensorProto, numpy_helper

from ..ir.graph import Graph, Value
from ..ir.symbolic import RESERVED_NAMES, free_symbols, normalize_dim, parse_dim
from .onnx_importer import (HANDLERS, IR_DTYPES, Const, Importer, OnnxImportError, first_line,
                            opset_of, sanitize, unsupported)

__all__ = ["MIN_OPSET", "OnnxImportError", "import_onnx"]

MIN_OPSET = 13


# -- loading and checking -------------------------------------------------------------------
def _inferred_types(model: onnx.ModelProto) -> dict[str, tuple[str | None, tuple | None]]:
    out = {}
    for vi in itertools.chain(model.graph.value_info, model.graph.output):
        t = vi.type.tensor_type
        dims = None
        if t.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        out[vi.name] = (IR_DTYPES.get(t.elem_type), dims)
    return out


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
        raise OnnxImportError(f"{label} is not a valid ONNX model: {first_line(e)}") from None
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
        raise OnnxImportError(f"{label} is not a valid ONNX model: {first_line(e)}") from None


def _check_supported(model: onnx.ModelProto, label: str) -> None:
    """Ops of the main graph (If branches are checked when the one taken is imported)."""
    from . import onnx_ops  # noqa: F401  (registers the handlers)
    opset = opset_of(model)
    if opset < MIN_OPSET:
        raise OnnxImportError(f"{label}: opset {opset} is too old; sparsecc reads opset "
                              f"{MIN_OPSET} and newer")
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in HANDLERS:
            raise unsupported(label, node)
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
        raise OnnxImportError(f"{label}: ONNX shape inference failed: {first_line(e)}") from None


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
    imp.run_nodes(g.node)
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
            raise OnnxImportError(f"{label}: can't read external data: {first_line(e)}") from None
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
