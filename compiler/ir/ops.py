"""The operator set of the IR and how each operator runs.

Tensor operators are ATen overloads named without the `aten::` prefix and without
`.default` (`linear`, `add.Tensor`). Their tensor arguments are node inputs, in schema order
(a `Tensor[]` argument, at most one per op, takes the run of inputs between the fixed ones);
every other argument is an attribute named as in the schema. Arguments left at their schema
default are not stored. Arguments that pick a device are not stored either: the interpreter
and backends place every tensor on their own device.

Attributes whose names are not arguments of the op's schema are annotations for passes and
backends, never passed to the op: `sparsity` (the pattern string a layer's weight obeys, e.g.
"2:4", set by the pass that applied it) is the one in use.

Scalar operators (`sym.add`, `sym.mul`, ...) compute symbolic sizes; their operands are the
attributes `a` and `b` (ints or `Ref`s).
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .graph import DType, torch_dtype

# Every ATen overload the IR represents. Keep it sorted by family; capture refuses the rest.
TENSOR_OPS: frozenset[str] = frozenset("""
    linear addmm mm bmm matmul baddbmm
    conv1d conv2d conv1d.padding conv2d.padding convolution
    batch_norm _native_batch_norm_legit_no_training layer_norm rms_norm group_norm
    embedding
    relu gelu silu sigmoid tanh hardtanh hardswish hardsigmoid leaky_relu elu erf
    softmax.int _softmax log_softmax.int
    add.Tensor add.Scalar sub.Tensor sub.Scalar rsub.Scalar mul.Tensor mul.Scalar
    div.Tensor div.Scalar div.Tensor_mode neg pow.Tensor_Scalar pow.Tensor_Tensor pow.Scalar
    rsqrt sqrt exp log abs reciprocal cos sin clamp clamp_min clamp_max minimum maximum
    reshape view _unsafe_view permute transpose.int t numpy_T expand expand_as repeat
    repeat_interleave.self_int slice.Tensor cat stack
    split.Tensor split_with_sizes chunk unbind.int unsqueeze squeeze squeeze.dim squeeze.dims
    flatten.using_ints contiguous clone alias detach lift_fresh_copy select.int narrow
    constant_pad_nd
    scaled_dot_product_attention
    max_pool1d max_pool2d avg_pool1d avg_pool2d adaptive_avg_pool1d adaptive_avg_pool2d
    adaptive_max_pool2d
    mean mean.dim sum sum.dim_IntList amax amin max.dim var.correction cumsum
    dropout native_dropout feature_dropout
    to.dtype to.dtype_layout to.device to.other _to_copy type_as
    arange arange.start arange.start_step new_ones new_zeros new_full ones zeros full
    ones_like zeros_like full_like scalar_tensor
    gather index.Tensor index_select index_copy masked_fill.Scalar masked_fill.Tensor where.self
    ge.Scalar ge.Tensor gt.Scalar gt.Tensor le.Scalar le.Tensor lt.Scalar lt.Tensor
    eq.Scalar eq.Tensor ne.Scalar ne.Tensor __and__.Tensor __or__.Tensor bitwise_and.Tensor
    bitwise_or.Tensor logical_not logical_and logical_or bitwise_not
    round sign softplus mish tan atan asin acos sinh cosh asinh acosh atanh isnan isinf
    fmod.Tensor remainder.Tensor prod.dim_int topk scatter.src scatter_reduce.two index_put
    upsample_nearest2d upsample_bilinear2d upsample_bicubic2d
    sym_size.int
""".split())

# Arguments never stored: they only place tensors or pick an allocation strategy.
_PLACEMENT_ARGS = frozenset({"device", "pin_memory", "layout", "memory_format", "non_blocking"})

SCALAR_OPS: Mapping[str, Callable[[Any, Any], Any]] = {
    "sym.add": operator.add, "sym.sub": operator.sub, "sym.mul": operator.mul,
    "sym.floordiv": operator.floordiv, "sym.mod": operator.mod, "sym.truediv": operator.truediv,
}
PY_TO_SCALAR_OP: Mapping[Callable, str] = {fn: name for name, fn in SCALAR_OPS.items()}


def is_supported(op: str) -> bool:
    return op in TENSOR_OPS or op in SCALAR_OPS


@functools.lru_cache(maxsize=None)
def overload(op: str) -> torch._ops.OpOverload:
    """The ATen overload an IR op names."""
    name, _, over = op.partition(".")
    packet = getattr(torch.ops.aten, name)
    return getattr(packet, over or "default")


def op_name(target: torch._ops.OpOverload) -> str:
    """The IR name of an ATen overload: `aten.add.Tensor` -> `add.Tensor`."""
    packet = target._schema.name.split("::", 1)[1]
    over = target._overloadname
    return packet if over == "default" else f"{packet}.{over}"


def _is_tensor_type(t: torch._C.JitType) -> bool:
    if isinstance(t, torch._C.OptionalType):
        t = t.getElementType()
    return isinstance(t, torch._C.TensorType)


def _is_tensor_list(t: torch._C.JitType) -> bool:
    if isinstance(t, torch._C.OptionalType):
        t = t.getElementType()
    return isinstance(t, torch._C.ListType) and _is_tensor_type(t.getElementType())


def is_tensor_arg(arg: torch._C.Argument) -> bool:
    return _is_tensor_type(arg.type) or _is_tensor_list(arg.type)


def is_tensor_list_arg(arg: torch._C.Argument) -> bool:
    return _is_tensor_list(arg.type)


def is_placement_arg(arg: torch._C.Argument) -> bool:
    return arg.name in _PLACEMENT_ARGS


def _to_torch(v: Any) -> Any:
    if isinstance(v, DType):
        return torch_dtype(v.name)
    if isinstance(v, tuple):
        return [_to_torch(x) for x in v]
    return v


def bind(op: str, inputs: Sequence[Any], attrs: Mapping[str, Any],
         device: Any = None) -> tuple[torch._ops.OpOverload, list[Any], dict[str, Any]]:
    """The ATen overload of tensor op `op` and its (args, kwargs) for these node inputs and
    attributes (`Ref`s resolved). Inputs may be tensors or anything standing for them (the
    torch backend binds FX nodes)."""
    target = overload(op)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    schema_args = target._schema.arguments
    n_fixed = sum(1 for a in schema_args if is_tensor_arg(a) and not is_tensor_list_arg(a))
    n_list = len(inputs) - n_fixed
    it = iter(inputs)
    for arg in schema_args:
        if is_tensor_list_arg(arg):
            value: Any = [next(it) for _ in range(n_list)]
        elif is_tensor_arg(arg):
            value = next(it, None)
        elif arg.name == "device":
            value = device
        elif arg.name in attrs:
            value = _to_torch(attrs[arg.name])
        elif arg.has_default_value():
            continue
        elif arg.name in _PLACEMENT_ARGS or isinstance(arg.type, torch._C.OptionalType):
            value = None
        else:
            raise TypeError(f"{op}: missing attribute {arg.name!r}")
        if arg.kwarg_only:
            kwargs[arg.name] = value
        else:
            if len(args) < _positional_index(schema_args, arg):
                # an earlier positional argument was left at its default: pass by name
                kwargs[arg.name] = value
            else:
                args.append(value)
    return target, args, kwargs


def returns_many(op: str) -> bool:
    """Whether tensor op `op` returns a tuple or list (its outputs are indexed)."""
    returns = overload(op)._schema.returns
    return len(returns) > 1 or (len(returns) == 1 and isinstance(returns[0].type,
                                                                torch._C.ListType))


def call(op: str, inputs: Sequence[Any], attrs: Mapping[str, Any],
         device: torch.device | str | None = None) -> Any:
    """Run one IR op on concrete (or meta) tensors. `attrs` must have `Ref`s resolved."""
    if op in SCALAR_OPS:
        return SCALAR_OPS[op](attrs["a"], attrs["b"])
    target, args, kwargs = bind(op, inputs, attrs, device)
    return target(*args, **kwargs)


def _positional_index(schema_args: Sequence[torch._C.Argument], arg: torch._C.Argument) -> int:
    return [a.name for a in schema_args].index(arg.name)
