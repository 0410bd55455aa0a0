"""`sparsecc bench` helpers that need no GPU: inputs, regret, the summary, argument checks."""
import json
import pathlib

import pytest
import torch

from sparsecc.benchmarks import gpu
from sparsecc.cli import main
from sparsecc.errors import ConfigError


def layer(chosen, measured_us, cands, predicted_us=10.0):
    return {"name": "l", "chosen": chosen, "measured_us": measured_us,
            "predicted_us": predicted_us,
            "candidates": [{"pattern": p, "error": e, "measured_us": us} for p, e, us in cands]}


def test_regret_compares_with_candidates_no_less_accurate():
    cands = [("dense", 0.0, 10.0), ("2:4", 0.13, 8.0), ("channel0.5", 0.5, 5.0)]
    assert gpu.regret(layer("2:4", 8.0, cands)) == 0.0
    assert gpu.regret(layer("dense", 10.0, cands)) == 0.0        # nothing as accurate is faster
    cands[0] = ("dense", 0.0, 7.0)                                # dense measured faster than 2:4
    assert gpu.regret(layer("2:4", 8.0, cands)) == pytest.approx(8.0 / 7.0 - 1)


def test_regret_skips_candidates_that_could_not_apply_and_handles_composites():
    cands = [("dense", 0.0, 10.0), ("2:4", 0.13, 8.0), ("channel0.5", 0.5, 6.0),
             ("channel0.25", None, 1.0)]                          # no error: not applicable
    assert gpu.regret(layer("2:4", 8.0, cands)) == 0.0
    # channel0.5+2:4: error 0.63, measured as compiled (4.0): faster than all it could replace
    assert gpu.regret(layer("channel0.5+2:4", 4.0, cands)) == 0.0
    assert gpu.regret(layer("block64x64@0.1", 3.0, cands)) is None


def test_summary_median_prediction_error_and_max_regret():
    cands = [("dense", 0.0, 10.0), ("2:4", 0.13, 8.0)]
    case = {"batch": 1, "seq": 1, "rows": 1, "e2e": {"speedup": 1.5},
            "layers": [layer("2:4", 8.0, cands, predicted_us=8.8),
                       layer("dense", 10.0, cands, predicted_us=9.0)]}
    s = gpu.summarize([case])["cases"][0]
    assert s["median_prediction_error"] == pytest.approx(0.1)
    assert s["max_regret"] == 0.0 and s["speedup"] == 1.5


def test_bench_inputs_resize_the_dynamic_axes():
    ids = torch.tensor([[5, 9, 7]])
    mask = torch.ones(1, 3, dtype=torch.int64)
    hidden = torch.randn(1, 3, 8)
    dims = {"ids": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"},
            "h": {0: "batch", 1: "seq"}}
    g = torch.Generator().manual_seed(0)
    a, m, h = gpu.bench_inputs((ids, mask, hidden), ("ids", "mask", "h"), dims, 4, 16, g,
                               torch.float16, device="cpu")
    assert a.shape == (4, 16) and int(a.min()) >= 5 and int(a.max()) <= 9
    assert m.shape == (4, 16) and bool((m == 1).all())
    assert h.shape == (4, 16, 8) and h.dtype == torch.float16


def test_bench_argument_errors_are_one_line_exit_2(capsys):
    assert main(["bench", "tiny-llama", "--target", "h100", "--batch", "1,x"]) == 2
    assert "--batch takes comma-separated integers" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="f16 or bf16"):
        gpu.dtype_of("f32")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_bench_needs_a_gpu_and_calibrate_only_this_device(capsys):
    assert main(["bench", "tiny-llama", "--target", "h100", "--batch", "1"]) == 2
    # calibrate measures this machine: a GPU target's table is never measured on a CPU
    assert main(["calibrate", "--target", "h100", "--out", "x.jsonl"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"sparsecc: error: sparsecc bench --target h100 needs a CUDA GPU; torch "
                      f"{torch.__version__} sees none (to time on this CPU: --target cpu or auto)")
    assert err[1].startswith("sparsecc: error: this machine is ") and "not h100" in err[1]
    assert "--target auto" in err[1] and len(err) == 2


def test_committed_bench_results_meet_what_the_readme_says():
    root = pathlib.Path(__file__).resolve().parents[1]
    with open(root / "docs/results/bench-llama3-summary.json") as f:
        summary = json.load(f)
    cases = [c for v in summary["files"].values() for c in v["cases"]]
    assert {c["rows"] for c in cases} == {1, 16, 4096}
    assert all(c["max_regret"] == 0.0 for c in cases)
    assert all(c["speedup"] >= 1.0 for c in cases)
