"""Benchmarks: side-by-side timings of dense and compiled models, written as JSON."""
from __future__ import annotations

import json
from typing import Any

from sparsecc.cache import write_text_atomic as write_text

__all__ = ["write_json", "write_text"]


def write_json(doc: dict[str, Any], path: str) -> None:
    """Write `doc` to `path` atomically (a temp file in the same folder, then a rename)."""
    write_text(json.dumps(doc, indent=2) + "\n", path)
