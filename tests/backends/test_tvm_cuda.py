"""The TVM backend on CUDA: GEMMs, convs and attention through call_dps_packed to the GPU
runtime's kernels (cuBLAS, cuSPARSELt, Triton BSR, cuDNN, SDPA), the rest compiled by TVM.
Skipped without a GPU (and without TVM): never faked on the CPU."""
import pytest
import torch

from sparsecc import models

tvm = pytest.importorskip("tvm")

from sparsecc.backends.torch.runtime import lower_cuda  # noqa: E402
from sparsecc.backends.tvm import compile_tvm  # noqa: E402
from sparsecc.ir import run  # noqa: E402

from test_tvm import PLANS, PLANS_AND_DENSE, compile_zoo  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm())


@pytest.fixture
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("plan", ["dense", "channel"])
def test_tvm_cuda_fp32_equals_the_interpreter(name, plan, no_tf32, require_weights):
    """fp32, layers run by cuBLAS/cuDNN without TF32: within 1e-4 of the IR interpreter, with
    the CUDA graph (every model) and without it (tiny-llama)."""
    require_weights(name)
    z, result = compile_zoo(name, PLANS_AND_DENSE[plan])
    x = z.calibration[0]
    ref = run(result.ir, x)[0]
    for graphs in (True, False) if name == "tiny-llama" else (True,):
        module = compile_tvm(result.ir, target="cuda", dtype=torch.float32, cuda_graphs=graphs)
        got = module(*x)
        got = module(*x)                 # the graph's replay (the first call captures it)
        err = _rel(got, ref)
        print(f"{name} {plan} fp32 graphs={graphs}: rel err {err:.2e} {module.graph_errors}")
        assert err <= 1e-4
        assert not module.graph_errors


@pytest.mark.parametrize("name", models.names())
@pytest.mark.parametrize("plan", ["2:4", "block", "mixed"])
def test_tvm_cuda_fp16_with_sparse_kernels(name, plan, require_weights):
    """fp16 with the sparse kernels: equal to the torch GPU runtime (same kernels) and, within
    fp16 rounding, to the fp32 interpreter."""
    require_weights(name)
    z, result = compile_zoo(name, PLANS[plan])
    module = compile_tvm(result.ir, target="cuda")
    _, runner = lower_cuda(result.ir, cuda_graphs=False)
    x = z.calibration[0]
    got = module(*x)
    vs_runtime = _rel(got, runner(*x))
    vs_fp32 = _rel(got, run(result.ir, x)[0])
    kinds = sorted({k["kernel"] for k in module.kernel_table()})
    print(f"{name} {plan} fp16: vs torch runtime {vs_runtime:.2e}, vs fp32 {vs_fp32:.2e}, "
          f"kernels {kinds}")
    # TVM's fp16 norms/activations round differently from ATen's (which upcast inside)
    assert vs_runtime <= 5e-3
    assert vs_fp32 <= 1e-2
    assert not module.graph_errors
