import pytest
import torch

from sparsecc.errors import SparseccError
from sparsecc.ir import Interpreter, parse, run

TEXT = """\
graph g(%x: f32[batch, 16]) {
  param %w: f32[8, 16]
  param %b: f32[8]
  %h: f32[batch, 8] = linear(%x, %w, %b)
  %r: f32[batch, 8] = relu(%h)
  %a: f32[batch, 4], %c: f32[batch, 4] = split.Tensor(%r) {split_size=4, dim=-1}
  %s: sym[] = sym_size.int(%x) {dim=0}
  %t: sym[] = sym.mul(%s) {a=%s, b=4}
  %v: f32[4*batch] = reshape(%c) {shape=[%t]}
  return %a, %v
}
"""


def _graph():
    g = parse(TEXT)
    gen = torch.Generator().manual_seed(0)
    g.params["w"] = torch.randn(8, 16, generator=gen)
    g.params["b"] = torch.randn(8, generator=gen)
    return g


def test_interpreter_matches_torch():
    g = _graph()
    x = torch.randn(5, 16)
    a, v = run(g, [x])
    h = torch.relu(x @ g.params["w"].T + g.params["b"])
    assert torch.allclose(a, h[:, :4])
    assert torch.allclose(v, h[:, 4:].reshape(-1))
    (a2, _), = [run(g, {"x": x})]
    assert torch.equal(a, a2)


def test_interpreter_input_errors():
    g = _graph()
    with pytest.raises(SparseccError, match="takes 1 inputs"):
        run(g, [])
    with pytest.raises(SparseccError, match="unknown \\['y'\\]"):
        run(g, {"x": torch.randn(2, 16), "y": 1})


def test_parameters_without_tensors_are_refused():
    with pytest.raises(SparseccError, match="without tensors"):
        Interpreter(parse(TEXT))


def test_failing_node_is_named():
    g = _graph()
    with pytest.raises(SparseccError, match="node linear -> h failed"):
        run(g, [torch.randn(2, 15)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_interpreter_on_gpu():
    g = _graph()
    x = torch.randn(3, 16)
    ref = run(g, [x])
    out = run(g, [x], device="cuda")
    assert all(torch.allclose(o.cpu(), r, atol=1e-5) for o, r in zip(out, ref))
