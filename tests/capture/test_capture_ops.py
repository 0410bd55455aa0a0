"""Every op family the capture must support: capture -> print -> parse equal, verify, and the
interpreter equals PyTorch (fp32, 1e-5 relative) at sizes other than the captured ones."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sparsecc.capture import capture
from sparsecc.ir import parse, print_graph, run, verify


class Lambda(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleList(mods)

    def forward(self, x0, x1=None, x2=None, x3=None):
        return self.fn(self.mods, *[x for x in (x0, x1, x2, x3) if x is not None])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=gen(seed))


B = {0: "batch"}
BS = {"x0": {0: "batch", 1: "seq"}}

CASES = {
    "linear": (lambda m, x: m[0](x), [nn.Linear(16, 8)], [(2, 5, 16)], BS, [(3, 7, 16)]),
    "addmm-mm-bmm-matmul": (
        lambda m, x, y: torch.addmm(m[0].bias, x, m[0].weight.T) + (x @ m[0].weight.T)
        + torch.mm(x, m[0].weight.T) + torch.bmm(x.unsqueeze(0), y.unsqueeze(0)).squeeze(0)
        + torch.matmul(x, y),
        [nn.Linear(16, 8)], [(4, 16), (16, 8)], {"x0": B}, [(6, 16), (16, 8)]),
    "conv1d": (lambda m, x: m[0](x), [nn.Conv1d(4, 6, 3, padding=1)], [(2, 4, 10)],
               {"x0": {0: "batch", 2: "seq"}}, [(3, 4, 13)]),
    "conv2d-groups-depthwise-bn-relu": (
        lambda m, x: F.relu(m[2](m[1](m[0](x)))),
        [nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.Conv2d(8, 8, 3, padding="same",
                                                                       groups=8, dilation=2),
         nn.BatchNorm2d(8)], [(2, 4, 12, 12)], {"x0": B}, [(3, 4, 12, 12)]),
    "norms": (lambda m, x: m[1](m[0](x)) + F.rms_norm(x, (16,), eps=1e-6),
              [nn.LayerNorm(16), nn.RMSNorm(16)], [(2, 3, 16)], BS, [(4, 5, 16)]),
    "embedding": (lambda m, i: m[0](i).sum(-1), [nn.Embedding(50, 8)], [("int", 50, (2, 6))],
                  BS, [("int", 50, (3, 9))]),
    "activations": (
        lambda m, x: F.relu(x) + F.gelu(x) + F.gelu(x, approximate="tanh") + F.silu(x)
        + torch.sigmoid(x) + torch.tanh(x) + F.softmax(x, -1) + F.log_softmax(x, 1),
        [], [(2, 6, 8)], BS, [(3, 4, 8)]),
    "arithmetic": (
        lambda m, x, y: (x + y) * (x - 2.0) / (y.abs() + 1) - x.neg() + x.pow(2)
        + torch.rsqrt(y.abs() + 1) + 3 - x * 0.5 + x / 4,
        [], [(2, 8), (2, 8)], {"x0": B, "x1": B}, [(5, 8), (5, 8)]),
    "shapes": (
        lambda m, x: torch.cat([x.reshape(x.shape[0], -1), x.view(x.shape[0], 4, 6).permute(0, 2, 1)
                                .transpose(1, 2).flatten(1),
                                x[:, 1:3].flatten(1)[:, :1].expand(-1, 24)], dim=1),
        [], [(2, 4, 6)], {"x0": B}, [(3, 4, 6)]),
    "split-chunk-squeeze": (
        lambda m, x: sum(t.squeeze(1) for t in torch.split(x.unsqueeze(1), 2, dim=-1))
        + torch.chunk(x, 2, dim=-1)[1].repeat_interleave(2, -1).repeat(1, 2).sum(-1, keepdim=True),
        [], [(2, 8)], {"x0": B}, [(3, 8)]),
    "sdpa": (lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
             [], [(2, 4, 6, 8)] * 3, {"x0": {0: "batch", 2: "seq"}, "x1": {0: "batch", 2: "seq"},
                                      "x2": {0: "batch", 2: "seq"}}, [(3, 4, 5, 8)] * 3),
    "sdpa-mask-gqa": (
        lambda m, q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask > 0,
                                                                enable_gqa=True, scale=0.3),
        [], [(1, 4, 6, 8), (1, 2, 6, 8), (1, 2, 6, 8), (1, 1, 6, 6)], {}, None),
    "pooling": (
        lambda m, x: torch.cat([F.max_pool2d(x, 3, 2, 1).flatten(1),
                                F.avg_pool2d(x, 2).flatten(1),
                                F.adaptive_avg_pool2d(x, 1).flatten(1),
                                x.mean((2, 3)), x.mean(-1).mean(-1)], 1),
        [], [(2, 3, 8, 8)], {"x0": B}, [(4, 3, 8, 8)]),
    "pool1d": (lambda m, x: F.max_pool1d(x, 2) .sum(-1) + F.avg_pool1d(x, 2).sum(-1)
               + F.adaptive_avg_pool1d(x, 1).squeeze(-1), [], [(2, 3, 8)], {"x0": B}, [(3, 3, 8)]),
}


def _inputs(specs, seed):
    out = []
    for i, s in enumerate(specs):
        if s[0] == "int":
            out.append(torch.randint(0, s[1], s[2], generator=gen(seed + i)))
        else:
            out.append(rand(*s, seed=seed + i))
    return out


def _randomize_bn(model):
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            g = gen(7)
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g))
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_capture_op_family(case, assert_close):
    fn, mods, shapes, dyn, run_shapes = CASES[case]
    torch.manual_seed(0)
    model = Lambda(fn, *mods).eval()
    _randomize_bn(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = _inputs(shapes, 0)
    g = capture(model, example, dynamic_dims=dyn)
    text = print_graph(g)
    assert parse(text) == g
    verify(g)
    xs = _inputs(run_shapes, 10) if run_shapes else _inputs(shapes, 10)
    with torch.no_grad():
        ref = model(*xs)
    assert_close(run(g, xs), ref, 1e-5)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"capture modified the model's {k}"


def test_dynamic_dims_are_named():
    model = Lambda(lambda m, x: m[0](x), nn.Linear(16, 8)).eval()
    g = capture(model, [rand(2, 5, 16)], dynamic_dims=BS)
    assert g.values[g.inputs[0]].shape == ("batch", "seq", 16)
    assert g.values[g.outputs[0]].shape == ("batch", "seq", 8)
