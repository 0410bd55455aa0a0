"""The TVM backend as the compiler sees it: a Relax module built for this CPU (llvm).

Block-sparse linear layers run a TIR BSR kernel on the CPU; N:M has no TVM kernel. On GPU
targets the targets' own `backends.tvm` sections offer dense and channel pruning only.
"""
from __future__ import annotations

import os
from typing import Any, ClassVar

from sparsecc.backend import LINEAR_OPS, Artifact, Backend
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


class TvmBackend(Backend):
    name: ClassVar[str] = "tvm"
    title: ClassVar[str] = "TVM"
    kernel_ops: ClassVar[dict] = {"channel": None, "block": LINEAR_OPS}

    def lower(self, graph: Any, config: Any, target: Any) -> TvmArtifact:
        from .module import compile_tvm
        return TvmArtifact(compile_tvm(graph, target="llvm"), graph)
