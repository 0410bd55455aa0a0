"""Elementwise ONNX ops on values known at import time: constants (numpy) and sizes (symbolic).

Exporters compute shapes with tensor ops on `Shape` values: `token_type_ids.expand(b, s)` is
`Expand(x, Where(Equal(Reshape(Concat(Shape…)), -1), ConstantOfShape(Shape…), Reshape(…)))`.
Each element of a `Sizes` is a known number or a `Ref` to a size; elementwise ops on them fold:
  + − × on sizes                   `sym.add/sub/mul` nodes (deduplicated by expression)
  Div, Mod on ints                 `sym.floordiv`/`sym.mod` (sizes are ≥ 0: trunc is floor)
  Equal, Less, ..., Max, Min       decided when the answer holds for every size ≥ 0
                                   ("seq == -1" is false); otherwise not folded
  Where, And, Or, Not, Cast        element by element once the conditions are known
An op that can't fold (a comparison the sizes don't decide) runs on tensors at run time; a shape
later read from its result is refused with the reason ("Equal(seq, 4) depends on the input sizes").
Constants fold with numpy following ONNX semantics (integer Div truncates; Mod with fmod=0 takes
the divisor's sign).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sympy

from ..ir.graph import Ref
from .onnx_importer import Const, Entry, Importer, Item, Sizes, np_dtype

MAX_FOLD = 64  # constants longer than this are not folded element by element with sizes


class Unfoldable(Exception):
    """An op on sizes whose result depends on the input sizes."""


# -- constants ------------------------------------------------------------------------------
def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = np.abs(a) // np.abs(b)
    return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))


_NP: dict[str, Callable[..., np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
    "Max": np.maximum, "Min": np.minimum, "Equal": np.equal, "Greater": np.greater,
    "Less": np.less, "GreaterOrEqual": np.greater_equal, "LessOrEqual": np.less_equal,
    "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
    "BitwiseAnd": np.bitwise_and, "BitwiseOr": np.bitwise_or, "BitwiseXor": np.bitwise_xor,
    "Not": np.logical_not, "Neg": np.negative, "Abs": np.abs, "Sign": np.sign,
    "Where": np.where,
}


def fold_numpy(kind: str, arrays: Sequence[np.ndarray], fmod: int = 0) -> np.ndarray:
    """ONNX op `kind` on constant arrays (the result keeps the first input's dtype, or bool)."""
    a = arrays[0]
    if kind == "Div" and a.dtype.kind in "iu":
        return _int_div(a, arrays[1]).astype(a.dtype)
    if kind == "Mod":
        return (np.fmod if fmod else np.mod)(a, arrays[1]).astype(a.dtype)
    out = _NP[kind](*arrays)
    if kind == "Where":
        return out.astype(arrays[1].dtype)
    return out if out.dtype == np.bool_ else out.astype(a.dtype)


# -- sizes ----------------------------------------------------------------------------------
def _items(e: Entry | None) -> tuple[list[Item], int, str] | None:
    if isinstance(e, Sizes):
        return list(e.items), e.rank, e.dtype
    if isinstance(e, Const) and e.array.ndim <= 1 and e.array.size <= MAX_FOLD:
        return [v.item() for v in e.array.reshape(-1)], e.array.ndim, e.dtype
    return None


def _broadcast(lists: list[list[Item]]) -> list[tuple[Item, ...]]:
    n = max(len(x) for x in lists)
    if any(len(x) not in (1, n) for x in lists):
        raise ValueError(f"can't broadcast sizes of lengths {[len(x) for x in lists]}")
    return list(zip(*[x * n if len(x) == 1 else x for x in lists]))


def _text(imp: Importer, item: Item) -> str:
    return str(imp.expr(item)) if isinstance(item, Ref) else str(item)


def decide(imp: Importer, kind: str, a: Item, b: Item) -> bool:
    """`a kind b` for every value of the sizes (≥ 0), or `Unfoldable`."""
    diff = sympy.simplify(imp.expr(a) - imp.expr(b))
    answer = {"Equal": lambda: True if diff == 0 else (False if diff.is_zero is False else None),
              "Less": lambda: diff.is_negative, "Greater": lambda: diff.is_positive,
              "LessOrEqual": lambda: diff.is_nonpositive,
              "GreaterOrEqual": lambda: diff.is_nonnegative}[kind]()
    if answer is None:
        raise Unfoldable(f"{kind}({_text(imp, a)}, {_text(imp, b)}) depends on the input sizes")
    return bool(answer)


def _integral(v: Item) -> bool:
    return isinstance(v, Ref) or (not isinstance(v, bool) and float(v).is_integer())


def _arith(imp: Importer, kind: str, a: Item, b: Item, dtype: str, fmod: int) -> Item:
    """One element of Add/Sub/Mul/Div/Mod/Max/Min with a `Ref` in it."""
    if not (_integral(a) and _integral(b)):
        raise Unfoldable(f"{kind} of a size by {b if isinstance(a, Ref) else a} is not a size")
    x = a if isinstance(a, Ref) else int(a)
    y = b if isinstance(b, Ref) else int(b)
    if kind in ("Add", "Sub", "Mul"):
        return imp.sym({"Add": "add", "Sub": "sub", "Mul": "mul"}[kind], x, y)
    if kind in ("Max", "Min"):
        first = decide(imp, "GreaterOrEqual" if kind == "Max" else "LessOrEqual", x, y)
        return x if first else y
    if dtype[0] not in "iu":
        raise Unfoldable(f"float {kind} of sizes")
    negative = (isinstance(x, int) and x < 0) or (isinstance(y, int) and y < 0)
    if kind == "Div":  # truncation; a size is >= 0, so for x, y >= 0 it is floor division
        if isinstance(y, int) and y < 0:
            return imp.sym("mul", imp.sym("floordiv", x, -y), -1)
        if isinstance(x, int) and x < 0:
            return imp.sym("mul", imp.sym("floordiv", -x, y), -1)
        return imp.sym("floordiv", x, y)
    if kind == "Mod" and not (fmod and negative):  # floor mod; trunc mod of non-negatives
        return imp.sym("mod", x, y)
    raise Unfoldable(f"{kind} of sizes with negative operands")


def _element(imp: Importer, kind: str, args: tuple[Item, ...], dtypes: list[str],
             fmod: int) -> Item:
    if not any(isinstance(v, Ref) for v in args):
        arrays = [np.array(v, np_dtype(d)) for v, d in zip(args, dtypes)]
        return fold_numpy(kind, arrays, fmod).item()
    if kind == "Where":
        return args[1] if args[0] else args[2]
    if kind in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        return decide(imp, kind, *args)
    if kind == "Neg":
        return imp.sym("mul", args[0], -1)
    if kind == "Abs":
        return args[0]
    if kind in ("Add", "Sub", "Mul", "Div", "Mod", "Max", "Min"):
        return _arith(imp, kind, args[0], args[1], dtypes[0], fmod)
    raise Unfoldable(f"{kind} of sizes")


_BOOL_OUT = frozenset("Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor Not".split())


def fold(imp: Importer, kind: str, entries: Sequence[Entry | None], fmod: int = 0) -> Entry | None:
    """ONNX elementwise op `kind` on sizes (and small constants): the folded entry; None when an
    input is a tensor or no input is a `Sizes`; `Unfoldable` when the sizes don't decide it."""
    if not any(isinstance(e, Sizes) for e in entries):
        return None
    parts = [_items(e) for e in entries]
    if any(p is None for p in parts):
        return None
    if kind == "Where" and any(isinstance(v, Ref) for v in parts[0][0]):
        raise Unfoldable("Where over a condition that is a size")
    dtypes = [p[2] for p in parts]
    out = [_element(imp, kind, args, dtypes, fmod) for args in _broadcast([p[0] for p in parts])]
    rank = max(p[1] for p in parts)
    dtype = "bool" if kind in _BOOL_OUT else (dtypes[1] if kind == "Where" else dtypes[0])
    return imp.sizes_entry(out, rank, dtype)


def cast(imp: Importer, e: Sizes, dtype: str) -> Entry:
    """`Cast(sizes, to)`: sizes stay sizes; known elements convert as numpy does."""
    out: list[Item] = []
    for v in e.items:
        if not isinstance(v, Ref):
            out.append(np.array(v, np_dtype(e.dtype)).astype(np_dtype(dtype)).item())
        elif dtype == "bool":
            out.append(not decide(imp, "Equal", v, 0))
        else:
            out.append(v)
    return imp.sizes_entry(out, e.rank, dtype)


def reduce(imp: Importer, kind: str, e: Sizes) -> Item:
    """ReduceSum/ReduceProd/ReduceMax/ReduceMin of a rank-1 `Sizes`: its one element."""
    op = {"ReduceSum": "Add", "ReduceProd": "Mul", "ReduceMax": "Max", "ReduceMin": "Min"}[kind]
    items = list(e.items)
    acc = items[0]
    for v in items[1:]:
        acc = _element(imp, op, (acc, v), [e.dtype, e.dtype], 0)
    return acc


def fold_or_none(imp: Importer, kind: str, entries: Sequence[Entry | None], fmod: int = 0
                 ) -> tuple[Entry | None, str | None]:
    """`fold`, with an unfoldable result turned into (None, why)."""
    try:
        return fold(imp, kind, entries, fmod), None
    except Unfoldable as e:
        return None, str(e)

