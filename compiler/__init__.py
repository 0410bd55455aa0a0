"""sparsecc: a hardware-aware sparsity compiler.

    import sparsecc
    result = sparsecc.compile(model, example_inputs, sparsecc.CompileConfig(target="h100"))
    result.save("out/")
"""
from .api import CompileResult, compile, load
from .config import CompileConfig
from .errors import (CaptureError, ConfigError, ModelNotFoundError, SparseccError,
                     UnsupportedOpError, VerifyError)
from .patterns import NM, Block, Channel, Dense, parse_pattern
from .ir import run

__all__ = ["NM", "Block", "CaptureError", "Channel", "CompileConfig", "CompileResult", "load",
           "ConfigError", "Dense", "ModelNotFoundError", "SparseccError", "UnsupportedOpError",
           "VerifyError", "compile", "parse_pattern", "run"]
__version__ = "0.1.0"
