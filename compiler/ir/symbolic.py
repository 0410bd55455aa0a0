"""Symbolic dimensions: strings holding sympy expressions over named dims ("batch", "2*seq")."""
from __future__ import annotations

import functools
from collections.abc import Mapping

import sympy


@functools.lru_cache(maxsize=4096)
def _expr(text: str) -> sympy.Expr:
    return sympy.sympify(text, locals={"Max": sympy.Max, "Min": sympy.Min})


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
