"""The end-to-end output error (sparsecc.accuracy): measured on every compile, the plan for a
given error (`max_error`) stays within it, `--speedup` past the warning limit warns, and the
CLI prints the figure and what to change when nothing is chosen."""
from __future__ import annotations

import json

import pytest
import torch

import sparsecc
from sparsecc.accuracy import end_to_end_error
from sparsecc.cli import main


class Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = torch.nn.Linear(256, 1024)
        self.down = torch.nn.Linear(1024, 256)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def _inputs(n=4):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(64, 256, generator=g),) for _ in range(n)]


def _compile(**kw):
    cfg = sparsecc.CompileConfig(target="h100", backend="torch", batch=4096, seq=1,
                                 reconstruct=False, **kw)
    return sparsecc.compile(Mlp(), _inputs(1)[0], cfg, calibration=_inputs())


def test_the_measured_error_is_the_artifacts_relative_output_error():
    r = _compile(overrides={".*": "channel0.5"})
    err = r.report["output_error"]
    assert err["on"] == "calibration inputs" and err["batches"] == 4
    model = Mlp().eval()
    num = den = 0.0
    with torch.no_grad():
        for (x,) in _inputs():
            want, got = model(x), r.module(x)
            num += float(((got - want).double() ** 2).sum())
            den += float((want.double() ** 2).sum())
    assert err["relative_error"] == pytest.approx((num / den) ** 0.5, rel=1e-4)
    assert err["relative_error"] > 0.05          # half the hidden features gone
    same = end_to_end_error(r.ir.analyses.get("unshrunk") or r.ir, r.ir, _inputs(1))
    assert same["outputs"]


@pytest.mark.parametrize("limit", [0.0, 0.3])
def test_a_plan_for_an_error_is_measured_within_it(limit):
    r = _compile(max_error=limit)
    err = r.report["output_error"]
    assert err["max_error"] == limit and err["search"]
    assert err["relative_error"] <= limit + 1e-9
    sparse = sum(d.chosen != "dense" for d in r.plan.decisions)
    if limit == 0.0:
        assert sparse == 0
    # every trial that was kept or refused was measured, never assumed
    assert all(t["measured_error"] >= 0 for t in err["search"])


def test_a_speedup_plan_past_the_warning_limit_says_so():
    with pytest.raises(sparsecc.ConfigError, match="the most these layers reach is"):
        _compile(speedup=50)
    r = _compile(speedup=1.03)
    err = r.report["output_error"]
    assert err["relative_error"] > 0.1
    assert "over 0.1" in err["warning"]


def test_cli_prints_the_measured_error_and_refuses_two_goals(tmp_path, capsys):
    assert main(["compile", "mnist-cnn", "--tiny", "--target", "cpu", "--out",
                 str(tmp_path / "o"), "--max-error", "0.05"]) == 0
    out = capsys.readouterr()
    assert "measured output error" in out.out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["output_error"]["relative_error"] <= 0.05
    with pytest.raises(SystemExit) as e:
        main(["compile", "mnist-cnn", "--tiny", "--target", "cpu", "--out",
              str(tmp_path / "p"), "--max-error", "0.05", "--budget", "1"])
    assert e.value.code == 2


def _zoo():
    from sparsecc import models
    heavy = {"minilm", "tinyllama-1.1b-shape"}     # real or full-size weights even with --tiny
    return [pytest.param(n, marks=pytest.mark.slow) if n in heavy else n for n in models.names()]


@pytest.mark.parametrize("name", _zoo())
def test_every_zoo_models_default_compile_shows_a_plan_or_what_would_give_one(
        name, tmp_path, capsys, require_weights):
    """The first compile a user runs never ends in a bare "0 of N layers sparse": a sparse
    plan, or the lines that say what would give one."""
    require_weights(name)
    assert main(["compile", name, "--tiny", "--target", "h100", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    final = [line for line in out.splitlines() if line.startswith("compiled ")][-1]
    assert "measured output error" in final
    if " 0 of " in final:
        assert ("would give" in out or "measured:" in out
                or "no candidate pattern is predicted faster" in out), out
