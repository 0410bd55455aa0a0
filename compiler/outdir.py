"""Output directories: checked before the work, written whole or not at all, never data loss.

    check_out(path, force, inputs)   before any long work: one clear error, or the resolved path
    write_out(path, write, force, inputs)   write into a temp dir, then put it at `path`

Rules:
* `--out` names a directory. An existing one is replaced only with `force`, and only when it
  holds a previous sparsecc output (the `MARKER` file `write_out` puts in every output), is not
  the current directory or one above it, and holds none of the run's input files. A regular
  file is never replaced.
* The output is written into `.sparsecc-tmp-PID-*` beside it and renamed into place. With
  `force`, the old output and the new one are exchanged in one atomic rename (Linux
  `renameat2(RENAME_EXCHANGE)`), so a kill at any moment leaves one of them complete at `path`;
  where that call is missing, the old output is parked as `.sparsecc-old-PID-NAME` first and a
  later run puts it back if the process died before the new one took its place.
* A run removes its temp dirs on every exit it can see (errors, Ctrl-C, SIGTERM via the CLI);
  the next run beside the same `path` removes those of processes that no longer exist.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable

from .errors import OutputExistsError, SparseccError

MARKER = ".sparsecc-output"
_TMP = re.compile(r"^\.sparsecc-(tmp|old)-(\d+)-(.*)$")


class OutputError(SparseccError):
    """An --out (or --dump-ir) path that can't be written; the message says why."""


def _inside(child: str, parent: str) -> bool:
    child, parent = os.path.realpath(child), os.path.realpath(parent)
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def is_ours(path: str) -> bool:
    """Whether `path` is a directory holding a sparsecc output (its marker file)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MARKER))


def check_writable_dir(path: str, what: str) -> str:
    """The absolute path of a directory we may create or write files in, else OutputError."""
    out = os.path.abspath(path)
    if len(os.path.basename(out).encode()) > 255 or len(out.encode()) > 4000:
        raise OutputError(f"{what} {path}: the path is too long")
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{what} {path} is a file, not a directory")
    probe = out
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise OutputError(f"{what} {path}: {probe} is a file, so nothing can be made below it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: {probe} is not writable")
    return out


def check_out(path: str, force: bool, inputs: Iterable[str] = ()) -> str:
    """Check `--out` before the work: the absolute path, or one OutputError naming why not."""
    out = check_writable_dir(path, "--out")
    if not os.path.exists(out):
        return out
    if not force:
        raise OutputExistsError(f"output directory {path} exists; pass --force to replace it")
    if _inside(os.getcwd(), out):
        raise OutputError(f"--force won't replace {path}: it is the current directory or "
                          f"holds it")
    for f in inputs:
        if f and os.path.exists(f) and _inside(f, out):
            raise OutputError(f"--force won't replace {path}: it holds the input {f}")
    if not is_ours(out):
        raise OutputError(f"--force won't replace {path}: it is not a sparsecc output "
                          f"(no {MARKER} file); remove it yourself or choose another --out")
    if not os.access(os.path.dirname(out), os.W_OK | os.X_OK):
        raise OutputError(f"--out {path}: its parent is not writable")
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(parent: str) -> None:
    """Remove the temp dirs of dead processes in `parent`; put back a parked old output whose
    replacement never arrived."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        m = _TMP.match(name)
        if not m or _alive(int(m.group(2))) or int(m.group(2)) == os.getpid():
            continue
        path = os.path.join(parent, name)
        if m.group(1) == "old":
            target = os.path.join(parent, m.group(3))
            if not os.path.exists(target) and is_ours(path):
                os.replace(path, target)           # the new output never took its place
                continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), a)


def write_out(path: str, write: Callable[[str], None], force: bool = False,
              inputs: Iterable[str] = ()) -> str:
    """Call `write(tmp_dir)`, then put the directory at `path` whole (see the module doc)."""
    out = check_out(path, force, inputs)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    clean_stale(parent)
    tmp = tempfile.mkdtemp(prefix=f".sparsecc-tmp-{os.getpid()}-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the result is a normal dir
    try:
        write(tmp)
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump({"written_by": "sparsecc"}, f)
            f.write("\n")
        if os.path.exists(out):
            if _exchange(tmp, out):             # tmp now holds the old output
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            old = os.path.join(parent, f".sparsecc-old-{os.getpid()}-{os.path.basename(out)}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
