"""Hardware targets, as data: one JSON file per target beside this module.

`get_target("h100")` loads and validates `h100.json` into a typed `Target`: dense and 2:4-sparse
peaks per dtype, memory bandwidth, compute units (SMs, MXUs or cores), the GEMM tile, launch
overhead, L2 size, the cost model's efficiency parameters (`model`) and what each backend can run
there (`backends`). Every number carries its source in the file's `sources` map, keyed by the
number's dotted path or by a prefix of it ("peak_tflops" covers "peak_tflops.f16"); a number
without a source, a missing key or an unknown key is a ConfigError naming the file and the key.

`target.supports(pattern, backend)` returns None when that backend can run the pattern on this
target, else the one-line reason ("tpu-v5e has no N:M sparse hardware").
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

from ..errors import ConfigError
from ..patterns import parse_pattern

DTYPES = ("f16", "bf16", "f32", "int8")          # required peak_tflops keys (number or null)
OPTIONAL_DTYPES = ("tf32",)
DTYPE_BYTES = {"f16": 2, "bf16": 2, "f32": 4, "tf32": 4, "int8": 1}
DTYPE_ALIASES = {"float16": "f16", "half": "f16", "bfloat16": "bf16", "float32": "f32",
                 "float": "f32", "fp16": "f16", "fp32": "f32"}
PATTERN_KINDS = ("dense", "nm", "block", "channel", "composite")

# key -> (type, required); nested dicts are validated by the functions below
_TOP = {"kind": str, "description": str, "peak_tflops": dict, "sparse_tflops": dict,
        "memory_gbs": float, "compute_units": int, "tile": dict, "launch_us": float,
        "l2_mib": (float, type(None)), "model": dict, "backends": dict, "sources": dict}
_OPTIONAL_TOP = {"vector_bits": int, "match": list, "detected": dict}
_MODEL = {"dense_efficiency": float, "memory_efficiency": float,
          "split_k_max": int, "channel_pad": int, "block_efficiency": dict,
          "block_overhead_us": float}
_MODEL_NM = {"nm_efficiency": float, "nm_memory_efficiency": float, "nm_overhead_us": float}
_BACKEND_OPTIONS = {"dense": set(), "channel": set(), "composite": set(),
                    "nm": {"nm"}, "block": {"sides", "align"}}


def normalize_dtype(dtype: str) -> str:
    d = DTYPE_ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if d not in DTYPE_BYTES:
        raise ConfigError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    return d


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """Cost-model parameters of a target (fitted or approximate; see the file's sources)."""
    dense_efficiency: float        # fraction of dense peak a large GEMM reaches
    memory_efficiency: float       # fraction of memory bandwidth a streaming GEMM reaches
    split_k_max: int               # largest split-K factor the dense GEMM library uses
    channel_pad: int               # channel-pruned widths are padded up to a multiple of this
    block_efficiency: Mapping[int, float]   # fraction of dense peak by block side
    block_overhead_us: float       # fixed extra time of a block-sparse GEMM call
    # only on targets with 2:4 sparse tensor cores (sparse_tflops not empty):
    nm_efficiency: float | None = None         # fraction of the 2:4 sparse peak reached
    nm_memory_efficiency: float | None = None  # bandwidth fraction the 2:4 kernel reaches
    nm_overhead_us: float | None = None        # fixed extra time of a 2:4 GEMM call


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    kind: str
    description: str
    peak_tflops: Mapping[str, float | None] = dataclasses.field(default_factory=dict, hash=False)
    sparse_tflops: Mapping[str, float] = dataclasses.field(default_factory=dict, hash=False)
    memory_gbs: float = 0.0
    compute_units: int = 1
    tile: tuple[int, int] = (1, 1)            # (m, n) of one GEMM tile / MXU / register tile
    launch_us: float = 0.0
    l2_mib: float | None = None
    model: ModelParams | None = dataclasses.field(default=None, hash=False)
    backends: Mapping[str, Mapping[str, Mapping[str, Any]]] = dataclasses.field(
        default_factory=dict, hash=False)
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)
    vector_bits: int | None = None
    match: tuple[str, ...] = ()                # regexes on a CUDA device name (`--target auto`)
    data: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("gpu", "tpu", "cpu"):
            raise ConfigError(f"target {self.name}: kind must be gpu, tpu or cpu, not {self.kind!r}")

    @property
    def has_sparse_tensor_cores(self) -> bool:
        return bool(self.sparse_tflops)

    def peak(self, dtype: str, sparse: bool = False) -> float | None:
        """Peak TFLOP/s for `dtype` (None if the hardware has no such path)."""
        d = normalize_dtype(dtype)
        table = self.sparse_tflops if sparse else self.peak_tflops
        return table.get(d)

    def source_of(self, path: str) -> str | None:
        """The source string of the number at dotted `path` (or of its nearest prefix)."""
        parts = path.split(".")
        for i in range(len(parts), 0, -1):
            s = self.sources.get(".".join(parts[:i]))
            if s:
                return s
        return None

    def supports(self, pattern: Any, backend: str) -> str | None:
        """None if `backend` runs `pattern` on this target, else the reason it can't."""
        p = parse_pattern(pattern)
        caps = self.backends.get(backend)
        if caps is None:
            return f"backend {backend} is not available on {self.name}"
        if p.kind == "composite":
            return (self.supports(p.channel, backend) or self.supports(p.nm, backend)
                    or (None if "composite" in caps else f"{backend} on {self.name} can't "
                        f"combine channel pruning with N:M"))
        if p.kind not in caps:
            what = {"nm": "N:M", "block": "block-sparse", "channel": "channel-pruned",
                    "dense": "dense"}[p.kind]
            if p.kind == "nm" and not self.has_sparse_tensor_cores:
                return f"{self.name} has no N:M sparse hardware"
            return f"{backend} on {self.name} runs no {what} kernels"
        opts = caps[p.kind]
        if p.kind == "nm" and str(p) not in opts.get("nm", ()):
            return f"{backend} on {self.name} runs only {', '.join(opts['nm'])}, not {p}"
        if p.kind == "block":
            sides = opts.get("sides")
            if sides and (p.rows not in sides or p.cols not in sides):
                return (f"{backend} on {self.name} runs blocks with sides in {sides}, "
                        f"not {p.rows}x{p.cols}")
            align = opts.get("align")
            if align and (p.rows % align or p.cols % align):
                return f"{backend} on {self.name} needs blocks aligned to {align}, not {p.rows}x{p.cols}"
        return None


def _numbers(obj: Any, path: str) -> Iterator[str]:
    """Dotted paths of every number (or list of numbers) inside `obj`."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path
    elif isinstance(obj, list) and any(isinstance(v, (int, float)) and not isinstance(v, bool)
                                       for v in obj):
        yield path
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}" if path else str(k))


def _check_keys(raw: Mapping[str, Any], spec: Mapping[str, Any], optional: Mapping[str, Any],
                where: str, prefix: str = "") -> None:
    for key in raw:
        if key not in spec and key not in optional:
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'")
    for key, typ in {**spec, **{k: v for k, v in optional.items() if k in raw}}.items():
        if key not in raw:
            raise ConfigError(f"{where}: missing key '{prefix}{key}'")
        v = raw[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if float in types:
            types = (*types, int)
        if isinstance(v, bool) or not isinstance(v, types):
            raise ConfigError(f"{where}: key '{prefix}{key}' must be "
                              f"{' or '.join(t.__name__ for t in types)}, got {v!r}")


def _positive(value: Any, where: str, key: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where}: key {key!r} must be a positive number, got {value!r}")


def target_from_dict(name: str, raw: Mapping[str, Any], where: str) -> Target:
    """Validate one target file's contents (`where` names it in errors) and build the Target."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a target file holds a JSON object")
    _check_keys(raw, _TOP, _OPTIONAL_TOP, where)
    if raw["kind"] not in ("gpu", "tpu", "cpu"):
        raise ConfigError(f"{where}: key 'kind' must be gpu, tpu or cpu, not {raw['kind']!r}")
    peaks = raw["peak_tflops"]
    _check_keys(peaks, {d: (float, type(None)) for d in DTYPES},
                {d: (float, type(None)) for d in OPTIONAL_DTYPES}, where, "peak_tflops.")
    for d, v in peaks.items():
        _positive(v, where, f"peak_tflops.{d}", allow_none=True)
    for d, v in raw["sparse_tflops"].items():
        if d not in DTYPE_BYTES:
            raise ConfigError(f"{where}: unknown key 'sparse_tflops.{d}'")
        _positive(v, where, f"sparse_tflops.{d}")
    for key in ("memory_gbs", "compute_units"):
        _positive(raw[key], where, key)
    if raw["launch_us"] < 0:
        raise ConfigError(f"{where}: key 'launch_us' must be >= 0, got {raw['launch_us']!r}")
    tile = raw["tile"]
    _check_keys(tile, {"m": int, "n": int}, {}, where, "tile.")
    for key in ("m", "n"):
        _positive(tile[key], where, f"tile.{key}")
    model = raw["model"]
    nm_keys = _MODEL_NM if raw["sparse_tflops"] else {}
    _check_keys(model, {**_MODEL, **nm_keys}, {}, where, "model.")
    for key, v in model.items():
        if key.endswith("_efficiency") and key != "block_efficiency" and not 0 < v <= 1:
            raise ConfigError(f"{where}: key 'model.{key}' must be in (0, 1], got {v!r}")
        if key.endswith("_us") and v < 0:
            raise ConfigError(f"{where}: key 'model.{key}' must be >= 0, got {v!r}")
    for key in ("split_k_max", "channel_pad"):
        _positive(model[key], where, f"model.{key}")
    blocks = {}
    for side, eff in model["block_efficiency"].items():
        if not str(side).isdigit():
            raise ConfigError(f"{where}: key 'model.block_efficiency.{side}' must be a block side")
        if isinstance(eff, bool) or not isinstance(eff, (int, float)) or not 0 < eff <= 1:
            raise ConfigError(f"{where}: key 'model.block_efficiency.{side}' must be in (0, 1], "
                              f"got {eff!r}")
        blocks[int(side)] = float(eff)
    for key, kinds in raw["backends"].items():
        if not isinstance(kinds, dict):
            raise ConfigError(f"{where}: key 'backends.{key}' must map pattern kinds to options")
        for kind, opts in kinds.items():
            if not isinstance(opts, dict):
                raise ConfigError(f"{where}: key 'backends.{key}.{kind}' must be an object of options")
            if kind not in _BACKEND_OPTIONS:
                raise ConfigError(f"{where}: unknown key 'backends.{key}.{kind}' "
                                  f"(pattern kinds: {', '.join(PATTERN_KINDS)})")
            extra = set(opts) - _BACKEND_OPTIONS[kind] - {"kernel", "note"}
            if extra:
                raise ConfigError(f"{where}: unknown key 'backends.{key}.{kind}.{sorted(extra)[0]}'")
    for i, rx in enumerate(raw.get("match", ())):
        if not isinstance(rx, str) or not rx:
            raise ConfigError(f"{where}: key 'match[{i}]' must be a non-empty regex string")
        try:
            re.compile(rx)
        except re.error as e:
            raise ConfigError(f"{where}: key 'match[{i}]' is not a valid regex: {e}") from None
    sources = raw["sources"]
    for key, text in sources.items():
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: key 'sources.{key}' must be a non-empty string")
    for path in _numbers({k: v for k, v in raw.items() if k != "sources"}, ""):
        parts = path.split(".")
        if not any(isinstance(sources.get(".".join(parts[:i])), str) and sources[".".join(parts[:i])]
                   for i in range(len(parts), 0, -1)):
            raise ConfigError(f"{where}: key {path!r} has no source (add it to 'sources')")
    return Target(
        name=name, kind=raw["kind"], description=raw["description"],
        peak_tflops={k: (None if v is None else float(v)) for k, v in peaks.items()},
        sparse_tflops={k: float(v) for k, v in raw["sparse_tflops"].items()},
        memory_gbs=float(raw["memory_gbs"]), compute_units=int(raw["compute_units"]),
        tile=(tile["m"], tile["n"]), launch_us=float(raw["launch_us"]),
        l2_mib=None if raw["l2_mib"] is None else float(raw["l2_mib"]),
        model=ModelParams(**{**model, "block_efficiency": blocks}),
        backends=raw["backends"], sources=dict(sources), vector_bits=raw.get("vector_bits"),
        match=tuple(raw.get("match", ())), data=dict(raw))


@functools.cache
def target_names() -> tuple[str, ...]:
    """The packaged targets (one JSON file each beside this module)."""
    files = resources.files(__package__).iterdir()
    return tuple(sorted(f.name[:-5] for f in files if f.name.endswith(".json")))


def cached_target_names() -> tuple[str, ...]:
    """Targets built for devices of this machine by `--target auto` (in the user's cache)."""
    from ..cache import cache_dir
    folder = cache_dir() / "targets"
    try:
        return tuple(sorted(p.stem for p in folder.glob("*.json")
                            if p.stem not in target_names()))
    except OSError:
        return ()


ALIASES = {"cpu": "cpu-x86", "x86": "cpu-x86", "tpu-v5": "tpu-v5e"}
AUTO = "auto"


def _parse(text: str, name: str, where: str) -> Target:
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"{where}: not valid JSON: {str(e).splitlines()[0][:160]}") from None
    return target_from_dict(name, raw, where)


def load_target_file(path: str | os.PathLike) -> Target:
    """A target from any JSON file of the same schema (named after the file)."""
    p = pathlib.Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: can't read the target file: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: a target file is UTF-8 JSON text, this is not") from None
    return _parse(text, p.stem, str(p))


def known_names() -> str:
    """What an unknown-target error lists."""
    extra = cached_target_names()
    names = ", ".join(target_names())
    if extra:
        names += f"; built on this machine: {', '.join(extra)}"
    return f"{names}; or auto (detect this machine's GPU or CPU)"


def get_target(name: str) -> Target:
    """A target by name: a packaged one, one built earlier for a device of this machine, or
    `auto` (this machine's GPU, else its CPU: see `sparsecc.targets.detect`)."""
    if not isinstance(name, str):
        raise ConfigError(f"target must be a name, got {name!r}")
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key == AUTO:
        from .detect import detect
        return detect().target
    if key in target_names():
        return _packaged(key)
    if key in cached_target_names():
        from ..cache import cache_dir
        return load_target_file(cache_dir() / "targets" / f"{key}.json")
    raise ConfigError(f"unknown target {name!r}; known: {known_names()}")


@functools.cache
def _packaged(key: str) -> Target:
    text = resources.files(__package__).joinpath(f"{key}.json").read_text()
    return _parse(text, key, f"targets/{key}.json")
