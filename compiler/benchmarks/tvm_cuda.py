"""TVM on CUDA vs the torch GPU runtime, same plan, same kernels for the GEMMs.

    python -m sparsecc.benchmarks.tvm_cuda llama3-8b-layer --plans dense,auto,FILE.json \
        --work 1x4096,1x1 --out docs/results/tvm-cuda-h100.json

For each plan ("dense": every layer dense; "auto": the compiler's pick at each workload with
budget 1; or a plan JSON) and workload BATCHxSEQ (float16):
  1. compile; build the torch runtime (`lower_cuda`, CUDA graphs) and the TVM module
     (`compile_tvm(target="cuda")`: GEMMs and attention through `call_dps_packed` to the same
     kernels, the rest compiled by TVM with its default dlight schedules), timing the build;
  2. correctness first: TVM vs the torch runtime (<= 1e-2 relative) and both vs the fp32 IR
     interpreter; a failure skips the timing;
  3. torch runtime and TVM timed alternately with CUDA events on rotating fresh random inputs,
     medians, and the ratio TVM / torch (the goal: <= 1.1).
Both replay CUDA graphs: TVM's whole VM call is captured on torch's stream (external kernels
included); a signature whose capture fails runs eagerly and the JSON records why.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from . import write_json
from .gpu import (CORRECT_TOL, _first, _time_pair, bench_inputs, environment,
                  require_cuda)


def parse_work(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        b, _, s = item.strip().partition("x")
        try:
            out.append((int(b), int(s or 1)))
        except ValueError:
            raise SystemExit(f"--work takes BATCHxSEQ items, got {item!r}") from None
    return out


def compile_plan(loaded, plan: str, batch: int, seq: int):
    from sparsecc.api import compile as compile_model
    from sparsecc.config import CompileConfig
    overrides = ((".*", "dense"),) if plan == "dense" else ()
    config = CompileConfig(target="h100", backend="torch", budget=1.0, batch=batch, seq=seq,
                           dtype="f16", overrides=overrides)
    plan_file = plan if plan.endswith(".json") else None
    return compile_model(loaded.model, loaded.example_inputs, config,
                         dynamic_dims=loaded.dynamic_dims, name=loaded.name,
                         workload=loaded.workload, plan_file=plan_file,
                         calibration=loaded.calibration)


def build(loaded, plan: str, batch: int, seq: int) -> dict[str, Any]:
    """The compiled plan, its torch runtime (and CUDA-graph runner) and its TVM CUDA module."""
    from sparsecc.backends.torch.runtime import lower_cuda
    from sparsecc.backends.tvm import compile_tvm
    result = compile_plan(loaded, plan, batch, seq)
    runtime, torch_run = lower_cuda(result.ir, dtype=torch.float16)
    t0 = time.perf_counter()
    tvm_mod = compile_tvm(result.ir, target="cuda", dtype=torch.float16)
    return {"result": result, "runtime": runtime, "torch_run": torch_run, "tvm": tvm_mod,
            "build_s": time.perf_counter() - t0}


def bench_plan(loaded, built: dict[str, Any], plan: str, batch: int, seq: int, reps: int,
               log=print) -> dict[str, Any]:
    from sparsecc.backends.torch.timing import relative_error
    from sparsecc.ir import run as run_ir
    dtype = torch.float16
    result, torch_run, tvm_mod = built["result"], built["torch_run"], built["tvm"]
    build_s = built["build_s"]
    names = list(result.ir.inputs)
    gen = torch.Generator().manual_seed(batch * 1000 + seq)
    pool = [bench_inputs(loaded.example_inputs, names, loaded.dynamic_dims, batch, seq, gen,
                         dtype) for _ in range(4)]
    check = bench_inputs(loaded.example_inputs, names, loaded.dynamic_dims, batch, seq, gen, dtype)
    out_t = _first(torch_run(*check)).float()
    out_v = _first(tvm_mod(*check)).float()
    ref = _first(run_ir(result.ir, tuple(x.float() if x.is_floating_point() else x
                                          for x in check), device="cuda"))
    case: dict[str, Any] = {
        "plan": plan, "batch": batch, "seq": seq, "rows": batch * seq,
        "layers": {d.layer.name: d.chosen for d in result.plan.decisions},
        "tvm_build_s": build_s,
        "kernels": tvm_mod.kernel_table(),
        "tvm_external_calls": len(tvm_mod.kernels),
        "tvm_cuda_graph_errors": tvm_mod.graph_errors,
        "correctness": {"tvm_vs_torch_runtime": relative_error(out_v, out_t),
                        "tvm_vs_fp32_interpreter": relative_error(out_v, ref),
                        "torch_runtime_vs_fp32_interpreter": relative_error(out_t, ref),
                        "tolerance": CORRECT_TOL}}
    ok = case["correctness"]["tvm_vs_torch_runtime"] <= CORRECT_TOL
    case["correctness"]["ok"] = ok
    if not ok:
        log(f"  {plan} {batch}x{seq}: TVM differs from the torch runtime "
            f"({case['correctness']['tvm_vs_torch_runtime']:.2e}); not timed")
        return case
    torch_us, tvm_us = _time_pair(torch_run, tvm_mod, pool, warmup=5, reps=reps)
    case["tvm_cuda_graph_errors"] = dict(tvm_mod.graph_errors)
    case["e2e"] = {"torch_runtime_us": torch_us, "tvm_us": tvm_us, "tvm_over_torch": tvm_us / torch_us}
    log(f"  {plan} {batch}x{seq}: torch runtime {torch_us:.1f} µs, TVM {tvm_us:.1f} µs, "
        f"TVM/torch {tvm_us / torch_us:.2f} (build {build_s:.0f} s, "
        f"err {case['correctness']['tvm_vs_fp32_interpreter']:.1e} vs fp32)", flush=True)
    return case


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--plans", default="dense,auto")
    ap.add_argument("--work", default="1x4096,1x1", help="BATCHxSEQ,...")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    require_cuda("the TVM CUDA benchmark")
    from sparsecc.loader import load_model
    import tvm
    loaded = load_model(a.model, tiny=a.tiny)
    cases: list[dict[str, Any]] = []
    env = environment()
    env["tvm"] = tvm.__version__
    env["command"] = "python -m sparsecc.benchmarks.tvm_cuda " + " ".join(
        sys.argv[1:] if argv is None else argv)

    def doc() -> dict[str, Any]:
        return {"environment": env, "model": loaded.name, "dtype": "f16", "cases": cases,
                "note": "both replay CUDA graphs (TVM: the whole VM call, captured on torch's "
                        "stream)"}

    for plan in a.plans.split(","):
        built = None
        for batch, seq in parse_work(a.work):
            if built is None or plan == "auto":     # a fixed plan is built once (dynamic dims)
                built = None
                torch.cuda.empty_cache()
                built = build(loaded, plan, batch, seq)
            cases.append(bench_plan(loaded, built, plan, batch, seq, a.reps))
            if a.out:                   # after every case: a cut-short run keeps what it timed
                write_json(doc(), a.out)
        built = None
        torch.cuda.empty_cache()
    return 0 if all(c["correctness"]["ok"] for c in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
