"""Fit a target's analytic-model parameters to a measured table.

    python -m sparsecc.cost.fit TABLE --target NAME [--write TARGET.json]

The analytic model (analytic.py) has one efficiency per kernel family and fixed overheads. This
chooses them to minimise the median relative error |predicted - measured| / measured over the
table's GEMM rows, family by family, by coordinate search over a grid of values (each sweep
tries every grid value of one parameter with the others held; sweeps repeat until nothing
improves):

    dense   dense_efficiency, memory_efficiency, launch_us, split_k_max   (dense rows, all dtypes)
    2:4     nm_efficiency, nm_memory_efficiency, nm_overhead_us           (2:4 rows, dense fixed)
    block   block_efficiency[side], block_overhead_us                     (blocks of that side)

`--write` puts the fitted values into a target file (its `model`, `launch_us` and their
sources) and leaves everything else as it was. `sparsecc calibrate` runs the same fit on a
target it built for an unknown device, so that target's analytic model matches its table too.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..targets import Target, get_target
from .analytic import predict_us
from .calibrated import CalibratedCostModel

Row = tuple[tuple[int, int], str, int, str, float]     # (layer shape, pattern, M, dtype, us)

GRIDS = {
    "dense_efficiency": [x / 100 for x in range(30, 101, 2)],
    "memory_efficiency": [x / 100 for x in range(30, 101, 2)],
    "launch_us": [x / 4 for x in range(0, 161)],
    "split_k_max": [1, 2, 4, 8, 16],
    "nm_efficiency": [x / 100 for x in range(20, 101, 2)],
    "nm_memory_efficiency": [x / 100 for x in range(20, 101, 2)],
    "nm_overhead_us": [x / 4 for x in range(0, 61)],
    "block_efficiency": [x / 100 for x in range(2, 101, 1)],
    "block_overhead_us": [x / 4 for x in range(0, 61)],
}


def table_rows(model: CalibratedCostModel) -> list[Row]:
    return [((r["N"], r["K"]), r["pattern"], r["M"], r["dtype"], r["us"]) for r in model.rows()]


def median_error(t: Target, rows: Sequence[Row]) -> float:
    return statistics.median(abs(predict_us(t, s, "linear", p, m, d) - us) / us
                             for s, p, m, d, us in rows)


def _with(t: Target, name: str, value: Any, side: int | None = None) -> Target:
    if name == "launch_us":
        return dataclasses.replace(t, launch_us=value)
    if name == "block_efficiency":
        eff = dict(t.model.block_efficiency)
        eff[side] = value
        return dataclasses.replace(t, model=dataclasses.replace(t.model, block_efficiency=eff))
    return dataclasses.replace(t, model=dataclasses.replace(t.model, **{name: value}))


def _search(t: Target, rows: Sequence[Row], params: Sequence[tuple[str, int | None]],
            sweeps: int = 6) -> tuple[Target, float]:
    best = median_error(t, rows)
    for _ in range(sweeps):
        improved = False
        for name, side in params:
            for v in GRIDS[name]:
                cand = _with(t, name, v, side)
                e = median_error(cand, rows)
                if e < best - 1e-9:
                    t, best, improved = cand, e, True
        if not improved:
            break
    return t, best


def fit(target: Target, model: CalibratedCostModel,
        log: Callable[[str], None] = lambda s: None) -> tuple[Target, dict[str, float]]:
    """The target with its analytic parameters fitted to the table; median errors per family
    (before -> after) as a dict."""
    rows = table_rows(model)
    errors: dict[str, float] = {}
    dense = [r for r in rows if r[1] == "dense"]
    if dense:
        before = median_error(target, dense)
        target, after = _search(target, dense, [("dense_efficiency", None), ("memory_efficiency", None),
                                                ("launch_us", None), ("split_k_max", None)])
        errors["dense"] = after
        log(f"dense: median error {before:.3f} -> {after:.3f} over {len(dense)} rows")
    nm = [r for r in rows if r[1] == "2:4"]
    if nm and target.has_sparse_tensor_cores:
        before = median_error(target, nm)
        target, after = _search(target, nm, [("nm_efficiency", None),
                                             ("nm_memory_efficiency", None),
                                             ("nm_overhead_us", None)])
        errors["2:4"] = after
        log(f"2:4: median error {before:.3f} -> {after:.3f} over {len(nm)} rows")
    sides = sorted({int(p[5:].split("x")[0]) for _, p, *_ in rows if p.startswith("block")})
    for side in sides:
        block = [r for r in rows if r[1].startswith(f"block{side}x{side}@")]
        before = median_error(target, block)
        target, after = _search(target, block, [("block_efficiency", side),
                                                ("block_overhead_us", None)])
        errors[f"block{side}"] = after
        log(f"block {side}x{side}: median error {before:.3f} -> {after:.3f} over {len(block)} rows")
    if rows:
        errors["all"] = median_error(target, rows)
        log(f"all: median error {errors['all']:.3f} over {len(rows)} rows")
    return target, errors


def fitted_fields(target: Target) -> dict[str, Any]:
    """The fitted numbers as a target file's `model` and `launch_us`."""
    m = dataclasses.asdict(target.model)
    m["block_efficiency"] = {str(k): v for k, v in sorted(target.model.block_efficiency.items())}
    return {"model": {k: v for k, v in m.items() if v is not None}, "launch_us": target.launch_us}


def write_fit(path: str, target: Target, table: str, errors: dict[str, float]) -> None:
    """Put the fitted values into the target file at `path`, with their sources."""
    from ..cache import write_text_atomic
    with open(path) as f:
        raw = json.load(f)
    raw.update(fitted_fields(target))
    what = ", ".join(f"{k} {v:.3f}" for k, v in errors.items())
    raw["sources"]["model"] = (f"fitted by `python -m sparsecc.cost.fit` (median relative error per "
                               f"kernel family, coordinate search) to {table}: {what}")
    raw["sources"]["launch_us"] = f"fitted with the dense parameters to {table}"
    for key in list(raw["sources"]):
        if key.startswith("model.") and key != "model.channel_pad":
            del raw["sources"][key]
    write_text_atomic(json.dumps(raw, indent=2) + "\n", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table", help="a table `sparsecc calibrate` wrote (JSON lines)")
    ap.add_argument("--target", required=True, help="the target it was measured for")
    ap.add_argument("--write", help="a target JSON file to update with the fitted values")
    a = ap.parse_args(argv)
    target = get_target(a.target)
    model = CalibratedCostModel.from_jsonl(a.table, target)
    fitted, errors = fit(target, model, log=print)
    print(json.dumps(fitted_fields(fitted), indent=2))
    if a.write:
        write_fit(a.write, fitted, a.table.replace("\\", "/").split("compiler/", 1)[-1], errors)
        print(f"wrote {a.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
