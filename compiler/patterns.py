"""Sparsity patterns as values, and their string forms.

    NM(2, 4)                      "2:4"             n of every m weights along the reduction dim
    Block(32, 32, density=0.25)   "block32x32@0.25" whole rows x cols blocks kept at this density
    Channel(ratio=0.5, round_to=64) "channel0.5" / "channel0.5/64"  output channels removed
    Dense()                       "dense"

`parse_pattern` turns a string into a pattern and names the problem when it can't.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Union

from .errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Dense:
    kind = "dense"

    def __str__(self) -> str:
        return "dense"


@dataclasses.dataclass(frozen=True)
class NM:
    """Keep `n` of every `m` consecutive weights along the reduction (input) dimension."""
    n: int
    m: int
    kind = "nm"

    def __post_init__(self) -> None:
        if not (isinstance(self.n, int) and isinstance(self.m, int)) or not 0 < self.n < self.m:
            raise ConfigError(f"N:M pattern needs integers 0 < n < m, got {self.n}:{self.m}")

    @property
    def density(self) -> float:
        return self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


@dataclasses.dataclass(frozen=True)
class Block:
    """Keep whole `rows` x `cols` weight blocks; `density` is the fraction of blocks kept."""
    rows: int
    cols: int
    density: float

    kind = "block"

    def __post_init__(self) -> None:
        for side in (self.rows, self.cols):
            if not isinstance(side, int) or not 1 <= side <= 1024:
                raise ConfigError(f"block sides must be integers in [1, 1024], "
                                  f"got {self.rows}x{self.cols}")
        if not 0.0 < float(self.density) <= 1.0:
            raise ConfigError(f"block density must be in (0, 1], got {self.density}")
        object.__setattr__(self, "density", float(self.density))

    def __str__(self) -> str:
        return f"block{self.rows}x{self.cols}@{self.density:g}"


@dataclasses.dataclass(frozen=True)
class Channel:
    """Remove `ratio` of the output channels; keep the count a multiple of `round_to`."""
    ratio: float
    round_to: int = 1
    kind = "channel"

    def __post_init__(self) -> None:
        if not 0.0 < float(self.ratio) < 1.0:
            raise ConfigError(f"channel ratio must be in (0, 1), got {self.ratio}")
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise ConfigError(f"channel round_to must be a positive integer, got {self.round_to}")
        object.__setattr__(self, "ratio", float(self.ratio))

    @property
    def density(self) -> float:
        return 1.0 - self.ratio

    def __str__(self) -> str:
        base = f"channel{self.ratio:g}"
        return base if self.round_to == 1 else f"{base}/{self.round_to}"


Pattern = Union[Dense, NM, Block, Channel]

_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_FORMS = (
    (re.compile(r"dense"), lambda m: Dense()),
    (re.compile(r"(\d+):(\d+)"), lambda m: NM(int(m[1]), int(m[2]))),
    (re.compile(rf"block(\d+)x(\d+)@{_NUM}"), lambda m: Block(int(m[1]), int(m[2]), float(m[3]))),
    (re.compile(rf"channel{_NUM}(?:/(\d+))?"),
     lambda m: Channel(float(m[1]), int(m[2]) if m[2] else 1)),
)


def parse_pattern(text: str | Pattern) -> Pattern:
    """A pattern from its string form ("2:4", "block32x32@0.25", "channel0.5/64", "dense")."""
    if isinstance(text, (Dense, NM, Block, Channel)):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"a pattern is a string or pattern value, got {type(text).__name__}")
    s = text.strip().lower()
    for regex, build in _FORMS:
        m = regex.fullmatch(s)
        if m:
            return build(m)
    raise ConfigError(f"unknown pattern {text!r}; expected one of 'dense', 'N:M' (e.g. '2:4'), "
                      f"'blockRxC@D' (e.g. 'block32x32@0.25'), 'channelR[/ROUND]' "
                      f"(e.g. 'channel0.5/64')")


def parse_patterns(text: str) -> tuple[Pattern, ...]:
    """A comma-separated list of patterns: "2:4,channel0.5"."""
    items = [t for t in (p.strip() for p in text.split(",")) if t]
    if not items:
        raise ConfigError("the pattern list is empty")
    return tuple(parse_pattern(t) for t in items)


def pattern_to_json(p: Pattern) -> Any:
    return str(p)
