"""The user's cache: what sparsecc measured on this machine, kept between processes.

    $SPARSECC_CACHE_DIR, else $XDG_CACHE_HOME/sparsecc, else ~/.cache/sparsecc
        targets/NAME.json   targets built for a detected device (`--target auto`)
        tables/NAME.jsonl   cost tables measured by `sparsecc calibrate` (NAME: the target)
        tuning/KEY.json     kernel tuning (cuSPARSELt algorithm and layout, Triton configs),
                            one file per device and library versions

Every file is written atomically (a temp file in the same folder, then a rename), so a reader
sees the old file or the new one, never half of one. A file that can't be read or parsed is
ignored with one warning line naming it, and whatever it held is measured again.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

from .errors import ConfigError


class SparseccWarning(UserWarning):
    """Something sparsecc worked around (a corrupt cache file, an unreadable device property);
    the CLI prints it as one line `sparsecc: warning: ...`."""


def warn(message: str) -> None:
    warnings.warn(message, SparseccWarning, stacklevel=2)


def cache_dir() -> pathlib.Path:
    """The cache folder (not created here)."""
    own = os.environ.get("SPARSECC_CACHE_DIR")
    if own:
        return pathlib.Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg and os.path.isabs(xdg) else \
        pathlib.Path.home() / ".cache"
    return base / "sparsecc"


def slug(text: str) -> str:
    """A file-name-safe lower-case name: 'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090'."""
    s = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return s[:80] or "device"


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write `text` to `path` atomically (a temp file in the same folder, then a rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(doc: Any, path: str | os.PathLike) -> None:
    write_text_atomic(json.dumps(doc, indent=1, sort_keys=True) + "\n", path)


def read_json(path: str | os.PathLike, what: str,
              say: Callable[[str], None] | None = None) -> Any | None:
    """The JSON in `path`; None when it does not exist, and None with a warning (through `say`,
    default `warn`) when it can't be read or parsed (`what` names the file's use)."""
    p = pathlib.Path(path)
    say = say or warn
    try:
        raw = p.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        say(f"ignoring {what} {p}: can't read it ({e.strerror})")
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        say(f"ignoring {what} {p}: not valid JSON ({str(e).splitlines()[0][:120]}); "
            f"it will be measured again")
        return None


MAX_JSON_BYTES = 64 << 20


def load_json_file(path: str | os.PathLike, what: str,
                   max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON in a file the user gave us, or one ConfigError naming the file and the reason:
    missing, unreadable, over `max_bytes`, not UTF-8 text, not JSON, or nested too deeply."""
    p = pathlib.Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise ConfigError(f"{what} {p}: not a regular file")
        if size > max_bytes:
            raise ConfigError(f"{what} {p}: {size:,} bytes, over the {max_bytes:,}-byte limit "
                              f"for a JSON file")
        raw = p.read_bytes()[:max_bytes + 1]
    except FileNotFoundError:
        raise ConfigError(f"{what} {p}: No such file") from None
    except OSError as e:
        raise ConfigError(f"{what} {p}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not text (not UTF-8): is it the right file?") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what} {p} is not valid JSON: {e}") from None
    except RecursionError:
        raise ConfigError(f"{what} {p} is nested too deeply to be a sparsecc file") from None


def ensure_writable(folder: pathlib.Path) -> pathlib.Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"can't create the cache folder {folder}: {e.strerror} "
                          f"(set SPARSECC_CACHE_DIR to a writable folder)") from None
    return folder
