"""`sparsecc bench`: dense PyTorch vs the compiled model on the GPU, end to end and per layer.

For every workload (batch, seq):
  1. compile the model for it (or apply `--plan`), backend torch: the artifact is the module
     `sparsecc.load` would give (backends/torch/artifact.py), moved to the GPU;
  2. build the modules in the bench dtype: the user's model (dense), the compiled IR with every
     layer dense ("masked dense": the plan's masks and channel removal, cuBLAS), and the
     compiled artifact with its sparse kernels; all replay CUDA graphs;
  3. correctness first: on a fresh random input the compiled output must equal masked dense
     within 1e-2 relative (and we record both against the fp32 IR interpreter); a failure stops
     that workload before any timing;
  4. end to end: after warm-up, eager dense, `torch.compile` dense (inductor, default mode,
     checked against eager dense first: the peer a GPU user already has), the compiled
     artifact, and `torch.compile` of the compiled artifact (checked against it) are timed in
     turn with CUDA events on rotating fresh random inputs, all replaying CUDA graphs (input
     copy into the graph's buffers and output copy included), medians and ratios, next to the
     whole-model predictions of the report (unfused for eager, fused for torch.compile);
  5. per layer (linear layers): the dense layer at its original shape and every candidate
     pattern at the layer's compiled input width are timed alone (`time_linear`), next to the
     cost model's predictions; `regret` compares the chosen pattern with the fastest measured
     candidate whose error is no larger.

Inputs of any size are made from the example inputs by resizing their dynamic axes named
"batch" and "seq": floating inputs are N(0, 1), integer inputs keep the example's value range
(token ids drawn uniformly from it; 0/1 masks all ones).
"""
from __future__ import annotations

import copy
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from sparsecc.backends.torch.artifact import SparseModule, dense_module
from sparsecc.backends.torch.runtime import CudaGraphs
from sparsecc.backends.torch.timing import relative_error
from sparsecc.backends.torch.tuning import library_versions, tuning_cache
from sparsecc.errors import ConfigError, SparseccError
from sparsecc.ir.graph import torch_dtype
from sparsecc.patterns import parse_pattern

from .gpu_layers import time_linear

CORRECT_TOL = 1e-2


def bench_inputs(example: Sequence[torch.Tensor], names: Sequence[str],
                 dynamic_dims: Mapping[str, Mapping[int, str]], batch: int, seq: int | None,
                 gen: torch.Generator, dtype: torch.dtype, device: str = "cuda") -> tuple:
    sizes = {"batch": batch, "seq": seq}
    out = []
    for name, x in zip(names, example):
        shape = list(x.shape)
        for axis, dim in dynamic_dims.get(name, {}).items():
            if sizes.get(dim) is not None:
                shape[axis] = sizes[dim]
        if x.is_floating_point():
            out.append(torch.randn(shape, generator=gen).to(device=device, dtype=dtype))
        elif x.numel() and int(x.min()) >= 0 and int(x.max()) <= 1:
            out.append(torch.ones(shape, dtype=x.dtype, device=device))
        else:
            lo, hi = int(x.min()), int(x.max()) + 1
            out.append(torch.randint(lo, hi, shape, generator=gen, dtype=x.dtype).to(device))
    return tuple(out)


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _time_alternating(fns: Sequence, inputs: Sequence[tuple], warmup: int,
                      reps: int) -> list[float]:
    """Median µs of each fn(*x), the fns timed in turn with CUDA events on rotating x."""
    for i in range(warmup):
        for fn in fns:
            fn(*inputs[i % len(inputs)])
    times: list[list[float]] = [[] for _ in fns]
    for i in range(reps):
        x = inputs[i % len(inputs)]
        for fn, acc in zip(fns, times):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn(*x)
            e.record()
            e.synchronize()
            acc.append(s.elapsed_time(e) * 1000.0)
    return [statistics.median(t) for t in times]


def _time_pair(a, b, inputs: Sequence[tuple], warmup: int, reps: int) -> tuple[float, float]:
    """Medians (µs) of a(*x) and b(*x), timed alternately with CUDA events on rotating x."""
    ta, tb = _time_alternating((a, b), inputs, warmup, reps)
    return ta, tb


def torch_compile_baseline(model: torch.nn.Module, check_in: tuple, ref: torch.Tensor,
                           log=print, what: str = "dense") -> tuple[Any, dict[str, Any]]:
    """`torch.compile(model)` (inductor, default mode), replayed in CUDA graphs like the
    others, checked against `ref` (the same model eager) first. Returns (runner or None,
    record); a compile that fails is recorded, not fatal."""
    start = time.perf_counter()
    try:
        runner = CudaGraphs(torch.compile(model, dynamic=False))
        out = _first(runner(*check_in)).float()
    except Exception as e:                 # noqa: BLE001 - the bench goes on without it
        log(f"  torch.compile {what} failed: {str(e).splitlines()[0][:160]}")
        return None, {"error": str(e).splitlines()[0][:300]}
    err = relative_error(out, ref)
    rec = {"mode": "default", "compile_and_capture_s": round(time.perf_counter() - start, 1),
           "rel_err_vs_eager": err}
    return (runner if err <= CORRECT_TOL else None), rec


def _valid(c: dict[str, Any]) -> bool:
    """A candidate the compiler could have chosen: it has an error estimate."""
    return c.get("measured_us") is not None and c.get("error") is not None


def regret(layer: dict[str, Any]) -> float | None:
    """measured(chosen) / min measured over the valid candidates whose error is no larger than
    the chosen pattern's, minus 1 (0: nothing at most as inaccurate ran faster).

    A composite `channelR+N:M` the selector formed from a group's channel option and the
    layer's N:M option is measured as compiled, with error = the sum of its parts' errors."""
    cands = [c for c in layer["candidates"] if _valid(c)]
    by = {c["pattern"]: c for c in cands}
    chosen = layer["chosen"]
    if chosen in by:
        err, us = by[chosen]["error"], by[chosen]["measured_us"]
    elif "+" in chosen and all(p in by for p in chosen.split("+")):
        err = sum(by[p]["error"] for p in chosen.split("+"))
        us = layer["measured_us"]
    else:
        return None
    ok = [c["measured_us"] for c in cands if c["error"] <= err + 1e-12] + [us]
    return us / min(ok) - 1.0


def summarize(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per workload: median |predicted − measured| / measured over the layers (chosen pattern, as
    compiled) and the largest selector regret."""
    out = []
    for c in cases:
        layers = c.get("layers") or []
        errs = [abs(l["predicted_us"] - l["measured_us"]) / l["measured_us"]
                for l in layers if l.get("predicted_us") and l.get("measured_us")]
        regrets = {l["name"]: regret(l) for l in layers}
        out.append({"batch": c["batch"], "seq": c["seq"], "rows": c["rows"],
                    "speedup": (c.get("e2e") or {}).get("speedup"),
                    "median_prediction_error": statistics.median(errs) if errs else None,
                    "prediction_errors": errs,
                    "regret": regrets,
                    "max_regret": max((r for r in regrets.values() if r is not None),
                                      default=None)})
    return {"cases": out}


def layer_rows(result, module: SparseModule, rows: int, dtype: torch.dtype,
               reps: int) -> list[dict[str, Any]]:
    """Per linear layer: predicted and measured µs, dense and chosen, and every candidate."""
    from sparsecc.plan import find_layers
    sparse = {k["layer"]: k for k in module.kernel_table()}
    final_shapes = {l.name: tuple(result.ir.values[l.weight].shape)
                    for l in find_layers(result.ir)}
    times: dict[tuple, Any] = {}

    def timed(n: int, k: int, pattern: str):
        """time_linear, once per (N, K, pattern): layers share shapes, and a layer's dense and
        chosen shapes often equal a candidate's."""
        key = (n, k, str(parse_pattern(pattern)))
        if key not in times:
            times[key] = time_linear(n, k, rows, parse_pattern(pattern), dtype, reps=reps)
        return times[key]

    out = []
    for layer in result.report["layers"]:
        name = layer["name"]
        if layer["op"] != "linear" or name not in final_shapes:
            continue
        k = sparse.get(name, {"pattern": "dense", "kernel": "aten"})
        n0, k0 = layer["shape"][:2]
        n_final, k_final = final_shapes[name][:2]
        preds = {c["pattern"]: c for c in layer.get("candidates", ())}
        dense = timed(n0, k0, "dense")
        chosen_pattern = layer["chosen"]
        cands = []
        for pat, c in preds.items():
            try:
                t = timed(n0, k_final, pat)
                measured, kernel, note = t.us, t.kernel, t.note
            except (RuntimeError, ConfigError) as e:
                measured, kernel, note = None, None, str(e)
            cands.append({"pattern": pat, "error": c.get("error"),
                          "predicted_us": c.get("predicted_us"), "measured_us": measured,
                          "kernel": kernel, "note": note or c.get("reason")})
        chosen = next((c for c in cands if c["pattern"] == chosen_pattern), None)
        if chosen is None:    # e.g. dense by plan file with no candidates listed
            t = timed(n0, k_final, chosen_pattern)
            chosen = {"pattern": chosen_pattern, "measured_us": t.us, "kernel": t.kernel}
        # the chosen layer as compiled (its final shape: inputs removed upstream count too)
        runs_sparse = not k["kernel"].startswith(("aten", "reference"))
        final = timed(n_final, k_final, k["pattern"] if runs_sparse else "dense")
        out.append({
            "name": name, "shape": [n0, k0], "final_shape": [n_final, k_final],
            "chosen": chosen_pattern, "kernel": k["kernel"],
            "predicted_dense_us": (preds.get("dense") or {}).get("predicted_us"),
            "predicted_us": layer.get("predicted_us"),
            "measured_dense_us": dense.us, "measured_us": final.us,
            "candidates": cands,
        })
        out[-1]["regret"] = regret(out[-1])
    return out


def bench_case(loaded, config, batch: int, seq: int | None, *, plan_file: str | None,
               dtype: torch.dtype, warmup: int, reps: int, layers: bool,
               unfused: bool = False, log=print) -> tuple[dict[str, Any], Any]:
    """One workload: compile, check the artifact against the masked dense model, then time
    eager dense, torch.compile dense, the artifact and the artifact + torch.compile side by
    side (CUDA graphs, alternating, fresh inputs). `unfused`: also the artifact + torch.compile
    with its sibling layers run one GEMM each (what the sibling fusion is worth)."""
    from sparsecc.api import compile as compile_model
    from sparsecc.ir import run as run_ir
    result = compile_model(loaded.model, loaded.example_inputs, config,
                           dynamic_dims=loaded.dynamic_dims, name=loaded.name,
                           workload=loaded.workload, plan_file=plan_file,
                           calibration=loaded.calibration)
    names = list(result.ir.inputs)
    gen = torch.Generator().manual_seed(batch * 1000 + (seq or 0))
    pool = [bench_inputs(loaded.example_inputs, names, loaded.dynamic_dims, batch, seq, gen,
                         dtype) for _ in range(4)]
    dense_model = copy.deepcopy(loaded.model).to(device="cuda", dtype=dtype).eval()
    dense = CudaGraphs(dense_model)
    masked = CudaGraphs(dense_module(result.ir).to(device="cuda", dtype=dtype))
    check_in = bench_inputs(loaded.example_inputs, names, loaded.dynamic_dims, batch, seq, gen,
                            dtype)
    # building the tuned artifact on the GPU: weights moved and packed, kernels tuned (or read
    # from the tuning cache), the first call's CUDA graph captured
    cache = tuning_cache()
    hits, misses = cache.hits, cache.misses
    torch.cuda.synchronize()
    start = time.perf_counter()
    module = result.module.to(device="cuda", dtype=dtype)
    torch.cuda.synchronize()
    lower_s = time.perf_counter() - start
    compiled = CudaGraphs(module)
    out_c = _first(compiled(*check_in)).float()
    torch.cuda.synchronize()
    build_s = time.perf_counter() - start
    out_m = _first(masked(*check_in)).float()
    fp32_in = tuple(x.float() if x.is_floating_point() else x for x in check_in)
    ref32 = _first(run_ir(result.ir, fp32_in, device="cuda"))
    whole = result.report.get("whole_model") or {}
    case: dict[str, Any] = {
        "batch": batch, "seq": seq, "rows": batch * (seq or 1),
        "plan": {d.layer.name: d.chosen for d in result.plan.decisions},
        "predicted_speedup": result.report.get("predicted_speedup"),
        "predicted_whole_model": {
            "dense_us": (whole.get("dense") or {}).get("total_us"),
            "dense_fused_us": (whole.get("dense") or {}).get("fused_us"),
            "compiled_us": (whole.get("planned") or {}).get("total_us"),
            "compiled_fused_us": (whole.get("planned") or {}).get("fused_us"),
            "speedup": whole.get("speedup"), "fused_speedup": whole.get("fused_speedup")},
        "kernels": module.kernel_table(),
        "fused_siblings": module.fused(),
        "runtime_build_s": round(build_s, 3),
        "runtime_build_detail": {"to_device_s": round(lower_s, 3),
                                 "warm_and_capture_s": round(sum(compiled.capture_s.values()), 3)},
        "tuning_cache": {"path": cache.path, "hits": cache.hits - hits,
                         "misses": cache.misses - misses, "enabled": cache.enabled},
        "correctness": {"rel_err_vs_masked_dense": relative_error(out_c, out_m),
                        "masked_dense_vs_fp32": relative_error(out_m, ref32),
                        "compiled_vs_fp32": relative_error(out_c, ref32),
                        "tolerance": CORRECT_TOL},
    }
    del masked
    ok = case["correctness"]["rel_err_vs_masked_dense"] <= CORRECT_TOL
    case["correctness"]["ok"] = ok
    if not ok:
        log(f"  batch {batch} seq {seq}: compiled differs from masked dense "
            f"({case['correctness']['rel_err_vs_masked_dense']:.2e}); not timed")
        return case, result
    out_d = _first(dense(*check_in)).float()
    peer, case["torch_compile_dense"] = torch_compile_baseline(dense_model, check_in, out_d, log)
    both, case["torch_compile_compiled"] = torch_compile_baseline(module, check_in, out_c, log,
                                                                  what="compiled")
    named = [("dense_us", dense), ("compiled_us", compiled),
             ("torch_compile_dense_us", peer), ("compiled_torch_compile_us", both)]
    if unfused and module.fused():
        plain = SparseModule(module.ir, module.tensors(), fuse_siblings=False)
        split, case["torch_compile_unfused"] = torch_compile_baseline(
            plain, check_in, out_c, log, what="compiled, siblings unfused")
        named.append(("unfused_torch_compile_us", split))
    named = [(k, f) for k, f in named if f is not None]
    times = dict(zip([k for k, _ in named],
                     _time_alternating([f for _, f in named], pool, warmup, reps)))
    d_us, c_us = times["dense_us"], times["compiled_us"]
    e2e = case["e2e"] = {**times, "speedup": d_us / c_us}
    tc = times.get("torch_compile_dense_us")
    both_us = times.get("compiled_torch_compile_us")
    if tc is not None:
        e2e["speedup_vs_torch_compile"] = tc / c_us
        if both_us is not None:
            e2e["compiled_tc_vs_torch_compile"] = tc / both_us
    pred = case["predicted_whole_model"]
    measured_of = {"dense_us": d_us, "compiled_us": c_us, "dense_fused_us": tc,
                   "compiled_fused_us": both_us}
    case["prediction_error"] = {
        k: (abs(pred[k] - m) / m if pred.get(k) and m else None) for k, m in measured_of.items()}
    text = "".join(f", {k} {v:.1f}" for k, v in times.items() if k not in ("dense_us",
                                                                          "compiled_us"))
    log(f"  batch {batch} seq {seq}: dense {d_us:.1f} µs, compiled {c_us:.1f} µs, "
        f"{d_us / c_us:.2f}x{text}; predicted {pred['dense_us'] or 0:.1f} -> "
        f"{pred['compiled_us'] or 0:.1f} µs")
    if layers:
        case["layers"] = layer_rows(result, module, case["rows"], dtype, reps)
    del dense, dense_model, compiled, module, peer, both, named
    torch.cuda.empty_cache()
    return case, result


def environment() -> dict[str, Any]:
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join(["sparsecc"] + sys.argv[1:]) if sys.argv else None}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        env.update(library_versions())
    return env


def require_cuda(what: str) -> None:
    if not torch.cuda.is_available():
        raise SparseccError(f"{what} needs a CUDA GPU; torch {torch.__version__} sees none")


def summary_table(cases: list[dict[str, Any]]) -> str:
    lines = [f"{'batch':>6} {'seq':>5} {'rows':>6} {'dense µs':>10} {'t.compile µs':>12} "
             f"{'compiled µs':>12} {'+t.compile':>10} {'speedup':>8} {'vs t.c':>7} "
             f"{'pred µs':>8} {'rel err':>8} {'build s':>8}"]
    nan = float("nan")
    for c in cases:
        e = c.get("e2e") or {}
        pred = (c.get("predicted_whole_model") or {}).get("compiled_us")
        lines.append(f"{c['batch']:>6} {str(c['seq']):>5} {c['rows']:>6} "
                     f"{e.get('dense_us', nan):>10.1f} "
                     f"{e.get('torch_compile_dense_us', nan):>12.1f} "
                     f"{e.get('compiled_us', nan):>12.1f} "
                     f"{e.get('compiled_torch_compile_us', nan):>10.1f} "
                     f"{e.get('speedup', nan):>8.2f} "
                     f"{e.get('compiled_tc_vs_torch_compile', nan):>7.2f} "
                     f"{pred if pred is not None else nan:>8.1f} "
                     f"{c['correctness']['rel_err_vs_masked_dense']:>8.1e} "
                     f"{c.get('runtime_build_s', float('nan')):>8.2f}")
    return "\n".join(lines) + "\n"


def parse_batches(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--batch takes comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--batch takes positive integers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    """python -m sparsecc.benchmarks.gpu summarize FILE... : prediction error and regret of
    bench JSON files (recomputed from their per-layer rows)."""
    import argparse
    import json
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("verb", choices=["summarize"])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", help="write the summary JSON here")
    a = ap.parse_args(argv)
    doc = {"command": "python -m sparsecc.benchmarks.gpu summarize " + " ".join(a.files),
           "files": {}}
    for f in a.files:
        with open(f) as fh:
            doc["files"][f] = summarize(json.load(fh)["cases"])
        for c in doc["files"][f]["cases"]:
            med = c["median_prediction_error"]
            print(f"{f}: rows {c['rows']}: speedup {c['speedup']:.2f}x, median prediction error "
                  f"{'-' if med is None else f'{med:.3f}'}, max regret {c['max_regret']}")
    if a.out:
        from . import write_json
        write_json(doc, a.out)
    return 0


def dtype_of(name: str) -> torch.dtype:
    if name not in ("f16", "bf16"):
        raise ConfigError(f"bench dtype must be f16 or bf16, got {name!r}")
    return torch_dtype(name)


if __name__ == "__main__":
    sys.exit(main())
