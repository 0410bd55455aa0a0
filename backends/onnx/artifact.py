"""The ONNX backend as the compiler sees it: what ONNX Runtime runs, lowering and saving.

ONNX Runtime has no N:M or block-sparse kernel on the CPU or the CUDA provider (it densifies
sparse initializers at load), so this backend runs channel pruning (physically smaller layers)
and dense layers only, and the planner offers nothing else for it.
"""
from __future__ import annotations

import os
from typing import Any, ClassVar

import onnx

from sparsecc.backend import Artifact, Backend
from sparsecc.errors import ConfigError
from sparsecc.plan import find_layers

EXTERNAL = 1_800_000_000   # weights past this many bytes go to external data (protobuf: 2 GB)


class OnnxArtifact(Artifact):
    backend: ClassVar[str] = "onnx"

    def __init__(self, model: onnx.ModelProto, graph: Any, external_data: bool = False) -> None:
        self.model = model
        self.graph = graph
        self.external_data = external_data

    def save(self, directory: str) -> list[str]:
        big = sum(t.numel() * t.element_size() for t in self.graph.params.values()) > EXTERNAL
        external = big or self.external_data
        onnx.save(self.model, os.path.join(directory, "model.onnx"),
                  save_as_external_data=external, all_tensors_to_one_file=True,
                  location="model.onnx.data")
        return ["model.onnx"] + (["model.onnx.data"] if external else [])

    def kernels(self) -> dict[str, dict[str, Any]]:
        """Every layer runs ONNX Runtime's dense kernel on the weight shape written in the
        model (read from its initializers)."""
        inits = {t.name: tuple(t.dims) for t in self.model.graph.initializer}
        inits.update({t.values.name: tuple(t.dims) for t in self.model.graph.sparse_initializer})
        out = {}
        for layer in find_layers(self.graph):
            out[layer.name] = {"family": "dense", "kernel": "onnxruntime dense",
                               "weight_shape": inits.get(layer.weight)}
        return out

    def session(self, device: str = "auto"):
        """An ONNX Runtime session over the model: the CUDA provider when `device` is "cuda",
        or "auto" and onnxruntime-gpu (the `gpu` extra) is installed; else CPU."""
        import onnxruntime as ort
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ConfigError("the CUDA execution provider is not available: install "
                                "sparsecc[gpu] (onnxruntime-gpu) on a machine with a GPU")
        use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        return ort.InferenceSession(self.model.SerializeToString(), providers=providers)


class OnnxBackend(Backend):
    name: ClassVar[str] = "onnx"
    title: ClassVar[str] = "ONNX Runtime"
    kernel_ops: ClassVar[dict] = {"channel": None}

    def lower(self, graph: Any, config: Any, target: Any) -> OnnxArtifact:
        from .export import export_onnx
        patterns = {n.outputs[0]: {"sparsecc.pattern": n.attrs["sparsity"]}
                    for n in graph.nodes if n.attrs.get("sparsity")}
        model = export_onnx(graph, node_metadata=patterns)
        return OnnxArtifact(model, graph)
