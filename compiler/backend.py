"""Backends: what each lowering runs, and the registry that finds them.

A backend is one folder under `backends/` with a `Backend` subclass, plus one line in
`REGISTRY` (name -> "module:Class"; imported only when asked for, so the compiler core imports
no backend). It declares, per target, which pattern families it runs on a kernel of that
pattern (`check`), lowers a planned graph to an `Artifact`, and loads a saved one.

The planner offers a layer a candidate only when `check` passes, and the candidate's reason
names what is missing otherwise ("2:4: ONNX Runtime has no 2:4 kernel, kept dense"). So a
pattern the artifact would run dense is never planned.
"""
from __future__ import annotations

import abc
import importlib
from collections.abc import Mapping
from typing import Any, ClassVar

from .errors import ConfigError

# name -> "module:Class". A new backend is its folder and a line here.
REGISTRY: dict[str, str] = {
    "torch": "sparsecc.backends.torch:TorchBackend",
    "onnx": "sparsecc.backends.onnx:OnnxBackend",
    "tvm": "sparsecc.backends.tvm:TvmBackend",
}

LINEAR_OPS = frozenset({"linear", "addmm", "mm", "matmul"})


class Artifact(abc.ABC):
    """What a backend's lowering produced: it saves itself and says what runs each layer."""

    backend: ClassVar[str]

    @abc.abstractmethod
    def save(self, directory: str) -> list[str]:
        """Write the artifact's files into `directory` (which exists); return their names."""

    @abc.abstractmethod
    def kernels(self) -> dict[str, str]:
        """Layer name -> the pattern family its kernel runs ("dense", "nm", "block", ...),
        read from the lowered artifact itself (not from the plan)."""


class Backend(abc.ABC):
    name: ClassVar[str]
    title: ClassVar[str]               # how the reasons name it: "ONNX Runtime"
    # pattern kind -> the ops this backend runs that kind on with a kernel of that pattern;
    # None: every op a layer can be. Kinds not listed run on no kernel of theirs.
    kernel_ops: ClassVar[Mapping[str, frozenset[str] | None]] = {}
    # the patterns whose sibling linear layers (same input: q/k/v, gate/up) the artifact runs
    # as one GEMM (`sparsecc.plan.sibling_groups`); the whole-model prediction prices them so
    fuses_siblings: ClassVar[tuple[str, ...]] = ()

    def check(self, pattern: Any, op: str, target: Any) -> str | None:
        """None if this backend runs `pattern` on layer op `op` with a kernel of that pattern
        on `target`; else why not, naming what is missing."""
        from .patterns import parse_pattern
        p = parse_pattern(pattern)
        if p.kind == "dense":
            return None
        if p.kind == "composite":    # both parts, and the target runs them together
            return (self.check(p.channel, op, target) or self.check(p.nm, op, target)
                    or target.supports(p, self.name))
        if p.kind == "channel":
            return None if p.kind in self.kernel_ops else f"{self.title} can't shrink layers"
        if p.kind not in self.kernel_ops:
            return f"{self.title} has no {_family(p)} kernel"
        ops = self.kernel_ops[p.kind]
        if ops is not None and op not in ops:
            return f"{self.title} runs {_family(p)} kernels on linear layers only, not {op}"
        why = target.supports(p, self.name)
        return None if why is None else why

    @abc.abstractmethod
    def lower(self, graph: Any, config: Any, target: Any) -> Artifact:
        """The planned graph as this backend's artifact."""

    def load(self, directory: str, device: str = "cpu") -> Any:
        raise ConfigError(f"backend {self.name} can't load a saved artifact")


def _family(p: Any) -> str:
    return {"nm": str(p), "block": "block-sparse"}.get(p.kind, p.kind)


def backend_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get_backend(name: str) -> Backend:
    spec = REGISTRY.get(name)
    if spec is None:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(REGISTRY)}")
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(module), cls)()


def default_backend(target: Any) -> str:
    """torch on GPUs (sparse kernels there are torch's and ours), onnx elsewhere."""
    return "torch" if getattr(target, "kind", None) == "gpu" else "onnx"
