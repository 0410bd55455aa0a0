"""External kernels for the TVM backend: GEMM-like nodes run on the GPU runtime's kernels.

TVM 0.27's own CUDA GEMMs (dlight) are 18-29x slower than cuBLAS on the H100, and it has no
sparse GEMM at all. So on CUDA every linear layer (dense, channel-pruned, 2:4, block-sparse),
conv2d and attention core leaves TVM: the Relax builder emits `relax.call_dps_packed(name, acts,
out)` and `ExternalKernels` registers, through tvm_ffi, one function per node that runs it with
the kernels of `backends/torch/runtime.py` (cuBLAS, cuSPARSELt, our Triton BSR, cuDNN, SDPA)
on the tensors TVM hands over (zero-copy through DLPack), writing into TVM's output buffer.
Everything else (norms, activations, rotary and attention glue) is compiled by TVM.

Parameters stay with the kernels (compressed once, on the device); only activations cross.
The same path runs on the CPU (target llvm, ATen kernels), which is how CI checks it.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import torch

from sparsecc.ir import Graph, Node
from sparsecc.ir.graph import DType, dtype_name
from sparsecc.plan import layer_of

EXTERNAL_OPS = ("linear", "conv2d", "scaled_dot_product_attention")

_ids = itertools.count()


def cast_floats(graph: Graph, dtype: torch.dtype) -> Graph:
    """A copy of `graph` computing in `dtype`: f32 values, parameters and dtype attributes
    (`to(dtype=f32)`) become `dtype` (what the GPU runtime does when it runs in float16)."""
    if dtype == torch.float32:
        return graph
    name = dtype_name(dtype)

    def cast_attr(v: Any) -> Any:
        if isinstance(v, DType) and v.name == "f32":
            return DType(name)
        if isinstance(v, tuple):
            return tuple(cast_attr(x) for x in v)
        return v

    g = graph.copy()
    g.values = {k: dataclasses.replace(v, dtype=name) if v.dtype == "f32" else v
                for k, v in g.values.items()}
    g.params = {k: t.to(dtype) if t.is_floating_point() else t for k, t in g.params.items()}
    g.nodes = [n.replace(attrs={k: cast_attr(v) for k, v in n.attrs.items()}) for n in g.nodes]
    return g


def _to_torch(t: Any) -> torch.Tensor:
    return torch.from_dlpack(t)


class ExternalKernels:
    """One registered packed function per external node, backed by a `CudaRuntime` (which owns
    the parameters on the device and the sparse kernel objects)."""

    def __init__(self, graph: Graph, *, device: str | torch.device = "cuda",
                 dtype: torch.dtype = torch.float16, sparse_kernels: bool = True) -> None:
        from sparsecc.backends.torch.runtime import CudaRuntime
        self.runtime = CudaRuntime(graph, device=device, dtype=dtype,
                                   sparse_kernels=sparse_kernels, allow_col_major=False)
        self.graph = graph
        self.prefix = f"sparsecc.external{next(_ids)}"
        self._funcs: list[Any] = []             # keep the closures alive

    def handles(self, node: Node) -> bool:
        from sparsecc.backends.torch.runtime import _has_ref
        if node.op not in EXTERNAL_OPS or len(node.outputs) != 1:
            return False
        if any(_has_ref(v) for v in node.attrs.values()):
            return False
        if node.op in ("linear", "conv2d"):
            return self.graph.is_param(node.inputs[1]) and all(
                i is None or self.graph.is_param(i) for i in node.inputs[2:])
        return True

    def register(self, node: Node) -> tuple[str, list[str]]:
        """(function name, activation inputs) for `node`; the function takes those activations
        then the output buffer."""
        import tvm_ffi
        params = self.runtime.params
        acts = [i for i in node.inputs if i is not None and i not in params]
        name = f"{self.prefix}.{node.outputs[0]}"
        fn = self._linear(node) if node.op == "linear" else self._aten(node, acts)
        tvm_ffi.register_global_func(name, fn, override=True)
        self._funcs.append(fn)
        return name, acts

    def _linear(self, node: Node):
        from sparsecc.backends.torch.bsr import BsrLinear
        from sparsecc.backends.torch.semi24 import Semi24Linear
        rt = self.runtime
        kernel = self._kernel(node)
        weight = rt.params[node.inputs[1]]
        bias = rt.params.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None

        if isinstance(kernel, Semi24Linear):
            def fn(x: Any, y: Any) -> None:      # one copy: cuSPARSELt has no output argument
                _to_torch(y).copy_(kernel(_to_torch(x), row_major=False))
        elif isinstance(kernel, BsrLinear):
            def fn(x: Any, y: Any) -> None:
                kernel(_to_torch(x), out=_to_torch(y))
        elif bias is not None:
            wt = weight.t()

            def fn(x: Any, y: Any) -> None:
                torch.addmm(bias, _to_torch(x), wt, out=_to_torch(y))
        else:
            wt = weight.t()

            def fn(x: Any, y: Any) -> None:
                torch.mm(_to_torch(x), wt, out=_to_torch(y))
        return fn

    def _kernel(self, node: Node) -> Any:
        """The runtime's sparse kernel object for a linear node, or None (ATen)."""
        layer = layer_of(self.graph, node) if node.op == "linear" else None
        return self.runtime.layer_kernels.get(layer.name) if layer is not None else None

    def _aten(self, node: Node, acts: list[str]):
        step = self.runtime._op_step(node)
        params = {i: self.runtime.params[i] for i in node.inputs
                  if i is not None and i in self.runtime.params}
        out = node.outputs[0]

        def fn(*args: Any) -> None:
            env = dict(params)
            for name, a in zip(acts, args[:-1]):
                env[name] = _to_torch(a)
            step(env)
            _to_torch(args[-1]).copy_(env[out])
        return fn

    def prepare(self, *inputs: torch.Tensor) -> None:
        """Run the graph once on the runtime at these inputs' shapes: kernels that tune per M
        (cuSPARSELt's algorithm and layout, Triton's autotune) do so here, not inside a TVM
        call (tuning captures CUDA graphs)."""
        from sparsecc.backends.torch.semi24 import Semi24Linear
        env = self.runtime.environment(*inputs)
        for node in self.graph.nodes:
            kernel = self._kernel(node)
            if isinstance(kernel, Semi24Linear):       # the layout the external call asks for
                x = env[node.inputs[0]]
                kernel.tune(x.numel() // x.shape[-1], row_major=False)

    def kernel_table(self) -> list[dict[str, Any]]:
        return self.runtime.kernel_table()
