"""The TVM backend as the compiler sees it: a Relax module built for this CPU (llvm).

Block-sparse linear layers run a TIR BSR kernel on the CPU; N:M has no TVM kernel. On GPU
targets the targets' own `backends.tvm` sections offer dense and channel pruning only.
"""
from __future__ import annotations

import os
from typing import Any, ClassVar

import torch

from sparsecc.backend import LINEAR_OPS, Artifact, Backend
from sparsecc.errors import ConfigError
from sparsecc.native import quiet_native
from sparsecc.plan import find_layers


class TvmArtifact(Artifact):
    backend: ClassVar[str] = "tvm"

    def __init__(self, module: Any, graph: Any) -> None:
        self.module = module
        self.graph = graph

    def save(self, directory: str) -> list[str]:
        self.module.export_library(os.path.join(directory, "model.so"))
        return ["model.so"]

    def kernels(self) -> dict[str, dict[str, Any]]:
        """The BSR prim_funcs the Relax builder emitted, by layer; every other layer is one of
        TVM's dense ops on its weight's (possibly shrunk) shape."""
        emitted = {k["node"]: k["kernel"] for k in self.module.kernel_table()}
        out = {}
        for layer in find_layers(self.graph):
            kernel = emitted.get(layer.node, "tvm dense")
            out[layer.name] = {"family": "block" if "bsr" in kernel else "dense",
                               "kernel": kernel,
                               "weight_shape": tuple(self.graph.params[layer.weight].shape)}
        return out

    def __call__(self, *args: Any) -> Any:
        return self.module(*args)


class TvmLibrary:
    """A saved `model.so` in the Relax VM on this CPU: torch tensors in and out, like the
    module that was saved. Loading it makes TVM log a warning line per function; that is held
    back unless the load fails."""

    def __init__(self, path: str) -> None:
        import tvm
        from tvm import relax
        with quiet_native():
            self._vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
        self._tvm = tvm

    @property
    def main(self):
        """The "main" function: tvm.runtime.Tensor in and out (no copies; `tensor` makes one)."""
        return self._vm["main"]

    def tensor(self, x: torch.Tensor) -> Any:
        """`x` as the library takes it: float32 floats, a TVM CPU tensor."""
        x = x.detach().cpu()
        return self._tvm.runtime.tensor((x.float() if x.is_floating_point() else x).numpy())

    def prepare(self, *args: torch.Tensor) -> list[Any]:
        return [self.tensor(a) for a in args]

    def run_prepared(self, tensors: list[Any]) -> Any:
        """Run on tensors made by `prepare`: what a benchmark times."""
        return self.main(*tensors)

    def __call__(self, *args: torch.Tensor) -> Any:
        out = self.run_prepared(self.prepare(*args))
        if isinstance(out, self._tvm.runtime.Tensor):
            return torch.from_dlpack(out)
        return tuple(torch.from_dlpack(o) for o in out)


class TvmBackend(Backend):
    name: ClassVar[str] = "tvm"
    title: ClassVar[str] = "TVM"
    kernel_ops: ClassVar[dict] = {"channel": None, "block": LINEAR_OPS}

    def lower(self, graph: Any, config: Any, target: Any) -> TvmArtifact:
        from .module import compile_tvm
        return TvmArtifact(compile_tvm(graph, target="llvm"), graph)

    def load(self, directory: str, device: str = "cpu") -> TvmLibrary:
        if device != "cpu":
            raise ConfigError(f"a saved TVM library runs on the CPU, not {device!r}")
        path = os.path.join(directory, "model.so")
        if not os.path.isfile(path):
            raise ConfigError(f"{directory} has no model.so (is it a --backend tvm output?)")
        return TvmLibrary(path)
