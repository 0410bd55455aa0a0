"""Capture models into the IR: from PyTorch through torch.export, and from ONNX files."""
from .onnx_import import OnnxImportError, import_onnx
from .torch_export import capture

__all__ = ["OnnxImportError", "capture", "import_onnx"]
