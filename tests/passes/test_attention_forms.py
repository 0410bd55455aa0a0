"""Attention however it is written ties K's and V's heads to Q's: SDPA and explicit
matmul/softmax/matmul give the same channel groups, and a channel plan on K or V alone is never
applied: heads leave Q, K and V together (the compiled model runs and equals the IR)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sparsecc
from sparsecc.capture import capture
from sparsecc.ir import run
from sparsecc.passes.group_channels import group_channels


class Attention(torch.nn.Module):
    def __init__(self, explicit, heads=4, kv_heads=4, dim=32):
        super().__init__()
        self.explicit, self.h, self.kvh, self.d = explicit, heads, kv_heads, dim // heads
        self.q = torch.nn.Linear(dim, dim)
        self.k = torch.nn.Linear(dim, kv_heads * self.d)
        self.v = torch.nn.Linear(dim, kv_heads * self.d)
        self.o = torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k(x).view(b, t, self.kvh, self.d).transpose(1, 2)
        v = self.v(x).view(b, t, self.kvh, self.d).transpose(1, 2)
        if self.kvh != self.h:           # HF's repeat_kv
            rep = self.h // self.kvh
            k = k[:, :, None].expand(b, self.kvh, rep, t, self.d).reshape(b, self.h, t, self.d)
            v = v[:, :, None].expand(b, self.kvh, rep, t, self.d).reshape(b, self.h, t, self.d)
        if self.explicit:
            p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.d), dim=-1)
            y = p @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(b, t, -1))


def _producers(graph):
    return sorted(tuple(sorted(g.producers)) + (g.prunable,) for g in group_channels(graph)
                  if set(g.producers) & {"q", "k", "v"})


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_explicit_attention_groups_like_sdpa(kv_heads):
    x = torch.randn(2, 5, 32)
    explicit = capture(Attention(True, kv_heads=kv_heads).eval(), (x,))
    sdpa = capture(Attention(False, kv_heads=kv_heads).eval(), (x,))
    got = _producers(explicit)
    assert got == _producers(sdpa)
    # K and V never form a group of their own: wherever they are, Q is too
    for producers in got:
        if {"k", "v"} & set(producers[:-1]):
            assert "q" in producers[:-1]


@pytest.mark.parametrize("explicit", [True, False])
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_channel_plan_on_k_or_v_yields_a_model_that_runs(explicit, backend):
    torch.manual_seed(0)
    m = Attention(explicit).eval()
    x = torch.randn(2, 5, 32)
    cfg = sparsecc.CompileConfig(target="h100", backend=backend, dtype="f32", reconstruct=False,
                                 patterns=("dense",), overrides={"[kv]": "channel0.5"})
    r = sparsecc.compile(m, (x,), cfg)
    ref = run(r.ir, (x,))[0]
    if backend == "onnx":
        out = r.onnx_session("cpu").run(None, {r.ir.inputs[0]: x.numpy()})[0]
        np.testing.assert_allclose(out, ref.numpy(), atol=1e-5, rtol=1e-4)
    else:
        torch.testing.assert_close(r.module(x), ref, atol=1e-5, rtol=1e-4)
    # heads go from Q, K and V together, and the report says so for Q too
    shapes = {n: r.ir.params[f"{n}.weight"].shape[0] for n in "qkv"}
    assert shapes["q"] == shapes["k"] == shapes["v"] < 32
    assert {d.layer.name: d.chosen for d in r.plan.decisions if d.layer.name in "qkv"} == \
        {"q": "channel0.5", "k": "channel0.5", "v": "channel0.5"}
