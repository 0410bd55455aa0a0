"""Capture a PyTorch model into the IR through `torch.export`.

The exported program is taken before decomposition, so a `linear` or a
`scaled_dot_product_attention` stays one node (a layer is a unit for the passes). Each ATen
call becomes one IR node over the same overload (see `sparsecc.ir.ops`); parameters, buffers
and lifted constants become IR parameters named by their state-dict path and held by
reference. Dynamic dims are exported as `Dim.DYNAMIC` and renamed to the names the caller
gave ("batch", "seq"); a dim that export had to specialize is an error, not a silent constant.

Only runtime assertions are left out (`_assert_tensor_metadata`, `_assert_scalar`, ...):
they compute nothing. Any other op outside the IR's set raises `UnsupportedOpError` with the
op, the node and the model source line it came from.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import io
import logging
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.fx

from ..errors import CaptureError, UnsupportedOpError
from ..ir import ops
from ..ir.graph import SYM, DType, Graph, Node, Ref, Value, dtype_name
from ..ir.symbolic import normalize_dim, rename

# Ops that only check facts at run time; they produce nothing the graph reads.
ASSERT_OPS = frozenset({"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range",
                        "sym_constrain_range_for_size", "_assert_async.msg"})

DynamicDims = Mapping[str, Mapping[int, str]]


def source_line(fx_node: torch.fx.Node) -> str | None:
    """`file:line: code` of the innermost frame of the model source that produced the node."""
    trace = fx_node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)', trace)
    if not frames:
        return None
    path, line, code = frames[-1]
    return f"{path}:{line}: {code.strip()}"


def _widen_unit_dims(bound: inspect.BoundArguments,
                     dynamic_dims: DynamicDims) -> inspect.BoundArguments:
    """Repeat size-1 example inputs to size 2 along their dynamic axes.

    torch.export specializes dims whose example size is 0 or 1, so a dynamic `batch` traced
    from a batch of one would become a constant. Tracing reads shapes, not values, so a
    repeated example traces the same graph with the dim kept symbolic.
    """
    unit = {name for inp, axes in dynamic_dims.items() for axis, name in axes.items()
            if isinstance(bound.arguments.get(inp), torch.Tensor)
            and -bound.arguments[inp].dim() <= axis < bound.arguments[inp].dim()
            and bound.arguments[inp].shape[axis] == 1}
    if not unit:
        return bound
    new = inspect.BoundArguments(bound.signature, bound.arguments.copy())
    for inp, axes in dynamic_dims.items():
        value = new.arguments.get(inp)
        if not isinstance(value, torch.Tensor):
            continue
        for axis, name in axes.items():
            if name in unit and -value.dim() <= axis < value.dim() and value.shape[axis] == 1:
                value = torch.cat([value, value], dim=axis)
        new.arguments[inp] = value
    return new


@contextlib.contextmanager
def _quiet_torch():
    """Silence torch's own logging and prints while exporting: failures become one error."""
    loggers = [logging.getLogger("torch")] + [
        logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
        if n.startswith("torch.")]
    levels = [lg.level for lg in loggers]
    sink = io.StringIO()
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export(model: torch.nn.Module, args: tuple, kwargs: dict,
            dynamic_dims: DynamicDims) -> torch.export.ExportedProgram:
    params = list(inspect.signature(model.forward).parameters)
    bound = inspect.signature(model.forward).bind(*args, **kwargs)
    unknown = set(dynamic_dims) - set(bound.arguments)
    if unknown:
        raise CaptureError(f"dynamic dims name inputs {sorted(unknown)} that forward() "
                           f"does not take (its inputs: {params})")
    dynamic_shapes = None
    if dynamic_dims:
        bound = _widen_unit_dims(bound, dynamic_dims)
        args, kwargs = bound.args, bound.kwargs
        dynamic_shapes = {}
        for name, value in bound.arguments.items():
            axes = dynamic_dims.get(name, {})
            if axes and not isinstance(value, torch.Tensor):
                raise CaptureError(f"input {name!r} is not a tensor; it can't have dynamic dims")
            for axis in axes:
                if not -value.dim() <= axis < value.dim():
                    raise CaptureError(f"input {name!r} has {value.dim()} dims; dynamic axis "
                                       f"{axis} is out of range")
            dynamic_shapes[name] = ({a % value.dim(): torch.export.Dim.DYNAMIC for a in axes}
                                    if axes else None)
    try:
        # under no_grad: a model's own no_grad regions (HF's rotary embedding) trace as
        # plain ops, not set_grad_enabled higher-order ops the IR can't hold
        with _quiet_torch(), torch.no_grad():
            return torch.export.export(model, tuple(args), kwargs,
                                       dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        first = " ".join(lines[:3])[:600] if lines else type(e).__name__
        raise CaptureError(f"torch.export could not trace {type(model).__name__}: "
                           f"{type(e).__name__}: {first}") from e


def _unsupported(ep: torch.export.ExportedProgram) -> set:
    from ..ir.ops import is_supported, op_name
    return {n.target for n in ep.graph.nodes
            if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
            and n.target.namespace == "aten" and op_name(n.target) not in ASSERT_OPS
            and not is_supported(op_name(n.target))}


def _decompose_unsupported(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """What users write, in the IR's terms: in-place ops functionalized (`relu_` -> `relu`) and
    every op outside the IR's set lowered through torch.export's own decompositions (`pad` ->
    `constant_pad_nd`, `unflatten` -> `view`), while the ops the IR has (linear, conv,
    attention, norms) stay whole. Ops that decompose into nothing the IR has are left for the
    converter to name."""
    bad = _unsupported(ep)
    for _ in range(3):
        if not bad:
            break
        table = torch.export.default_decompositions()
        for op in list(table.keys()):
            if op not in bad:
                del table[op]
        try:
            with _quiet_torch():
                ep = ep.run_decompositions(table)
        except Exception:           # noqa: BLE001 - the converter names the op instead
            break
        still = _unsupported(ep)
        if still == bad:
            break
        bad = still
    return ep


class _Converter:
    def __init__(self, ep: torch.export.ExportedProgram, dynamic_dims: DynamicDims,
                 model_name: str) -> None:
        self.ep = ep
        self.dynamic_dims = dynamic_dims
        self.graph = Graph(name=re.sub(r"[^A-Za-z0-9_.\-]", "_", model_name) or "main")
        self.names: dict[str, str] = {}        # fx node name -> IR value name
        self.symbols: dict[str, str] = {}      # torch symbol -> user dim name
        self.multi: dict[str, list[str]] = {}  # fx node name -> its IR output names

    # -- types --------------------------------------------------------------------------
    def dim(self, d: Any) -> int | str:
        if isinstance(d, int):
            return d
        expr = d.node.expr if isinstance(d, torch.SymInt) else d
        text = normalize_dim(expr)
        return rename(text, self.symbols) if isinstance(text, str) else text

    def value_of(self, name: str, val: Any, where: torch.fx.Node) -> Value:
        if isinstance(val, torch.Tensor):
            try:
                dt = dtype_name(val.dtype)
            except ValueError:
                raise UnsupportedOpError(str(where.target), where.name, source_line(where),
                                         f"dtype {val.dtype} is not supported") from None
            return Value(name, tuple(self.dim(d) for d in val.shape), dt)
        if isinstance(val, (torch.SymInt, int)):
            return Value(name, (), SYM)
        raise UnsupportedOpError(str(where.target), where.name, source_line(where),
                                 f"produces {type(val).__name__}, not a tensor or size")

    # -- inputs -------------------------------------------------------------------------
    def placeholders(self) -> None:
        sig = self.ep.graph_signature
        by_name = {n.name: n for n in self.ep.graph.nodes if n.op == "placeholder"}
        kinds = torch.export.graph_signature.InputKind
        user_nodes = []
        for spec in sig.input_specs:
            if not isinstance(spec.arg, torch.export.graph_signature.TensorArgument):
                continue  # a constant non-tensor input: export baked it into the graph
            node = by_name[spec.arg.name]
            if spec.kind == kinds.USER_INPUT:
                user_nodes.append(node)
            elif spec.kind in (kinds.PARAMETER, kinds.BUFFER, kinds.CONSTANT_TENSOR):
                tensor = self.ep.state_dict.get(spec.target)
                if tensor is None:
                    tensor = self.ep.constants[spec.target]
                tensor = tensor.detach()
                self.names[node.name] = spec.target
                self.graph.add_param(self.value_of(spec.target, tensor, node), tensor)
            else:
                raise CaptureError(f"input {spec.arg.name} of kind {spec.kind.name} "
                                   f"is not supported")
        for node in user_nodes:  # name dynamic symbols before any type is built
            val = node.meta["val"]
            for axis, dim_name in self.dynamic_dims.get(node.name, {}).items():
                d = val.shape[axis]
                if not isinstance(d, torch.SymInt) or not d.node.expr.is_Symbol:
                    raise CaptureError(f"dynamic dim {dim_name!r} (input {node.name!r}, axis "
                                       f"{axis}) was specialized by torch.export to {d}: the "
                                       f"model's code needs a fixed size there")
                sym = str(d.node.expr)
                if self.symbols.get(sym, dim_name) != dim_name:
                    raise CaptureError(f"dims {self.symbols[sym]!r} and {dim_name!r} are the "
                                       f"same size in the exported model; give them one name")
                self.symbols[sym] = dim_name
        for node in user_nodes:
            self.names[node.name] = node.name
            v = self.value_of(node.name, node.meta["val"], node)
            self.graph.inputs.append(v.name)
            self.graph.values[v.name] = v

    # -- nodes --------------------------------------------------------------------------
    def arg(self, a: Any, fx_node: torch.fx.Node, arg_name: str) -> Any:
        if isinstance(a, torch.fx.Node):
            return Ref(self.names[a.name])
        if isinstance(a, (list, tuple)):
            return tuple(self.arg(x, fx_node, arg_name) for x in a)
        if isinstance(a, torch.dtype):
            return DType(dtype_name(a))
        if a is None or isinstance(a, (bool, int, float, str)):
            return a
        raise UnsupportedOpError(str(fx_node.target), fx_node.name, source_line(fx_node),
                                 f"argument {arg_name}={a!r} ({type(a).__name__}) has no IR form")

    def tensor_arg(self, a: Any, n: torch.fx.Node) -> str | None:
        """The IR value for a tensor argument; a Python number becomes a 0-dim constant."""
        if a is None or isinstance(a, torch.fx.Node):
            return None if a is None else self.names[a.name]
        if not isinstance(a, (bool, int, float)):
            raise UnsupportedOpError(str(n.target), n.name, source_line(n),
                                     f"tensor argument {a!r} has no IR form")
        # A 0-dim tensor of the dtype torch gives a wrapped Python number promotes like it.
        dtype = torch.bool if isinstance(a, bool) else (
            torch.int64 if isinstance(a, int) else torch.get_default_dtype())
        name = f"{n.name}_const{len(self.graph.nodes)}"
        self.graph.add_node(Node("scalar_tensor", (), (name,),
                                 {"s": a, "dtype": DType(dtype_name(dtype))}),
                            [Value(name, (), dtype_name(dtype))])
        return name

    def call(self, n: torch.fx.Node) -> None:
        target = n.target
        if target is operator.getitem:
            src, index = n.args
            self.names[n.name] = self.multi[src.name][index]
            return
        if target in ops.PY_TO_SCALAR_OP:
            a, b = (self.arg(x, n, "operand") for x in n.args)
            self.emit(n, ops.PY_TO_SCALAR_OP[target], [], {"a": a, "b": b})
            return
        if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
            raise UnsupportedOpError(getattr(target, "__name__", str(target)), n.name,
                                     source_line(n), "not an ATen operator")
        name = ops.op_name(target)
        if name in ASSERT_OPS:
            return
        if name == "clone" and n.kwargs.get("memory_format") == torch.contiguous_format:
            # `.contiguous()` exports as clone(memory_format=contiguous): the layout is the
            # point (a view follows), so it stays a contiguous copy
            self.emit(n, "contiguous", [self.tensor_arg(n.args[0], n)], {})
            return
        if not ops.is_supported(name):
            raise UnsupportedOpError(name, n.name, source_line(n),
                                     "not in the IR's operator set")
        schema = target._schema.arguments
        given: dict[str, Any] = {}
        for arg, a in zip(schema, n.args):
            given[arg.name] = a
        given.update(n.kwargs)
        inputs: list[str | None] = []
        attrs: dict[str, Any] = {}
        for arg in schema:
            if arg.name not in given:
                if ops.is_tensor_arg(arg) and not ops.is_tensor_list_arg(arg):
                    inputs.append(None)  # every tensor slot is kept: inputs follow the schema
                continue
            a = given[arg.name]
            if ops.is_tensor_list_arg(arg):
                inputs.extend(None if x is None else self.names[x.name] for x in a)
            elif ops.is_tensor_arg(arg):
                inputs.append(self.tensor_arg(a, n))
            elif ops.is_placement_arg(arg):
                continue
            elif not (arg.has_default_value() and _same(a, arg.default_value)):
                attrs[arg.name] = self.arg(a, n, arg.name)
        if name == "_native_batch_norm_legit_no_training" and _reads_first_only(n):
            # torch.export's decompositions write eval-mode batch_norm this way; its saved
            # statistics are empty in the trace (but [C] on meta tensors) and nothing reads
            # them, so the IR keeps the norm whole as the one-output op it was
            name, attrs = "batch_norm", {"training": False, "momentum": given["momentum"],
                                         "eps": given["eps"], "cudnn_enabled": True}
            self.emit(n, name, inputs, attrs, outputs=1)
            return
        if name in ("view", "_unsafe_view"):
            # a view is valid only for the strides its input had in this trace (SDPA's output
            # layout differs between kernels and devices): the IR keeps the values, as reshape
            name, attrs = "reshape", {"shape": attrs.pop("size"), **attrs}
        self.emit(n, name, inputs, attrs)

    def emit(self, n: torch.fx.Node, op: str, inputs: list[str | None],
             attrs: dict[str, Any], outputs: int | None = None) -> None:
        """One IR node for `n`; `outputs=k` declares only the first k of `n`'s results
        (the op written instead of `n` returns just those)."""
        val = n.meta.get("val")
        if isinstance(val, (list, tuple)) and outputs is not None:
            val = val[:outputs]
        if isinstance(val, (list, tuple)):
            getters = {u.args[1]: u.name for u in n.users if u.target is operator.getitem}
            outs = [getters.get(i, f"{n.name}_{i}") for i in range(len(val))]
            values = [self.value_of(o, v, n) for o, v in zip(outs, val)]
            self.multi[n.name] = outs
        else:
            values = [self.value_of(n.name, val, n)]
            self.names[n.name] = n.name
        self.graph.add_node(Node(op, tuple(inputs), tuple(v.name for v in values), attrs),
                            values)

    def run(self) -> Graph:
        self.placeholders()
        for n in self.ep.graph.nodes:
            if n.op == "call_function":
                self.call(n)
            elif n.op == "output":
                kinds = torch.export.graph_signature.OutputKind
                for spec in self.ep.graph_signature.output_specs:
                    if spec.kind != kinds.USER_OUTPUT:
                        raise CaptureError(f"the model mutates {spec.target} in forward "
                                           f"({spec.kind.name}); only pure models are supported")
                for out in n.args[0]:
                    if not isinstance(out, torch.fx.Node):
                        raise CaptureError(f"model output {out!r} is not a tensor")
                    self.graph.outputs.append(self.names[out.name])
            elif n.op != "placeholder":
                raise UnsupportedOpError(str(n.target), n.name, source_line(n),
                                         f"FX {n.op} nodes are not supported")
        return self.graph


def _reads_first_only(n: torch.fx.Node) -> bool:
    """Whether every reader of multi-output node `n` takes its result 0."""
    return all(u.target is operator.getitem and u.args[1] == 0 for u in n.users)


def _same(a: Any, default: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(a) == len(default) and all(_same(x, y) for x, y in zip(a, default))
    return type(a) is type(default) and a == default


def capture(model: torch.nn.Module, args: Sequence[Any] = (),
            kwargs: Mapping[str, Any] | None = None, *,
            dynamic_dims: DynamicDims | None = None, name: str | None = None) -> Graph:
    """Export `model` on example inputs and convert it to an IR graph.

    `dynamic_dims` maps forward() argument names to {axis: dim name}, e.g.
    `{"input_ids": {0: "batch", 1: "seq"}}`. The user's model is not modified: a model in
    training mode is exported from an eval-mode copy.
    """
    if not isinstance(model, torch.nn.Module):
        raise CaptureError(f"expected a torch.nn.Module, got {type(model).__name__}")
    kwargs = dict(kwargs or {})
    try:
        forward_params = inspect.signature(model.forward).parameters
    except ValueError:
        forward_params = {}
    if ("use_cache" in forward_params and "use_cache" not in kwargs
            and getattr(getattr(model, "config", None), "use_cache", False)):
        # a Hugging Face model as loaded returns its KV cache object, which export can't
        # carry: the compiled model is the forward pass without it
        kwargs["use_cache"] = False
    try:
        inspect.signature(model.forward).bind(*args, **kwargs)
    except TypeError as e:
        raise CaptureError(f"{name or type(model).__name__}: the example inputs don't match "
                           f"forward{inspect.signature(model.forward)}: {e}") from None
    except ValueError:              # no signature to check (a builtin); export will say
        pass
    if model.training:
        model = copy.deepcopy(model).eval()
    ep = _export(model, tuple(args), dict(kwargs or {}), dict(dynamic_dims or {}))
    ep = _decompose_unsupported(ep)
    return _Converter(ep, dict(dynamic_dims or {}), name or type(model).__name__).run()
