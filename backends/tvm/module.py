"""A built Relax module that runs like the IR: torch tensors in, torch tensors out (CPU/llvm)."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from sparsecc.errors import SparseccError
from sparsecc.ir import Graph

from .relax_builder import build_relax


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """TVM's C++ side logs warnings to fd 2 on every build and export ("Scope Saving", "Fast
    mode segfaults ..."); hold them back, and replay them only if the block raises."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):   # no real stderr (e.g. captured)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        except BaseException:
            os.dup2(saved, fd)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode(errors="replace")[-4000:])
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def host_target(kind: str = "llvm"):
    """The llvm target for this machine's CPU (plain "llvm" is generic x86-64: no AVX2/FMA)."""
    import tvm
    from tvm.target import codegen
    if kind != "llvm":
        return tvm.target.Target({"kind": kind})
    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})


class TvmModule:
    """`target` "llvm" means this machine's CPU (its library runs on CPUs with the same
    features)."""

    def __init__(self, graph: Graph, target: str = "llvm", bsr: bool = True) -> None:
        try:
            import tvm
            from tvm import relax
        except ImportError as e:
            raise SparseccError("the tvm backend needs the tvm extra: pip install "
                                "'sparsecc[tvm]' (apache-tvm==0.27.0.post1)") from e
        self.graph = graph
        self.mod, self.kernels = build_relax(graph, bsr=bsr)
        self.target = target
        with quiet_native_stderr():
            self.executable = relax.build(self.mod, target=host_target(target))
        self._tvm = tvm
        self._vm = relax.VirtualMachine(self.executable, tvm.cpu())

    @property
    def main(self):
        """The compiled "main" function: takes and returns tvm.runtime.Tensor (no copies)."""
        return self._vm["main"]

    def __call__(self, *args: Any) -> Any:
        tvm = self._tvm
        if len(args) != len(self.graph.inputs):
            raise TypeError(f"expected {len(self.graph.inputs)} inputs {self.graph.inputs}, "
                            f"got {len(args)}")
        ins = [tvm.runtime.tensor(np.ascontiguousarray(a.detach().cpu().numpy()))
               for a in args]
        out = self.main(*ins)
        if isinstance(out, tvm.runtime.Tensor):
            return torch.from_numpy(out.numpy())
        return tuple(torch.from_numpy(o.numpy()) for o in out)

    def export_library(self, path: str | os.PathLike) -> None:
        """The compiled CPU library (load with tvm.runtime.load_module + relax.VirtualMachine)."""
        with quiet_native_stderr():
            self.executable.export_library(os.fspath(path))


def compile_tvm(graph: Graph, target: str = "llvm", bsr: bool = True) -> TvmModule:
    return TvmModule(graph, target, bsr)
