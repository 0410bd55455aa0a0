"""Channel groups are complete: removing a group's channels physically gives exactly the
model whose group weights are zeroed (checked on the zoo and on random networks)."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

from sparsecc import models
from sparsecc.capture import capture
from sparsecc.ir import run, verify
from sparsecc.passes.group_channels import group_channels
from sparsecc.passes.shrink_channels import shrink_graph, zero_channels


def random_removals(groups, gen, fraction=None):
    out = {}
    for gi, grp in enumerate(groups):
        if not grp.prunable:
            continue
        n = int(torch.randint(1, grp.size, (1,), generator=gen)) if fraction is None \
            else max(1, int(grp.size * fraction))
        out[gi] = torch.randperm(grp.size, generator=gen)[:n].sort().values
    return out


def masked_torch_model(model, graph, groups, removals):
    """A copy of the PyTorch model with the removed channels' weights zeroed."""
    zeroed = zero_channels(graph, groups, removals)
    masked = copy.deepcopy(model)
    state = masked.state_dict()
    for name in state:
        if name in zeroed.params:
            state[name] = zeroed.params[name]
    masked.load_state_dict(state)
    return masked, zeroed


def check_shrink(model, inputs, dynamic_dims, seed=0, tol=1e-6, fraction=None):
    g = capture(model, inputs, dynamic_dims=dynamic_dims)
    groups = group_channels(g)
    removals = random_removals(groups, torch.Generator().manual_seed(seed), fraction)
    shrunk = shrink_graph(g, groups, removals)
    verify(shrunk)
    masked_model, zeroed = masked_torch_model(model, g, groups, removals)
    with torch.no_grad():
        ref = masked_model(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    outs = run(shrunk, inputs)
    for o, r in zip(outs, ref):
        err = (o - r).abs().max().item() / max(r.abs().max().item(), 1e-30)
        assert err <= tol, f"shrunk vs masked: relative error {err:.3g}"
    return g, groups, removals, shrunk


@pytest.mark.parametrize("name", models.names())
def test_zoo_shrunk_equals_masked(name, require_weights):
    require_weights(name)
    z = models.get(name, tiny=True)
    before = {k: v.clone() for k, v in z.model.state_dict().items()}
    g, groups, removals, shrunk = check_shrink(z.model, z.example_inputs, z.dynamic_dims)
    assert removals, f"{name}: no prunable channel group"
    n_before = sum(t.numel() for t in g.params.values())
    assert sum(t.numel() for t in shrunk.params.values()) < n_before
    for k, v in z.model.state_dict().items():
        assert torch.equal(v, before[k]), f"the user's {k} changed"


def test_tiny_llama_groups():
    z = models.get("tiny-llama", tiny=True)
    groups = group_channels(capture(z.model, z.example_inputs, dynamic_dims=z.dynamic_dims))
    by_root = {grp.root: grp for grp in groups}
    attn = by_root["layers.0.self_attn.q_proj"]
    assert attn.prunable and attn.size == 2  # 2 KV heads, each with its 2 query heads
    assert attn.producers == ("layers.0.self_attn.q_proj", "layers.0.self_attn.k_proj",
                              "layers.0.self_attn.v_proj")
    assert attn.consumers == ("layers.0.self_attn.o_proj",)
    q = attn.member("layers.0.self_attn.q_proj.weight", 0).channel
    k = attn.member("layers.0.self_attn.k_proj.weight", 0).channel
    head_dim = 16
    assert torch.equal(q, torch.arange(64) // (2 * head_dim))  # query heads 0,1 -> kv head 0
    assert torch.equal(k, torch.arange(32) // head_dim)
    mlp = by_root["layers.0.mlp.gate_proj"]
    assert mlp.size == 176 and mlp.consumers == ("layers.0.mlp.down_proj",)
    stream = by_root["embed_tokens"]
    assert not stream.prunable and "rms_norm normalizes" in stream.reason
    assert not by_root["lm_head"].prunable and "graph output" in by_root["lm_head"].reason


def test_tiny_llama_without_half_its_gqa_groups_equals_masked_reference():
    z = models.get("tiny-llama", tiny=True)
    g = capture(z.model, z.example_inputs, dynamic_dims=z.dynamic_dims)
    groups = group_channels(g)
    attn = [i for i, grp in enumerate(groups) if grp.root.endswith("self_attn.q_proj")]
    removals = {i: torch.tensor([1]) for i in attn}   # drop KV head 1 and its query heads
    shrunk = shrink_graph(g, groups, removals)
    verify(shrunk)
    assert tuple(shrunk.params["layers.0.self_attn.q_proj.weight"].shape) == (32, 64)
    assert tuple(shrunk.params["layers.0.self_attn.k_proj.weight"].shape) == (16, 64)
    assert tuple(shrunk.params["layers.0.self_attn.o_proj.weight"].shape) == (64, 32)
    masked, _ = masked_torch_model(z.model, g, groups, removals)
    ids = torch.randint(0, 256, (3, 11))
    with torch.no_grad():
        ref = masked(ids)
    out = run(shrunk, [ids])[0]
    assert (out - ref).abs().max() <= 1e-6 * ref.abs().max()
    with torch.no_grad():
        assert not torch.allclose(z.model(ids), ref), "removing heads changed nothing?"


# ---- random networks: residuals, concats, splits, GQA attention -----------------------------

class Block(nn.Module):
    def __init__(self, kind, width, p):
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.up, self.down = nn.Linear(width, p["hidden"]), nn.Linear(p["hidden"], width)
        elif kind == "swiglu":
            self.gate = nn.Linear(width, p["hidden"], bias=False)
            self.up = nn.Linear(width, p["hidden"], bias=False)
            self.down = nn.Linear(p["hidden"], width, bias=False)
        elif kind == "concat":
            self.a, self.b = nn.Linear(width, p["hidden"]), nn.Linear(width, p["hidden2"])
            self.proj = nn.Linear(p["hidden"] + p["hidden2"], width)
        elif kind == "split":
            self.fc = nn.Linear(width, p["hidden"] + p["hidden2"])
            self.sizes = [p["hidden"], p["hidden2"]]
            self.proj = nn.Linear(p["hidden"] + p["hidden2"], width)
        elif kind == "gqa":
            self.h, self.kv, self.d = p["heads"], p["kv"], p["head_dim"]
            self.q = nn.Linear(width, self.h * self.d)
            self.k = nn.Linear(width, self.kv * self.d)
            self.v = nn.Linear(width, self.kv * self.d)
            self.o = nn.Linear(self.h * self.d, width)
            self.explicit = p["explicit_repeat"]

    def forward(self, x):
        if self.kind == "mlp":
            return x + self.down(F.gelu(self.up(x)))
        if self.kind == "swiglu":
            return x + self.down(F.silu(self.gate(x)) * self.up(x))
        if self.kind == "concat":
            return x + self.proj(torch.cat([F.relu(self.a(x)), torch.tanh(self.b(x))], -1))
        if self.kind == "split":
            a, b = self.fc(x).split(self.sizes, dim=-1)
            return x + self.proj(torch.cat([b * 2, F.relu(a)], -1))
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k(x).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v(x).view(b, t, self.kv, self.d).transpose(1, 2)
        if self.explicit:
            r = self.h // self.kv
            k = k[:, :, None].expand(b, self.kv, r, t, self.d).reshape(b, self.h, t, self.d)
            v = v[:, :, None].expand(b, self.kv, r, t, self.d).reshape(b, self.h, t, self.d)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return x + self.o(y.transpose(1, 2).reshape(b, t, self.h * self.d))


class RandomNet(nn.Module):
    def __init__(self, width, blocks):
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.blocks = nn.ModuleList(Block(kind, width, p) for kind, p in blocks)
        self.head = nn.Linear(width, 5)

    def forward(self, x):
        x = self.inp(x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x)


block_params = st.fixed_dictionaries({
    "hidden": st.integers(2, 12), "hidden2": st.integers(2, 7), "heads": st.sampled_from([2, 4, 6]),
    "kv_div": st.sampled_from([1, 2]), "head_dim": st.sampled_from([2, 4]),
    "explicit_repeat": st.booleans()})
blocks = st.lists(st.tuples(st.sampled_from(["mlp", "swiglu", "concat", "split", "gqa"]),
                            block_params), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(3, 10), spec=blocks, seed=st.integers(0, 2**16))
def test_random_networks_every_consumer_is_in_its_group(width, spec, seed):
    torch.manual_seed(seed)
    spec = [(kind, {**p, "kv": p["heads"] // p["kv_div"]}) for kind, p in spec]
    model = RandomNet(width, spec).eval()
    x = torch.randn(2, 5, 8)
    g, groups, removals, shrunk = check_shrink(model, (x,), {"x": {0: "batch", 1: "seq"}},
                                               seed=seed, tol=2e-5)
    stream = next(grp for grp in groups if grp.root == "inp")
    assert stream.prunable, stream.reason          # the residual stream couples every block
    assert set(stream.consumers) >= {"head"}
    for i, (kind, p) in enumerate(spec):
        if kind == "gqa":
            attn = next(grp for grp in groups if grp.root == f"blocks.{i}.q")
            assert attn.consumers == (f"blocks.{i}.o",)
            if p["kv"] == 1:  # one KV head shared by all queries (MQA)
                # with an explicit repeat each query head can go on its own; through
                # enable_gqa the unit KV axis blocks the group (conservative, still exact)
                assert attn.size == p["heads"] if attn.prunable else "unit" in attn.reason
            else:
                assert attn.prunable and attn.size == p["kv"]
