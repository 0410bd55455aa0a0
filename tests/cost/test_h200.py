"""The H200's measured table (`sparsecc calibrate --target auto` on an H200, 2026-12-03) and the
analytic model fitted to it: the calibrated model within 10% when a point is held out over M,
the analytic model within 20% (median), and the ops table for whole-model prediction."""
import json
import statistics

import pytest

from sparsecc.cost import (AnalyticCostModel, CalibratedCostModel, OpWork, attention_work,
                           default_cost_model, describe_costs, packaged_table, predict_us)

PATH = packaged_table("h200")
with open(PATH) as f:
    LINES = [json.loads(line) for line in f if line.strip()]
FULL = CalibratedCostModel.from_jsonl(PATH, "h200")
GEMMS = FULL.rows()


def test_table_covers_the_grid_and_the_ops():
    env = LINES[0]["environment"]
    assert env["gpu"] == "NVIDIA H200" and env["seconds"] <= 300 and not env["skipped"]
    assert len(GEMMS) == 252 == 7 * 6 * 6            # shapes x M x (5 f16 patterns + bf16 dense)
    assert {r["M"] for r in GEMMS} == {1, 16, 128, 1024, 4096, 16384}
    assert {r["pattern"] for r in GEMMS} == {"dense", "2:4", "block64x64@0.1", "block64x64@0.25",
                                            "block64x64@0.5"}
    assert {r["op"] for r in LINES[1:]} == {"gemm", "elementwise", "copy", "norm", "softmax",
                                            "attention"}
    assert sum(r.get("op") not in (None, "gemm") for r in LINES) == 26
    assert len(FULL.ops) == 24          # causal and full attention on one token are one point
    assert describe_costs(default_cost_model("h200"))["measured_on"] == "NVIDIA H200"


def test_calibrated_leave_one_out_over_m_median_error_below_10pct():
    errors = []
    for i, r in enumerate(GEMMS):
        model = CalibratedCostModel.from_jsonl(GEMMS[:i] + GEMMS[i + 1:], "h200")
        p = model.predict((r["N"], r["K"]), "linear", r["pattern"], r["M"], r["dtype"])
        errors.append(abs(p.us - r["us"]) / r["us"])
    median = statistics.median(errors)
    print(f"h200 calibrated leave-one-out median relative error over {len(errors)} points: "
          f"{median:.3f}")
    assert median <= 0.10


def test_analytic_median_error_below_20pct():
    errs = {}
    for r in GEMMS:
        family = "block" if r["pattern"].startswith("block") else r["pattern"]
        us = predict_us("h200", (r["N"], r["K"]), "linear", r["pattern"], r["M"], r["dtype"])
        errs.setdefault(family, []).append(abs(us - r["us"]) / r["us"])
    every = [e for v in errs.values() for e in v]
    print("h200 analytic median relative error: " + ", ".join(
        f"{k} {statistics.median(v):.3f}" for k, v in errs.items())
          + f", all {statistics.median(every):.3f}")
    assert statistics.median(every) <= 0.20
    assert all(statistics.median(v) <= 0.25 for v in errs.values())


def test_h200_facts_the_selector_needs():
    def s(shape, pattern, m):
        return FULL.speedup(shape, "linear", pattern, m)
    # measured: 2:4 wins on the MLP GEMMs at prefill, loses on the small KV projection at decode
    assert s((14336, 4096), "2:4", 4096) > 1.3 and s((4096, 14336), "2:4", 4096) > 1.3
    assert s((1024, 4096), "2:4", 16) < 1.0 and s((384, 1536), "2:4", 128) < 1.0
    assert s((14336, 4096), "block64x64@0.1", 4096) > 2 and s((14336, 4096), "block64x64@0.5", 4096) < 1.2
    # decode is faster than on the H100 (more bandwidth) for the same memory-bound GEMM
    assert FULL.predict((14336, 4096), "linear", "dense", 16).us < \
        default_cost_model("h100").predict((14336, 4096), "linear", "dense", 16).us


def test_ops_are_measured_and_interpolated():
    norm = OpWork("norm", (2 * 1024 * 4096 + 4096) * 2, 4 * 1024 * 4096, "f16")
    assert FULL.predict_op(norm).source == "measured"
    mid = FULL.predict_op(OpWork("norm", 2 * 4096 * 4096 * 2, 0, "f16"))
    lo, hi = (FULL.predict_op(OpWork("norm", b, 0, "f16")).us
              for b in ((2 * 1024 * 4096 + 4096) * 2, (2 * 16384 * 4096 + 4096) * 2))
    assert mid.source == "interpolated" and lo < mid.us < hi
    attn = FULL.predict_op(attention_work(1, 32, 2048, 2048, 128))
    assert attn.source == "interpolated" and attn.us > FULL.predict_op(
        attention_work(1, 32, 512, 512, 128)).us
    big = FULL.predict_op(OpWork("elementwise", 1e10, 0, "f16"))
    assert big.source == "analytic" and "scaled linearly" in big.note
    # the analytic op model on the same target is within 3x of a bandwidth-bound measurement
    a = AnalyticCostModel.for_target("h200").predict_op(OpWork("elementwise", 3 * 2**26 * 2, 0))
    measured = FULL.predict_op(OpWork("elementwise", 3 * 2**26 * 2, 0)).us
    assert measured / 3 < a.us < measured * 3
    with pytest.raises(Exception, match="unknown op kind"):
        OpWork("gelu", 10)
