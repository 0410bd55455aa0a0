"""cost.fit: the analytic parameters fitted to a table predict it better, and --write changes
only the fitted fields of a target file."""
import json

import pytest

from sparsecc.cost import CalibratedCostModel, packaged_table, predict_us
from sparsecc.cost.fit import fit, main, median_error, table_rows
from sparsecc.targets import get_target, load_target_file


def test_fit_recovers_parameters_of_a_synthetic_table():
    # a table made by the analytic model itself with other parameters: the fit gets close
    h = get_target("h100")
    import dataclasses
    truth = dataclasses.replace(h, launch_us=4.0, model=dataclasses.replace(
        h.model, dense_efficiency=0.6, memory_efficiency=0.7, nm_overhead_us=5.0))
    rows = [{"K": k, "N": n, "M": m, "dtype": "f16", "pattern": p,
             "us": predict_us(truth, (n, k), "linear", p, m)}
            for k, n in ((4096, 4096), (4096, 14336), (1024, 4096)) for m in (1, 16, 256, 4096)
            for p in ("dense", "2:4")]
    model = CalibratedCostModel.from_jsonl(rows, h)
    fitted, errors = fit(h, model)
    assert errors["dense"] < 0.02 and errors["2:4"] < 0.05
    assert median_error(fitted, table_rows(model)) < median_error(h, table_rows(model))


def test_h100_fit_improves_the_packaged_table_and_write_keeps_the_rest(tmp_path, capsys):
    src = get_target("h100")
    path = tmp_path / "h100.json"
    path.write_text(json.dumps(src.data, indent=2))
    assert main([packaged_table("h100"), "--target", "h100", "--write", str(path)]) == 0
    out = capsys.readouterr().out
    assert "all: median error" in out
    t = load_target_file(path)
    rows = table_rows(CalibratedCostModel.from_jsonl(packaged_table("h100"), "h100"))
    assert median_error(t, rows) <= median_error(src, rows)
    assert t.peak_tflops == src.peak_tflops and t.backends == src.backends
    assert "fitted by `python -m sparsecc.cost.fit`" in t.source_of("model.nm_efficiency")
    assert t.model.channel_pad == src.model.channel_pad
