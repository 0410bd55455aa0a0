"""The CLI: outputs of a compile, and one clear line + exit code 2 for each kind of bad input,
with no output directory (or temp dir) left behind."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from sparsecc.cli import main

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

    class Sorts(nn.Module):
        def forward(self, x):
            return torch.sort(x * 2, dim=-1).values

    class Branches(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x * 2
            return x

    def mlp():
        return Mlp().eval(), (torch.randn(4, 16),), {"x": {0: "batch"}}

    def sorts():
        return Sorts(), (torch.randn(2, 5),)

    def branches():
        return Branches(), (torch.randn(3),)

    def not_a_model():
        return 42
""")


@pytest.fixture
def models_file(tmp_path):
    p = tmp_path / "user_models.py"
    p.write_text(MODELS)
    return p


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(parent):
    return [n for n in os.listdir(parent) if n.startswith(".sparsecc-")]


def test_compile_writes_all_outputs(models_file, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["compile", f"{models_file}:mlp", "--target", "h100",
                                 "--out", out], capsys)
    assert code == 0, err
    # h100 is a GPU target: the torch artifact is the default
    assert sorted(os.listdir(out)) == [".sparsecc-output", "config.json", "manifest.json",
                                      "model.ir", "plan.json",
                                      "report.html", "report.json", "weights.safetensors"]
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= {"model", "target", "workload", "predicted_speedup", "passes", "layers"}
    assert [l["name"] for l in report["layers"]] == ["up", "down"]
    for layer in report["layers"]:
        # 4 rows per GEMM on tiny layers: every sparse candidate is predicted no faster
        assert layer["chosen"] == "dense" and layer["reason"].startswith("dense: ")
        assert {"pattern", "predicted_us", "error"} <= set(layer["candidates"][0])
    assert [p["name"] for p in report["passes"]] == [
        "eliminate-noops", "plan-layers", "score-importance", "group-channels",
        "estimate-error", "predict-latency", "select-patterns", "shrink-channels",
        "apply-masks", "reconstruct", "price-plan", "predict-model"]
    assert report["artifact"]["backend"] == "torch"
    assert report["whole_model"]["dense"]["total_us"] > report["totals"]["dense_us"]
    assert "compiled user_models.py:mlp for h100 (torch)" in stdout
    assert leftovers(tmp_path) == []

    code, table, _ = run_cli(["report", out], capsys)
    assert code == 0 and "up" in table and "down" in table and "dense" in table

    # an existing directory needs --force, and --force replaces it
    code, _, err = run_cli(["compile", f"{models_file}:mlp", "--target", "h100", "--out", out],
                           capsys)
    assert code == 2 and err.startswith("sparsecc: error: output directory") and "--force" in err
    (out / "stale.txt").write_text("x")
    code, _, _ = run_cli(["compile", f"{models_file}:mlp", "--target", "a100", "--out", out,
                          "--force"], capsys)
    assert code == 0 and not (out / "stale.txt").exists()
    assert json.loads((out / "report.json").read_text())["target"] == "a100"
    assert leftovers(tmp_path) == []


BAD = [
    (["compile", "no-such-model", "--target", "h100"], "unknown model 'no-such-model'; known: "),
    (["compile", "{file}:missing", "--target", "h100"], "does not define a function 'missing'"),
    (["compile", "{dir}/nofile.py:mlp", "--target", "h100"], "nofile.py does not exist"),
    (["compile", "{file}:not_a_model", "--target", "h100"], "returned int"),
    (["compile", "{file}:branches", "--target", "h100"], "torch.export could not trace Branches"),
    (["compile", "{file}:sorts", "--target", "h100"],
     "unsupported op sort (node sort): not in the IR's operator set at "),
    (["compile", "{file}:mlp", "--target", "h300"], "unknown target 'h300'; known: "),
    (["compile", "{file}:mlp", "--target", "h100", "--patterns", "2:4,3of4"],
     "unknown pattern '3of4'"),
    (["compile", "{file}:mlp", "--target", "h100", "--backend", "tensorrt"],
     "unknown backend 'tensorrt'"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_input_is_one_line_exit_2_and_no_output(argv, message, models_file, tmp_path,
                                                     capsys):
    out = tmp_path / "out"
    argv = [a.format(file=models_file, dir=tmp_path) for a in argv] + ["--out", out]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2
    assert err.startswith("sparsecc: error: ") and message in err, err
    assert err.count("\n") == 1, f"more than one line: {err!r}"
    assert "Traceback" not in err
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_debug_shows_the_traceback(models_file, tmp_path, capsys):
    code, _, err = run_cli(["compile", f"{models_file}:sorts", "--target", "h100", "--out",
                            tmp_path / "o", "--debug"], capsys)
    assert code == 2 and "Traceback" in err and "unsupported op sort" in err


def test_ir_prints_the_captured_graph(models_file, capsys):
    code, out, _ = run_cli(["ir", f"{models_file}:mlp"], capsys)
    assert code == 0
    assert out.startswith("graph ") and "linear(%x, %up.weight, %up.bias)" in out
    assert "f32[batch, 16]" in out


def test_report_of_a_non_compile_dir(tmp_path, capsys):
    code, _, err = run_cli(["report", tmp_path], capsys)
    assert code == 2 and "has no report.json" in err


def test_console_script_exit_code(models_file, tmp_path):
    """The installed entry point, as a user runs it."""
    exe = os.path.join(os.path.dirname(sys.executable), "sparsecc")
    p = subprocess.run([exe, "compile", f"{models_file}:mlp", "--target", "tpu-v9",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().startswith("sparsecc: error: unknown target 'tpu-v9'")
    assert not (tmp_path / "o").exists()
