"""Capture models into the IR: from PyTorch through torch.export."""
from .torch_export import capture

__all__ = ["capture"]
