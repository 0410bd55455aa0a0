"""A built Relax module that runs like the IR: torch tensors in, torch tensors out (CPU/llvm)."""
from __future__ import annotations

import os
from typing import Any

import torch

from sparsecc.errors import SparseccError
from sparsecc.ir import Graph
from sparsecc.native import quiet_native

from .relax_builder import build_relax


def host_target(kind: str = "llvm"):
    """The llvm target for this machine's CPU (plain "llvm" is generic x86-64: no AVX2/FMA)."""
    import tvm
    from tvm.target import codegen
    if kind != "llvm":
        return tvm.target.Target({"kind": kind})
    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})


def cuda_target(host: Any = None):
    """The CUDA target of GPU 0 (its compute capability), with this CPU as the host."""
    import tvm
    major, minor = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else (9, 0)
    return tvm.target.Target({"kind": "cuda", "arch": f"sm_{major}{minor}"},
                             host=host or host_target())


class TvmModule:
    """The graph built by TVM for `target`: "llvm" (this machine's CPU; its library runs on
    CPUs with the same features) or "cuda" (GPU 0, run in-process by the Relax VM).

    `external` sends linear, conv2d and attention nodes to the GPU runtime's kernels through
    `relax.call_dps_packed` (external.py); it is the default on CUDA, where TVM's own GEMMs are
    slow and it has no sparse GEMM. `dtype` is what floats compute in (float16 on CUDA by
    default, as in the GPU runtime; float32 on the CPU). On CUDA each input signature's call
    is captured once as a CUDA graph and replayed (`cuda_graphs`); a signature whose capture
    fails runs eagerly, the reason in `graph_errors`."""

    def __init__(self, graph: Graph, target: str = "llvm", bsr: bool = True,
                 external: bool | None = None, dtype: torch.dtype | None = None,
                 cuda_graphs: bool = True) -> None:
        try:
            import tvm
            from tvm import relax
        except ImportError as e:
            raise SparseccError("the tvm backend needs the tvm extra: pip install "
                                "'sparsecc[tvm]' (apache-tvm==0.27.0.post1)") from e
        if target not in ("llvm", "cuda"):
            raise SparseccError(f"tvm target {target!r}: expected 'llvm' or 'cuda'")
        cuda = target == "cuda"
        if cuda and not torch.cuda.is_available():
            raise SparseccError("tvm target 'cuda' needs a CUDA GPU (torch sees none)")
        self.graph = graph
        self.target = target
        self.dtype = dtype or (torch.float16 if cuda else torch.float32)
        self.device = torch.device("cuda" if cuda else "cpu")
        self.external = None
        if external if external is not None else cuda:
            from .external import ExternalKernels
            self.external = ExternalKernels(graph, device=self.device, dtype=self.dtype)
        from .external import cast_floats
        self.mod, self.kernels = build_relax(cast_floats(graph, self.dtype), bsr=bsr and not cuda,
                                             external=self.external)
        with quiet_native():
            self.executable = relax.build(self.mod, target=cuda_target() if cuda
                                          else host_target(target))
        self._tvm = tvm
        self._vm = relax.VirtualMachine(self.executable, tvm.cuda(0) if cuda else tvm.cpu())
        self._prepared: set[tuple] = set()
        self.cuda_graphs = cuda and cuda_graphs
        self._graphs: dict[tuple, tuple] = {}
        self.graph_errors: dict[str, str] = {}    # signature -> why it runs without a graph

    @property
    def main(self):
        """The compiled "main" function: takes and returns tvm.runtime.Tensor (no copies)."""
        return self._vm["main"]

    def kernel_table(self) -> list[dict[str, Any]]:
        """Per layer, the kernel that runs it: external ones as the GPU runtime reports them."""
        return self.external.kernel_table() if self.external else list(self.kernels)

    def _place(self, a: torch.Tensor) -> torch.Tensor:
        a = a.detach()
        if a.is_floating_point():
            a = a.to(self.dtype)
        return a.to(self.device).contiguous()

    def __call__(self, *args: Any) -> Any:
        import tvm_ffi
        if len(args) != len(self.graph.inputs):
            raise TypeError(f"expected {len(self.graph.inputs)} inputs {self.graph.inputs}, "
                            f"got {len(args)}")
        placed = [self._place(a) for a in args]
        key = tuple((tuple(a.shape), a.dtype) for a in placed)
        if self.external is not None and key not in self._prepared:
            self.external.prepare(*placed)
            self._prepared.add(key)
        if self.cuda_graphs and str(key) not in self.graph_errors:
            if key not in self._graphs:
                try:
                    self._graphs[key] = self._capture(placed)
                except RuntimeError as e:          # run eagerly, and say why
                    self.graph_errors[str(key)] = str(e).splitlines()[0][:300]
            if key in self._graphs:
                graph, static, outs = self._graphs[key]
                for s, a in zip(static, placed):
                    s.copy_(a, non_blocking=True)
                graph.replay()
                outs = [o.clone() for o in outs]
                return outs[0] if len(outs) == 1 else tuple(outs)
        return self._torch_out(self.main(*[tvm_ffi.from_dlpack(a) for a in placed]))

    def _torch_out(self, out: Any) -> Any:
        if isinstance(out, self._tvm.runtime.Tensor):
            return torch.from_dlpack(out)
        return tuple(torch.from_dlpack(o) for o in out)

    def _capture(self, placed: list[torch.Tensor]) -> tuple:
        """One CUDA graph of the whole VM call, TVM's kernels and the external ones on the same
        (torch's capture) stream: static inputs, a warm-up call first (so TVM's pooled
        allocator holds every buffer the call needs), then the capture."""
        import tvm_ffi
        static = [a.clone() for a in placed]
        ins = [tvm_ffi.from_dlpack(a) for a in static]
        with tvm_ffi.use_torch_stream():
            self.main(*ins)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with tvm_ffi.use_torch_stream(torch.cuda.graph(graph, capture_error_mode="relaxed")):
            out = self.main(*ins)
        outs = self._torch_out(out)
        return graph, static, [outs] if isinstance(outs, torch.Tensor) else list(outs)

    def export_library(self, path: str | os.PathLike) -> None:
        """The compiled CPU library (load with tvm.runtime.load_module + relax.VirtualMachine)."""
        if self.external is not None:
            raise SparseccError("a module with external kernels runs in this process only; "
                                "build with external=False to export a library")
        with quiet_native():
            self.executable.export_library(os.fspath(path))


def compile_tvm(graph: Graph, target: str = "llvm", bsr: bool = True,
                external: bool | None = None, dtype: torch.dtype | None = None,
                cuda_graphs: bool = True) -> TvmModule:
    return TvmModule(graph, target, bsr, external, dtype, cuda_graphs)
