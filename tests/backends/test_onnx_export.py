"""backends/onnx: IR graphs, captured from small torch modules or written as text, exported to ONNX.

Each exported model must pass `onnx.checker.check_model(full_check=True)` and give the
interpreter's outputs in ONNX Runtime (CPU) for inputs of other sizes than the capture example
(dynamic dims). Tolerances: fp32 1e-4 relative (max |diff| / max |ref|); ints and bools exact.
"""
import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers

from sparsecc import models
from sparsecc.backends.onnx import OnnxExportError, export_onnx, run_onnx
from sparsecc.backends.onnx.export import tensor_proto
from sparsecc.capture import capture
from sparsecc.errors import CaptureError
from sparsecc.ir import Graph, Node, Value, parse, run, verify

TOL = 1e-4


def _compare(g, batches, assert_close, **kw) -> onnx.ModelProto:
    model = export_onnx(g, **kw)
    onnx.checker.check_model(model, full_check=True)
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    assert [t.name for t in model.graph.initializer if t.name not in read] == []
    for inputs in batches:
        ref = run(g, inputs)
        got = [torch.from_numpy(np.asarray(o)) for o in run_onnx(model, inputs)]
        assert [o.dtype for o in got] == [r.dtype for r in ref]
        assert_close(got, ref, TOL)
    return model


def _randn(*shape):
    return torch.randn(*shape, generator=_GEN)


_GEN = torch.Generator().manual_seed(0)


# -- models -------------------------------------------------------------------------------
class MiniLlama(nn.Module):
    """RMSNorm (hand-written and nn.RMSNorm), RoPE, GQA causal SDPA, SwiGLU, no biases."""

    def __init__(self, d=32, heads=4, kv=2, ff=48, vocab=50):
        super().__init__()
        self.h, self.kv, self.hd = heads, kv, d // heads
        self.emb = nn.Embedding(vocab, d)
        self.n1_w = nn.Parameter(torch.randn(d))
        self.n2 = nn.RMSNorm(d, eps=1e-5)
        self.q, self.o = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.k, self.v = (nn.Linear(d, kv * self.hd, bias=False) for _ in range(2))
        self.g, self.u = (nn.Linear(d, ff, bias=False) for _ in range(2))
        self.dn = nn.Linear(ff, d, bias=False)
        self.register_buffer("inv_freq", 1 / 10000 ** (torch.arange(0, self.hd, 2) / self.hd))

    @staticmethod
    def rope(x, cos, sin):
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def forward(self, ids):
        b, t = ids.shape
        x = self.emb(ids)
        freqs = torch.arange(t).float()[:, None] * self.inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos()[None, None], angles.sin()[None, None]
        y = self.n1_w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
        q = self.q(y).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k(y).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(y).view(b, t, self.kv, self.hd).transpose(1, 2)
        a = F.scaled_dot_product_attention(self.rope(q, cos, sin), self.rope(k, cos, sin), v,
                                           is_causal=True, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        y = self.n2(x)
        return x + self.dn(F.silu(self.g(y)) * self.u(y))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.down(x))


class MiniResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.block, self.fc = Block(8, 16, 2), nn.Linear(16, 10)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.block(self.stem(x)), 1), 1))


class CNN(nn.Module):
    """Dilated "same" conv, depthwise and grouped convs, ceil-mode pools, group/batch/layer norm."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3, padding="same", dilation=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.gc = nn.Conv2d(8, 12, (3, 1), stride=(2, 1), padding=(1, 0), groups=4)
        self.gn, self.pw = nn.GroupNorm(4, 12), nn.Conv2d(12, 6, 1)
        self.bn, self.ln = nn.BatchNorm2d(6, affine=False), nn.LayerNorm(6)
        self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        y = F.hardswish(self.a(x))
        y = torch.sigmoid(self.dw(y)) * y
        y = F.avg_pool2d(y, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        y = F.max_pool2d(y, 2, ceil_mode=True) + F.avg_pool2d(y, 2, ceil_mode=True)
        y = self.bn(self.pw(self.gn(torch.tanh(self.gc(y)))))
        z = F.adaptive_avg_pool2d(y, (3, 2)) + F.adaptive_max_pool2d(y, (3, 5))[..., :2]
        return z, self.ln(y.permute(0, 2, 3, 1))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(4, 8, 5, stride=2, padding=2)
        self.d = nn.Conv1d(8, 8, 3, padding="same", dilation=3, groups=8, bias=False)
        self.ln = nn.LayerNorm(8, elementwise_affine=False)

    def forward(self, x):
        y = F.gelu(self.c(x), approximate="tanh")
        y = F.max_pool1d(self.d(y), 3, stride=1, padding=1) + F.avg_pool1d(y, 3, 1, 1)
        y = self.ln(y.transpose(1, 2)).transpose(1, 2)
        return (y, F.adaptive_avg_pool1d(y, 1), y.repeat(1, 2, 1), y.repeat_interleave(2, dim=1),
                y[0].T, y.repeat_interleave(3), y.repeat(2, 1, 1, 1))


class Attention(nn.Module):
    def forward(self, q, k, v, bool_mask, float_mask):
        return (F.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask),
                F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask, scale=0.3),
                F.scaled_dot_product_attention(q, k[:, :, :-1], v[:, :, :-1], is_causal=True))


class Elementwise(nn.Module):
    def forward(self, x, y):
        a = torch.clamp(x, -0.5, 0.7) + torch.clamp_min(y, 0.1) - torch.clamp_max(x, 0.2) * 2
        b = (torch.div(x, y.abs() + 1, rounding_mode="floor")
             + torch.div(x * 7, 3.0, rounding_mode="trunc"))
        c = x.pow(3) + torch.pow(2.0, y) + (y.abs() + 0.1).pow(x) + 1.5 - x / 3 + (2 - x)
        d = (torch.exp(x) + torch.log(y.abs() + 1) + torch.sqrt(x.abs())
             + torch.reciprocal(y.abs() + 1) + torch.sin(x) * torch.cos(y))
        e = (F.hardtanh(x, -0.3, 0.4) + F.hardswish(y) + F.hardsigmoid(x) + F.leaky_relu(y, 0.2)
             + F.elu(x) + F.elu(y, alpha=0.5) + torch.erf(y))
        f = F.gelu(x) + F.gelu(y, approximate="tanh") + torch.minimum(x, y) + torch.maximum(x, y)
        g = (torch.where(x > y, x, y * 2) + x.masked_fill(y < 0, -1.5) + torch.softmax(x, -1)
             + torch.log_softmax(y, 1))
        h = (x * x.shape[1] + (x >= 0.1).float() + (x <= y).to(torch.float32) + (x != y).float()
             + (x == x).float() + (y < 0).float())
        i = ((x > 0) & (y > 0)) | ~(x < -1)
        k = torch.logical_and(x > 0, torch.logical_not(y > 0)) | torch.logical_or(x > 1, y > 1)
        return a, b, c, d, e, f, g, h, i, k


class Reductions(nn.Module):
    def forward(self, x):
        a = x.mean() + x.sum() + x.mean(dim=(1, 2), keepdim=True) + x.sum(-1, keepdim=True)
        b = x.amax(dim=1) + x.var(dim=1, correction=1)
        c = x.amin(dim=(0, 2), keepdim=True) + x.var(2, correction=0, keepdim=True)
        values, indices = x.max(dim=-1)
        d = torch.cumsum(x, dim=1) + torch.cumsum((x > 0).int(), dim=2)
        return a, b, c + x.var(correction=2), values, indices, d, x.sum(dtype=torch.float64)


class Shapes(nn.Module):
    def forward(self, x):  # [batch, seq, 12]
        b, t, _ = x.shape
        p, q, r = x.split(4, dim=-1)
        u, v = x.split([5, 7], dim=2)
        c1, c2, c3 = x.chunk(3, dim=-1)
        s = torch.stack([p, q, r], dim=1)
        w = s.permute(0, 2, 3, 1).flatten(2)
        z = w.reshape(b * t, 12).view(b, t, 3, 4).transpose(-1, -2).contiguous()
        n = x.narrow(2, 1, 5) + x[:, :, 2:7] + x[..., -5:]
        e = (x[:, :1].expand(b, t, 12) + x[:, 0:1, :].expand_as(x) + x.unsqueeze(1).squeeze(1)
             + x[:, None].squeeze(1))
        first, _, last = torch.unbind(s, dim=1)
        h1, h2 = x.chunk(2, dim=1)  # sizes ⌈seq/2⌉ and the rest, computed at run time
        return (h1.sum(1) - h2.sum(1), torch.cat([x, w], dim=1), n, e, x.select(1, -1) + x[:, 0],
                x.transpose(0, 1), z, c1 - c3 + c2, u.sum(-1) + v.sum(-1), first + last,
                x.flatten(), x.reshape(b, t // 2, -1))


class Indexing(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("pair", torch.tensor([0, -1]))

    def forward(self, x, idx):  # x [batch, seq, 8], idx [k] in [0, 8)
        rows = torch.arange(x.shape[0])
        expanded = idx.view(1, 1, -1).expand(x.shape[0], x.shape[1], -1)
        return (x.index_select(2, idx), torch.gather(x, 2, expanded), x[:, :, idx],
                x[rows, :, idx[:1]],                                          # split: dims first
                x[rows[:, None], torch.arange(1, x.shape[1], 2)[None, :]],  # adjacent at 0
                x[:, self.pair, idx[:2]])                                     # adjacent at 1


class Creation(nn.Module):
    def forward(self, x):
        b, t = x.shape
        a = (torch.arange(t, dtype=torch.float32) + torch.arange(2, t + 2)
             + torch.arange(0, 2 * t, 2))
        z = (torch.zeros(b, t) + torch.ones(b, 1) + torch.full((b, t), 2.5) + x.new_ones(b, t)
             + x.new_zeros((t,)) + x.new_full((1, t), 3.0))
        return a, z, (torch.ones_like(x) + torch.zeros_like(x) + torch.full_like(x, 7)
                      + torch.arange(0.5, 3.0, 0.5).sum())


class Mats(nn.Module):
    def __init__(self):
        super().__init__()
        self.w, self.bias = nn.Parameter(torch.randn(6, 5)), nn.Parameter(torch.randn(5))

    def forward(self, x, y):  # x [batch, 4, 6], y [batch, 6, 3]
        a = torch.bmm(x, y) + torch.baddbmm(torch.ones(1, 1, 3), x, y, beta=0.5, alpha=2.0)
        b = (torch.matmul(x, self.w) + torch.addmm(self.bias, x[0], self.w)
             + torch.addmm(self.bias, x[0], self.w, beta=0, alpha=3))
        c = torch.mm(x[0], self.w) + F.linear(x, self.w.t()) + F.linear(x, self.w.t(), self.bias)
        return a, b, c


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=4, intermediate_size=64,
                                  max_position_embeddings=64)
    return transformers.BertModel(cfg)


def _padded_mask(batch, seq):
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq // 2:] = 0
    return mask


_BOOL_MASK = torch.rand(3, 1, 7, 9, generator=_GEN) > 0.3
_BOOL_MASK[..., 0] = True
_IDS = torch.randint(0, 50, (4, 11), generator=_GEN)
_SEQ = {0: "batch", 1: "seq"}
CASES = {  # model, example inputs, dynamic dims, inputs of other sizes
    "mini-llama": (MiniLlama, (_IDS[:2, :5],), {"ids": _SEQ}, (_IDS[:3, :9],)),
    "bert": (_bert, (_IDS[:2, :7], torch.ones(2, 7, dtype=torch.long)),
             {"input_ids": _SEQ, "attention_mask": _SEQ}, (_IDS[:3], _padded_mask(3, 11))),
    "resnet": (MiniResNet, (_randn(2, 3, 32, 32),), {"x": {0: "batch", 2: "h", 3: "w"}},
               (_randn(3, 3, 45, 37),)),
    "cnn": (CNN, (_randn(2, 4, 16, 16),), {"x": {0: "batch"}}, (_randn(3, 4, 16, 16),)),
    "conv1d": (Conv1dNet, (_randn(2, 4, 20),), {"x": {0: "batch", 2: "len"}},
               (_randn(3, 4, 33),)),
    "attention": (Attention, (_randn(2, 3, 5, 8), _randn(2, 3, 6, 8), _randn(2, 3, 6, 8),
                              _BOOL_MASK[:2, :, :5, :6], _randn(5, 6)),
                  {"q": {0: "batch", 2: "l"}, "k": {0: "batch", 2: "s"}, "v": {0: "batch", 2: "s"},
                   "bool_mask": {0: "batch", 2: "l", 3: "s"}, "float_mask": {0: "l", 1: "s"}},
                  (_randn(3, 3, 7, 8), _randn(3, 3, 9, 8), _randn(3, 3, 9, 8), _BOOL_MASK,
                   _randn(7, 9))),
    "elementwise": (Elementwise, (_randn(2, 5), _randn(2, 5)), {"x": _SEQ, "y": _SEQ},
                    (_randn(3, 7), _randn(3, 7))),
    "reductions": (Reductions, (_randn(2, 5, 6),), {"x": _SEQ}, (_randn(3, 7, 6),)),
    "shapes": (Shapes, (_randn(2, 6, 12),), {"x": _SEQ}, (_randn(3, 8, 12),)),
    "indexing": (Indexing, (_randn(2, 6, 8), torch.tensor([3, 1, 4])),
                 {"x": _SEQ, "idx": {0: "k"}}, (_randn(3, 9, 8), torch.tensor([7, 0, 5, 2]))),
    "creation": (Creation, (_randn(2, 6),), {"x": _SEQ}, (_randn(3, 9),)),
    "matmuls": (Mats, (_randn(2, 4, 6), _randn(2, 6, 3)), {"x": {0: "batch"}, "y": {0: "batch"}},
                (_randn(5, 4, 6), _randn(5, 6, 3))),
}


@pytest.mark.parametrize("name", CASES)
def test_captured_model_matches_interpreter(name, assert_close):
    make, example, dynamic_dims, other = CASES[name]
    torch.manual_seed(0)
    g = capture(make().eval(), example, dynamic_dims=dynamic_dims)
    model = _compare(g, [other], assert_close)
    names = [i.name for i in model.graph.input]
    assert names == g.inputs and [o.name for o in model.graph.output] == g.outputs
    dims = {d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim}
    assert {d for axes in dynamic_dims.values() for d in axes.values()} <= dims


# -- ops that capture rarely produces, written as IR text ----------------------------------
MISC = """\
graph misc(%x: f32[batch, 6], %m: bool[batch, 6], %v: f32[], %k: i64[batch, 6]) {
  %s: sym[] = sym_size.int(%x) {dim=0}
  %s2: sym[] = sym.sub(%s) {a=%s, b=1}
  %s3: sym[] = sym.mod(%s) {a=7, b=%s}
  %a: f32[batch, 6] = add.Scalar(%x) {other=2.0, alpha=3}
  %b: f32[batch, 6] = sub.Scalar(%a) {other=1}
  %c: f32[batch, 6] = mul.Scalar(%b) {other=0.5}
  %d: f32[batch, 6] = div.Scalar(%c) {other=4}
  %e: f32[batch, 6] = masked_fill.Tensor(%d, %m, %v)
  %g: f32[batch, 6] = _softmax(%e) {dim=1, half_to_float=False}
  %h: f32[batch, 6] = clone(%g)
  %i: f32[batch, 6] = alias(%h)
  %j: f32[batch, 6] = detach(%i)
  %l: f64[batch, 6] = _to_copy(%j) {dtype=f64}
  %n: f32[batch, 6] = type_as(%l, %x)
  %o: bool[batch, 6] = eq.Scalar(%x) {other=0}
  %p: bool[batch, 6] = ne.Scalar(%k) {other=2}
  %q: bool[batch, 6] = le.Scalar(%x) {other=%s2}
  %r: bool[batch, 6] = lt.Tensor(%x, %n)
  %t: bool[batch, 6] = ge.Tensor(%k, %x)
  %u: bool[batch, 6] = bitwise_or.Tensor(%o, %p)
  %w: bool[batch, 6] = bitwise_and.Tensor(%u, %q)
  %y: i64[batch, 6] = bitwise_and.Tensor(%k, %k)
  %z: i64[batch, 6] = bitwise_or.Tensor(%y, %k)
  %aa: i64[batch, 6] = mul.Tensor(%z, %s3)
  %ab: f32[batch, 6] = to.dtype_layout(%aa) {dtype=f32}
  %ac: f32[batch, 6] = to.other(%r, %x)
  %ad: f32[batch, 6] = to.device(%t) {dtype=f32}
  %ae: f32[batch, 1, 6, 1] = _unsafe_view(%ad) {size=[%s, 1, 6, 1]}
  %af: f32[batch, 6] = squeeze.dims(%ae) {dim=[1, 3]}
  %sq: f32[batch, 6] = squeeze(%ae)
  %ab1: f32[batch, 6] = abs(%ab)
  %ab2: f32[batch, 6] = add.Scalar(%ab1) {other=1}
  %ag: f32[batch, 6] = rsqrt(%ab2)
  %ah: f32[batch, 6], %ah_1: bool[batch, 6] = native_dropout(%af) {p=0.5, train=False}
  %ai: f32[batch, 6] = feature_dropout(%ah) {p=0.5, train=False}
  %aj: f32[batch, 6] = dropout(%ai) {p=0.5, train=False}
  %ak: f32[batch, 6] = lift_fresh_copy(%aj)
  %al: i64[batch, 6] = div.Tensor_mode(%k, %aa) {rounding_mode="floor"}
  %am: i64[batch, 6] = div.Tensor_mode(%k, %aa) {rounding_mode="trunc"}
  %an0: f32[batch, 6] = neg(%ag)
  %an1: f32[batch, 6] = add.Tensor(%an0, %x)
  %an: f32[batch, 6] = elu(%an1) {alpha=1.5, scale=2.0, input_scale=0.5}
  return %n, %w, %ac, %an, %ak, %ah_1, %al, %am, %z, %sq
}
"""

NN = """\
graph nn(%x: f32[batch, 4, 9, 9]) {
  param %w: f32[8, 2, 3, 3]
  param %wt: f32[4, 3, 3, 3]
  param %bt: f32[6]
  param %mean: f32[4]
  param %var: f32[4]
  %c: f32[batch, 8, 5, 5] = convolution(%x, %w, _) {stride=[2, 2], padding=[2, 2], dilation=[2, 2], transposed=False, output_padding=[0, 0], groups=2}
  %ct: f32[batch, 6, 18, 18] = convolution(%x, %wt, %bt) {stride=[2, 2], padding=[1, 1], dilation=[1, 1], transposed=True, output_padding=[1, 1], groups=2}
  %bn: f32[batch, 4, 9, 9], %bn_1: f32[4], %bn_2: f32[4] = _native_batch_norm_legit_no_training(%x, _, _, %mean, %var) {momentum=0.1, eps=1e-05}
  %bt2: f32[batch, 4, 9, 9] = batch_norm(%bn, _, _, _, _) {training=True, momentum=0.1, eps=1e-05, cudnn_enabled=False}
  %rn: f32[batch, 4, 9, 9] = rms_norm(%bt2) {normalized_shape=[9, 9]}
  %gn: f32[batch, 4, 9, 9] = group_norm(%rn) {num_groups=2}
  %mp: f32[batch, 4, 3, 3] = max_pool2d(%gn) {kernel_size=[3, 3], stride=[2, 2], dilation=[2, 2]}
  %ap: f32[batch, 4, 3, 3] = avg_pool2d(%gn) {kernel_size=[3, 3], stride=[3, 3]}
  %am: f32[batch, 4, 2, 4], %am_1: i64[batch, 4, 2, 4] = adaptive_max_pool2d(%gn) {output_size=[2, 4]}
  return %c, %ct, %mp, %ap, %am
}
"""


def _with_params(text):
    g = parse(text)
    gen = torch.Generator().manual_seed(1)
    for p in g.param_names:
        g.params[p] = torch.randn(tuple(g.values[p].shape), generator=gen)
    if "var" in g.params:
        g.params["var"] = g.params["var"].abs() + 0.5
    verify(g)
    return g


def test_misc_ops_from_text(assert_close):
    x = _randn(4, 6)
    x[0, 0] = 0
    k = torch.randint(1, 6, (4, 6), generator=_GEN) * (torch.rand(4, 6, generator=_GEN) > 0.5) * 2
    k = k - (k == 0).long() * 3  # nonzero divisors of both signs
    _compare(_with_params(MISC), [[x, torch.rand(4, 6) > 0.5, torch.tensor(3.5), k]],
             assert_close)


def test_nn_ops_from_text(assert_close):
    model = _compare(_with_params(NN), [[_randn(3, 4, 9, 9)]], assert_close)
    ops = {n.op_type for n in model.graph.node}
    assert {"ConvTranspose", "BatchNormalization", "MaxPool"} <= ops


def test_gelu_uses_the_opset_20_op_only_when_asked(assert_close):
    class Gelus(nn.Module):
        def forward(self, x):
            return F.gelu(x), F.gelu(x, approximate="tanh")

    g = capture(Gelus(), (_randn(2, 8),), dynamic_dims={"x": {0: "batch"}})
    m18 = _compare(g, [[_randn(5, 8) * 3]], assert_close)
    m20 = _compare(g, [[_randn(5, 8) * 3]], assert_close, opset=20)
    assert "Gelu" not in {n.op_type for n in m18.graph.node}
    gelus = [n for n in m20.graph.node if n.op_type == "Gelu"]
    assert sorted(a.s for n in gelus for a in n.attribute) == [b"none", b"tanh"]
    with pytest.raises(OnnxExportError, match="opset 17"):
        export_onnx(g, opset=17)


# -- names, metadata, files ---------------------------------------------------------------
SPLIT = """\
graph g(%x: f32[batch, 16]) {
  param %w: f32[8, 16]
  param %b: f32[8]
  param %unused: f32[3]
  %h: f32[batch, 8] = linear(%x, %w, %b)
  %r: f32[batch, 8] = relu(%h)
  %a: f32[batch, 4], %c: f32[batch, 4] = split.Tensor(%r) {split_size=4, dim=-1}
  %s: sym[] = sym_size.int(%x) {dim=0}
  %t: sym[] = sym.mul(%s) {a=%s, b=4}
  %v: f32[4*batch] = reshape(%c) {shape=[%t]}
  return %a, %v
}
"""


def test_names_metadata_and_atomic_write(tmp_path, assert_close):
    g = _with_params(SPLIT)
    path = tmp_path / "g.onnx"
    model = export_onnx(g, path, node_metadata={"h": {"sparsecc.pattern": "2:4"}})
    assert model.producer_name == "sparsecc"
    assert sorted(p.name for p in model.graph.initializer if "/" not in p.name) == ["b", "w"]
    (out_v,) = [o for o in model.graph.output if o.name == "v"]
    assert out_v.type.tensor_type.shape.dim[0].dim_param == "4*batch"
    tags = {}
    for n in model.graph.node:
        meta = {p.key: p.value for p in n.metadata_props}
        tags.setdefault(meta["sparsecc.node"], []).append(meta)
    assert set(tags) == {n.outputs[0] for n in g.nodes}
    assert all(m.get("sparsecc.pattern") == "2:4" for m in tags["h"])
    assert not any("sparsecc.pattern" in m for name in tags if name != "h" for m in tags[name])
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]  # no temporary file left
    (tmp_path / "plain").write_bytes(b"")
    assert path.stat().st_mode == (tmp_path / "plain").stat().st_mode  # umask, not 0600
    (tmp_path / "plain").unlink()
    assert onnx.load(str(path)).SerializeToString() == model.SerializeToString()
    x = _randn(5, 16)
    got = [torch.from_numpy(o) for o in run_onnx(str(path), [x])]
    assert_close(got, run(g, [x]), TOL)
    with pytest.raises(OnnxExportError, match="nope"):
        export_onnx(g, node_metadata={"nope": {"k": "v"}})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int8,
                                   torch.int64, torch.bool])
def test_tensor_bytes_round_trip(dtype):
    t = (torch.randn(3, 5, generator=_GEN) * 4).to(dtype)
    back = onnx.numpy_helper.to_array(tensor_proto("t", t[:, ::2]))
    assert back.shape == (3, 3)
    assert np.array_equal(back.astype(np.float32), t[:, ::2].float().numpy())


# -- refusals -----------------------------------------------------------------------------
def test_op_without_lowering_is_named():
    g = Graph(inputs=[Value("x", ("n",), "f32")], nodes=[Node("fancy_op", ("x",), ("y",))],
              values=[Value("y", ("n",), "f32")], outputs=["y"])
    with pytest.raises(OnnxExportError, match=r"no ONNX lowering for op fancy_op \(node %y\)"):
        export_onnx(g)


@pytest.mark.parametrize("x_type, lines, why", [
    ("f32[n, 4]", "%y: f32[n, 4] = dropout(%x) {p=0.5, train=True}",
     r"op dropout \(node %y\): .*training mode"),
    ("f32[n, 4]", "%y: f32[n, 4] = scaled_dot_product_attention(%x, %x, %x) {dropout_p=0.1}",
     r"\(node %y\): dropout_p"),
    ("f32[n, 4]", '%y: f32[n, 4] = gelu(%x) {approximate="fast"}', "approximate='fast'"),
    ("f32[n, 4]", "%s: f32[n] = select.int(%x) {dim=1, index=0}\n"
                  "  %i: bool[n] = gt.Scalar(%s) {other=0}\n"
                  "  %y: f32[n, 4] = index.Tensor(%x, %i)", r"index.Tensor \(node %y\): boolean"),
    ("f32[n, 4, 4]", "%y: f32[n, 2, 2], %y_1: i64[n, 2, 2] = adaptive_max_pool2d(%x) "
                     "{output_size=[2, 2]}\n  %z: f32[n, 2, 2] = add.Tensor(%y, %y_1)",
     "output %y_1 is read"),
    ("f32[n, 4]", "%q: sym[] = sym_size.int(%x) {dim=0}\n"
                  "  %t: sym[] = sym.truediv(%q) {a=%q, b=2}", r"op sym.truediv \(node %t\)"),
])
def test_inexact_lowerings_are_refused(x_type, lines, why):
    g = parse(f"graph g(%x: {x_type}) {{\n  {lines}\n  return %x\n}}\n")
    g.outputs = [g.nodes[-1].outputs[0]]
    with pytest.raises(OnnxExportError, match=why):
        export_onnx(g)


# -- the zoo ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", models.names())
def test_zoo_model_exports(name, assert_close, other_sizes, require_weights):
    require_weights(name)
    z = models.get(name, tiny=True)
    try:
        g = capture(z.model, z.example_inputs, dynamic_dims=z.dynamic_dims, name=z.name)
    except CaptureError as e:  # reported by tests/capture/test_zoo_capture.py
        pytest.skip(f"capture fails: {str(e).splitlines()[0]}")
    _compare(g, [other_sizes(z, 1)], assert_close)
