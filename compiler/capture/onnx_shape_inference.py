"""Output types of IR nodes during ONNX import, with symbolic dims (`ShapeInference`).

Shape-preserving, broadcasting, permuting and linear ops get their shape by a rule on the IR dims,
checked by running the op on meta tensors at the symbols' hint sizes; every other op runs on fake
tensors whose sizes are torch SymInts (a ShapeEnv), read back as sympy expressions over the IR's
symbol names ("batch", "2*seq", "floor(seq/2)+1"). A shape that holds at the hints but would
differ at other sizes, or that pins a symbol to one size, is an error rather than a constant.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sympy
import torch

from ..ir import ops
from ..ir.graph import SYM, Node, Ref, Value, dtype_name, torch_dtype
from ..ir.interpreter import bind_outputs, resolve_refs
from ..ir.symbolic import normalize_dim, parse_dim

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
    bitwise_not eq.Scalar ne.Scalar ge.Scalar gt.Scalar le.Scalar lt.Scalar round sign
    softplus mish tan atan asin acos sinh cosh asinh acosh atanh isnan isinf""".split())
_BROADCAST = frozenset("""add.Tensor sub.Tensor mul.Tensor div.Tensor div.Tensor_mode
    pow.Tensor_Tensor minimum maximum eq.Tensor ne.Tensor ge.Tensor gt.Tensor le.Tensor
    lt.Tensor logical_and logical_or bitwise_and.Tensor bitwise_or.Tensor where.self
    fmod.Tensor remainder.Tensor""".split())
# Ops whose sizes may be `Ref`s and whose output shape has a rule (their kernels, run on fake
# tensors, would read concrete sizes).
_UPSAMPLE = frozenset({"upsample_nearest2d", "upsample_bilinear2d", "upsample_bicubic2d"})
_SIZED = frozenset({"reshape", "expand", "constant_pad_nd"}) | _UPSAMPLE
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
        if len(node.outputs) != 1 or (op not in _SIZED and any(
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
        elif op in _UPSAMPLE:
            shape = tuple(shapes[0][:2]) + tuple(self._text(v) for v in node.attrs["output_size"])
        elif op == "constant_pad_nd":  # (ATen's own kernel reads concrete sizes: a rule here)
            pad, out = node.attrs["pad"], list(shapes[0])
            for i in range(len(pad) // 2):
                d = len(out) - 1 - i
                out[d] = normalize_dim(_dim_expr(out[d]) + pad[2 * i] + pad[2 * i + 1])
            shape = tuple(out)
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
