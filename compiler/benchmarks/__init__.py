"""Benchmarks: side-by-side timings of dense and compiled models, written as JSON."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_json(doc: dict[str, Any], path: str) -> None:
    """Write `doc` to `path` atomically (a temp file in the same folder, then a rename)."""
    write_text(json.dumps(doc, indent=2) + "\n", path)


def write_text(text: str, path: str) -> None:
    """Write `text` to `path` atomically (a temp file in the same folder, then a rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
