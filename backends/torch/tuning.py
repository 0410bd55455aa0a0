"""Kernel tuning that persists: one JSON file per device and library versions in the user's cache.

    tuning_cache().get("cusparselt-2:4", key, check) -> dict | None
    tuning_cache().put("cusparselt-2:4", key, {"layout": "row", "alg_id": 6, "us": 41.2})

The file is `tuning/<device>-<hash of the environment>.json` under `sparsecc.cache.cache_dir()`,
where the environment is the device name and compute capability, the driver, and the torch,
CUDA, cuSPARSELt and Triton versions: a choice measured under other versions is never reused.
Keys are the shape, M bucket, dtype and the kernel's options, joined into one string.

Every `put` re-reads the file, merges and writes it atomically, so two processes tuning at once
lose at most each other's newest entries, never the file. A file that can't be parsed, whose
environment is not this one, or an entry that fails its kernel's check is ignored with one
warning line, and that choice is measured again. SPARSECC_TUNING_CACHE=0 turns the disk off
(every process tunes afresh).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from sparsecc.cache import cache_dir, read_json, slug, warn, write_json_atomic

SCHEMA = 1
Checker = Callable[[Mapping[str, Any]], str | None]


def library_versions() -> dict[str, Any]:
    """cuSPARSELt and Triton versions (None where absent)."""
    import torch
    out: dict[str, Any] = {}
    try:
        out["cusparselt"] = torch.backends.cusparselt.version()
    except Exception:                      # noqa: BLE001 - not in every torch build
        out["cusparselt"] = None
    try:
        import triton
        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    return out


def environment() -> dict[str, Any]:
    """What a tuning choice depends on besides its shape: device and library versions."""
    import torch
    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["device"] = p.name
        env["capability"] = f"{p.major}.{p.minor}"
        env["driver"] = _driver_version()
    env.update(library_versions())
    return env


def _driver_version() -> int | None:
    """The CUDA driver's version (cuDriverGetVersion), or None where libcuda can't say."""
    import ctypes
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int()
        return int(v.value) if lib.cuDriverGetVersion(ctypes.byref(v)) == 0 else None
    except (OSError, AttributeError):
        return None


def entry_key(*parts: Any) -> str:
    return "|".join(str(p) for p in parts)


class TuningCache:
    """The tuning choices of this device and these library versions, on disk."""

    def __init__(self, env: Mapping[str, Any], folder: str | os.PathLike | None = None,
                 enabled: bool = True) -> None:
        self.env = dict(env)
        digest = hashlib.sha256(json.dumps(self.env, sort_keys=True).encode()).hexdigest()[:12]
        base = folder if folder is not None else cache_dir() / "tuning"
        self.path = os.path.join(os.fspath(base), f"{slug(str(env.get('device', 'cpu')))}-{digest}.json")
        self.enabled = enabled
        self.hits = self.misses = 0
        self._warned: set[str] = set()
        self._entries: dict[str, dict[str, Any]] | None = None

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warn(message)

    def _read(self) -> dict[str, dict[str, Any]]:
        doc = read_json(self.path, "tuning cache", lambda m: self._warn_once("read", m)) \
            if self.enabled else None
        if doc is None:
            return {}
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA \
                or not isinstance(doc.get("entries"), dict):
            self._warn_once("schema", f"ignoring tuning cache {self.path}: not a sparsecc tuning "
                                      f"file (schema {SCHEMA}); kernels will be tuned again")
            return {}
        if doc.get("environment") != self.env:
            self._warn_once("env", f"ignoring tuning cache {self.path}: made for another device "
                                   f"or library versions; kernels will be tuned again")
            return {}
        return {k: v for k, v in doc["entries"].items() if isinstance(v, dict)}

    def entries(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def get(self, kind: str, key: str, check: Checker | None = None) -> dict[str, Any] | None:
        """The stored value, if any and if `check(value)` finds nothing wrong with it (it
        returns the reason a value is unusable, or None)."""
        value = self.entries().get(f"{kind}|{key}")
        if value is None:
            self.misses += 1
            return None
        reason = check(value) if check else None
        if reason:
            self._warn_once(f"{kind}|{key}", f"ignoring tuning entry {kind} {key} in {self.path}: "
                                             f"{reason}; tuning it again")
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, kind: str, key: str, value: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        entries = self._read()                     # merge with what other processes wrote
        entries.update(self.entries())
        entries[f"{kind}|{key}"] = dict(value)
        self._entries = entries
        try:
            write_json_atomic({"schema": SCHEMA, "environment": self.env, "entries": entries},
                              self.path)
        except OSError as e:
            self._warn_once("write", f"can't write the tuning cache {self.path} ({e.strerror}); "
                                     f"tuning will be repeated in the next process")


_CACHE: TuningCache | None = None


def tuning_cache() -> TuningCache:
    """This process's tuning cache (for CUDA device 0)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = TuningCache(environment(),
                             enabled=os.environ.get("SPARSECC_TUNING_CACHE", "1") != "0")
    return _CACHE


def reset_tuning_cache() -> None:
    """Forget this process's view of the cache (the next use re-reads the disk)."""
    global _CACHE
    _CACHE = None
