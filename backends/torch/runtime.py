"""The GPU runtime: the planned IR as an executable module with real sparse kernels.

`lower_cuda(graph)` walks the IR once and turns every node into a step:

  * a linear layer annotated `sparsity="2:4"` runs on cuSPARSELt (`Semi24Linear`: compressed
    once, the algorithm and layout chosen per M on the first call and cached);
  * a linear layer annotated `sparsity="blockRxC@d"` runs on our Triton BSR kernel (`BsrLinear`);
  * every other node (dense and channel-pruned layers included: those are just smaller) runs
    its ATen op, so cuBLAS/cuDNN/SDPA kernels.

A sparse layer whose kernel constraints fail (a conv, a shape cuSPARSELt refuses, a weight that
does not obey its pattern) runs dense, and `kernels` records the reason. Floating parameters,
inputs and dtype attributes (`to(dtype=f32)`) take the runtime dtype (float16 by default).

`CudaGraphs(fn)` replays a CUDA graph per input signature (shapes and dtypes): the first call at
a signature runs eagerly twice (tuning kernels, warming the allocator), then captures; later
calls copy the inputs into the static buffers and replay. The runtime wraps itself in it unless
`cuda_graphs=False`; the benchmark wraps the dense PyTorch model in the same way.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from sparsecc.ir import Graph, Node
from sparsecc.ir.graph import DType, dtype_name
from sparsecc.ir.interpreter import bind_outputs, resolve_refs
from sparsecc.ir import ops
from sparsecc.patterns import NM, Block, parse_pattern
from sparsecc.plan import layer_of

from .bsr import BsrLinear
from .semi24 import KernelUnavailable, Semi24Linear
from .timing import capture

# ops whose result is right for any input strides (so a column-major 2:4 result may feed them)
LAYOUT_FREE = {"linear", "silu", "gelu", "relu", "sigmoid", "tanh", "mul.Tensor", "add.Tensor",
               "sub.Tensor", "div.Tensor"}


@dataclasses.dataclass(frozen=True)
class KernelChoice:
    layer: str
    op: str
    pattern: str           # the node's sparsity annotation ("dense" if none)
    kernel: str            # cusparselt-2:4, triton-bsr64x64, aten (cuBLAS/cuDNN)
    shape: tuple[int, ...]
    reason: str = ""       # why a sparse layer runs dense


def _cast_attr(v: Any, dtype: torch.dtype) -> Any:
    if isinstance(v, DType) and v.name == "f32":
        return DType(dtype_name(dtype))
    if isinstance(v, tuple):
        return tuple(_cast_attr(x, dtype) for x in v)
    return v


def _has_ref(v: Any) -> bool:
    from sparsecc.ir.graph import Ref
    return isinstance(v, Ref) or (isinstance(v, tuple) and any(_has_ref(x) for x in v))


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            if i is not None:
                out.setdefault(i, []).append(n)
    return out


class CudaRuntime(torch.nn.Module):
    """Runs a planned IR graph on one device with the sparse kernels its annotations ask for."""

    def __init__(self, graph: Graph, *, device: str | torch.device = "cuda",
                 dtype: torch.dtype = torch.float16, sparse_kernels: bool = True,
                 allow_col_major: bool = True) -> None:
        super().__init__()
        self.graph = graph
        self.device_ = torch.device(device)
        self.dtype = dtype
        self.params = {k: self._place(v) for k, v in graph.params.items()}
        self.kernels: list[KernelChoice] = []
        self.layer_kernels: dict[str, Any] = {}    # layer name -> kernel object (sparse layers)
        self._warming = False
        consumers = _consumers(graph)
        graph_outputs = set(graph.outputs)
        self._steps: list[Callable[[dict[str, Any]], None]] = []
        for node in graph.nodes:
            kernel = self._layer_kernel(node, sparse_kernels) if node.outputs else None
            if kernel is not None:
                out = node.outputs[0]
                col_ok = (allow_col_major and out not in graph_outputs
                          and all(c.op in LAYOUT_FREE for c in consumers.get(out, [])))
                self._steps.append(self._kernel_step(node, kernel, col_ok))
            else:
                self._steps.append(self._op_step(node))

    # -- building -------------------------------------------------------------------------
    def _place(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device_)                 # then cast there (a GPU casts far faster)
        return t.to(self.dtype) if t.is_floating_point() else t

    def _layer_kernel(self, node: Node, sparse_kernels: bool):
        layer = layer_of(self.graph, node)
        if layer is None:
            return None
        annotation = node.attrs.get("sparsity")
        pattern = parse_pattern(annotation) if annotation else None
        choice = KernelChoice(layer.name, node.op, str(annotation or "dense"), "aten",
                              layer.shape)
        kernel, reason = None, ""
        if pattern is None or not isinstance(pattern, (NM, Block)):
            pass
        elif not sparse_kernels:
            reason = "sparse kernels off"
        elif node.op != "linear":
            reason = f"{node.op}: the sparse kernels here run linear layers only"
        elif self.device_.type != "cuda":
            reason = "sparse kernels need a CUDA device"
        else:
            weight = self.params[node.inputs[1]]
            bias = self.params.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
            try:
                if isinstance(pattern, NM):
                    if (pattern.n, pattern.m) != (2, 4):
                        raise KernelUnavailable(f"{pattern}: cuSPARSELt runs 2:4 only")
                    kernel = Semi24Linear(weight, bias)
                else:
                    kernel = BsrLinear(weight, pattern.rows, pattern.cols, bias)
            except KernelUnavailable as e:
                reason = str(e)
        if kernel is not None:
            choice = dataclasses.replace(choice, kernel=kernel.kernel)
            self.layer_kernels[layer.name] = kernel
        elif reason:
            choice = dataclasses.replace(choice, reason=f"runs dense: {reason}")
        self.kernels.append(choice)
        return kernel

    def _kernel_step(self, node: Node, kernel, col_ok: bool):
        x_name, out = node.inputs[0], node.outputs[0]
        if isinstance(kernel, Semi24Linear):
            row_major = not col_ok

            def step(env: dict[str, Any]) -> None:
                env[out] = kernel(env[x_name], row_major, warm=self._warming)
        else:
            def step(env: dict[str, Any]) -> None:
                env[out] = kernel(env[x_name])
        return step

    def _op_step(self, node: Node):
        attrs = {k: _cast_attr(v, self.dtype) for k, v in node.attrs.items() if k != "sparsity"}
        dynamic = any(_has_ref(v) for v in attrs.values())
        device, op, ins = self.device_, node.op, node.inputs

        def step(env: dict[str, Any]) -> None:
            inputs = [None if i is None else env[i] for i in ins]
            a = {k: resolve_refs(v, env) for k, v in attrs.items()} if dynamic else attrs
            bind_outputs(node, ops.call(op, inputs, a, device), env)
        return step

    # -- running --------------------------------------------------------------------------
    def kernel_table(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(k) for k in self.kernels]

    @torch.no_grad()
    def environment(self, *args: Any) -> dict[str, Any]:
        """Run the graph on `args`; every value it computed, by name."""
        g = self.graph
        if len(args) != len(g.inputs):
            raise TypeError(f"expected {len(g.inputs)} inputs {g.inputs}, got {len(args)}")
        env: dict[str, Any] = dict(self.params)
        for name, a in zip(g.inputs, args):
            env[name] = self._place(a) if isinstance(a, torch.Tensor) else a
        for step in self._steps:
            step(env)
        return env

    def forward(self, *args: Any) -> Any:
        env = self.environment(*args)
        outs = [env[o] for o in self.graph.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def warm_up(self, *args: Any) -> Any:
        """forward() for a warm-up whose result is discarded: kernels are tuned and the same
        values computed, with 2:4 layers in their cheap-to-set-up layout (semi24.py)."""
        self._warming = True
        try:
            return self.forward(*args)
        finally:
            self._warming = False


class CudaGraphs:
    """Replays one CUDA graph per input signature of `fn` (a callable on tensors)."""

    def __init__(self, fn: Callable[..., Any], clone_outputs: bool = True,
                 warm_fn: Callable[..., Any] | None = None) -> None:
        self.fn = fn
        self.warm_fn = warm_fn          # run for the eager warm-up calls instead of fn
        self.clone_outputs = clone_outputs
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list, Any]] = {}
        self.capture_s: dict[tuple, float] = {}     # seconds each signature's capture took

    @staticmethod
    def _signature(args: tuple) -> tuple:
        return tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a for a in args)

    def _capture(self, args: tuple):
        # the graph's input buffers live on the GPU (a host tensor can't be copied inside a
        # capture); each call copies its inputs into them, from the host or the device
        static = [a.to("cuda", copy=True) if isinstance(a, torch.Tensor) else a for a in args]
        with torch.no_grad():
            warm = (lambda: self.warm_fn(*static)) if self.warm_fn is not None else None
            graph, out = capture(lambda: self.fn(*static), warm=2, warm_fn=warm)
        return graph, static, out

    def __call__(self, *args: Any) -> Any:
        key = self._signature(args)
        if key not in self._graphs:
            start = time.perf_counter()
            self._graphs[key] = self._capture(args)
            self.capture_s[key] = time.perf_counter() - start
        graph, static, out = self._graphs[key]
        for s, a in zip(static, args):
            if isinstance(s, torch.Tensor):
                s.copy_(a, non_blocking=True)
        graph.replay()
        if not self.clone_outputs:
            return out
        if isinstance(out, tuple):
            return tuple(o.clone() for o in out)
        return out.clone()


def lower_cuda(graph: Graph, *, device: str | torch.device = "cuda",
               dtype: torch.dtype | str = torch.float16, sparse_kernels: bool = True,
               cuda_graphs: bool = True, allow_col_major: bool = True):
    """The planned graph as a runtime; `.kernels` says which kernel runs each layer and why.

    Returns (runtime, runner): `runner(*inputs)` replays CUDA graphs when `cuda_graphs` (and the
    device is CUDA), else it is the runtime itself."""
    if isinstance(dtype, str):
        from sparsecc.ir.graph import torch_dtype
        dtype = torch_dtype(dtype)
    rt = CudaRuntime(graph, device=device, dtype=dtype, sparse_kernels=sparse_kernels,
                     allow_col_major=allow_col_major)
    use_graphs = cuda_graphs and torch.device(device).type == "cuda"
    return rt, (CudaGraphs(rt, warm_fn=rt.warm_up) if use_graphs else rt)
