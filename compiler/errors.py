"""Errors sparsecc raises for bad input. The CLI prints one line and exits with code 2."""
from __future__ import annotations


class SparseccError(Exception):
    """Base class: a problem with the user's input, reported as one clear line."""
    exit_code = 2


class ModelNotFoundError(SparseccError):
    pass


class CaptureError(SparseccError):
    pass


class UnsupportedOpError(CaptureError):
    """An operator the IR can't represent; names the op, the node and the source line."""

    def __init__(self, op: str, node: str, source: str | None = None, why: str = "") -> None:
        self.op, self.node, self.source = op, node, source
        msg = f"unsupported op {op} (node {node})"
        if why:
            msg += f": {why}"
        if source:
            msg += f" at {source}"
        super().__init__(msg)


class IRParseError(SparseccError):
    pass


class VerifyError(SparseccError):
    pass


class ConfigError(SparseccError):
    pass


class PipelineError(SparseccError):
    pass


class OutputExistsError(SparseccError):
    pass
