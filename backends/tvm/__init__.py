"""TVM backend: the planned IR as a TVM Relax module (built directly, no TVM frontend).

    build_relax(graph)      IR -> Relax IRModule (block-sparse layers as a TIR BSR kernel)
    compile_tvm(graph)      -> TvmModule: built for llvm (CPU), callable on torch tensors

Needs the `tvm` extra (apache-tvm 0.27.0.post1, apache-tvm-ffi 0.1.14.post0); importing this
package does not import TVM.
"""
from __future__ import annotations

from .artifact import TvmArtifact, TvmBackend
from .relax_builder import TvmLoweringError, build_relax, lowerable_ops
from .module import TvmModule, compile_tvm

__all__ = ["TvmArtifact", "TvmBackend", "TvmLoweringError", "TvmModule", "build_relax",
           "compile_tvm", "lowerable_ops"]
