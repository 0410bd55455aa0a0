"""Native libraries' chatter held back unless something fails.

TVM's C++ runtime logs a warning line per VM function when a `model.so` loads ("Scope Loaded"),
and more on every build and export; ONNX Runtime logs to fd 2 when it builds a session. Python's
`redirect_stderr` can't catch them: they write to the file descriptors. `quiet_native()` points
fds 1 and 2 at temp files for the block and replays what was written only if the block raises.
Python-level output in the block (progress, warnings, prints) still reaches the terminal:
sys.stdout and sys.stderr are pointed at the original descriptors meanwhile.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

REPLAY_CHARS = 4000          # of each stream, on failure: the end is what explains it
_lock = threading.RLock()    # one capture at a time: fds are per process


def _fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError):    # no real fd (e.g. pytest's capture)
        return None


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Capture native writes to fds 1 and 2 during the block; replay them if it raises."""
    with _lock:
        for s in (sys.stdout, sys.stderr):
            if s is not None:
                s.flush()
        held = []                                   # (fd, its copy, the temp file)
        for fd in (1, 2):
            if _open(fd):
                tmp = tempfile.TemporaryFile()
                held.append((fd, os.dup(fd), tmp))
                os.dup2(tmp.fileno(), fd)
        copies = {fd: copy for fd, copy, _ in held}
        swapped = []                                # (name, the stream, its stand-in)
        for name in ("stdout", "stderr"):
            s = getattr(sys, name)
            fd = _fd(s)
            if fd in copies:    # Python's own writes go past the capture, where fd went
                past = io.TextIOWrapper(io.FileIO(copies[fd], "w", closefd=False),
                                        encoding=getattr(s, "encoding", None) or "utf-8",
                                        errors="backslashreplace", line_buffering=True)
                swapped.append((name, s, past))
                setattr(sys, name, past)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            for name, s, past in swapped:
                setattr(sys, name, s)
                past.close()
            for fd, copy, tmp in held:
                os.dup2(copy, fd)
                os.close(copy)
                if failed:
                    tmp.seek(0)
                    text = tmp.read().decode(errors="replace")[-REPLAY_CHARS:]
                    if text:
                        os.write(fd, text.encode())
                tmp.close()
