"""What users write, captured: in-place activations, padding modules and F.pad, unflatten —
functionalized or decomposed by torch.export into IR ops — and a channel plan through a padded
conv net that ONNX Runtime and the torch artifact run as the IR does."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sparsecc
from sparsecc.capture import capture
from sparsecc.ir import run


class PaddedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d(1)
        self.c = nn.Conv2d(3, 8, 3)
        self.act = nn.Sequential(nn.ReLU(inplace=True), nn.Hardswish(inplace=True),
                                 nn.SiLU(inplace=True))
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        y = self.act(self.c(self.pad(x)))
        y = self.c2(F.pad(y, (1, 1, 2, 0), value=0.5))
        y = F.adaptive_avg_pool2d(y, 4).flatten(1)
        return self.fc(y.unflatten(1, (8, 16)).flatten(1))


def test_in_place_ops_padding_and_unflatten_are_captured():
    m, x = PaddedNet().eval(), torch.randn(2, 3, 8, 8)
    g = capture(m, (x,), dynamic_dims={"x": {0: "batch"}})
    ops = {n.op for n in g.nodes}
    assert {"relu", "hardswish", "silu", "constant_pad_nd"} <= ops
    assert not {o for o in ops if o.endswith("_") or o in ("pad", "unflatten.int")}
    with torch.no_grad():
        torch.testing.assert_close(run(g, (torch.randn(5, 3, 8, 8),))[0].shape,
                                   torch.Size([5, 10]))
        torch.testing.assert_close(run(g, (x,))[0], m(x))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_a_channel_plan_through_padding_runs(backend):
    m, x = PaddedNet().eval(), torch.randn(2, 3, 8, 8)
    cfg = sparsecc.CompileConfig(target="cpu-x86", backend=backend, dtype="f32",
                                 overrides={"c": "channel0.5"})
    r = sparsecc.compile(m, (x,), cfg, dynamic_dims={"x": {0: "batch"}})
    assert r.plan["c"].chosen == "channel0.5"
    assert r.ir.params["c.weight"].shape[0] == 4
    x2 = torch.randn(3, 3, 8, 8)
    ref = run(r.ir, (x2,))[0]
    if backend == "onnx":
        out = r.onnx_session("cpu").run(None, {r.ir.inputs[0]: x2.numpy()})[0]
    else:
        with torch.no_grad():
            out = r.module(x2).numpy()
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-5, rtol=1e-4)


def test_padding_the_channel_axis_blocks_its_group():
    class PadChannels(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(10, 4)

        def forward(self, x):
            return self.b(F.pad(self.a(x), (1, 1)))
    m, x = PadChannels().eval(), torch.randn(2, 8)
    cfg = sparsecc.CompileConfig(target="cpu-x86", dtype="f32", overrides={"a": "channel0.5"})
    with pytest.raises(sparsecc.ConfigError, match="constant_pad_nd pads this axis"):
        sparsecc.compile(m, (x,), cfg)


def test_padding_lowers_to_tvm():
    pytest.importorskip("tvm")

    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad, self.c = nn.ZeroPad2d(1), nn.Conv2d(3, 8, 3)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.c(self.pad(x)))
            return self.c2(F.pad(y, (1, 1, 2, 0), value=0.5)).contiguous()
    m, x = Padded().eval(), torch.randn(2, 3, 8, 8)
    r = sparsecc.compile(m, (x,), sparsecc.CompileConfig(target="cpu-x86", backend="tvm",
                                                         dtype="f32",
                                                         overrides={"c": "channel0.5"}))
    assert r.plan["c"].chosen == "channel0.5"
    torch.testing.assert_close(r.artifact(x), run(r.ir, (x,))[0], atol=1e-5, rtol=1e-4)
