"""Importance scores and the streamed calibration statistics."""
import pytest
import torch

from sparsecc.errors import ConfigError
from sparsecc.ir import Interpreter, parse
from sparsecc.passes import score_importance as si
from sparsecc.passes.score_importance import (LayerStats, Method, ScoreImportance, magnitude,
                                              stream_layer_stats, taylor, taylor_scores, wanda)
from sparsecc.pipeline import PassContext
from sparsecc.plan import find_layers

MLP = """\
graph g(%x: f32[batch, seq, 8]) {
  param %fc1.weight: f32[12, 8]
  param %fc2.weight: f32[6, 12]
  param %fc3.weight: f32[5, 12]
  %h: f32[batch, seq, 12] = linear(%x, %fc1.weight, _)
  %a: f32[batch, seq, 12] = relu(%h)
  %y: f32[batch, seq, 6] = linear(%a, %fc2.weight, _)
  %s: f32[batch, seq, 5] = slice.Tensor(%a) {dim=2, start=0, end=5}
  %z: f32[batch, seq, 12] = matmul(%s, %fc3.weight)
  return %y, %z
}
"""

CONV = """\
graph g(%x: f32[batch, 4, 5, 5]) {
  param %c1.weight: f32[6, 2, 3, 3]
  %y: f32[batch, 6, 3, 3] = conv2d(%x, %c1.weight, _) {groups=2}
  return %y
}
"""


def _graph(text: str, seed: int = 0):
    g = parse(text)
    gen = torch.Generator().manual_seed(seed)
    for p in g.param_names:
        g.params[p] = torch.randn(g.values[p].shape, generator=gen)
    return g


def _calibration(shape, n=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=gen),) for _ in range(n)]


def _inputs_of(g, calib):
    """The input X of every layer node, rows [-1, in], over all calibration batches."""
    seen = {}

    def observe(node, inputs, result):
        if node.op in ("linear", "matmul"):
            seen.setdefault(node.outputs[0], []).append(inputs[0].reshape(-1, inputs[0].shape[-1]))
    interp = Interpreter(g)
    for batch in calib:
        interp.run(batch, observe)
    return {k: torch.cat(v).double() for k, v in seen.items()}


def test_gram_equals_xtx():
    g = _graph(MLP)
    calib = _calibration((2, 3, 8))
    layers = find_layers(g)
    xs = _inputs_of(g, calib)
    got = dict(stream_layer_stats(g, calib, layers))
    assert [l.name for l in got] == ["fc1", "fc2", "fc3"]
    for layer, stats in got.items():
        x = xs[layer.node]
        assert isinstance(stats, LayerStats) and stats.rows == x.shape[0] == 18
        assert stats.gram.dtype == torch.float64
        assert torch.allclose(stats.gram, x.T @ x, rtol=1e-12, atol=1e-12)
        assert torch.allclose(stats.sq_norm, (x * x).sum(0), rtol=1e-12)


def test_tiny_budget_sweeps_once_per_layer(monkeypatch):
    g = _graph(MLP)
    calib = _calibration((2, 3, 8))
    layers = find_layers(g)
    whole = dict(stream_layer_stats(g, calib, layers))
    runs = []
    real_run = Interpreter.run
    monkeypatch.setattr(Interpreter, "run", lambda self, *a, **k: runs.append(1) or
                        real_run(self, *a, **k))
    assert len(si.plan_sweeps(layers, max_bytes=1)) == len(layers)
    small = dict(stream_layer_stats(g, calib, layers, max_bytes=1))
    assert len(runs) == len(layers) * len(calib)
    runs.clear()
    dict(stream_layer_stats(g, calib, layers))
    assert len(runs) == len(calib), "everything fits: one sweep"
    for layer in layers:
        assert torch.equal(small[layer].gram, whole[layer].gram)
        assert small[layer].rows == whole[layer].rows


def test_stream_yields_each_sweep_before_the_next(monkeypatch):
    g = _graph(MLP)
    calib = _calibration((1, 2, 8), n=2)
    runs = []
    real_run = Interpreter.run
    monkeypatch.setattr(Interpreter, "run", lambda self, *a, **k: runs.append(1) or
                        real_run(self, *a, **k))
    it = stream_layer_stats(g, calib, find_layers(g), max_bytes=1)
    layer, _ = next(it)
    assert layer.name == "fc1" and len(runs) == len(calib), "one sweep per yielded layer"
    layer, _ = next(it)
    assert layer.name == "fc2" and len(runs) == 2 * len(calib)


def test_conv_stats_are_per_input_channel():
    g = _graph(CONV)
    calib = _calibration((2, 4, 5, 5))
    [(layer, stats)] = list(stream_layer_stats(g, calib, find_layers(g)))
    x = torch.cat([b[0] for b in calib]).double()
    assert stats.gram is None and stats.rows == 2 * 3 * 25
    assert torch.allclose(stats.sq_norm, x.pow(2).sum(dim=(0, 2, 3)))
    s = wanda(g.params["c1.weight"], stats.sq_norm)
    assert s.shape == (6, 2, 3, 3)
    # output channels 0-2 read input channels 0-1 (group 0), 3-5 read 2-3
    n = stats.sq_norm.sqrt()
    w = g.params["c1.weight"].abs().double()
    assert torch.allclose(s[4, 1].double(), w[4, 1] * n[3], rtol=1e-6)
    assert torch.allclose(s[1, 0].double(), w[1, 0] * n[0], rtol=1e-6)


def test_scorer_shapes_and_values():
    w = torch.tensor([[1.0, -2.0], [-3.0, 4.0]])
    assert torch.equal(magnitude(w), w.abs())
    assert torch.allclose(wanda(w, torch.tensor([4.0, 9.0])),
                          torch.tensor([[2.0, 6.0], [6.0, 12.0]]))
    assert torch.equal(taylor(w, torch.tensor([[1.0, 1.0], [0.5, -1.0]])),
                       torch.tensor([[1.0, 2.0], [1.5, 4.0]]))


def test_taylor_grad_equals_autograd():
    g = _graph(MLP)
    before = {k: v.clone() for k, v in g.params.items()}
    calib = _calibration((2, 3, 8))
    layers = find_layers(g)
    scores = taylor_scores(g, calib, layers)
    w1, w2, w3 = (g.params[f"fc{i}.weight"].clone().requires_grad_(True) for i in (1, 2, 3))
    loss = 0
    for (x,) in calib:
        a = torch.relu(x @ w1.T)
        y, z = a @ w2.T, a[..., :5] @ w3
        loss = loss + (0.5 * y.pow(2).mean() + 0.5 * z.pow(2).mean()) / len(calib)
    loss.backward()
    assert torch.allclose(scores["fc1"], (w1 * w1.grad).abs().detach(), rtol=1e-5, atol=1e-7)
    assert torch.allclose(scores["fc2"], (w2 * w2.grad).abs().detach(), rtol=1e-5, atol=1e-7)
    assert scores["fc3"].shape == (12, 5), "matmul scores are in the layer's [out, in] layout"
    assert torch.allclose(scores["fc3"], (w3 * w3.grad).abs().detach().T, rtol=1e-5, atol=1e-7)
    for k, v in g.params.items():
        assert not v.requires_grad and torch.equal(v, before[k])


def test_taylor_with_a_custom_loss():
    g = _graph(MLP)
    calib = _calibration((1, 2, 8), n=1)
    scores = taylor_scores(g, calib, find_layers(g), loss_fn=lambda outs: outs[0].sum() * 0)
    assert all(float(s.abs().sum()) == 0.0 for s in scores.values())


@pytest.mark.parametrize("method", ["magnitude", "wanda", "taylor", Method.WANDA])
def test_pass_provides_importance(method):
    g = _graph(MLP)
    r = ScoreImportance(method).run(g, PassContext(calibration=_calibration((2, 3, 8))))
    scores = r.graph.analyses["importance"]
    assert set(scores) == {"fc1", "fc2", "fc3"}
    assert scores["fc1"].shape == (12, 8) and scores["fc3"].shape == (12, 5)
    assert r.report["method"] == Method(method).value and "reason" not in r.report
    assert "importance" not in g.analyses, "the input graph is unchanged"
    if Method(method) is Method.WANDA:
        x = torch.cat([b[0] for b in _calibration((2, 3, 8))]).reshape(-1, 8)
        ref = g.params["fc1.weight"].abs() * x.pow(2).sum(0).sqrt()[None, :]
        assert torch.allclose(scores["fc1"], ref, rtol=1e-5)


def test_pass_falls_back_to_magnitude_without_calibration():
    g = _graph(MLP)
    r = ScoreImportance("wanda").run(g, PassContext())
    assert r.report["method"] == "magnitude" and "no calibration" in r.report["reason"]
    assert torch.equal(r.graph.analyses["importance"]["fc2"], g.params["fc2.weight"].abs())


def test_bad_method_is_named():
    with pytest.raises(ConfigError, match="magnitude, wanda, taylor"):
        ScoreImportance("fisher")
