"""Text form of the IR, and its parser: `parse(print_graph(g)) == g`.

    graph main(%x: f32[batch, 16]) {
      param %fc.weight: f32[8, 16]
      %linear: f32[batch, 8] = linear(%x, %fc.weight, _)
      %a: f32[batch, 4], %b: f32[batch, 4] = split.Tensor(%linear) {split_size=4, dim=-1}
      return %a
    }

`_` is an absent optional input. Attribute values are ints, floats (`inf`, `nan`), JSON
strings, True/False/None, dtype names, `%name` references, and `[...]` tuples.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from ..errors import IRParseError
from .graph import DTYPES, SYM, DType, Graph, Node, Ref, Value
from .symbolic import normalize_dim

_NAME = r"[A-Za-z0-9_.\-]+"


def _fmt_dim(d: int | str) -> str:
    return str(d)


def _fmt_type(v: Value) -> str:
    return f"{v.dtype}[{', '.join(_fmt_dim(d) for d in v.shape)}]"


def _fmt_attr(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (DType, Ref)):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_fmt_attr(x) for x in v) + "]"
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def print_graph(g: Graph) -> str:
    ins = ", ".join(f"%{n}: {_fmt_type(g.values[n])}" for n in g.inputs)
    lines = [f"graph {g.name}({ins}) {{"]
    for p in g.param_names:
        lines.append(f"  param %{p}: {_fmt_type(g.values[p])}")
    for node in g.nodes:
        outs = ", ".join(f"%{o}: {_fmt_type(g.values[o])}" for o in node.outputs)
        args = ", ".join("_" if i is None else f"%{i}" for i in node.inputs)
        attrs = ""
        if node.attrs:
            attrs = " {" + ", ".join(f"{k}={_fmt_attr(v)}" for k, v in node.attrs.items()) + "}"
        lines.append(f"  {outs} = {node.op}({args}){attrs}")
    lines.append("  return " + ", ".join(f"%{o}" for o in g.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"


class _Cursor:
    def __init__(self, text: str, line_no: int) -> None:
        self.text, self.pos, self.line_no = text, 0, line_no

    def fail(self, what: str) -> IRParseError:
        return IRParseError(f"line {self.line_no}: {what} at column {self.pos + 1}: "
                            f"{self.text.strip()!r}")

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self, s: str) -> bool:
        self.ws()
        return self.text.startswith(s, self.pos)

    def eat(self, s: str) -> None:
        if not self.peek(s):
            raise self.fail(f"expected {s!r}")
        self.pos += len(s)

    def match(self, pattern: str) -> str:
        self.ws()
        m = re.compile(pattern).match(self.text, self.pos)
        if not m:
            raise self.fail(f"expected {pattern}")
        self.pos = m.end()
        return m.group(0)

    def done(self) -> bool:
        self.ws()
        return self.pos >= len(self.text)

    # ---- pieces ----
    def value_name(self) -> str:
        self.eat("%")
        return self.match(_NAME)

    def typed_value(self) -> Value:
        name = self.value_name()
        self.eat(":")
        dtype = self.match(r"[a-z0-9]+")
        if dtype != SYM and dtype not in DTYPES:
            raise self.fail(f"unknown dtype {dtype!r}")
        self.eat("[")
        start = self.pos
        depth = 0
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "]" and depth == 0:
                break
            self.pos += 1
        else:
            raise self.fail("unclosed shape")
        body = self.text[start:self.pos]
        self.pos += 1
        dims = _split_top(body) if body.strip() else []
        try:
            shape = tuple(normalize_dim(int(d) if re.fullmatch(r"-?\d+", d) else d)
                          for d in dims)
        except Exception as e:  # sympy syntax errors
            raise self.fail(f"bad shape [{body}] ({e})") from None
        return Value(name, shape, dtype)

    def attr(self) -> Any:
        self.ws()
        if self.peek("["):
            self.eat("[")
            items: list[Any] = []
            if not self.peek("]"):
                items.append(self.attr())
                while self.peek(","):
                    self.eat(",")
                    items.append(self.attr())
            self.eat("]")
            return tuple(items)
        if self.peek("%"):
            return Ref(self.value_name())
        if self.peek('"'):
            dec = json.JSONDecoder()
            try:
                s, end = dec.raw_decode(self.text, self.pos)
            except json.JSONDecodeError:
                raise self.fail("bad string") from None
            self.pos = end
            return s
        tok = self.match(r"-?inf|nan|True|False|None|[A-Za-z][A-Za-z0-9]*|"
                         r"-?\d+(\.\d*)?([eE][-+]?\d+)?")
        consts = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan,
                  "True": True, "False": False, "None": None}
        if tok in consts:
            return consts[tok]
        if tok in DTYPES:
            return DType(tok)
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        try:
            return float(tok)
        except ValueError:
            raise self.fail(f"unknown attribute value {tok!r}") from None


def _split_top(body: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for c in body:
        if c == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += c == "("
        depth -= c == ")"
        cur += c
    parts.append(cur.strip())
    return parts


def parse(text: str) -> Graph:
    """Parse the text form of a graph. Parameters come back without tensors."""
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise IRParseError("empty IR text")
    no, head = lines[0]
    cur = _Cursor(head, no)
    cur.eat("graph")
    name = cur.match(_NAME)
    cur.eat("(")
    inputs: list[Value] = []
    if not cur.peek(")"):
        inputs.append(cur.typed_value())
        while cur.peek(","):
            cur.eat(",")
            inputs.append(cur.typed_value())
    cur.eat(")")
    cur.eat("{")
    g = Graph(inputs=inputs, name=name)
    returned = False
    for no, line in lines[1:]:
        cur = _Cursor(line, no)
        if cur.peek("}"):
            if not returned:
                raise cur.fail("graph has no return")
            return g
        if returned:
            raise cur.fail("text after return")
        if cur.peek("param "):
            cur.eat("param")
            g.add_param(cur.typed_value(), None)
        elif cur.peek("return"):
            cur.eat("return")
            if not cur.done():
                g.outputs.append(cur.value_name())
                while cur.peek(","):
                    cur.eat(",")
                    g.outputs.append(cur.value_name())
            returned = True
        else:
            outs = [cur.typed_value()]
            while cur.peek(","):
                cur.eat(",")
                outs.append(cur.typed_value())
            cur.eat("=")
            op = cur.match(r"[A-Za-z_][A-Za-z0-9_.]*")
            cur.eat("(")
            args: list[str | None] = []
            while not cur.peek(")"):
                if args:
                    cur.eat(",")
                if cur.peek("_"):
                    cur.eat("_")
                    args.append(None)
                else:
                    args.append(cur.value_name())
            cur.eat(")")
            attrs: dict[str, Any] = {}
            if cur.peek("{"):
                cur.eat("{")
                while not cur.peek("}"):
                    if attrs:
                        cur.eat(",")
                    key = cur.match(r"[A-Za-z_][A-Za-z0-9_]*")
                    cur.eat("=")
                    attrs[key] = cur.attr()
                cur.eat("}")
            if not cur.done():
                raise cur.fail("unexpected text")
            g.add_node(Node(op, tuple(args), tuple(o.name for o in outs), attrs), outs)
    raise IRParseError(f"line {lines[-1][0]}: graph not closed with '}}'")
