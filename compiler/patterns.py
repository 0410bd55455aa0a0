"""Sparsity patterns as values, their string forms, their masks and where they apply.

    NM(2, 4)                      "2:4"             n of every m weights along the reduction dim
    Block(32, 32, density=0.25)   "block32x32@0.25" whole rows x cols blocks kept at this density
    Channel(ratio=0.5, round_to=64) "channel0.5" / "channel0.5/64"  output channels removed
    Composite(Channel(0.5), NM(2, 4)) "channel0.5+2:4" channels removed, then N:M on the rest
    Dense()                       "dense"

Weights are in the layer's own layout: linear `[out, in]`, conv `[out, in/groups, *kernel]`.
`p.mask(W, S)` is a bool tensor shaped like W (True = kept) that keeps the entries of highest
score S (default |W|) subject to the pattern; ties go to the lower index (stable sort), so masks
are deterministic:

    N:M      in every group of m consecutive weights along the reduction dim keep the top n.
             Linear: groups along `in`. Conv: along the input channels at each kernel position
             (W viewed as [out, *kernel, in/groups], conv-as-GEMM over NHWC).
    Block    W as 2-D [out, in*prod(kernel)] cut into rows x cols tiles; a tile's score is the
             sum of its scores; keep the k = max(1, round(density * n_tiles)) best tiles.
    Channel  keep the `kept_channels(out)` output rows of highest score sum, where
             kept_channels(c) = min(c, max(r, r * round((1 - ratio) * c / r))), r = round_to.

`p.check(shape, op)` names in one line why p can't apply to a layer of that weight shape and op
("K=770 not divisible by 4"), or returns None. `parse_pattern` turns a string into a pattern and
names the problem when it can't.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Union

import torch

from .errors import ConfigError

_LINEAR_OPS = frozenset({"linear", "mm", "matmul", "addmm"})
_CONV_OPS = frozenset({"conv1d", "conv2d", "conv1d.padding", "conv2d.padding"})


def _layout(shape: tuple[int, ...], op: str) -> str | None:
    """None if `shape` fits `op`'s weight layout, else the one-line reason."""
    if op in _LINEAR_OPS:
        return None if len(shape) == 2 else f"{op} weight of rank {len(shape)}, expected 2"
    if op in _CONV_OPS:
        return None if len(shape) >= 3 else f"{op} weight of rank {len(shape)}, expected >= 3"
    return f"op {op} is not a weight layer (linear or conv)"


def _scores(weight: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
    if scores is None:
        return weight.detach().abs()
    if tuple(scores.shape) != tuple(weight.shape):
        raise ValueError(f"scores of shape {tuple(scores.shape)} for a weight of shape "
                         f"{tuple(weight.shape)}")
    return scores.detach()


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k highest entries along the last dim (ties: lower index first)."""
    m = scores.shape[-1]
    if m <= 16:
        # rank by pairwise comparison (a sort per tiny group is slow on big weights):
        # rank_i = #{j: s_j > s_i} + #{j < i: s_j == s_i}
        a, b = scores.unsqueeze(-1), scores.unsqueeze(-2)      # [..., i, 1], [..., 1, j]
        earlier = torch.ones(m, m, dtype=torch.bool, device=scores.device).tril(-1)
        beats = (b > a) | ((b == a) & earlier)                  # j beats i
        return beats.sum(-1) < k
    order = torch.argsort(scores.double(), dim=-1, descending=True, stable=True)
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return keep.scatter_(-1, order[..., :k], True)


@dataclasses.dataclass(frozen=True)
class Dense:
    kind = "dense"

    @property
    def density(self) -> float:
        return 1.0

    def mask(self, weight: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(weight.shape, dtype=torch.bool, device=weight.device)

    def check(self, shape: tuple[int, ...], op: str) -> str | None:
        return None

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

    def check(self, shape: tuple[int, ...], op: str) -> str | None:
        bad = _layout(shape, op)
        if bad:
            return bad
        k = shape[1]
        if op in _LINEAR_OPS:
            return None if k % self.m == 0 else f"K={k} not divisible by {self.m}"
        if k == 1:
            return f"depthwise conv (1 input channel per group) has no {self} groups"
        if k % self.m:
            return f"conv in/groups={k} not divisible by {self.m}"
        return None

    def mask(self, weight: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        s = _scores(weight, scores)
        if s.dim() < 2 or s.shape[1] % self.m:
            raise ValueError(f"{self}: reduction dim of weight {tuple(s.shape)} is not a "
                             f"multiple of {self.m}")
        last = s.movedim(1, -1)                       # [out, *kernel, in]
        groups = last.reshape(*last.shape[:-1], -1, self.m)
        keep = _top(groups, self.n).reshape(last.shape)
        return keep.movedim(-1, 1).contiguous()

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

    def kept_blocks(self, n_blocks: int) -> int:
        return min(n_blocks, max(1, round(self.density * n_blocks)))

    def check(self, shape: tuple[int, ...], op: str) -> str | None:
        bad = _layout(shape, op)
        if bad:
            return bad
        out, red = shape[0], math.prod(shape[1:])
        what = "K" if op in _LINEAR_OPS else "in*kernel"
        if out % self.rows:
            return f"out={out} not divisible by block rows {self.rows}"
        if red % self.cols:
            return f"{what}={red} not divisible by block cols {self.cols}"
        return None

    def mask(self, weight: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        s = _scores(weight, scores).reshape(weight.shape[0], -1)
        out, red = s.shape
        if out % self.rows or red % self.cols:
            raise ValueError(f"{self}: weight {tuple(weight.shape)} (as [{out}, {red}]) does not "
                             f"tile into {self.rows}x{self.cols} blocks")
        br, bc = out // self.rows, red // self.cols
        tiles = s.double().reshape(br, self.rows, bc, self.cols).sum(dim=(1, 3))
        keep = _top(tiles.reshape(-1), self.kept_blocks(br * bc)).reshape(br, 1, bc, 1)
        keep = keep.expand(br, self.rows, bc, self.cols)
        return keep.reshape(weight.shape).contiguous()

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

    def kept_channels(self, channels: int) -> int:
        """How many of `channels` stay: a multiple of round_to near (1 - ratio) * channels."""
        r = self.round_to
        return min(channels, max(r, r * round((1.0 - self.ratio) * channels / r)))

    def check(self, shape: tuple[int, ...], op: str) -> str | None:
        bad = _layout(shape, op)
        if bad:
            return bad
        out = shape[0]
        if out < 2 * self.round_to:
            return f"out={out} < 2*round_to={2 * self.round_to}"
        kept = self.kept_channels(out)
        if kept >= out:
            return f"{self} keeps all {out} output channels"
        return None

    def mask(self, weight: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        s = _scores(weight, scores)
        rows = s.double().reshape(s.shape[0], -1).sum(dim=1)
        keep = _top(rows, self.kept_channels(s.shape[0]))
        return keep.reshape(-1, *([1] * (s.dim() - 1))).expand(s.shape).contiguous()

    def __str__(self) -> str:
        base = f"channel{self.ratio:g}"
        return base if self.round_to == 1 else f"{base}/{self.round_to}"


@dataclasses.dataclass(frozen=True)
class Composite:
    """Output channels removed by `channel`, then `nm` on the rows that remain."""
    channel: Channel
    nm: NM
    kind = "composite"

    def __post_init__(self) -> None:
        if not isinstance(self.channel, Channel) or not isinstance(self.nm, NM):
            raise ConfigError(f"a composite pattern is Channel + NM, got "
                              f"{type(self.channel).__name__} + {type(self.nm).__name__}")

    @property
    def density(self) -> float:
        return self.channel.density * self.nm.density

    def check(self, shape: tuple[int, ...], op: str) -> str | None:
        bad = self.channel.check(shape, op)
        if bad:
            return bad
        shrunk = (self.channel.kept_channels(shape[0]), *shape[1:])
        return self.nm.check(shrunk, op)

    def mask(self, weight: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
        return self.channel.mask(weight, scores) & self.nm.mask(weight, scores)

    def __str__(self) -> str:
        return f"{self.channel}+{self.nm}"


Pattern = Union[Dense, NM, Block, Channel, Composite]
PATTERN_TYPES = (Dense, NM, Block, Channel, Composite)

_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_FORMS = (
    (re.compile(r"dense"), lambda m: Dense()),
    (re.compile(r"(\d+):(\d+)"), lambda m: NM(int(m[1]), int(m[2]))),
    (re.compile(rf"block(\d+)x(\d+)@{_NUM}"), lambda m: Block(int(m[1]), int(m[2]), float(m[3]))),
    (re.compile(rf"channel{_NUM}(?:/(\d+))?"),
     lambda m: Channel(float(m[1]), int(m[2]) if m[2] else 1)),
    (re.compile(rf"(channel{_NUM}(?:/\d+)?)\+(\d+:\d+)"),
     lambda m: Composite(parse_pattern(m[1]), parse_pattern(m[3]))),
)


def parse_pattern(text: str | Pattern) -> Pattern:
    """A pattern from its string form ("2:4", "block32x32@0.25", "channel0.5/64",
    "channel0.5+2:4", "dense")."""
    if isinstance(text, PATTERN_TYPES):
        return text
    if not isinstance(text, str):
        raise ConfigError(f"a pattern is a string or pattern value, got {type(text).__name__}")
    s = text.strip().lower()
    for regex, build in _FORMS:
        m = regex.fullmatch(s)
        if m:
            try:
                return build(m)
            except ConfigError as e:
                raise ConfigError(f"pattern {text!r}: {e}") from None
    raise ConfigError(f"unknown pattern {text!r}; expected one of 'dense', 'N:M' (e.g. '2:4'), "
                      f"'blockRxC@D' (e.g. 'block32x32@0.25'), 'channelR[/ROUND]' "
                      f"(e.g. 'channel0.5/64'), 'channelR[/ROUND]+N:M' (e.g. 'channel0.5+2:4')")


def parse_patterns(text: str) -> tuple[Pattern, ...]:
    """A comma-separated list of patterns: "2:4,channel0.5"."""
    items = [t for t in (p.strip() for p in text.split(",")) if t]
    if not items:
        raise ConfigError("the pattern list is empty")
    return tuple(parse_pattern(t) for t in items)


def pattern_to_json(p: Pattern) -> Any:
    return str(p)
