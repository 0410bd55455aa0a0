"""ApplyMasks: masked weights match a masked PyTorch copy; the user's model is untouched."""
import copy

import pytest
import torch

from sparsecc import models
from sparsecc.capture import capture
from sparsecc.ir import Interpreter, parse, print_graph, verify
from sparsecc.passes.apply_masks import ApplyMasks
from sparsecc.patterns import NM, Block
from sparsecc.pipeline import PassContext, Pipeline
from sparsecc.plan import Decision, Plan, find_layers

TWO = """\
graph g(%x: f32[batch, 10]) {
  param %a.weight: f32[16, 10]
  param %b.weight: f32[8, 16]
  param %c.weight: f32[16, 8]
  %h: f32[batch, 16] = linear(%x, %a.weight, _)
  %y: f32[batch, 8] = linear(%h, %b.weight, _)
  %z: f32[batch, 8] = mm(%h, %c.weight)
  return %y, %z
}
"""


def _plan(graph, chosen):
    """A hand-made plan: {layer name: pattern}, other layers dense."""
    return Plan(tuple(Decision(l, chosen.get(l.name, "dense"), "by hand")
                      for l in find_layers(graph)))


@pytest.fixture(scope="module")
def llama():
    z = models.get("tiny-llama", tiny=True)
    g = capture(z.model, z.example_inputs, dynamic_dims=z.dynamic_dims)
    return z, g


def test_mlp_2_4_matches_a_masked_pytorch_copy(llama):
    z, graph = llama
    originals = {k: v.detach().clone() for k, v in z.model.state_dict().items()}
    g = graph.copy()
    mlp = {l.name: "2:4" for l in find_layers(g) if ".mlp." in l.name}
    assert len(mlp) == 6
    g.analyses["plan"] = _plan(g, mlp)
    pipe = Pipeline([ApplyMasks()], verify_each=True)
    out_graph = pipe.run(g)
    report = pipe.records[0].report
    assert report["applied"] == mlp and report["skipped"] == {}

    ref = copy.deepcopy(z.model)
    with torch.no_grad():
        for name in mlp:
            lin = ref.get_submodule(name)
            lin.weight.copy_(lin.weight * NM(2, 4).mask(lin.weight))
        expected = ref(*z.example_inputs)
    got = Interpreter(out_graph).run(z.example_inputs)[0]
    scale = expected.abs().max()
    assert float((got - expected).abs().max() / scale) <= 1e-5

    for name in mlp:   # the weights really are 2:4, and dense elsewhere
        w = out_graph.params[f"{name}.weight"]
        assert ((w != 0).reshape(-1, 4).sum(dim=1) <= 2).all()
    assert out_graph.params["layers.0.self_attn.q_proj.weight"] is \
        graph.params["layers.0.self_attn.q_proj.weight"], "unmasked weights are shared"

    for k, v in z.model.state_dict().items():
        assert torch.equal(v, originals[k]), f"the user's model changed: {k}"
    assert graph.params["layers.0.mlp.up_proj.weight"].count_nonzero() == \
        graph.params["layers.0.mlp.up_proj.weight"].numel(), "the input graph changed"

    marked = {n.outputs[0]: n.attrs.get("sparsity") for n in out_graph.nodes}
    for layer in find_layers(out_graph):
        assert marked[layer.node] == mlp.get(layer.name), layer.name
    assert parse(print_graph(out_graph)) == out_graph
    assert out_graph != graph, "the annotation is part of the graph"


def test_bad_shapes_stay_dense_with_the_reason():
    g = parse(TWO)
    gen = torch.Generator().manual_seed(0)
    for p in g.param_names:
        g.params[p] = torch.randn(g.values[p].shape, generator=gen)
    g.analyses["plan"] = _plan(g, {"a": "2:4", "b": "block4x4@0.5", "c": "block5x4@0.5"})
    r = ApplyMasks().run(g, PassContext())
    assert r.report["skipped"] == {"a": "K=10 not divisible by 4",
                                   "c": "out=8 not divisible by block rows 5"}
    assert r.report["applied"] == {"b": "block4x4@0.5"}
    plan = r.graph.analyses["plan"]
    assert plan["a"].chosen == "dense" and "K=10 not divisible by 4" in plan["a"].reason
    assert plan["a"].candidates[-1].pattern == "2:4"
    assert plan["b"].chosen == "block4x4@0.5"
    assert r.graph.params["a.weight"] is g.params["a.weight"]
    b = r.graph.params["b.weight"]
    assert torch.equal(b, g.params["b.weight"] * Block(4, 4, 0.5).mask(g.params["b.weight"]))
    assert g.analyses["plan"]["a"].chosen == "2:4", "the input plan is unchanged"
    verify(r.graph)


def test_mm_weights_are_masked_in_the_layer_layout():
    g = parse(TWO)
    gen = torch.Generator().manual_seed(1)
    for p in g.param_names:
        g.params[p] = torch.randn(g.values[p].shape, generator=gen)
    g.analyses["plan"] = _plan(g, {"c": "channel0.5+2:4"})
    r = ApplyMasks().run(g, PassContext())
    c = r.graph.params["c.weight"]            # [in=16, out=8]; groups of 4 run along `in`
    assert c.shape == (16, 8)
    assert ((c.T != 0).reshape(-1, 4).sum(dim=1) == 2).all()
    assert r.report["applied"] == {"c": "2:4"}
    assert {n.outputs[0]: n.attrs.get("sparsity") for n in r.graph.nodes}["z"] == "2:4"


def test_importance_scores_pick_the_mask():
    g = parse(TWO)
    for p in g.param_names:
        g.params[p] = torch.ones(g.values[p].shape)
    scores = torch.arange(8 * 16, dtype=torch.float32).reshape(8, 16)
    g.analyses["plan"] = _plan(g, {"b": "2:4"})
    g.analyses["importance"] = {"b": scores}
    r = ApplyMasks().run(g, PassContext())
    assert torch.equal(r.graph.params["b.weight"] != 0, NM(2, 4).mask(scores))


TIED = """\
graph g(%x: f32[batch, 8]) {
  param %fc.weight: f32[8, 8]
  %h: f32[batch, 8] = linear(%x, %fc.weight, _)
  %y: f32[batch, 8] = linear(%h, %fc.weight, _)
  return %y
}
"""


def test_tied_weights_are_masked_once_and_only_when_plans_agree():
    g = parse(TIED)
    g.params["fc.weight"] = torch.randn(8, 8, generator=torch.Generator().manual_seed(2))
    assert [l.name for l in find_layers(g)] == ["fc", "fc#1"]
    g.analyses["plan"] = _plan(g, {"fc": "2:4", "fc#1": "2:4"})
    r = ApplyMasks().run(g, PassContext())
    assert r.report["applied"] == {"fc": "2:4", "fc#1": "2:4"}
    w = r.graph.params["fc.weight"]
    assert ((w != 0).reshape(-1, 4).sum(dim=1) == 2).all()
    assert [n.attrs.get("sparsity") for n in r.graph.nodes] == ["2:4", "2:4"]

    g.analyses["plan"] = _plan(g, {"fc": "2:4"})
    r = ApplyMasks().run(g, PassContext())
    assert r.report["applied"] == {}
    assert "shared by layers ['fc', 'fc#1']" in r.report["skipped"]["fc"]
    assert r.graph.params["fc.weight"] is g.params["fc.weight"]
    assert r.graph.analyses["plan"]["fc"].chosen == "dense"
