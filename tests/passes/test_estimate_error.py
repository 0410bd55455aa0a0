"""The output-error proxy tr(dW H dW^T) / tr(W H W^T) against the measured output error."""
import pytest
import torch

from sparsecc.capture import capture
from sparsecc.ir import parse
from sparsecc.passes.estimate_error import EstimateError, relative_output_error
from sparsecc.passes.score_importance import stream_layer_stats
from sparsecc.patterns import NM, Block, Channel
from sparsecc.pipeline import PassContext
from sparsecc.plan import Candidate, Decision, Plan, find_layers

PATTERNS = ("2:4", "block4x8@0.5", "channel0.5+2:4", "channel0.5", "dense", "1:3")


def _correlated(rows: int, cols: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=gen) + 2.0 * torch.eye(cols)
    return torch.randn(rows, cols, generator=gen) @ mix + 0.5 * torch.randn(cols, generator=gen)


@pytest.fixture(scope="module")
def one_linear():
    model = torch.nn.Linear(32, 16, bias=False).eval()
    g = capture(model, (torch.zeros(4, 32),), dynamic_dims={"input": {0: "batch"}})
    return model, g


@pytest.mark.parametrize("pattern", [NM(2, 4), Block(4, 8, 0.5)])
def test_proxy_equals_measured_error(one_linear, pattern):
    model, g = one_linear
    calib = [(_correlated(64, 32, seed),) for seed in range(3)]
    [(layer, stats)] = list(stream_layer_stats(g, calib, find_layers(g)))
    w = g.params[layer.weight]
    masked = w * pattern.mask(w)
    x = torch.cat([b[0] for b in calib]).double()
    wd, md = w.double(), masked.double()
    measured = ((wd - md) @ x.T).pow(2).sum() / (wd @ x.T).pow(2).sum()
    proxy = relative_output_error(w, masked, stats.gram)
    assert proxy == pytest.approx(float(measured), rel=1e-2)
    assert 0.0 < proxy < 1.0
    iso = relative_output_error(w, masked)   # isotropic fallback: ||dW||^2 / ||W||^2
    assert iso == pytest.approx(float((wd - md).pow(2).sum() / wd.pow(2).sum()), rel=1e-12)


def test_diagonal_gram_weights_inputs():
    w = torch.tensor([[1.0, 1.0]])
    masked = torch.tensor([[1.0, 0.0]])
    assert relative_output_error(w, masked, torch.tensor([1.0, 3.0])) == pytest.approx(0.75)
    assert relative_output_error(w, w) == 0.0
    assert relative_output_error(torch.zeros(2, 2), torch.zeros(2, 2)) == 0.0


def _plan(g):
    return Plan(tuple(Decision(l, "dense", "by hand", tuple(Candidate(p) for p in PATTERNS))
                      for l in find_layers(g)))


def test_pass_fills_candidate_errors(one_linear):
    model, graph = one_linear
    g = graph.copy()
    g.analyses["plan"] = _plan(g)
    calib = [(_correlated(64, 32, seed),) for seed in range(2)]
    with_data = EstimateError().run(g, PassContext(calibration=calib))
    without = EstimateError().run(g, PassContext())
    [d] = with_data.graph.analyses["plan"].decisions
    errs = {c.pattern: c for c in d.candidates}
    assert errs["dense"].error == 0.0
    assert errs["channel0.5"].error is None, "channel errors are left to the group passes"
    assert errs["1:3"].error is None and "K=32 not divisible by 3" in errs["1:3"].reason
    assert 0.0 < errs["2:4"].error < errs["channel0.5+2:4"].error < 1.0
    stats = dict(stream_layer_stats(g, calib, find_layers(g)))
    w = g.params["weight"]
    assert errs["block4x8@0.5"].error == pytest.approx(
        relative_output_error(w, w * Block(4, 8, 0.5).mask(w), next(iter(stats.values())).gram))
    [d0] = without.graph.analyses["plan"].decisions
    iso = {c.pattern: c.error for c in d0.candidates}
    assert iso["2:4"] == pytest.approx(relative_output_error(w, w * NM(2, 4).mask(w)))
    assert iso["2:4"] != errs["2:4"].error
    assert "isotropic" in without.report["source"]
    assert all(c.error is None for c in g.analyses["plan"].decisions[0].candidates)


def test_pass_uses_importance_for_masks():
    g = parse("""\
graph g(%x: f32[batch, 8]) {
  param %fc.weight: f32[2, 8]
  %y: f32[batch, 2] = linear(%x, %fc.weight, _)
  return %y
}
""")
    g.params["fc.weight"] = torch.ones(2, 8)
    g.analyses["plan"] = _plan(g)
    by_index = torch.arange(16.0).reshape(2, 8)
    calib = [(torch.eye(8) * torch.arange(1.0, 9.0),)]   # input j has norm j + 1
    g.analyses["importance"] = {"fc": by_index}
    r = EstimateError().run(g, PassContext(calibration=calib))
    err = {c.pattern: c.error for c in r.graph.analyses["plan"]["fc"].candidates}
    n = torch.arange(1.0, 9.0) ** 2   # kept: the higher index of each pair -> inputs 3,4,7,8
    assert err["2:4"] == pytest.approx(float((n[[0, 1, 4, 5]].sum()) / n.sum()))


def test_conv_uses_per_channel_norms():
    g = parse("""\
graph g(%x: f32[batch, 4, 3, 3]) {
  param %c.weight: f32[8, 4, 1, 1]
  %y: f32[batch, 8, 3, 3] = conv2d(%x, %c.weight, _)
  return %y
}
""")
    g.params["c.weight"] = torch.randn(8, 4, 1, 1, generator=torch.Generator().manual_seed(0))
    g.analyses["plan"] = _plan(g)
    x = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    r = EstimateError().run(g, PassContext(calibration=[(x,)]))
    err = {c.pattern: c.error for c in r.graph.analyses["plan"]["c"].candidates}
    w = g.params["c.weight"]
    masked = w * NM(2, 4).mask(w)
    # 1x1 conv = linear over channels: with uncorrelated channels the diagonal is the answer
    n = x.double().pow(2).sum(dim=(0, 2, 3))
    dw = (w - masked).double().reshape(8, 4)
    assert err["2:4"] == pytest.approx(float((dw.pow(2) * n).sum() /
                                             (w.double().reshape(8, 4).pow(2) * n).sum()))
    assert Channel(0.5).check((8, 4, 1, 1), "conv2d") is None
