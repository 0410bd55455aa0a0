"""The ONNX backend: export an IR graph as an ONNX model and run it in ONNX Runtime (CPU)."""
from . import ops_math, ops_nn, ops_shape  # noqa: F401  (they register the lowerings)
from .artifact import OnnxArtifact, OnnxBackend
from .export import LOWERINGS, OnnxExportError, export_onnx, run_onnx

__all__ = ["LOWERINGS", "OnnxArtifact", "OnnxBackend", "OnnxExportError", "export_onnx",
           "run_onnx"]
