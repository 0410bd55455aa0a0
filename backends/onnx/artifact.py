"""The ONNX backend as the compiler sees it: what ONNX Runtime runs, lowering and saving.

ONNX Runtime has no N:M or block-sparse kernel on the CPU or the CUDA provider (it densifies
sparse initializers at load), so this backend runs channel pruning (physically smaller layers)
and dense layers only, and the planner offers nothing else for it.
"""
from __future__ import annotations

import os
from typing import Any, ClassVar

import onnx
import torch

from sparsecc.backend import Artifact, Backend
from sparsecc.errors import ConfigError
from sparsecc.native import quiet_native
from sparsecc.plan import find_layers

EXTERNAL = 1_800_000_000   # weights past this many bytes go to external data (protobuf: 2 GB)


def ort_session(model: bytes | str, device: str = "auto", threads: int | None = None):
    """An ONNX Runtime session over a serialized model or a .onnx path: the CUDA provider when
    `device` is "cuda", or "auto" and onnxruntime-gpu (the `gpu` extra) is installed; else the
    CPU, with `threads` intra-op threads (None: ORT's default). ORT's own log (fd 2) is held
    back unless building the session fails."""
    import onnxruntime as ort
    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ConfigError("the CUDA execution provider is not available: install "
                          "sparsecc[gpu] (onnxruntime-gpu) on a machine with a GPU")
    use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
    providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = threads
    with quiet_native():
        return ort.InferenceSession(model, opts, providers=providers)


class OnnxModel:
    """A saved model.onnx in an ONNX Runtime session: torch tensors in and out (`session` for
    numpy feeds)."""

    def __init__(self, path: str, device: str = "auto", threads: int | None = None) -> None:
        self.session = ort_session(path, device, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def feeds(self, *args: torch.Tensor) -> dict[str, Any]:
        """The session's numpy feeds for the graph's inputs, in order (the export writes every
        graph input, in the IR's order)."""
        if len(args) != len(self.input_names):
            raise TypeError(f"expected {len(self.input_names)} inputs {self.input_names}, got "
                            f"{len(args)}")
        return {n: a.detach().cpu().numpy() for n, a in zip(self.input_names, args)}

    prepare = feeds

    def run_prepared(self, feeds: dict[str, Any]) -> list[Any]:
        """Run on feeds made by `prepare` (numpy outputs): what a benchmark times."""
        return self.session.run(None, feeds)

    def __call__(self, *args: torch.Tensor) -> Any:
        outs = [torch.from_numpy(o) for o in self.run_prepared(self.feeds(*args))]
        return outs[0] if len(outs) == 1 else tuple(outs)


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
        return ort_session(self.model.SerializeToString(), device)


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

    def load(self, directory: str, device: str = "auto") -> OnnxModel:
        path = os.path.join(directory, "model.onnx")
        if not os.path.isfile(path):
            raise ConfigError(f"{directory} has no model.onnx (is it a --backend onnx output?)")
        return OnnxModel(path, device)
