"""The zoo's registry: named builders that return ready-to-compile reference models.

A builder is registered under a name with `@register("name")` and is called by `get(name, ...)` as
`builder(tiny=..., batch=..., seq=..., seed=...)`. It returns a `ZooModel`: the module (eval mode,
float32, CPU) together with everything a compiler needs to capture and calibrate it: example inputs
and their forward-parameter names, which axes are dynamic, a few calibration batches and the workload
the model stands for. Builders are deterministic given `seed`; they draw every random number from
seeded `torch.Generator`s (see `seeding.py`), never from torch's global RNG.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import torch

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


_BUILDERS: dict[str, ZooBuilder] = {}


def register(name: str) -> Callable[[ZooBuilder], ZooBuilder]:
    """Decorator that registers a builder under `name`; registering a name twice is an error."""

    def decorate(builder: ZooBuilder) -> ZooBuilder:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return decorate


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
    a ValueError. Two calls with the same arguments give identical weights and inputs.
    """
    if name not in _BUILDERS:
        raise UnknownModelError(name, names())
    for label, value in (("batch", batch), ("seq", seq)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    return _BUILDERS[name](tiny=tiny, batch=batch, seq=seq, seed=seed)


def reject_seq(name: str, seq: int | None) -> None:
    """For builders of models without a sequence axis: refuse a `seq` override."""
    if seq is not None:
        raise ValueError(f"model {name!r} has no sequence axis; seq={seq} does not apply")
