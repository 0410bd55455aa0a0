"""Predict past measurements again with today's cost model: how far off is it now?

    python -m sparsecc.benchmarks.repredict BENCH.json... [--target T] --out FILE.json

For every case of `sparsecc bench` JSON files, compile the model again with the plan the case
ran (as a plan file, no reconstruction: the weights don't change a prediction) at the case's
batch and seq, and compare the report's whole-model prediction with what the case measured:
the artifact with eager dense, and the fused prediction with `torch.compile` (dense and the
artifact). Runs on any machine; nothing is timed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from . import write_json

PAIRS = (("dense_us", "dense_us"), ("compiled_us", "compiled_us"),
         ("dense_fused_us", "torch_compile_dense_us"),
         ("compiled_fused_us", "compiled_torch_compile_us"))


def _error(predicted: float | None, measured: float | None) -> float | None:
    if not predicted or not measured:
        return None
    return round(abs(predicted - measured) / measured, 4)


def repredict_case(loaded, target: str, case: dict[str, Any]) -> dict[str, Any]:
    import sparsecc
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "plan.json")
        with open(path, "w") as f:
            json.dump({"layers": case["plan"]}, f)
        config = sparsecc.CompileConfig(target=target, backend="torch", batch=case["batch"],
                                        seq=case["seq"], reconstruct=False)
        result = sparsecc.compile(loaded.model, loaded.example_inputs, config,
                                  dynamic_dims=loaded.dynamic_dims, name=loaded.name,
                                  workload=loaded.workload, plan_file=path)
    whole = result.report.get("whole_model") or {}
    dense, planned = whole.get("dense") or {}, whole.get("planned") or {}
    predicted = {"dense_us": dense.get("total_us"), "compiled_us": planned.get("total_us"),
                 "dense_fused_us": dense.get("fused_us"),
                 "compiled_fused_us": planned.get("fused_us")}
    measured = case.get("e2e") or {}
    return {"batch": case["batch"], "seq": case["seq"], "rows": case["rows"],
            "plan": case["plan"], "predicted": predicted,
            "measured": {m: measured.get(m) for _, m in PAIRS},
            "error": {p: _error(predicted[p], measured.get(m)) for p, m in PAIRS},
            "was": {"predicted": case.get("predicted_whole_model"),
                    "error": case.get("prediction_error")}}


def main(argv: list[str] | None = None) -> int:
    from sparsecc.loader import load_model
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="sparsecc bench JSON files")
    ap.add_argument("--target", help="the target to predict for (default: each file's)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    doc: dict[str, Any] = {"command": "python -m sparsecc.benchmarks.repredict " +
                           " ".join(argv if argv is not None else sys.argv[1:]), "files": {}}
    for name in a.files:
        with open(name) as f:
            bench = json.load(f)
        loaded = load_model(bench["model"])
        target = a.target or bench["target"]
        rows = doc["files"][name] = []
        for case in bench["cases"]:
            if not (case.get("correctness") or {}).get("ok"):
                continue
            rows.append(repredict_case(loaded, target, case))
            e = rows[-1]["error"]
            print(f"{name}: rows {case['rows']}: error " + ", ".join(
                f"{k} {'-' if v is None else f'{v:.1%}'}" for k, v in e.items()), flush=True)
    write_json(doc, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
