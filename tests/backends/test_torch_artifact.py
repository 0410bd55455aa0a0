"""The torch artifact: a generated module with our sparse operators, torch.compile, save/load.

CPU tests check the operators' reference paths, the generated module against the IR
interpreter, torch.compile(fullgraph=True) on it, and saving/loading; the `cuda` tests run the
real kernels (cuSPARSELt, Triton) and are skipped without a GPU.
"""
import json
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import sparsecc
from sparsecc import models
from sparsecc.backends.torch import ops as sparse_ops
from sparsecc.backends.torch.artifact import ArtifactError, load_artifact
from sparsecc.backends.torch.bsr import pack_blocks
from sparsecc.ir import run
from sparsecc.patterns import NM

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _two_four(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    return torch.where(NM(2, 4).mask(w), w, 0.0)


def _outs(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _close(got, ref, tol=1e-5):
    for a, b in zip(_outs(got), _outs(ref)):
        scale = max(1.0, float(b.abs().max()))
        assert float((a.float() - b.float()).abs().max()) <= tol * scale


def _compile_zoo(name, pattern, target="h100", backend="torch", dtype="f32", **kw):
    z = models.get(name, tiny=True)
    cfg = sparsecc.CompileConfig(target=target, backend=backend, dtype=dtype,
                                 reconstruct=False, overrides={".*": pattern}, **kw)
    return z, sparsecc.compile(z.model, z.example_inputs, cfg, dynamic_dims=z.dynamic_dims,
                               name=name)


def _inputs(z):
    ins = z.example_inputs
    return list(ins.values()) if isinstance(ins, dict) else list(ins)


# -- operators ------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.floats(0.0, 1.0), st.integers(0, 2**16))
def test_2to4_compression_round_trips(n, groups, keep, seed):
    g = torch.Generator().manual_seed(seed)
    w = _two_four(n, 4 * groups, seed)
    w = w * (torch.rand(w.shape, generator=g) < keep)      # groups with fewer than two kept
    values, meta = sparse_ops.compress_2to4(w)
    assert values.shape == (n, 2 * groups) and meta.shape == (n, groups)
    assert meta.dtype == torch.uint8
    assert torch.equal(sparse_ops.decompress_2to4(values, meta), w)


def test_2to4_compression_refuses_a_dense_group():
    with pytest.raises(ValueError, match="more than two nonzeros"):
        sparse_ops.compress_2to4(torch.ones(2, 8))


def test_operators_equal_f_linear_and_pass_opcheck():
    w = _two_four(24, 32)
    b = torch.randn(24)
    x = torch.randn(2, 3, 32, requires_grad=True)
    values, meta = sparse_ops.compress_2to4(w)
    empty = torch.empty(0)
    y = torch.ops.sparsecc.linear_2to4(x, [values], [meta], empty, b)
    torch.testing.assert_close(y, F.linear(x, w, b))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(2, 3, 24) @ w)
    torch.library.opcheck(torch.ops.sparsecc.linear_2to4.default,
                          (x.detach(), [values], [meta], empty, b))
    # siblings stacked along N: one call, the stacked output, the gradient through both
    w2 = _two_four(8, 32, seed=3)
    v2, m2 = sparse_ops.compress_2to4(w2)
    x.grad = None
    y = torch.ops.sparsecc.linear_2to4(x, [values, v2], [meta, m2], empty, None)
    torch.testing.assert_close(y, F.linear(x, torch.cat([w, w2])))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(2, 3, 32) @ torch.cat([w, w2]))
    torch.library.opcheck(torch.ops.sparsecc.linear_2to4.default,
                          (x.detach(), [values, v2], [meta, m2], empty, None))
    wb = torch.randn(64, 96) * torch.tensor([1.0, 0.0, 1.0]).repeat_interleave(32)
    p = pack_blocks(wb, 32, 32)
    xb = torch.randn(5, 96)
    yb = torch.ops.sparsecc.linear_bsr(xb, p.blocks, p.row_ptr, p.col_idx, None, 96)
    torch.testing.assert_close(yb, F.linear(xb, wb), atol=1e-5, rtol=1e-5)
    torch.library.opcheck(torch.ops.sparsecc.linear_bsr.default,
                          (xb, p.blocks, p.row_ptr, p.col_idx, None, 96))


# -- the generated module -------------------------------------------------------------------
ZOO = ["tiny-llama", "mnist-cnn", "minilm", "tiny-resnet", "llama3-8b-layer", "resnet50"]


@pytest.mark.parametrize("pattern", ["2:4", "block16x16@0.5"])
@pytest.mark.parametrize("name", ZOO)
def test_artifact_equals_the_interpreter(name, pattern, require_weights):
    require_weights(name)
    z, r = _compile_zoo(name, pattern)
    ins = _inputs(z)
    sparse = [d.layer.name for d in r.plan.decisions if d.chosen == pattern]
    calls = r.module.op_calls()
    assert sorted(calls) == sorted(sparse)          # every sparse layer calls our operator
    assert set(calls.values()) == {"sparsecc::linear_2to4" if pattern == "2:4"
                                   else "sparsecc::linear_bsr"} or not sparse
    with torch.no_grad():
        _close(r.module(*ins), run(r.ir, ins))


@pytest.mark.parametrize("name", ZOO)
def test_torch_compile_fullgraph_equals_the_artifact(name, require_weights):
    require_weights(name)
    torch._dynamo.reset()
    z, r = _compile_zoo(name, "2:4")
    ins = _inputs(z)
    compiled = torch.compile(r.module, fullgraph=True)
    with torch.no_grad():
        _close(compiled(*ins), r.module(*ins))


def test_module_moves_and_casts_like_any_module():
    z, r = _compile_zoo("tiny-llama", "2:4")
    m = r.module
    x = _inputs(z)
    half = m.to(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    assert _outs(half(*x))[0].dtype == torch.bfloat16
    assert [k["kernel"] for k in m.kernel_table()] == \
        ["reference (dense): cpu: no 2:4 kernel"] * len(m.kernel_table())
    with pytest.raises(TypeError, match="expected 1 inputs"):
        m(*x, *x)


# -- save and load --------------------------------------------------------------------------
def test_save_and_load_give_identical_outputs_without_pickle(tmp_path):
    z, r = _compile_zoo("tiny-llama", "2:4", dtype="f32", patterns=("2:4", "dense"))
    out = r.save(tmp_path / "out")
    files = sorted(os.listdir(out))
    assert {"model.ir", "weights.safetensors", "manifest.json"} <= set(files)
    assert not [f for f in files if f.endswith((".pt", ".pth", ".pkl", ".bin"))]
    loaded = sparsecc.load(out)
    x = _inputs(z)
    with torch.no_grad():
        for a, b in zip(_outs(loaded(*x)), _outs(r.module(*x))):
            assert torch.equal(a, b)
    # 2:4 weights are stored compressed: half the values plus a byte per four
    from safetensors import safe_open
    with safe_open(os.path.join(out, "weights.safetensors"), "pt") as f:
        keys = set(f.keys())
    sparse = {d.layer.weight for d in r.plan.decisions if d.chosen == "2:4"}
    assert sparse and all(f"{w}.values" in keys and w not in keys for w in sparse)


def _saved(tmp_path):
    _, r = _compile_zoo("tiny-llama", "2:4")
    return r.save(tmp_path / "out")


def test_truncated_or_tampered_artifacts_are_refused_naming_the_file(tmp_path):
    out = _saved(tmp_path)
    weights = os.path.join(out, "weights.safetensors")
    data = open(weights, "rb").read()
    with open(weights, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="weights.safetensors.*truncated"):
        load_artifact(out)
    with open(weights, "wb") as f:
        f.write(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ArtifactError, match="weights.safetensors.*modified"):
        load_artifact(out)


def test_a_consistent_but_foreign_weight_file_is_refused(tmp_path):
    from safetensors.torch import save_file
    from sparsecc.backends.torch.artifact import MANIFEST, _sha256
    out = _saved(tmp_path)
    weights = os.path.join(out, "weights.safetensors")
    save_file({"x": torch.zeros(3)}, weights)
    manifest = json.load(open(os.path.join(out, MANIFEST)))
    manifest["files"]["weights.safetensors"] = {"bytes": os.path.getsize(weights),
                                                "sha256": _sha256(weights)}
    json.dump(manifest, open(os.path.join(out, MANIFEST), "w"))
    with pytest.raises(ArtifactError, match="tensors do not match model.ir"):
        load_artifact(out)
    os.remove(os.path.join(out, MANIFEST))
    with pytest.raises(ArtifactError, match="manifest.json: missing"):
        sparsecc.load(out)


def test_cli_compile_torch_writes_a_loadable_module(tmp_path, capsys):
    from sparsecc.cli import main
    out = tmp_path / "c"
    rc = main(["compile", "tiny-llama", "--target", "h100", "--tiny", "--backend", "torch",
               "--out", str(out)])
    assert rc == 0
    assert "weights.safetensors" in os.listdir(out)
    z = models.get("tiny-llama", tiny=True)
    m = sparsecc.load(out)
    assert isinstance(m, torch.nn.Module)
    assert _outs(m(*_inputs(z)))[0].shape == _outs(z.model(*_inputs(z)))[0].shape


# -- GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
def test_cuda_artifact_runs_our_kernels_and_compiles_with_cuda_graphs():
    z, r = _compile_zoo("tiny-llama", "2:4", dtype="f16")
    m = r.module.to("cuda")
    assert {k["kernel"] for k in m.kernel_table()} == {"cusparselt-2:4"}
    x = [t.cuda() for t in _inputs(z)]
    ref = run(r.ir, x, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        _close(m(*x), ref, tol=2e-2)
        compiled = torch.compile(m, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):
            got = compiled(*x)
        _close(got, ref, tol=2e-2)


# -- sibling layers as one GEMM -------------------------------------------------------------
class _Siblings(torch.nn.Module):
    """q/k/v-like siblings on one input (v without bias), one on another input, and a weight
    read twice (tied): only the first three siblings with a bias pattern in common stack."""

    def __init__(self):
        super().__init__()
        self.q, self.k = torch.nn.Linear(16, 32), torch.nn.Linear(16, 16)
        self.v = torch.nn.Linear(16, 16, bias=False)
        self.u = torch.nn.Linear(16, 16, bias=False)
        self.o = torch.nn.Linear(48, 16)
        self.tied = torch.nn.Linear(16, 16, bias=False)

    def forward(self, x):
        h = torch.cat([self.q(x), self.k(x)], -1) + self.v(x).repeat(1, 3)
        y = self.o(h) + self.u(x)
        return self.tied(y) + torch.nn.functional.linear(x, self.tied.weight)


def test_sibling_groups_need_one_input_pattern_shape_bias_and_unshared_weights():
    from sparsecc.capture import capture
    from sparsecc.plan import sibling_groups
    g = capture(_Siblings().eval(), (torch.randn(3, 16),))
    groups = [[n.inputs[1] for n in grp] for grp in sibling_groups(g)]
    assert groups == [["q.weight", "k.weight"], ["v.weight", "u.weight"]]
    assert sibling_groups(g, ("2:4",)) == []       # no 2:4 layer in a dense graph


def test_sibling_layers_run_as_one_gemm_on_views_of_one_weight(tmp_path):
    from sparsecc.backends.torch.artifact import SparseModule, save_artifact
    z, r = _compile_zoo("tiny-llama", "2:4")
    m = r.module
    groups = m.fused()
    assert ["layers.0.self_attn.q_proj", "layers.0.self_attn.k_proj",
            "layers.0.self_attn.v_proj"] in groups
    assert ["layers.0.mlp.gate_proj", "layers.0.mlp.up_proj"] in groups
    calls = [n for n in m.gm.graph.nodes if n.target is torch.ops.sparsecc.linear_2to4.default]
    sparse = len(m.op_calls())
    assert len(calls) == sparse - sum(len(g) - 1 for g in groups)
    ins = _inputs(z)
    unfused = SparseModule(m.ir, m.tensors(), fuse_siblings=False)
    assert unfused.fused() == []
    with torch.no_grad():
        _close(m(*ins), unfused(*ins))
        _close(m(*ins), run(r.ir, ins))

    # dense siblings: the members' weights are views into the stacked one, held once
    z, d = _compile_zoo("tiny-llama", "dense")
    dm = d.module
    assert dm.fused() == groups
    stacked = {u.slot: getattr(dm.gm, u.slot) for u in dm.units if u.kind == "dense"}
    held = {t.untyped_storage().data_ptr() for k, t in dm.gm.state_dict().items()
            if k != "_like"}
    member = getattr(dm.gm, dm._slots["layers.0.self_attn.k_proj.weight"])
    assert member.untyped_storage().data_ptr() in {
        t.untyped_storage().data_ptr() for t in stacked.values()}
    assert len(held) == len({t.untyped_storage().data_ptr() for t in dm.tensors().values()})
    with torch.no_grad():
        ref = run(d.ir, ins)
        _close(dm(*ins), ref)
        # saved one layer at a time, and loaded back stacked again
        out = tmp_path / "a"
        out.mkdir()
        save_artifact(dm, str(out))
        loaded = load_artifact(str(out))
        assert loaded.fused() == groups
        _close(loaded(*ins), ref)
        # moved and cast like any module: the stack is rebuilt from the members
        wide = dm.to(torch.float64)
        assert getattr(wide.gm, next(iter(stacked))).dtype == torch.float64
        _close(wide(*[x.double() if x.is_floating_point() else x for x in ins]), ref)
