"""Progress for long phases, on stderr: a tqdm bar at a terminal, plain lines elsewhere.

    with phase("capture"):                        # one step of unknown length: label, elapsed
        ...
    for layer in progress(layers, label="reconstruct", unit="layers"):   # a loop: n of total
        ...

A person at a terminal sees a tqdm bar once a phase has run MIN_SECONDS (2 s), cleared when it
ends. A log (CI, a pipe) gets one plain line every SPARSECC_PROGRESS_INTERVAL seconds (default
10), `reconstruct 12/44 layers, 31 s`, and a last line when a phase that printed ends. A loop
inside a phase (a pass's layers inside the pass) takes over the phase's lines; at a terminal it
is a second bar under the first. A background thread keeps the elapsed time moving while one
step runs long (a 30 s solve), drawing only.

Nothing is drawn under pytest (PYTEST_CURRENT_TEST) unless forced, with SPARSECC_PROGRESS=0, or
at level QUIET (the CLI's -q); SPARSECC_PROGRESS=1 forces it on (tests set it, with
SPARSECC_PROGRESS_INTERVAL=0 for a line at every step). At level VERBOSE (-v), `detail()` lines
show (the pipeline's per-pass times). `write()` prints a line without tearing a bar.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
QUIET, NORMAL, VERBOSE = 0, 1, 2
MIN_SECONDS = 2.0           # a phase shorter than this shows nothing
LINE_INTERVAL = 10.0        # seconds between plain lines in a log
TICK = 0.5                  # how often the elapsed time of a bar is redrawn

_level = NORMAL
_stack: list["_Display"] = []
_stack_lock = threading.Lock()


def set_level(level: int) -> None:
    """QUIET: no progress and no detail; NORMAL; VERBOSE: detail() lines too."""
    global _level
    if level not in (QUIET, NORMAL, VERBOSE):
        raise ValueError(f"progress level {level!r}: expected QUIET, NORMAL or VERBOSE")
    _level = level


def level() -> int:
    return _level


class _Stderr:
    """sys.stderr as it is at each write, not at the bar's start: a native-output capture
    (`sparsecc.native.quiet_native`) points sys.stderr past the captured fd meanwhile."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def fileno(self) -> int:
        return sys.stderr.fileno()

    def isatty(self) -> bool:
        return _isatty(sys.stderr)

    @property
    def encoding(self) -> str:
        return getattr(sys.stderr, "encoding", None) or "utf-8"


_STDERR = _Stderr()


def _isatty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):   # a closed stream
        return False


def enabled(stream: IO[str] | None = None) -> bool:
    """Whether progress would show on `stream` (default sys.stderr) at all."""
    switch = os.environ.get("SPARSECC_PROGRESS", "")
    if switch == "0" or _level == QUIET:
        return False
    if switch != "1" and "PYTEST_CURRENT_TEST" in os.environ:
        return False
    stream = sys.stderr if stream is None else stream
    return not getattr(stream, "closed", False)


def _interval(interval: float | None) -> float:
    if interval is not None:
        return max(0.0, interval)
    try:
        return max(0.0, float(os.environ.get("SPARSECC_PROGRESS_INTERVAL", LINE_INTERVAL)))
    except ValueError:
        return LINE_INTERVAL


def seconds(t: float) -> str:
    """Elapsed time the way the CLI says it: 0.4 s, 31 s, 4 min 12 s."""
    if t < 10:
        return f"{t:.1f} s"
    if t < 120:
        return f"{t:.0f} s"
    return f"{int(t // 60)} min {int(t % 60)} s"


class _Display:
    """One phase or loop on screen; `step` from the worker, `tick` from the clock thread."""

    def __init__(self, label: str, total: int | None, unit: str, counted: bool) -> None:
        self.label, self.total, self.unit, self.counted = label, total, unit, counted
        self.n = 0
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def what(self) -> str:
        if not self.counted:
            return self.label
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.label} {self.n}{of}{' ' + self.unit if self.unit else ''}"

    def step(self, n: int = 1) -> None:
        raise NotImplementedError

    def tick(self, top: bool) -> None:
        raise NotImplementedError

    def close(self, ok: bool, report_end: bool) -> None:
        raise NotImplementedError


class _Bar(_Display):
    """A tqdm bar (terminal): drawn after `delay` seconds, cleared at the end."""

    def __init__(self, label, total, unit, counted, stream, interval) -> None:
        super().__init__(label, total, unit, counted)
        units = " {unit}" if unit else ""
        if not counted:
            fmt = "{desc} [{elapsed}]"
        elif total is None:
            fmt = "{desc} {n_fmt}" + units + " [{elapsed}]"
        else:
            fmt = "{desc} |{bar}| {n_fmt}/{total_fmt}" + units + " [{elapsed}<{remaining}]"
        # miniters=0: update(0) from the clock redraws (elapsed) without counting a step
        self.bar = tqdm(total=total, desc=label, unit=unit or "it", file=stream, leave=False,
                        delay=min(MIN_SECONDS, interval), mininterval=min(0.1, interval),
                        miniters=0, bar_format=fmt,
                        ncols=shutil.get_terminal_size((80, 24)).columns)  # 0 wide: 80
        self.shown = False

    def step(self, n: int = 1) -> None:
        with self.lock:
            self.n += n
            self.shown = bool(self.bar.update(n)) or self.shown

    def tick(self, top: bool) -> None:
        with self.lock:
            self.shown = bool(self.bar.update(0)) or self.shown

    def close(self, ok: bool, report_end: bool) -> None:
        with self.lock:
            self.bar.close()


class _Lines(_Display):
    """Plain lines (logs, pipes): one per `interval` seconds, and a last one if any showed."""

    def __init__(self, label, total, unit, counted, stream, interval) -> None:
        super().__init__(label, total, unit, counted)
        self.stream, self.interval = stream, interval
        self.last = self.start
        self.printed = False

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self.printed = True

    def step(self, n: int = 1) -> None:
        with self.lock:
            self.n += n
            self._maybe_line()

    def tick(self, top: bool) -> None:
        if top:                        # a loop inside this phase speaks for it
            with self.lock:
                self._maybe_line()

    def _maybe_line(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(f"{self.what()}, {seconds(now - self.start)}")

    def close(self, ok: bool, report_end: bool) -> None:
        with self.lock:
            if self.printed and report_end:
                took = seconds(time.monotonic() - self.start)
                state = "done in" if ok else "stopped after"
                self._line(f"{self.what()}, {state} {took}" if self.counted
                           else f"{self.label} {state} {took}")


def _clock(display: _Display, stop: threading.Event, period: float) -> None:
    while not stop.wait(period):
        with _stack_lock:
            top = bool(_stack) and _stack[-1] is display
        try:
            display.tick(top)
        except Exception:           # noqa: BLE001 - drawing must never break the work
            return


@contextlib.contextmanager
def _shown(label: str, total: int | None, unit: str, counted: bool, stream: IO[str] | None,
           interval: float | None, report_end: bool = True,
           lines: bool = True) -> Iterator[_Display | None]:
    target = stream if stream is not None else _STDERR
    tty = _isatty(target)
    if not enabled(stream if stream is not None else sys.stderr) or not (tty or lines):
        yield None
        return
    every = _interval(interval)
    display = (_Bar if tty else _Lines)(label, total, unit, counted, target, every)
    with _stack_lock:
        _stack.append(display)
    stop = threading.Event()
    period = TICK if tty else max(TICK, min(every, 1.0))
    clock = threading.Thread(target=_clock, args=(display, stop, period), daemon=True,
                             name=f"sparsecc-progress-{label}")
    clock.start()
    ok = False
    try:
        yield display
        ok = True
    finally:
        stop.set()
        clock.join()
        with _stack_lock:
            if display in _stack:
                _stack.remove(display)
        display.close(ok, report_end)


def progress(iterable: Iterable[T], total: int | None = None, label: str = "", *,
             unit: str = "", stream: IO[str] | None = None, interval: float | None = None,
             lines: bool = True) -> Iterator[T]:
    """Yield every item of `iterable`, showing `label n/total unit` while it runs.
    `lines=False`: a bar at a terminal only (for a caller that logs its own lines)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with _shown(label, total, unit, True, stream, interval, lines=lines) as display:
        if display is None:
            yield from iterable
            return
        for item in iterable:
            yield item
            display.step()


@contextlib.contextmanager
def phase(label: str, *, stream: IO[str] | None = None,
          interval: float | None = None) -> Iterator[None]:
    """Show `label` and its elapsed time while the block runs (capture, a pass, lowering); at
    VERBOSE, a line `label: 3.1 s` when it ends (that line then replaces a log's last line)."""
    start = time.monotonic()
    with _shown(label, None, "", False, stream, interval, report_end=_level < VERBOSE):
        yield
    detail(f"{label}: {seconds(time.monotonic() - start)}")


def write(text: str, file: IO[str] | None = None) -> None:
    """Print one line (default stdout), clearing any bar on screen first and redrawing it
    after (stdout and stderr share the terminal)."""
    with _stack_lock:
        bars = [d for d in _stack if isinstance(d, _Bar) and d.shown]
    for d in bars:
        d.bar.clear()
    print(text, file=sys.stdout if file is None else file, flush=True)
    for d in bars:
        d.bar.refresh()


def detail(text: str) -> None:
    """A line on stderr at level VERBOSE only (the CLI's -v)."""
    if _level >= VERBOSE:
        write(text, file=sys.stderr)
