"""A tiny progress bar for long passes, on stderr, only for a person at a terminal.

    for layer in progress(layers, label="estimate-error"):
        ...

It draws nothing unless the stream is a TTY, and never under pytest (PYTEST_CURRENT_TEST set) or
when SPARSECC_PROGRESS=0. Redraws are throttled to one per `interval` seconds; the line is
cleared when the loop ends, however it ends. No third-party dependencies.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")
BAR_WIDTH = 24


def enabled(stream: IO[str] | None = None) -> bool:
    """Whether progress() would draw on `stream` (default sys.stderr)."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("SPARSECC_PROGRESS", "1") == "0" or "PYTEST_CURRENT_TEST" in os.environ:
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):   # a closed stream
        return False


def _line(label: str, done: int, total: int | None, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    head = f"{label} " if label else ""
    if total:
        filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        eta = (total - done) / rate if rate > 0 else 0.0
        return f"{head}[{bar}] {done}/{total}  {elapsed:.1f}s, {eta:.1f}s left"
    return f"{head}{done} done  {elapsed:.1f}s, {rate:.1f}/s"


def progress(iterable: Iterable[T], total: int | None = None, label: str = "", *,
             stream: IO[str] | None = None, interval: float = 0.1) -> Iterator[T]:
    """Yield every item of `iterable`, drawing a bar on `stream` (default stderr) when enabled."""
    stream = sys.stderr if stream is None else stream
    if not enabled(stream):
        yield from iterable
        return
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    start = last = time.monotonic()
    done, width = 0, 0

    def draw() -> None:
        nonlocal width
        text = _line(label, done, total, time.monotonic() - start)
        stream.write("\r" + text.ljust(width))
        stream.flush()
        width = len(text)

    try:
        draw()
        for item in iterable:
            yield item
            done += 1
            now = time.monotonic()
            if now - last >= interval or done == total:
                last = now
                draw()
    finally:
        stream.write("\r" + " " * width + "\r")
        stream.flush()
