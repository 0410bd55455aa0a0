"""The GPU runtime: kernels and the runtime against the interpreter / F.linear.

CPU tests cover what needs no GPU (packing, checks, the runtime's dense path and dtype handling);
the `gpu` tests run the real kernels and are skipped without CUDA (never faked on the CPU).
"""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import sparsecc
from sparsecc import models
from sparsecc.backends.torch.bsr import bsr_linear_reference, check_bsr, pack_bsr
from sparsecc.backends.torch.runtime import lower_cuda
from sparsecc.backends.torch.semi24 import check_semi24, is_two_four
from sparsecc.config import CompileConfig
from sparsecc.ir import run
from sparsecc.patterns import NM, Block

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


# -- CPU ------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.sampled_from([16, 32, 64]), st.sampled_from([16, 32, 64]), st.integers(1, 4),
       st.integers(1, 4), st.floats(0.0, 1.0), st.integers(0, 2**16), st.sampled_from([1, 2, 4]))
def test_pack_bsr_keeps_exactly_the_nonzero_blocks(r, c, nr, nc, keep, seed, pad_to):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(nr * r, nc * c, generator=g)
    blocks = torch.rand(nr, nc, generator=g) < keep
    w = w * blocks.repeat_interleave(r, 0).repeat_interleave(c, 1)
    p = pack_bsr(w, r, c, pad_to)
    counts = blocks.sum(1)
    assert p.nnz == int((counts + (-counts) % pad_to).sum())
    assert all(int(n) % pad_to == 0 for n in p.row_ptr[1:] - p.row_ptr[:-1])
    assert torch.equal(p.to_dense(), w)
    assert p.row_ptr.tolist()[-1] == p.nnz and p.row_ptr.dtype == torch.int32
    x = torch.randn(5, nc * c, generator=g)
    torch.testing.assert_close(bsr_linear_reference(x, p), F.linear(x, w))


def test_kernel_checks_name_the_reason():
    assert check_semi24(torch.zeros(32, 32)) == "cuSPARSELt needs a CUDA tensor"
    assert "not a whole number" in check_bsr(torch.zeros(100, 128), 64, 64)
    assert "edges" in check_bsr(torch.zeros(128, 128), 48, 48)
    w = torch.randn(32, 32)
    assert not is_two_four(w)
    assert is_two_four(torch.where(NM(2, 4).mask(w), w, 0.0))


@pytest.mark.parametrize("name", ["tiny-llama", "minilm", "tiny-resnet", "mnist-cnn"])
def test_runtime_dense_path_equals_the_interpreter(name, require_weights):
    require_weights(name)
    z = models.get(name, tiny=True)
    r = sparsecc.compile(z.model, z.example_inputs,
                         CompileConfig(target="h100", overrides={".*": "2:4"}),
                         dynamic_dims=z.dynamic_dims, name=name)
    ref = run(r.ir, z.example_inputs)[0]
    rt, runner = lower_cuda(r.ir, device="cpu", dtype=torch.float32)
    assert runner is rt                       # no CUDA graphs off the GPU
    assert _rel(runner(*z.example_inputs), ref) < 1e-6
    sparse = [k for k in rt.kernels if k.pattern != "dense"]
    assert sparse and all(k.kernel == "aten" and k.reason.startswith("runs dense:")
                          for k in sparse)


def test_runtime_casts_float_attrs_to_its_dtype(require_weights):
    require_weights("minilm")
    # minilm builds its attention mask with to(dtype=f32); in bf16 the mask must follow
    z = models.get("minilm", tiny=True)
    r = sparsecc.compile(z.model, z.example_inputs, CompileConfig(target="h100"),
                         dynamic_dims=z.dynamic_dims, name="minilm")
    ref = run(r.ir, z.example_inputs)[0]
    rt, runner = lower_cuda(r.ir, device="cpu", dtype=torch.bfloat16)
    out = runner(*z.example_inputs)
    assert out.dtype == torch.bfloat16
    assert _rel(out, ref) < 3e-2


# -- GPU ------------------------------------------------------------------------------------
@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 7, 16, 300, 2048])
@pytest.mark.parametrize("row_major", [True, False])
def test_semi24_linear_equals_f_linear(m, row_major):
    from sparsecc.backends.torch.semi24 import Semi24Linear
    g = torch.Generator(device="cuda").manual_seed(m)
    w = torch.randn(256, 512, device="cuda", generator=g)
    w = torch.where(NM(2, 4).mask(w), w, 0.0).half()
    b = torch.randn(256, device="cuda", generator=g).half()
    lin = Semi24Linear(w, b)
    x = torch.randn(m, 512, device="cuda", generator=g).half()
    y = lin(x, row_major)
    assert y.shape == (m, 256) and (y.is_contiguous() or not row_major)
    assert _rel(y, F.linear(x.float(), w.float(), b.float())) < 1e-2
    x3 = torch.randn(2, m, 512, device="cuda", generator=g).half()
    assert _rel(lin(x3), F.linear(x3.float(), w.float(), b.float())) < 1e-2


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("bs", [32, 64, 128])
@pytest.mark.parametrize("m", [1, 100, 1024])
@pytest.mark.parametrize("unroll", [1, 2])
def test_bsr_linear_equals_f_linear(bs, m, unroll):
    from sparsecc.backends.torch.bsr import BsrLinear
    g = torch.Generator(device="cuda").manual_seed(bs + m)
    w = torch.randn(512, 1024, device="cuda", generator=g)
    w = torch.where(Block(bs, bs, 0.25).mask(w), w, 0.0).half()
    b = torch.randn(512, device="cuda", generator=g).half()
    lin = BsrLinear(w, bs, bs, b, unroll=unroll)
    x = torch.randn(m, 1024, device="cuda", generator=g).half()
    y = lin(x)
    assert torch.isfinite(y).all()
    assert _rel(y, F.linear(x.float(), w.float(), b.float())) < 1e-2


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["tiny-llama", "minilm", "tiny-resnet", "mnist-cnn"])
@pytest.mark.parametrize("plan", ["2:4", "block32x32@0.25", "channel0.5"])
def test_compiled_equals_masked_dense_on_the_gpu(name, plan, require_weights):
    require_weights(name)
    z = models.get(name, tiny=True)
    r = sparsecc.compile(z.model, z.example_inputs,
                         CompileConfig(target="h100", overrides={".*": plan}),
                         dynamic_dims=z.dynamic_dims, name=name)
    masked_rt, masked = lower_cuda(r.ir, sparse_kernels=False)
    rt, runner = lower_cuda(r.ir)
    for _ in range(2):                         # the second call replays the captured graph
        out = runner(*z.example_inputs)
        assert _rel(out, masked(*z.example_inputs)) < 1e-2
    ref = run(r.ir, z.example_inputs, device="cuda")[0]
    assert _rel(out, ref) < 2e-2
    if plan != "channel0.5" and name in ("tiny-llama", "minilm"):
        assert any(k.kernel != "aten" for k in rt.kernels), rt.kernel_table()
