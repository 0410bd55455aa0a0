"""`sparsecc bench` on the CPU: dense PyTorch vs the compiled artifact on its backend.

For every workload (batch, seq):
  1. compile the model for it (or apply `--plan`) with the backend asked for (onnx: ONNX
     Runtime, torch, tvm), save the artifact and load it back with `sparsecc.load`: what is
     timed is what ships. The model compiled with every layer dense, lowered to the same
     backend, is that backend's own dense baseline (so the ratio against it is the plan's,
     not the runtime's);
  2. correctness first: on a fresh random input the artifact must equal the masked dense model
     (the compiled IR with every layer on ATen: the plan's masks and removed channels) within
     1e-4 relative, and the backend's dense baseline the user's model; a failure stops that
     workload before any timing;
  3. after warm-up, eager dense PyTorch (the user's model), the dense baseline and the artifact
     are timed with the wall clock in blocks, in turn, over a few rounds (`time_blocks`), on
     rotating fresh random inputs, each converted to what its runtime takes outside the timed
     call; medians and ratios. float32, at the thread counts torch and ONNX Runtime pick on
     this machine (recorded). On a machine that is busy, eager torch suffers most (its
     OpenMP threads wait on each other): the JSON records the load average.

Inputs come from `gpu.bench_inputs`; the JSON has the GPU bench's shape (environment, model,
target, dtype, plan_file, budget, cases with `correctness` and `e2e`, summary), so
`python -m sparsecc.benchmarks.gpu summarize` reads it too.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sparsecc.errors import SparseccError
from sparsecc.progress import phase, progress

CORRECT_TOL = 1e-4
WARMUP = 5
POOL = 4          # fresh random inputs, rotated
ROUNDS = 3


class Runner:
    """One model as the bench runs it: `prepare` turns torch inputs into what `run` takes
    (outside the timed call); `__call__` gives torch outputs (for the checks)."""

    def __init__(self, name: str, model: Any) -> None:
        self.name, self.model = name, model
        self.prepare: Callable[..., Any] = getattr(model, "prepare", lambda *x: x)
        self.run: Callable[[Any], Any] = getattr(model, "run_prepared", lambda x: model(*x))

    def __call__(self, *x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.model(*x)
        return (out[0] if isinstance(out, (tuple, list)) else out).float()


def time_blocks(runners: Sequence[Runner], pool: Sequence[tuple], warmup: int, reps: int,
                rounds: int = ROUNDS, label: str = "time") -> list[float]:
    """Median µs of each runner: `rounds` rounds in which each runner runs a block of its
    share of `reps` calls on rotating inputs (wall clock), after one untimed call.

    Not one call of each in turn, as on the GPU: on a CPU the thread pool of the runtime that
    ran last (torch's OpenMP, ONNX Runtime's) keeps spinning for a while and slows whichever
    runs next; the untimed call at the start of a block absorbs that."""
    prepared = [[r.prepare(*x) for x in pool] for r in runners]
    rounds = max(1, min(rounds, reps))
    share = [reps // rounds + (k < reps % rounds) for k in range(rounds)]
    times: list[list[float]] = [[] for _ in runners]
    with torch.no_grad():
        for r, ins in zip(runners, prepared):
            for i in range(warmup):
                r.run(ins[i % len(pool)])
        for k in progress(range(rounds), label=label, unit="rounds"):
            for r, ins, acc in zip(runners, prepared, times):
                r.run(ins[-1])
                for i in range(share[k]):
                    x = ins[i % len(pool)]
                    start = time.perf_counter()
                    r.run(x)
                    acc.append((time.perf_counter() - start) * 1e6)
    return [statistics.median(t) for t in times]


def _saved(result, directory: str, report_dir: str | None) -> tuple[Any, str, float]:
    """`result` written (into `report_dir` when given, else `directory`) and loaded back the way
    a user loads it; (the loaded model, its folder, load seconds)."""
    import sparsecc
    path = report_dir or directory
    result.save(path, force=report_dir is not None)
    start = time.perf_counter()
    loaded = sparsecc.load(path, device="cpu")
    return loaded, path, time.perf_counter() - start


def bench_case(loaded, config, batch: int, seq: int | None, *, plan_file: str | None,
               reps: int, warmup: int = WARMUP, report_dir: str | None = None,
               log=print) -> dict[str, Any]:
    """One workload: compile, save and load the artifact and the backend's dense baseline,
    check both, then time eager dense, the dense baseline and the artifact side by side."""
    import sparsecc
    from sparsecc.backends.torch.artifact import dense_module
    from sparsecc.backends.torch.timing import relative_error

    from .gpu import bench_inputs
    what = f"batch {batch}" + (f" seq {seq}" if seq and seq > 1 else "")
    with phase(f"compile ({what})"):
        result = sparsecc.compile(loaded.model, loaded.example_inputs, config,
                                  dynamic_dims=loaded.dynamic_dims, name=loaded.name,
                                  workload=loaded.workload, plan_file=plan_file,
                                  calibration=loaded.calibration)
    with phase(f"compile dense baseline ({what})"):
        dense_result = sparsecc.compile(
            loaded.model, loaded.example_inputs,
            config.replace(patterns=("dense",), overrides=(), speedup=None),
            dynamic_dims=loaded.dynamic_dims, name=loaded.name, workload=loaded.workload)
    backend = config.backend
    with tempfile.TemporaryDirectory(prefix="sparsecc-bench-") as tmp:
        with phase(f"save and load the {backend} artifacts"):
            artifact, path, load_s = _saved(result, os.path.join(tmp, "compiled"), report_dir)
            baseline, _, _ = _saved(dense_result, os.path.join(tmp, "dense"), None)
        names = list(result.ir.inputs)
        gen = torch.Generator().manual_seed(batch * 1000 + (seq or 0))

        def inputs() -> tuple:
            return bench_inputs(loaded.example_inputs, names, loaded.dynamic_dims, batch, seq,
                                gen, torch.float32, device="cpu")
        dense = Runner("dense", loaded.model.eval())
        masked = Runner("masked dense", dense_module(result.ir))
        base = Runner(f"{backend} dense", baseline)
        compiled = Runner(f"{backend} compiled", artifact)
        check_in = inputs()
        out_d, out_m = dense(*check_in), masked(*check_in)
        out_b, out_c = base(*check_in), compiled(*check_in)
        correctness = {"rel_err_vs_masked_dense": relative_error(out_c, out_m),
                       "dense_backend_vs_dense": relative_error(out_b, out_d),
                       "masked_dense_vs_dense": relative_error(out_m, out_d),
                       "tolerance": CORRECT_TOL}
        correctness["ok"] = (correctness["rel_err_vs_masked_dense"] <= CORRECT_TOL
                             and correctness["dense_backend_vs_dense"] <= CORRECT_TOL)
        whole = result.report.get("whole_model") or {}
        case: dict[str, Any] = {
            "batch": batch, "seq": seq, "rows": batch * (seq or 1), "backend": backend,
            "plan": {d.layer.name: d.chosen for d in result.plan.decisions},
            "layers_changed": sum(d.chosen != "dense" for d in result.plan.decisions),
            "predicted_speedup": result.report.get("predicted_speedup"),
            "predicted_whole_model": {
                "dense_us": (whole.get("dense") or {}).get("total_us"),
                "compiled_us": (whole.get("planned") or {}).get("total_us"),
                "speedup": whole.get("speedup")},
            "artifact": {"files": sorted(os.listdir(path)), "load_s": round(load_s, 3),
                         "kept": report_dir is not None},
            "correctness": correctness, "warmup": warmup, "reps": reps, "rounds": ROUNDS,
            "threads": {"torch": torch.get_num_threads()},
        }
        if not correctness["ok"]:
            log(f"  {what}: the {backend} artifact differs from masked dense "
                f"({correctness['rel_err_vs_masked_dense']:.2e}) or its dense baseline from "
                f"the model ({correctness['dense_backend_vs_dense']:.2e}); not timed")
            return case
        pool = [inputs() for _ in range(POOL)]
        d_us, b_us, c_us = time_blocks((dense, base, compiled), pool, warmup, reps,
                                       label=f"time ({what})")
    case["e2e"] = {"dense_us": d_us, "dense_backend_us": b_us, "compiled_us": c_us,
                   "speedup": d_us / c_us, "speedup_vs_dense_backend": b_us / c_us}
    if report_dir:                 # the kept output's report, with what was measured
        result.report["measured_e2e"] = case["e2e"]
        result.save(report_dir, force=True)
    log(f"  {what}: eager dense {d_us:.1f} µs, {backend} dense {b_us:.1f} µs, {backend} "
        f"compiled {c_us:.1f} µs: {d_us / c_us:.2f}x eager dense, {b_us / c_us:.2f}x "
        f"{backend} dense ({case['layers_changed']} of {len(case['plan'])} layers changed)")
    return case


def environment() -> dict[str, Any]:
    """The machine and versions (ort_cpu's), the command and the date."""
    import datetime
    import sys

    from .ort_cpu import machine
    env = machine()
    env.update({"device": "cpu", "torch_threads": torch.get_num_threads(),
                "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"),
                "command": " ".join(["sparsecc"] + sys.argv[1:]) if sys.argv else None})
    try:
        import tvm
        env["tvm"] = tvm.__version__
    except ImportError:
        pass
    return env


def summary_table(cases: list[dict[str, Any]]) -> str:
    backend = cases[0]["backend"] if cases else "backend"
    head = f"{backend} dense µs"
    lines = [f"{'batch':>6} {'seq':>5} {'rows':>6} {'dense µs':>10} {head:>15} "
             f"{'compiled µs':>12} {'speedup':>8} {'vs ' + backend + ' dense':>14} "
             f"{'rel err':>8}"]
    nan = float("nan")
    for c in cases:
        e = c.get("e2e") or {}
        lines.append(f"{c['batch']:>6} {str(c['seq']):>5} {c['rows']:>6} "
                     f"{e.get('dense_us', nan):>10.1f} {e.get('dense_backend_us', nan):>15.1f} "
                     f"{e.get('compiled_us', nan):>12.1f} {e.get('speedup', nan):>8.2f} "
                     f"{e.get('speedup_vs_dense_backend', nan):>14.2f} "
                     f"{c['correctness']['rel_err_vs_masked_dense']:>8.1e}")
    return "\n".join(lines) + "\n"


def final_line(model: str, target: str, cases: list[dict[str, Any]]) -> str:
    backend = cases[0]["backend"] if cases else "?"
    parts = []
    for c in cases:
        e = c.get("e2e")
        parts.append(f"batch {c['batch']}: " + (
            f"{e['speedup']:.2f}x eager dense, {e['speedup_vs_dense_backend']:.2f}x "
            f"{backend} dense" if e else "outputs differ, not timed"))
    ok = all(c["correctness"]["ok"] for c in cases)
    return (f"bench {model} for {target} on the CPU ({backend}): {'; '.join(parts)}; "
            f"{'outputs match' if ok else 'OUTPUTS DIFFER'}")


def busy_note() -> str | None:
    """A line when other work holds the cores: timings then say more about the load than
    about the models (eager torch's OpenMP threads, waiting on each other, most of all)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    if load < cores:
        return None
    return (f"note: this machine is busy (load average {load:.1f} on {cores} cores): the "
            f"timings will be noisy, eager PyTorch's most")


def require_cpu_target(target) -> None:
    if target.kind != "cpu":
        raise SparseccError(f"the CPU bench plans for a CPU target (--target cpu or auto), "
                            f"not {target.name} ({target.kind})")
