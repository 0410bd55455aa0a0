import pytest
import torch

from sparsecc.errors import VerifyError
from sparsecc.ir import parse, verify

GOOD = """\
graph g(%x: f32[batch, 16]) {
  param %w: f32[8, 16]
  %h: f32[batch, 8] = linear(%x, %w, _)
  %s: sym[] = sym_size.int(%x) {dim=0}
  %v: f32[batch, 2, 4] = view(%h) {size=[%s, 2, 4]}
  return %v
}
"""


def test_good_graph_verifies():
    verify(parse(GOOD))


@pytest.mark.parametrize("edit, message", [
    (("f32[batch, 2, 4] = view", "f32[batch, 4, 4] = view"), "declared f32\\[batch, 4, 4\\]"),
    (("%h: f32[batch, 8]", "%h: f16[batch, 8]"), "op gives f32"),
    (("linear(%x, %w, _)", "linear(%q, %w, _)"), "reads %q, which is not defined"),
    (("%s: sym[] = sym_size", "%h: sym[] = sym_size"), "defined twice"),
    (("return %v", "return %nope"), "output %nope is not defined"),
    (("= linear(", "= frobnicate("), "not in the IR's operator set"),
    (("param %w: f32[8, 16]", "param %w: f32[8, 15]"), "refused its inputs"),
])
def test_broken_graphs_are_named(edit, message):
    with pytest.raises(VerifyError, match=message):
        verify(parse(GOOD.replace(*edit)))


def test_parameter_tensor_must_match_its_type():
    g = parse(GOOD)
    g.params["w"] = torch.zeros(8, 16, dtype=torch.float16)
    with pytest.raises(VerifyError, match="parameter %w"):
        verify(g)


def test_symbolic_reads_before_definition_are_caught():
    text = GOOD.replace("  %s: sym[] = sym_size.int(%x) {dim=0}\n", "")
    text = text.replace("%v: f32", "%s: sym[] = sym_size.int(%x) {dim=0}\n  %v: f32")
    verify(parse(text))  # moved, still before use
    bad = GOOD.replace("[%s, 2, 4]", "[%t, 2, 4]")
    with pytest.raises(VerifyError, match="reads %t"):
        verify(parse(bad))
