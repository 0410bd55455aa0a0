"""Whole-model prediction (sparsecc.cost.graph): what runs as one kernel, and sibling GEMMs."""
import torch

from sparsecc.capture import capture
from sparsecc.cost import default_cost_model
from sparsecc.cost.graph import predict_graph
from sparsecc.plan import sibling_groups
from sparsecc.targets import get_target

MODEL = default_cost_model(get_target("h200"))


class _Rotary(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x, cos, sin):
        q = self.lin(x).reshape(2, 4, 4, 4)          # a view between the GEMM and the chain
        x1, x2 = q[..., :2], q[..., 2:]
        rot = torch.cat([-x2, x1], -1)
        return (q * cos + rot * sin).relu()


def test_fused_prediction_joins_elementwise_ops_through_views():
    g = capture(_Rotary().eval(), (torch.randn(2, 4, 16), torch.randn(4, 4), torch.randn(4, 4)))
    p = predict_graph(g, MODEL, {}, "f16")
    kernels = [t for t in p.nodes if t.kind != "view" and t.us > 0]
    assert [t.op for t in kernels] == ["linear", "neg", "cat", "mul.Tensor", "mul.Tensor",
                                       "add.Tensor", "relu"]
    # fused: the GEMM, neg (its reader, cat, is a copy of its own), cat, and one kernel for
    # both multiplies, the add and the relu, which read q through slices and views
    assert p.fused_kernels == 4
    assert 0 < p.fused_us < p.total_us


class _Qkv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = (torch.nn.Linear(64, n, bias=False) for n in (64, 16, 16))

    def forward(self, x):
        return self.q(x).sum(-1) + self.k(x).sum(-1) + self.v(x).sum(-1)


def test_siblings_are_priced_as_one_stacked_gemm():
    g = capture(_Qkv().eval(), (torch.randn(8, 64),))
    groups = sibling_groups(g)
    assert len(groups) == 1 and len(groups[0]) == 3
    alone = predict_graph(g, MODEL, {}, "f16")
    stacked = predict_graph(g, MODEL, {}, "f16", groups)
    layers = [t for t in stacked.nodes if t.kind == "layer"]
    assert [t.source for t in layers[1:]] == ["fused", "fused"]
    assert [t.us for t in layers[1:]] == [0.0, 0.0]
    assert layers[0].us == MODEL.predict((96, 64), "linear", "dense", 8, "f16").us
    assert stacked.total_us < alone.total_us
