"""Random networks with tied and shared weights x random plans: the written model is the masked
model, and every pattern the report names is in the artifact.

Networks: an embedding (sometimes tied to the LM head), a stack of Linear layers where some are
called twice or shared by two branches, a residual add. Plans: each layer named on its own
with dense, 2:4, block16x16@0.5 or channel0.5. A pattern on a shared weight is refused with
exit-2 error naming the weight; otherwise the torch artifact must equal the user's model with
the final masks on the same (possibly shared) tensors, the channel-removed graph must equal
the zeroed full-size one, and the artifact's kernels must be the report's patterns.
100 examples always; `slow` runs 1,000.
"""
import copy
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import sparsecc
from sparsecc.capture import capture
from sparsecc.errors import ConfigError
from sparsecc.ir import run
from sparsecc.passes.group_channels import group_channels
from sparsecc.passes.shrink_channels import zero_channels
from sparsecc.patterns import parse_pattern

PATTERNS = ["dense", "2:4", "block16x16@0.5", "channel0.5"]
H, V = 32, 48


class Net(torch.nn.Module):
    def __init__(self, depth, tie, reuse, branch):
        super().__init__()
        self.emb = torch.nn.Embedding(V, H)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(H, H) for _ in range(depth))
        self.reuse, self.branch = reuse, branch
        self.head = torch.nn.Linear(H, V, bias=False)
        if tie:
            self.head.weight = self.emb.weight

    def forward(self, ids):
        x = self.emb(ids)
        for i, layer in enumerate(self.layers):
            y = torch.relu(layer(x))
            if i in self.reuse:                  # the same Linear called twice
                y = layer(y)
            if i in self.branch and i + 1 < len(self.layers):
                y = y + self.layers[i + 1](x)    # a weight read by two branches
            x = x + y
        return self.head(x)


@st.composite
def cases(draw):
    depth = draw(st.integers(1, 3))
    net = dict(depth=depth, tie=draw(st.booleans()),
               reuse=draw(st.sets(st.integers(0, depth - 1), max_size=depth)),
               branch=draw(st.sets(st.integers(0, depth - 1), max_size=depth)))
    layers = [f"layers.{i}" for i in range(depth)] + ["head"]
    plan = {name: draw(st.sampled_from(PATTERNS)) for name in layers}
    return net, plan, draw(st.integers(0, 2 ** 16))


def _check(net_spec, plan, seed):
    torch.manual_seed(seed)
    model = Net(**net_spec).eval()
    ids = torch.randint(0, V, (2, 5))
    graph = capture(model, (ids,))
    names = {l.name for l in sparsecc.plan.find_layers(graph)}
    overrides = {k: v for k, v in plan.items() if k in names and v != "dense"}
    cfg = sparsecc.CompileConfig(target="h100", backend="torch", dtype="f32", reconstruct=False,
                                 patterns=("dense",), overrides=overrides)
    try:
        result = sparsecc.compile(model, (ids,), cfg)
    except ConfigError as e:
        # refused before any work: a shared weight, or a pattern that does not fit the layer
        assert "layer " in str(e) and ("shared" in str(e) or "can't apply" in str(e)), e
        return "refused"
    # every pattern the report names is what the artifact runs (and audit() passed)
    kernels = result.artifact.kernels()
    for d in result.plan.decisions:
        p = parse_pattern(d.chosen)
        fam = {"composite": "nm"}.get(p.kind, p.kind)
        assert kernels[d.layer.name]["family"] == (fam if fam in ("nm", "block") else "dense")
    with torch.no_grad():
        out = result.module(ids)
        assert torch.allclose(out, run(result.ir, (ids,))[0], atol=1e-5, rtol=1e-5)
        removed = result.ir.analyses.get("removed_channels") or {}
        # the user's model with the final masks on its (shared) tensors
        masked = copy.deepcopy(model)
        params = dict(masked.named_parameters(remove_duplicate=False))
        kept = result.ir.analyses.get("kept_positions") or {}
        for d in result.plan.decisions:
            if parse_pattern(d.chosen).kind in ("nm", "block", "composite"):
                w = params[d.layer.weight]
                final = result.ir.params[d.layer.weight]
                # the final (shrunk) weight's zeros, put back at its kept positions
                rows = kept.get((d.layer.weight, 0), torch.arange(w.shape[0]))
                cols = kept.get((d.layer.weight, 1), torch.arange(w.shape[1]))
                full = torch.zeros_like(w, dtype=torch.bool)
                full[rows[:, None], cols[None, :]] = final != 0
                w.mul_(full)
        if removed:
            reference = capture(masked, (ids,))
            groups = group_channels(reference)
            index = {g.root: i for i, g in enumerate(groups)}
            ref = run(zero_channels(reference, groups,
                                    {index[r]: v for r, v in removed.items()}), (ids,))[0]
        else:
            ref = masked(ids)
        assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), float((out - ref).abs().max())
    return "compiled"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_shared_weights_are_one_thing(case):
    _check(*case)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_shared_weights_are_one_thing_1000(case):
    _check(*case)
