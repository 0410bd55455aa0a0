"""Hardware targets, as data: one JSON file per target beside this module.

`get_target("h100")` loads `h100.json`. Each file names the device and its kind (gpu, tpu,
cpu); the cost-model figures (peaks, bandwidths, tile sizes) and their sources live in the same
files as they are added.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from typing import Any

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    kind: str
    description: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("gpu", "tpu", "cpu"):
            raise ConfigError(f"target {self.name}: kind must be gpu, tpu or cpu, not {self.kind!r}")


@functools.cache
def target_names() -> tuple[str, ...]:
    files = resources.files(__package__).iterdir()
    return tuple(sorted(f.name[:-5] for f in files if f.name.endswith(".json")))


ALIASES = {"cpu": "cpu-x86", "x86": "cpu-x86", "tpu-v5": "tpu-v5e"}


@functools.cache
def get_target(name: str) -> Target:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in target_names():
        raise ConfigError(f"unknown target {name!r}; known: {', '.join(target_names())}")
    raw = json.loads(resources.files(__package__).joinpath(f"{key}.json").read_text())
    return Target(name=key, kind=raw["kind"], description=raw["description"], data=raw)
