"""The first hour of a user at the command line: --version, consistent plan options, progress
off a terminal, -q / -v, the elapsed time in the last line, the CPU bench, and native chatter
held back unless something fails."""
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import version

import pytest

from sparsecc import progress
from sparsecc.cli import _config, _parser, main
from sparsecc.config import CompileConfig
from sparsecc.native import quiet_native

ELAPSED = re.compile(r" \((\d+(\.\d)? s|\d+ min \d+ s)\)$")

MODELS = textwrap.dedent("""
    import torch
    import torch.nn as nn

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Linear(16, 32)
            self.down = nn.Linear(32, 16)

        def forward(self, x):
            return self.down(torch.relu(self.up(x)))

    def mlp():
        return Mlp().eval(), (torch.randn(4, 16),), {"x": {0: "batch"}}
""")


@pytest.fixture
def mlp(tmp_path):
    p = tmp_path / "user_models.py"
    p.write_text(MODELS)
    return f"{p}:mlp"


@pytest.fixture
def forced(monkeypatch):
    """Progress on although pytest runs (SPARSECC_PROGRESS=1), a line at every step."""
    monkeypatch.setenv("SPARSECC_PROGRESS", "1")
    monkeypatch.setenv("SPARSECC_PROGRESS_INTERVAL", "0")


def run_cli(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:          # argparse: --version, --help, bad options
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_version_is_the_package_metadata(capsys):
    code, out, err = run_cli(["--version"], capsys)
    assert code == 0 and out == f"sparsecc {version('sparsecc')}\n" and err == ""


@pytest.mark.parametrize("argv", [
    ["compile", "{mlp}", "--target", "h100", "--out", "{out}"],
    ["eval", "mnist-cnn"],
    ["bench", "{mlp}", "--target", "cpu", "--batch", "1"],
], ids=["compile", "eval", "bench"])
def test_budget_and_speedup_exclude_each_other_in_every_command(argv, mlp, tmp_path, capsys):
    argv = [a.format(mlp=mlp, out=tmp_path / "out") for a in argv]
    code, out, err = run_cli(argv + ["--budget", "0.1", "--speedup", "1.2"], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"sparsecc: error: {argv[0]}: argument --speedup: not allowed with "
                          f"argument --budget")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_quiet_and_verbose_exclude_each_other(capsys):
    code, _, err = run_cli(["-q", "models", "-v"], capsys)
    assert code == 2 and err == ("sparsecc: error: -q/--quiet and -v/--verbose exclude each "
                                 "other (see sparsecc --help)\n")


def test_compile_takes_the_plan_and_accuracy_options_and_they_reach_the_config(mlp, tmp_path,
                                                                               capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["compile", mlp, "--target", "cpu", "--out", out,
                                 "--importance", "magnitude", "--dtype", "f32", "--mode",
                                 "prefill", "--no-reconstruct", "--min-gain", "0.1"], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert (config["importance"], config["dtype"], config["mode"], config["reconstruct"],
            config["min_gain"]) == ("magnitude", "f32", "prefill", False, 0.1)
    # options left out are CompileConfig's defaults
    assert config["budget"] == CompileConfig.budget and config["speedup"] is None
    report = json.loads((out / "report.json").read_text())
    assert "reconstruct" not in [p["name"] for p in report["passes"]]
    last = stdout.splitlines()[-1]
    assert last.startswith("compiled user_models.py:mlp for cpu-x86 (onnx)") and ELAPSED.search(last)


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_eval_and_bench_read_the_same_plan_options_as_compile(command):
    extra = ["--target", "cpu"] + (["--batch", "1"] if command == "bench" else [])
    a = _parser().parse_args([command, "mnist-cnn", *extra, "--importance", "taylor",
                              "--dtype", "f32", "--mode", "vision", "--min-gain", "0.05",
                              "--speedup", "1.5", "--patterns", "channel0.5,dense",
                              "--backend", "onnx", "--no-reconstruct"])
    c = _config(a, target=a.target)
    assert (c.importance, c.dtype, c.mode, c.min_gain, c.speedup, c.patterns, c.backend,
            c.reconstruct, c.budget) == ("taylor", "f32", "vision", 0.05, 1.5,
                                         ("channel0.5", "dense"), "onnx", False,
                                         CompileConfig.budget)


def test_progress_lines_off_a_terminal_when_forced(forced, mlp, tmp_path, capsys):
    code, stdout, err = run_cli(["compile", mlp, "--target", "h100", "--out", tmp_path / "o"],
                                capsys)
    assert code == 0, err
    lines = err.splitlines()
    # plain lines, no bar: capsys' stream is no terminal
    assert "estimate-error 1/2 layers, " in err and "\r" not in err
    assert any(re.fullmatch(r"estimate-error 2/2 layers, done in \d+\.\d s", ln) for ln in lines)
    assert ELAPSED.search(stdout.splitlines()[-1])


def test_quiet_prints_only_the_final_line(forced, mlp, tmp_path, capsys):
    code, stdout, err = run_cli(["compile", mlp, "--target", "h100", "--out", tmp_path / "o",
                                 "-q"], capsys)
    assert code == 0 and err == ""
    assert len(stdout.splitlines()) == 1
    assert stdout.startswith("compiled user_models.py:mlp for h100 (torch): ")
    assert ELAPSED.search(stdout.strip())


def test_verbose_adds_a_line_per_phase_with_its_time(mlp, tmp_path, capsys):
    code, stdout, err = run_cli(["-v", "compile", mlp, "--target", "h100", "--out",
                                 tmp_path / "o"], capsys)
    assert code == 0
    timed = {}
    for ln in err.splitlines():
        m = re.fullmatch(r"(.+): (\d+(\.\d)?) s", ln)
        assert m, f"not a phase line: {ln!r}"
        timed[m.group(1)] = float(m.group(2))
    passes = [p["name"] for p in json.loads((tmp_path / "o" / "report.json").read_text())
              ["passes"]]
    assert {"capture", "lower (torch)", *passes} <= set(timed)
    assert stdout.splitlines()[0].startswith("target h100")


def test_progress_module_lines_phases_and_levels(monkeypatch, capsys):
    monkeypatch.setenv("SPARSECC_PROGRESS", "1")
    log = io.StringIO()
    assert list(progress.progress(range(3), label="reconstruct", unit="layers", stream=log,
                                  interval=0)) == [0, 1, 2]
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("reconstruct 1/3 layers, ")
    assert lines[-1].startswith("reconstruct 3/3 layers, done in ")
    # a loop inside a phase speaks for it; a phase that printed nothing ends without a line
    log = io.StringIO()
    with progress.phase("outer", stream=log, interval=0):
        for _ in progress.progress(range(2), label="inner", stream=log, interval=0):
            pass
    assert log.getvalue() and not any(ln.startswith("outer") for ln in
                                      log.getvalue().splitlines())
    # at the default period (10 s) a short loop says nothing; QUIET silences even a forced one
    log = io.StringIO()
    list(progress.progress(range(3), label="x", stream=log))
    previous = progress.level()
    progress.set_level(progress.QUIET)
    try:
        list(progress.progress(range(3), label="x", stream=log, interval=0))
        with progress.phase("y", stream=log, interval=0):
            pass
    finally:
        progress.set_level(previous)
    assert log.getvalue() == ""
    monkeypatch.delenv("SPARSECC_PROGRESS")
    list(progress.progress(range(3), label="x", stream=log, interval=0))    # pytest: off
    assert log.getvalue() == ""
    assert capsys.readouterr().err == ""


def test_a_slow_step_still_moves_the_clock(forced):
    import time
    log = io.StringIO()
    with progress.phase("lower (tvm)", stream=log):
        time.sleep(0.7)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("lower (tvm), 0.")           # drawn while the block ran
    assert re.fullmatch(r"lower \(tvm\) done in \d+\.\d s", lines[-1])


def test_native_output_is_held_back_unless_the_block_fails(capfd):
    with quiet_native():
        os.write(2, b"native warning: scope loaded\n")
        os.write(1, b"native chatter\n")
        print("python line", file=sys.stderr)          # Python's own output still shows
    out, err = capfd.readouterr()
    assert "native" not in out + err and "python line" in err
    with pytest.raises(RuntimeError):
        with quiet_native():
            os.write(2, b"native error: what went wrong\n")
            raise RuntimeError("load failed")
    assert "native error: what went wrong" in capfd.readouterr().err


def test_bench_on_the_cpu_checks_then_times_dense_and_compiled(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code, stdout, err = run_cli(["bench", "mnist-cnn", "--tiny", "--target", "cpu",
                                 "--device", "cpu", "--batch", "2", "--reps", "3",
                                 "--patterns", "channel0.5,dense", "--budget", "1",
                                 "--out", out], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["backend"] == "onnx" and doc["dtype"] == "f32"
    assert doc["environment"]["onnxruntime"] and doc["summary"]["cases"]
    (case,) = doc["cases"]
    assert case["batch"] == 2 and case["layers_changed"] >= 1
    ok = case["correctness"]
    assert ok["ok"] and 0 <= ok["rel_err_vs_masked_dense"] <= ok["tolerance"]
    assert 0 <= ok["dense_backend_vs_dense"] <= ok["tolerance"]
    e2e = case["e2e"]
    assert all(e2e[k] > 0 for k in ("dense_us", "dense_backend_us", "compiled_us", "speedup",
                                    "speedup_vs_dense_backend"))
    assert "model.onnx" in case["artifact"]["files"]
    last = stdout.splitlines()[-1]
    assert last.startswith("bench mnist-cnn for cpu-x86 on the CPU (onnx): batch 2: ")
    assert "outputs match" in last and ELAPSED.search(last)


@pytest.mark.parametrize("argv, words", [
    (["--device", "cpu", "--target", "h100"], "plans for a CPU target"),
    (["--target", "cpu", "--unfused"], "--unfused does not apply on the CPU"),
    (["--target", "cpu", "--dtype", "f16"], "--dtype does not apply on the CPU"),
    (["--target", "h200", "--generate", "2", "--device", "cpu"], "--device cpu does not apply"),
], ids=["gpu-target", "unfused", "dtype", "generate"])
def test_bench_refuses_options_that_do_not_apply_in_one_line(argv, words, capsys):
    code, _, err = run_cli(["bench", "mnist-cnn", "--tiny", "--batch", "1", *argv], capsys)
    assert code == 2 and words in err and err.count("\n") == 1


def test_console_script_quiet_run_is_one_line(mlp, tmp_path):
    """The installed entry point, off a terminal, progress forced: -q leaves the last line."""
    exe = os.path.join(os.path.dirname(sys.executable), "sparsecc")
    env = {**os.environ, "SPARSECC_PROGRESS": "1", "SPARSECC_PROGRESS_INTERVAL": "0"}
    p = subprocess.run([exe, "compile", mlp, "--target", "h100", "--out",
                        str(tmp_path / "o"), "-q"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stderr == ""
    assert len(p.stdout.splitlines()) == 1 and ELAPSED.search(p.stdout.strip())
