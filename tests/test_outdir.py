"""Output directories: --force replaces only our own output, and a kill at any point of the
final write leaves the old output or the new one complete, with nothing stale after the next
run."""
import os
import subprocess
import sys
import textwrap

import pytest

from sparsecc.outdir import MARKER, OutputError, check_out, write_out


def _write(content):
    def write(d):
        for name in ("a.txt", "b.txt"):
            with open(os.path.join(d, name), "w") as f:
                f.write(content)
    return write


def _state(path):
    """'old', 'new' or a description of what is wrong."""
    if not os.path.isdir(path):
        return "missing"
    names = sorted(os.listdir(path))
    if names != sorted(["a.txt", "b.txt", MARKER]):
        return f"incomplete {names}"
    a, b = (open(os.path.join(path, n)).read() for n in ("a.txt", "b.txt"))
    return a if a == b else f"mixed {a[:3]}/{b[:3]}"


def _temps(folder):
    return [n for n in os.listdir(folder) if n.startswith(".sparsecc-")]


def test_force_replaces_our_output_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    write_out(str(out), _write("old"))
    write_out(str(out), _write("new"), force=True)
    assert _state(out) == "new" and not _temps(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "data.csv").write_text("keep")
    model = tmp_path / "inputs" / "model.py"
    model.parent.mkdir()
    model.write_text("x = 1")
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    cases = [(str(theirs), (), "not a sparsecc output"), (".", (), "current directory"),
             (str(tmp_path), (), "current directory"),
             (str(model.parent), (str(model),), "holds the input"),
             (str(precious), (), "is a file")]
    for target, inputs, why in cases:
        with pytest.raises(OutputError, match=why):
            write_out(target, _write("x"), force=True, inputs=inputs)
    assert (theirs / "data.csv").read_text() == "keep"
    assert model.read_text() == "x = 1" and precious.read_text() == "keep"
    # our own output that holds the input is not replaced either
    (out / "model.py").write_text("y = 2")
    with pytest.raises(OutputError, match="holds the input"):
        check_out(str(out), True, [str(out / "model.py")])


CHILD = textwrap.dedent("""
    import os, shutil, signal, sys
    import sparsecc.outdir as o

    path, point, content = sys.argv[1:4]

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    def write(d):
        with open(os.path.join(d, "a.txt"), "w") as f:
            f.write(content)
        if point == "mid-write":
            die()
        with open(os.path.join(d, "b.txt"), "w") as f:
            f.write(content)

    if point == "before-swap":
        o._exchange = die
    elif point == "after-swap":
        swap = o._exchange
        o._exchange = lambda a, b: (swap(a, b), die())
    elif point == "during-cleanup":
        o.shutil.rmtree = die
    elif point == "fallback-between-renames":
        o._exchange = lambda a, b: False
        real, calls = os.replace, []

        def replace(a, b):
            calls.append(a)
            real(a, b)
            if len(calls) == 1:
                die()
        o.os.replace = replace
    o.write_out(path, write, force=True)
""")

POINTS = ["mid-write", "before-swap", "after-swap", "during-cleanup",
          "fallback-between-renames"]


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_inside_the_final_write_never_loses_both(point, tmp_path):
    out = tmp_path / "out"
    write_out(str(out), _write("old"))
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(child), str(out), point, "new"],
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    state = _state(out)
    if point == "fallback-between-renames":
        # no atomic exchange: the old output is parked; the next run puts it back first
        assert state == "missing" and _temps(tmp_path)
    else:
        assert state in ("old", "new"), state
    # the next run (another process) cleans up after the dead one, and succeeds
    write_out(str(tmp_path / "other"), _write("x"))
    assert _state(out) in ("old", "new")
    assert not _temps(tmp_path)
    write_out(str(out), _write("newer"), force=True)
    assert _state(out) == "newer" and not _temps(tmp_path)
