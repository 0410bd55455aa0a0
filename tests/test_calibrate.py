"""`sparsecc calibrate --target auto` and `--target auto` on this (CPU) machine: the target is
detected and said on the first line, the measured table lands in the user's cache, and later
compiles find it; bad tables and a wrong target are one line."""
import json

import pytest

from sparsecc.benchmarks import calibrate
from sparsecc.cache import SparseccWarning
from sparsecc.cli import main
from sparsecc.cost import CalibratedCostModel, OpWork, default_cost_model, describe_costs
from sparsecc.targets import detect as det
from sparsecc.targets import get_target


@pytest.fixture(autouse=True)
def cpu_only(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("SPARSECC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(det, "_DETECTED", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return tmp_path / "cache"


def test_compile_auto_says_the_cpu_target_first(tmp_path, capsys):
    assert main(["compile", "mnist-cnn", "--target", "auto", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.splitlines()
    name = det.detect().target.name
    assert out[0].startswith("detected ") and f"target {name}" in out[0]
    assert "cost table: not measured (uncalibrated" in out[0]
    assert out[-1].startswith(f"compiled mnist-cnn for {name} (onnx):")
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["target"] == name
    info = report["target_info"]
    assert info["detected"].startswith("detected ") and info["cost_table"]["measured"] is False
    assert main(["report", str(tmp_path / "o")]) == 0
    assert "uncalibrated (analytic cost model)" in capsys.readouterr().out


def test_calibrate_auto_on_the_cpu_then_compiles_use_the_table(cpu_only, tmp_path, capsys):
    assert main(["calibrate", "--quick"]) == 0
    log = capsys.readouterr().out
    name = det.detect().target.name
    table = cpu_only / "tables" / f"{name}.jsonl"
    assert table.is_file() and not (cpu_only / "tables" / f"{name}.jsonl.partial").exists()
    assert f"calibrating {name} on the CPU" in log and "points," in log and "s left" in log
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    env, rows = rows[0]["environment"], rows[1:]
    assert env["target"] == name and env["seconds"] > 0
    gemms = [r for r in rows if r["op"] == "gemm"]
    ops = {r["op"] for r in rows if r["op"] != "gemm"}
    assert len(gemms) == 6 and all(r["us"] > 0 and r["dtype"] == "f32" for r in gemms)
    assert ops == {"elementwise", "copy", "norm", "softmax", "attention"}
    model = default_cost_model(get_target(name))
    assert isinstance(model, CalibratedCostModel) and describe_costs(model)["measured"]
    r = gemms[0]    # f16 queries read the CPU's float32 rows
    p = model.predict((r["N"], r["K"]), "linear", "dense", r["M"], "f16")
    assert p.source == "measured" and p.us == pytest.approx(r["us"], rel=1e-3)
    assert model.predict_op(OpWork("norm", 1e6, 0, "f32")).us > 0
    assert main(["compile", "mnist-cnn", "--target", "auto", "--out", str(tmp_path / "o")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "cost table measured on" in first and str(table) in first


def test_a_corrupt_table_is_one_warning_and_the_analytic_model(cpu_only):
    name = det.detect().target.name
    (cpu_only / "tables").mkdir(parents=True)
    (cpu_only / "tables" / f"{name}.jsonl").write_bytes(b'{"environment": {}}\n\xff\xfe junk\n')
    with pytest.warns(SparseccWarning, match=r"ignoring cost table .* line 2: not a JSON object"):
        model = default_cost_model(get_target(name))
    assert describe_costs(model)["measured"] is False


def test_a_cached_table_overrides_the_packaged_one(cpu_only):
    rows = [{"target": "h100", "op": "gemm", "K": 4096, "N": 4096, "M": 16, "dtype": "f16",
             "pattern": "dense", "us": 123.0}]
    (cpu_only / "tables").mkdir(parents=True)
    (cpu_only / "tables" / "h100.jsonl").write_text(
        json.dumps({"environment": {"gpu": "NVIDIA H100 PCIe"}}) + "\n" + json.dumps(rows[0]) + "\n")
    model = default_cost_model("h100")
    assert describe_costs(model)["measured_on"] == "NVIDIA H100 PCIe"
    assert model.predict((4096, 4096), "linear", "dense", 16).us == pytest.approx(123.0)


def test_calibrate_refuses_another_devices_target(capsys):
    assert main(["calibrate", "--target", "h200"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsecc: error: this machine is ") and "not h200" in err
    assert "\n" not in err
    assert main(["calibrate", "--max-seconds", "0"]) == 2


def test_the_time_limit_writes_what_was_measured(cpu_only):
    summary = calibrate.run("auto", quick=True, max_seconds=1e-9, log=lambda s: None)
    assert summary["rows"] == 0 and "at the 0 s limit" in summary["skipped"][-1]
    doc = [json.loads(line) for line in open(summary["path"])]
    assert doc[0]["environment"]["skipped"] == summary["skipped"]


def test_gpu_grid_is_ordered_by_m_and_covers_every_pattern():
    points = calibrate.grid()
    assert {p[4] for p in points} == {1, 16, 128, 1024, 4096, 16384}
    assert points[0][4] == 16 and points[-1][4] == 16384          # decode first, huge M last
    assert {p[1] for p in points if p[0] == "f16"} == set(calibrate.F16_PATTERNS)
    assert {(p[2], p[3]) for p in points} == set(calibrate.SHAPES)
    assert {p[1] for p in calibrate.grid(patterns=["dense"])} == {"dense"}


def test_a_gpu_without_a_kernel_for_a_pattern_is_one_line_per_pattern():
    # a Turing GPU: no 2:4 sparse tensor cores, no Triton BSR (sm_80+): dense only, each said
    props = {"name": "Tesla T4", "compute_capability": [7, 5], "sm_count": 40, "memory_gib": 15.0,
             "l2_mib": 4.0, "cusparselt": False, "triton": True}
    t4 = det.build_gpu_target("tesla-t4", props, {"gemm_f16_tflops": 40.0, "copy_gbs": 250.0})
    lines = []
    assert calibrate.gpu_patterns(t4, lines.append) == ["dense"]
    assert len(lines) == len(calibrate.F16_PATTERNS) - 1
    assert all(": no kernel on this GPU (" in line and line.endswith("not measured") for line in lines)
    assert any("2:4: no kernel on this GPU (tesla-t4 has no N:M sparse hardware)" in l for l in lines)
