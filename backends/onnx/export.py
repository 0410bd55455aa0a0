"""Export an IR graph as an ONNX model, and run one with ONNX Runtime.

Conventions of the mapping (each lowering lives in `ops_math`, `ops_shape` or `ops_nn`):
- Names are kept: graph inputs, outputs, parameters (as initializers) and every node output keep
  their IR names. Helper tensors a lowering makes are named `<IR output>/<OnnxOp>_<n>`; constants
  are initializers named `const/<n>`. IR names never hold `/`, so the two never collide.
- Types: IR dtypes map one to one to ONNX element types; a symbolic dim becomes a `dim_param`
  holding the dim's text as is ("batch", "2*seq").
- A `sym` value (a size from `sym_size.int` or `sym.*` arithmetic) is an int64 tensor of shape [1],
  computed at run time (Shape with start/end, Add, Mul, Mod, ...), so dynamic batch and sequence
  sizes work. Where an op needs a 0-d scalar (Range, Gather, a tensor operand), it is squeezed.
  `sym.truediv` (a float size) has no lowering.
- Every ONNX node carries `metadata_props` "sparsecc.node" = the first output name of the IR node it
  was lowered from, plus what `node_metadata` holds for any output of that IR node (the hook for
  "sparsecc.pattern" and other per-layer facts).
- Parameters become initializers under their IR names; parameters no node reads are left out.
  Absent trailing optional inputs are omitted, not written as "" (ORT 1.32 crashes on
  `LayerNormalization(x, w, "")`).
- Nothing is approximated: an op or an attribute combination without an exact lowering raises
  `OnnxExportError` naming the op and the node. The default opset is 18; at opset >= 20 `gelu` uses
  the ONNX Gelu op (with its `approximate` attribute), below it the exact erf or tanh formula.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from sparsecc.errors import SparseccError
from sparsecc.ir import SYM, Graph, Node, Ref, Value, dtype_name, torch_dtype

ONNX_DTYPES: Mapping[str, int] = {
    "f64": TensorProto.DOUBLE, "f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16, "i64": TensorProto.INT64, "i32": TensorProto.INT32,
    "i16": TensorProto.INT16, "i8": TensorProto.INT8, "u8": TensorProto.UINT8,
    "bool": TensorProto.BOOL, SYM: TensorProto.INT64,
}
MIN_OPSET = 18
NODE_KEY = "sparsecc.node"


class OnnxExportError(SparseccError):
    """The graph holds an op (or an attribute value) with no exact ONNX lowering."""


Lowering = Callable[["Builder", Node], Sequence[str | None]]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*ops: str) -> Callable[[Lowering], Lowering]:
    """Register a function `(builder, node) -> ONNX name per IR output (None: not produced)`."""
    def register(fn: Lowering) -> Lowering:
        for op in ops:
            LOWERINGS[op] = fn
        return fn
    return register


def tensor_proto(name: str, t: torch.Tensor) -> TensorProto:
    """An ONNX tensor with the bytes of `t` (any IR dtype, bf16 included)."""
    t = t.detach().cpu().contiguous()
    proto = TensorProto(name=name, data_type=ONNX_DTYPES[dtype_name(t.dtype)])
    proto.dims.extend(t.shape)
    proto.raw_data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
    return proto


class Builder:
    """The ONNX graph under construction, with helpers for constants, shapes and sym values."""

    def __init__(self, graph: Graph, opset: int) -> None:
        self.graph, self.opset = graph, opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.prefix = graph.name
        self.memo_names: set[str] = set()
        self._dtypes: dict[str, str] = {k: ("i64" if v.dtype == SYM else v.dtype)
                                        for k, v in graph.values.items()}
        self._consts: dict[tuple, str] = {}
        self._memo: dict[tuple, str] = {}
        self._count = 0

    # -- IR facts ------------------------------------------------------------------------
    def value(self, name: str) -> Value:
        return self.graph.value(name)

    def rank(self, name: str) -> int:
        return self.graph.value(name).rank

    def dtype(self, name: str) -> str:
        return self._dtypes[name]

    def out_dtype(self, node: Node, i: int = 0) -> str:
        return self.graph.value(node.outputs[i]).dtype

    def fail(self, node: Node, why: str) -> OnnxExportError:
        return OnnxExportError(f"no ONNX lowering for op {node.op} (node %{node.outputs[0]}): "
                               f"{why}")

    # -- emitting ------------------------------------------------------------------------
    def op(self, op_type: str, *inputs: str | None, outputs: int = 1, dtype: str | None = None,
           **attrs: Any) -> Any:
        """Append one ONNX node; returns its output name (a list when `outputs` > 1)."""
        names = []
        for _ in range(outputs):
            self._count += 1
            names.append(f"{self.prefix}/{op_type}_{self._count}")
        attrs = {k: v for k, v in attrs.items() if v is not None}
        inputs = list(inputs)
        while inputs and inputs[-1] is None:  # omit absent trailing optional inputs: ORT 1.32
            inputs.pop()                       # segfaults on LayerNormalization(x, w, "")
        self.nodes.append(helper.make_node(op_type, ["" if i is None else i for i in inputs],
                                           names, name=names[0], **attrs))
        if dtype is not None:
            self._dtypes.update(dict.fromkeys(names, dtype))
        return names[0] if outputs == 1 else names

    def const(self, value: Any, dtype: str, name: str | None = None) -> str:
        """An initializer holding `value` (a number or nested list) as `dtype`."""
        t = torch.tensor(value, dtype=torch_dtype("i64" if dtype == SYM else dtype))
        if name is not None:  # a named constant: an IR value, never shared
            self.initializers.append(tensor_proto(name, t))
            return name
        key = (dtype, tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes())
        if key not in self._consts:
            name = f"const/{len(self._consts)}"
            self.initializers.append(tensor_proto(name, t))
            self._consts[key] = name
            self._dtypes[name] = dtype
        return self._consts[key]

    def memo(self, key: tuple, make: Callable[[], str]) -> str:
        """Emit `make()` once per key (shapes, squeezed syms): later calls reuse the result."""
        if key not in self._memo:
            name = make()
            self._memo[key] = name
            self.memo_names.add(name)
        return self._memo[key]

    def remember(self, key: tuple, name: str) -> None:
        """Let later `memo(key, ...)` calls read `name` (e.g. an IR value computing the same)."""
        self._memo.setdefault(key, name)

    def cast(self, name: str, dtype: str) -> str:
        if self._dtypes.get(name) == dtype:
            return name
        return self.memo(("cast", name, dtype),
                         lambda: self.op("Cast", name, to=ONNX_DTYPES[dtype], dtype=dtype))

    # -- operands ------------------------------------------------------------------------
    def tensor(self, name: str) -> str:
        """An IR value as an ONNX tensor: sym values ([1] int64) become 0-d int64 tensors."""
        if self.value(name).dtype != SYM:
            return name
        return self.memo(("squeeze", name), lambda: self.op("Squeeze", name, dtype="i64"))

    def input(self, node: Node, i: int, dtype: str | None = None) -> str | None:
        """The i-th input of `node` (None if absent), as a tensor, cast to `dtype` if given."""
        if i >= len(node.inputs) or node.inputs[i] is None:
            return None
        name = self.tensor(node.inputs[i])
        return name if dtype is None else self.cast(name, dtype)

    def sym(self, item: int | Ref) -> str:
        """A size (an int or a `Ref` to a sym value) as an int64 tensor of shape [1]."""
        if isinstance(item, Ref):
            if self.value(item.name).dtype == SYM:
                return item.name
            return self.op("Reshape", self.cast(item.name, "i64"), self.const([1], "i64"),
                           dtype="i64")
        if isinstance(item, bool) or not isinstance(item, int):
            raise OnnxExportError(f"expected a size, got {item!r}")
        return self.const([item], "i64")

    def ints(self, items: Iterable[int | Ref]) -> str:
        """A 1-D int64 tensor from ints and `Ref`s (a shape, split sizes, axes)."""
        items = list(items)
        if all(isinstance(x, int) for x in items):
            return self.const([int(x) for x in items], "i64")
        pieces: list[str] = []
        run: list[int] = []
        for x in items:
            if isinstance(x, Ref):
                if run:
                    pieces.append(self.const(run, "i64"))
                    run = []
                pieces.append(self.sym(x))
            else:
                run.append(int(x))
        if run:
            pieces.append(self.const(run, "i64"))
        return self.op("Concat", *pieces, axis=0, dtype="i64")

    def scalar(self, item: Any, dtype: str) -> str:
        """A 0-d tensor of `dtype` from a Python number or a `Ref` to a sym value."""
        if isinstance(item, Ref):
            return self.cast(self.tensor(item.name), dtype)
        return self.const(item, dtype)

    def shape(self, name: str, start: int = 0, end: int | None = None) -> str:
        """`Shape(name)[start:end]` as a 1-D int64 tensor (computed once per graph)."""
        attrs = {"start": start or None, "end": end}
        return self.memo(("shape", name, start, end),
                         lambda: self.op("Shape", name, dtype="i64", **attrs))

    def size(self, name: str, axis: int) -> str:
        """The size of one axis as an int64 tensor of shape [1]."""
        axis %= self.rank(name)
        return self.shape(name, axis, axis + 1)


def _value_info(v: Value) -> onnx.ValueInfoProto:
    dims = [1] if v.dtype == SYM else list(v.shape)
    return helper.make_tensor_value_info(v.name, ONNX_DTYPES[v.dtype], dims)


def _bind(b: Builder, start: int, produced: str, ir_name: str, renamed: dict[str, str]) -> None:
    """Make the tensor `produced` (made while lowering one IR node) carry the name `ir_name`."""
    if produced == ir_name:
        return
    own = (produced not in b.memo_names and produced not in renamed
           and any(produced in n.output for n in b.nodes[start:]))
    if not own:
        source = renamed.get(produced, produced)
        b.nodes.append(helper.make_node("Identity", [source], [ir_name],
                                        name=f"{ir_name}/Identity"))
        return
    for n in b.nodes[start:]:
        for field in (n.input, n.output):
            for k, x in enumerate(field):
                if x == produced:
                    field[k] = ir_name
    renamed[produced] = ir_name


def export_onnx(graph: Graph, path: str | os.PathLike | None = None, *, opset: int = MIN_OPSET,
                node_metadata: Mapping[str, Mapping[str, str]] | None = None,
                sparse_initializers: bool = False) -> onnx.ModelProto:
    """Lower `graph` to an ONNX model (written atomically to `path` when given).

    `sparse_initializers`: the weights of layers carrying a `sparsity` annotation (N:M or
    block masked) are stored as COO `sparse_initializer`s (non-zero values + linear indices)
    where that is smaller, which is below 33% density in fp32 (so never for 2:4). ONNX Runtime densifies them when it loads the model, so they save disk and
    download size, not run time."""
    from . import ops_math, ops_nn, ops_shape  # noqa: F401  (they register the lowerings)

    if opset < MIN_OPSET:
        raise OnnxExportError(f"opset {opset} is not supported; use {MIN_OPSET} or newer")
    missing = [p for p in graph.param_names if p not in graph.params]
    if missing:
        raise OnnxExportError(f"graph has parameters without tensors: {missing[:3]}")
    node_metadata = dict(node_metadata or {})
    known = {o for n in graph.nodes for o in n.outputs}
    if set(node_metadata) - known:
        raise OnnxExportError(f"node_metadata names values no node outputs: "
                              f"{sorted(set(node_metadata) - known)[:5]}")
    used = set(graph.outputs) | {u for n in graph.nodes for u in n.uses()}
    b = Builder(graph, opset)
    for node in graph.nodes:
        fn = LOWERINGS.get(node.op)
        if fn is None:
            raise OnnxExportError(f"no ONNX lowering for op {node.op} (node %{node.outputs[0]})")
        start, b.prefix = len(b.nodes), node.outputs[0]
        try:
            produced = list(fn(b, node))
        except SparseccError:
            raise
        except Exception as e:
            raise OnnxExportError(f"lowering op {node.op} (node %{node.outputs[0]}) failed: "
                                  f"{type(e).__name__}: {e}") from e
        renamed: dict[str, str] = {}
        for out, name in zip(node.outputs, produced + [None] * len(node.outputs)):
            if name is not None:
                _bind(b, start, name, out, renamed)
            elif out in used:
                raise b.fail(node, f"output %{out} is read but has no ONNX lowering")
        meta = {NODE_KEY: node.outputs[0]}
        for out in node.outputs:
            meta.update(node_metadata.get(out, {}))
        for proto in b.nodes[start:]:
            for key, value in meta.items():
                proto.metadata_props.add(key=key, value=str(value))
    # Parameters no node reads (e.g. BatchNorm's num_batches_tracked) are left out.
    sparse_names = set()
    if sparse_initializers:
        sparse_names = {i for n in graph.nodes if n.attrs.get("sparsity") for i in n.inputs
                        if i in graph.params and graph.params[i].dim() >= 2
                        and _sparse_is_smaller(graph.params[i])}
    params = [tensor_proto(p, graph.params[p]) for p in graph.param_names
              if p in used and p not in sparse_names]
    sparse = [sparse_tensor_proto(p, graph.params[p]) for p in graph.param_names
              if p in used and p in sparse_names]
    onnx_graph = helper.make_graph(
        b.nodes, graph.name, [_value_info(graph.value(n)) for n in graph.inputs],
        [_value_info(graph.value(n)) for n in graph.outputs], params + b.initializers,
        sparse_initializer=sparse,
        # ONNX shape inference reads no types off sparse initializers: declare them
        value_info=[helper.make_sparse_tensor_value_info(
            p, sp.values.data_type, list(sp.dims))
            for p, sp in zip([q for q in graph.param_names if q in used and q in sparse_names],
                             sparse)])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="sparsecc",
                              producer_version=_version())
    # Node metadata_props need IR version 10; ask for no newer IR than the opset needs.
    model.ir_version = max(10, helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    if path is not None:
        _write_atomically(model, os.fspath(path))
    return model


def _sparse_is_smaller(t: torch.Tensor) -> bool:
    """COO stores each non-zero with an int64 index: it only pays below
    size/(size+8) density (fp32: 33%, fp16: 20%), so 2:4 (50%) weights stay dense."""
    nnz = int(torch.count_nonzero(t))
    return nnz * (t.element_size() + 8) < t.numel() * t.element_size()


def sparse_tensor_proto(name: str, tensor: torch.Tensor) -> onnx.SparseTensorProto:
    """COO sparse initializer: the non-zero values and their linear indices, with the dims."""
    flat = tensor.detach().reshape(-1)
    idx = torch.nonzero(flat).reshape(-1)
    values = tensor_proto(name, flat[idx])
    indices = numpy_helper.from_array(idx.numpy().astype(np.int64), name=f"{name}_indices")
    return helper.make_sparse_tensor(values, indices, list(tensor.shape))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("sparsecc")
    except PackageNotFoundError:
        return "0"


def _write_atomically(model: onnx.ModelProto, path: str) -> None:
    """Write beside `path`, then rename: readers see the old file or the whole new one."""
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:  # "x": never clobber; the mode follows the umask
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_onnx(model_or_path: onnx.ModelProto | str | os.PathLike,
             inputs: Sequence[torch.Tensor | np.ndarray]) -> list[np.ndarray]:
    """Run a model in ONNX Runtime on CPU; `inputs` follow the graph's input order."""
    import onnxruntime as ort

    source = (model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto)
              else os.fspath(model_or_path))
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise SparseccError(f"the model takes {len(names)} inputs {names}, got {len(inputs)}")
    feed = {n: (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
            for n, x in zip(names, inputs)}
    return session.run(None, feed)
