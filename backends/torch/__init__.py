"""PyTorch backend: the IR as an `nn.Module`.

`lower_torch(graph)` returns a module that runs the IR's ops with torch on the device of its
parameters (`.to("cuda")` moves them). Every layer runs dense here; sparse kernels
(cuSPARSELt 2:4, Triton BSR) and CUDA graphs are added on top of this module.
"""
from __future__ import annotations

from typing import Any

import torch

from sparsecc.ir import Graph
from sparsecc.ir.interpreter import execute


class IRModule(torch.nn.Module):
    """Runs an IR graph; parameters are registered as buffers so `.to()` moves them."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self._slots: dict[str, str] = {}
        for i, (name, tensor) in enumerate(graph.params.items()):
            slot = f"p{i}"
            self._slots[name] = slot
            self.register_buffer(slot, tensor, persistent=False)

    @property
    def device(self) -> torch.device:
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @torch.no_grad()
    def forward(self, *args: Any) -> Any:
        g = self.graph
        if len(args) != len(g.inputs):
            raise TypeError(f"expected {len(g.inputs)} inputs {g.inputs}, got {len(args)}")
        device = self.device
        env: dict[str, Any] = {name: getattr(self, slot) for name, slot in self._slots.items()}
        for name, a in zip(g.inputs, args):
            env[name] = a.to(device) if isinstance(a, torch.Tensor) else a
        outs = execute(g, env, device)
        return outs[0] if len(outs) == 1 else tuple(outs)


def lower_torch(graph: Graph) -> IRModule:
    return IRModule(graph)
