"""Every ONNX op handler of the importer, registered by importing its family's module.

  onnx_ops_math       elementwise, variadic, reductions, (de)quantization
  onnx_ops_shape      Shape arithmetic, reshapes, slices, pads, Trilu, DepthToSpace
  onnx_ops_index      gathers, scatters, TopK, OneHot
  onnx_ops_nn         MatMul/Gemm/Einsum, convolutions, pooling, normalizations
  onnx_ops_resize     Resize
  onnx_ops_attention  Attention and RotaryEmbedding (opset 23)
  onnx_ops_control    Constant, Identity, Dropout, If
Ops refused on purpose are listed here with the reason the user sees.
"""
from __future__ import annotations

from . import (onnx_ops_attention, onnx_ops_control, onnx_ops_index, onnx_ops_math,  # noqa: F401
               onnx_ops_nn, onnx_ops_resize, onnx_ops_shape)
from .onnx_importer import HANDLERS, REFUSED, refuse

refuse("recurrent layers are not supported: the IR has no loops, and unrolling one would need "
       "a static sequence length", "LSTM", "GRU", "RNN")
refuse("loops are not supported: the IR has no control flow", "Loop", "Scan")
refuse("its output shape depends on tensor data", "NonZero", "NonMaxSuppression", "Unique",
       "Compress")

__all__ = ["HANDLERS", "REFUSED"]
