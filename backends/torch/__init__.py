"""PyTorch backend: the planned IR as a real `nn.Module` with our sparse operators.

    TorchBackend().lower(graph, config, target) -> TorchArtifact (its `.module`: SparseModule)
    load_artifact(dir, device)                 -> the SparseModule saved in dir

The module is a generated FX graph (artifact.py) whose 2:4 and block-sparse layers call
`torch.ops.sparsecc.linear_2to4` / `linear_bsr` (ops.py: cuSPARSELt and our Triton kernel on
CUDA, reference implementations elsewhere), so it works under `torch.compile`.
"""
from .artifact import SparseModule, TorchArtifact, TorchBackend, load_artifact

__all__ = ["SparseModule", "TorchArtifact", "TorchBackend", "load_artifact"]
