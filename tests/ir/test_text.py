import math

import pytest
import torch

from sparsecc.errors import IRParseError
from sparsecc.ir import DType, Graph, Node, Ref, Value, parse, print_graph

TEXT = """\
graph mlp(%x: f32[batch, 16]) {
  param %fc.weight: f32[8, 16]
  param %fc.bias: f32[8]
  %s: sym[] = sym_size.int(%x) {dim=0}
  %h: f32[batch, 8] = linear(%x, %fc.weight, %fc.bias)
  %a: f32[batch, 4], %b: f32[batch, 4] = split.Tensor(%h) {split_size=4, dim=-1}
  %v: f32[batch, 2, 2] = view(%a) {size=[%s, 2, 2]}
  %c: f16[batch, 4] = to.dtype(%b) {dtype=f16}
  %m: f32[batch, 4] = clamp(%a) {min=-inf, max=1e-05}
  %n: f32[batch, 8] = cat(%a, %b) {dim=1}
  %o: f32[batch, 8] = gelu(%n) {approximate="tanh"}
  return %v, %c, %m, %o
}
"""


def test_print_parse_round_trip_is_exact():
    g = parse(TEXT)
    assert print_graph(g) == TEXT
    assert parse(print_graph(g)) == g


def test_parsed_structure():
    g = parse(TEXT)
    assert g.inputs == ["x"] and g.param_names == ["fc.weight", "fc.bias"]
    assert g.values["h"] == Value("h", ("batch", 8), "f32")
    view = g.nodes[3]
    assert view.op == "view" and view.attrs["size"] == (Ref("s"), 2, 2)
    assert view.uses() == ["a", "s"]
    assert g.nodes[4].attrs["dtype"] == DType("f16")
    assert g.nodes[5].attrs["min"] == -math.inf and g.nodes[5].attrs["max"] == 1e-05
    assert g.nodes[7].attrs["approximate"] == "tanh"
    assert g.outputs == ["v", "c", "m", "o"]


def test_absent_inputs_and_symbolic_expressions():
    g = Graph(inputs=[Value("x", ("batch", "2*seq", 4), "f32")], name="g")
    g.add_param(Value("w", (3, 4), "f32"), torch.zeros(3, 4))
    g.add_node(Node("linear", ("x", "w", None), ("y",)), [Value("y", ("batch", "2*seq", 3), "f32")])
    g.outputs.append("y")
    text = print_graph(g)
    assert "linear(%x, %w, _)" in text and "f32[batch, 2*seq, 4]" in text
    assert parse(text) == g


def test_equality_sees_attribute_changes():
    g = parse(TEXT)
    h = parse(TEXT.replace("split_size=4", "split_size=2"))
    assert g != h


@pytest.mark.parametrize("bad, where", [
    ("graph g(%x: f99[2]) {\n  return %x\n}\n", "unknown dtype"),
    ("graph g(%x: f32[2]) {\n  %y: f32[2] = relu(%x)\n}\n", "no return"),
    ("graph g(%x: f32[2]) {\n  %y: f32[2] = relu(%x) {k=@}\n  return %y\n}\n", "line 2"),
    ("graph g(%x: f32[2]) {\n  return %x\n", "not closed"),
    ("", "empty"),
])
def test_parse_errors_name_the_line(bad, where):
    with pytest.raises(IRParseError, match=where):
        parse(bad)


PAYLOAD = "__import__('os').system('touch PWNED')"


@pytest.mark.parametrize("dim", [PAYLOAD, "seq.__class__", "(lambda: 1)()", "exec('1')"])
def test_symbolic_dim_text_is_parsed_never_evaluated(dim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = f'graph g(%x: f32[{dim}, 4]) {{\n  return %x\n}}\n'
    with pytest.raises(IRParseError):
        parse(text)
    assert not (tmp_path / "PWNED").exists()


def test_dim_grammar_keeps_what_shapes_use():
    from sparsecc.ir.symbolic import normalize_dim, parse_dim
    assert normalize_dim("s0//2 + 1") == "floor(s0/2)+1"
    assert normalize_dim("Max(1, batch)") == "Max(1,batch)"
    assert normalize_dim("2*seq**2") == "2*seq**2"
    for bad in ("1.5", "seq**seq", "x[0]", "a if b else c", "(" * 500 + "1" + ")" * 500):
        with pytest.raises(ValueError, match="not a dimension expression"):
            parse_dim(bad)
