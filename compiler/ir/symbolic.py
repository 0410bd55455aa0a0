"""Symbolic dimensions: strings holding sympy expressions over named dims ("batch", "2*seq").

Dim text may come from files (IR text, an ONNX graph's dim_param), so it is never given to
`sympy.sympify` (which evaluates Python). `parse_dim` reads it with Python's parser alone and
builds the expression from a fixed grammar: integers, names (symbols), + - * / // % and ** by an
integer, parentheses, and the calls Max, Min, floor, ceiling, Mod. Anything else is a ValueError.
"""
from __future__ import annotations

import ast
import builtins
import functools
import operator
from collections.abc import Mapping

import sympy

MAX_DIM_TEXT = 400          # longer dim text is refused (no real shape needs more)
_CALLS = {"Max": sympy.Max, "Min": sympy.Min, "floor": sympy.floor, "ceiling": sympy.ceiling,
          "Mod": sympy.Mod}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: lambda a, b: sympy.floor(a / b),
           ast.Mod: sympy.Mod}


def _build(node: ast.AST) -> sympy.Expr:
    if isinstance(node, ast.Expression):
        return _build(node.body)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return sympy.Integer(node.value)
    if isinstance(node, ast.Name):
        return sympy.Symbol(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _build(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_build(node.left), _build(node.right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) \
            and isinstance(node.right, ast.Constant) and type(node.right.value) is int \
            and 0 <= node.right.value <= 8:
        return _build(node.left) ** node.right.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in _CALLS and node.args and not node.keywords:
        return _CALLS[node.func.id](*(_build(a) for a in node.args))
    raise ValueError(f"not a dimension expression: {ast.dump(node)[:80]}")


@functools.lru_cache(maxsize=4096)
def parse_dim(text: str) -> sympy.Expr:
    """The sympy expression of dim text, read by a fixed grammar (never evaluated as Python)."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_DIM_TEXT:
        raise ValueError(f"not a dimension expression: {str(text)[:80]!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _build(tree)
    except (SyntaxError, RecursionError, MemoryError, TypeError, ZeroDivisionError) as e:
        raise ValueError(f"not a dimension expression: {text[:80]!r} ({type(e).__name__})") \
            from None


_expr = parse_dim

# names Python or sympy already give a meaning (len, E, I, N, S, gamma, ...): importers rename
# dims called so, which keeps the IR's text readable by sympy-based tools too
RESERVED_NAMES = frozenset(dir(builtins)) | frozenset(n for n in vars(sympy) if not n.startswith("_"))


def normalize_dim(dim: object) -> int | str:
    """An int, or the canonical text (no spaces) of a symbolic expression."""
    if isinstance(dim, int):
        return dim
    expr = dim if isinstance(dim, sympy.Basic) else _expr(str(dim))
    if expr.is_Integer:
        return int(expr)
    return str(expr).replace(" ", "")


def free_symbols(text: str) -> set[str]:
    return {s.name for s in _expr(text).free_symbols}


def rename(text: str, mapping: Mapping[str, str]) -> int | str:
    expr = _expr(text)
    subs = {sympy.Symbol(k): sympy.Symbol(v) for k, v in mapping.items()}
    return normalize_dim(expr.xreplace(subs))


def evaluate(dim: int | str, env: Mapping[str, int]) -> int:
    """The integer value of a dimension given values for its symbols."""
    if isinstance(dim, int):
        return dim
    expr = _expr(dim)
    missing = {s.name for s in expr.free_symbols} - set(env)
    if missing:
        raise ValueError(f"dimension {dim!r} needs values for {sorted(missing)}")
    out = expr.xreplace({sympy.Symbol(k): sympy.Integer(v) for k, v in env.items()})
    return int(out)
