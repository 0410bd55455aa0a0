"""`sparsecc calibrate`: measure the calibrated cost model's table on this machine's GPU or CPU.

    sparsecc calibrate [--target auto|NAME] [--out FILE] [--quick] [--max-seconds S]

The target is this machine's (`auto`, the default: `sparsecc.targets.detect`); a named target
must be the one this device is, so a table is never filed under another device's name. The
table goes to the user's cache (`tables/NAME.jsonl`, see `sparsecc.cache`), where every later
compile for that target on this machine finds it, or to `--out`.

What is measured (one JSON row per point, the calibrated model's own format, after an
environment line; cost/calibrated.py reads it):
  GEMMs  the zoo's transformer GEMM shapes (K, N) at M = 1 ... 16384 rows, for every pattern
         family the device has a kernel for. GPU, float16: dense (cuBLAS), 2:4 (our cuSPARSELt
         path) and 64x64 blocks at 10/25/50% density (our Triton kernel), bfloat16 dense;
         channel patterns are dense GEMMs at the kept width, read off the dense series. A
         pattern whose kernel does not run on this GPU is left out with one line saying why.
         CPU, float32: dense (torch, oneDNN/MKL); points whose one call would take over
         `CPU_POINT_US` are skipped (they tell nothing the smaller ones don't).
  ops    the non-GEMM work whole-model prediction needs (cost/ops.py): elementwise add, RMS
         norm, softmax, transposing copies and scaled-dot-product attention (causal and not),
         over sizes from launch-bound to bandwidth-bound.
Every GPU point is checked against a reference, then timed as the median of CUDA-graph replays
on fresh random inputs (`time_linear`); CPU points as the median of timed calls. Progress
(points done, elapsed, time left) is logged every few seconds. Points are ordered by M bucket,
so if `--max-seconds` runs out the table holds every shape and pattern at the M values done;
the file written says how many points it holds. The 2:4 tuning done here is kept in the tuning
cache, so later runtimes of those shapes start tuned.
"""
from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from sparsecc.cache import cache_dir, ensure_writable
from sparsecc.cost import OpWork, attention_work, predict_us
from sparsecc.errors import ConfigError
from sparsecc.progress import progress
from sparsecc.targets import Target, get_target, target_names

from . import write_text

SHAPES = [(4096, 4096), (4096, 1024), (4096, 14336), (14336, 4096),    # llama3-8b layer
          (384, 384), (384, 1536), (1536, 384)]                          # minilm
ROWS = [16, 4096, 1024, 128, 1, 16384]           # in the order they are measured
F16_PATTERNS = ["dense", "2:4", "block64x64@0.1", "block64x64@0.25", "block64x64@0.5"]
BF16_PATTERNS = ["dense"]
QUICK = ([(4096, 4096), (384, 1536)], [16, 4096], ["dense", "2:4", "block64x64@0.25"], ["dense"])
CPU_SHAPES = SHAPES
CPU_ROWS = [16, 128, 1, 1024, 4096]
CPU_QUICK = ([(384, 1536), (1536, 384)], [1, 16, 128])
CPU_POINT_US = 150_000.0          # skip CPU GEMMs predicted slower than this per call
LOG_EVERY_S = 10.0


Point = tuple[str, str, int, int, int]            # (dtype, pattern, K, N, M)


def grid(quick: bool = False, patterns: Iterable[str] | None = None) -> list[Point]:
    """GPU GEMM points, ordered by M bucket; `patterns` limits the float16 patterns."""
    shapes, rows, f16, bf16 = QUICK if quick else (SHAPES, ROWS, F16_PATTERNS, BF16_PATTERNS)
    if patterns is not None:
        keep = set(patterns)
        f16 = [p for p in f16 if p in keep]
    out: list[Point] = []
    for m, (k, n) in itertools.product(rows, shapes):
        out += [("f16", p, k, n, m) for p in f16]
        out += [("bf16", p, k, n, m) for p in bf16]
    return out


def cpu_grid(target: Target, quick: bool = False) -> tuple[list[Point], int]:
    """CPU GEMM points (float32 dense) and how many were skipped as too slow to time."""
    shapes, rows = CPU_QUICK if quick else (CPU_SHAPES, CPU_ROWS)
    out, skipped = [], 0
    for m, (k, n) in itertools.product(rows, shapes):
        if predict_us(target, (n, k), "linear", "dense", m, "f32") > CPU_POINT_US:
            skipped += 1
            continue
        out.append(("f32", "dense", k, n, m))
    return out, skipped


# -- kernels available on this GPU --------------------------------------------------------------
def gpu_patterns(target: Target, log: Callable[[str], None]) -> list[str]:
    """The float16 patterns to measure: those the target's torch backend runs and whose kernel
    runs on this GPU (tried on a small layer); each one left out is said in one line."""
    from .gpu_layers import time_linear
    keep = []
    for p in F16_PATTERNS:
        why = target.supports(p, "torch")
        if why is None and p != "dense":
            try:
                t = time_linear(256, 256, 16, p, reps=2)
                if t.kernel == "aten":
                    why = t.note.removeprefix("runs dense: ") or "the kernel refused the layer"
            except Exception as e:          # noqa: BLE001 - any failure: not measured
                why = str(e).splitlines()[0][:160] or type(e).__name__
        if why is None:
            keep.append(p)
        else:
            log(f"  {p}: no kernel on this GPU ({why}); not measured")
    return keep


# -- measuring ----------------------------------------------------------------------------------
def _cpu_median_us(fn: Callable[[], Any], budget_s: float = 0.05, most: int = 15) -> float:
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < 3 or (spent < budget_s and len(times) < most):
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        times.append(dt)
        spent += dt
    return statistics.median(times) * 1e6


def time_cpu_linear(n: int, k: int, m: int, seed: int = 0) -> float:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=gen)
    xs = [torch.randn(m, k, generator=gen) for _ in range(3)]
    it = itertools.cycle(xs)
    return _cpu_median_us(lambda: F.linear(next(it), w))


def _gemm_row(target: Target, device: str, point: Point) -> dict[str, Any]:
    dtype, pattern, k, n, m = point
    row = {"target": target.name, "op": "gemm", "K": k, "N": n, "M": m, "dtype": dtype,
           "pattern": pattern}
    if device == "cuda":
        from .gpu_layers import time_linear
        t = time_linear(n, k, m, pattern, torch.float16 if dtype == "f16" else torch.bfloat16,
                        reps=15)
        row.update(us=round(t.us, 3), kernel=t.kernel)
        if t.note:
            row["note"] = t.note
    else:
        row.update(us=round(time_cpu_linear(n, k, m), 3), kernel="aten-cpu")
    return row


def op_cases(device: str, quick: bool = False) -> list[tuple[OpWork, Callable[[], tuple], Callable, list]]:
    """(work, make inputs, fn, shape) of every non-GEMM point."""
    dt = torch.float16 if device == "cuda" else torch.float32
    name = "f16" if device == "cuda" else "f32"
    b = 2 if device == "cuda" else 4
    big = 26 if device == "cuda" else 22
    cases: list = []

    def rand(*shape):
        return lambda: (torch.randn(*shape, device=device, dtype=dt),)

    sizes = [14, 18, 22, big] if not quick else [14, 18]
    for e in sizes:
        n = 2 ** e
        cases.append((OpWork("elementwise", 3 * n * b, n, name),
                      lambda n=n: (torch.randn(n, device=device, dtype=dt),
                                   torch.randn(n, device=device, dtype=dt)),
                      torch.add, [n]))
        cases.append((OpWork("copy", 2 * n * b, 0, name), rand(2 ** (e // 2), n // 2 ** (e // 2)),
                      lambda x: x.t().contiguous(), [2 ** (e // 2), n // 2 ** (e // 2)]))
    hidden = 4096 if device == "cuda" else 1024
    for rows in ([1, 16, 1024, 16384] if device == "cuda" else [1, 16, 1024]) if not quick else [16]:
        cases.append((OpWork("norm", (2 * rows * hidden + hidden) * b, 4 * rows * hidden, name),
                      lambda rows=rows: (torch.randn(rows, hidden, device=device, dtype=dt),
                                         torch.ones(hidden, device=device, dtype=dt)),
                      lambda x, w: F.rms_norm(x, (x.shape[-1],), w, 1e-6), [rows, hidden]))
        cases.append((OpWork("softmax", 2 * rows * hidden * b, 5 * rows * hidden, name),
                      rand(rows, hidden), lambda x: torch.softmax(x, -1), [rows, hidden]))
    attn = [(1, 32, 1, 128), (16, 32, 1, 128), (8, 12, 128, 32), (1, 32, 512, 128),
            (1, 32, 4096, 128)] if device == "cuda" else [(1, 12, 1, 32), (8, 12, 128, 32),
                                                          (1, 8, 512, 64)]
    for (bt, h, s, d) in (attn if not quick else attn[:2]):
        for causal in (False, True):
            work = attention_work(bt, h, s, s, d, name)
            if causal:                    # the flops it does: the lower triangle
                work = OpWork("attention", work.bytes, work.flops * (s + 1) / (2 * s), name)
            cases.append((work, lambda bt=bt, h=h, s=s, d=d: tuple(
                torch.randn(bt, h, s, d, device=device, dtype=dt) for _ in range(3)),
                lambda q, k, v, c=causal: F.scaled_dot_product_attention(q, k, v, is_causal=c),
                [bt, h, s, d, int(causal)]))
    return cases


def _op_row(target: Target, device: str, case) -> dict[str, Any]:
    work, make, fn, shape = case
    if device == "cuda":
        from sparsecc.backends.torch.timing import graph_time_us
        us = graph_time_us(fn, [make() for _ in range(3)], warmup=3, reps=10)
    else:
        inputs = itertools.cycle([make() for _ in range(3)])
        us = _cpu_median_us(lambda: fn(*next(inputs)))
    return {"target": target.name, "op": work.kind, "dtype": work.dtype, "bytes": int(work.bytes),
            "flops": int(work.flops), "shape": shape, "us": round(us, 3),
            "kernel": "aten" if device == "cuda" else "aten-cpu"}


# -- the run --------------------------------------------------------------------------------------
def environment(device: str, target: Target) -> dict[str, Any]:
    from .gpu import environment as gpu_environment
    env = gpu_environment()
    env["target"] = target.name
    if device == "cpu":
        env["cpu"] = (target.data.get("detected") or {}).get("name") or platform.processor()
        env["threads"] = torch.get_num_threads()
    return env


def resolve(target_name: str) -> tuple[Target, str, str]:
    """(target, device, what was detected): the target must be this machine's."""
    from sparsecc.targets.detect import detect
    found = detect()
    if target_name.strip().lower() == "auto":
        target = found.target
    else:
        target = get_target(target_name)
        if target.name != found.target.name:
            raise ConfigError(f"this machine is {found.device}, which is target "
                              f"{found.target.name}, not {target.name}: a table measured here "
                              f"would not be {target.name}'s (use --target auto)")
    device = "cuda" if target.kind == "gpu" and torch.cuda.is_available() else "cpu"
    return target, device, found.describe()


def default_out(target: Target) -> str:
    return str(ensure_writable(cache_dir() / "tables") / f"{target.name}.jsonl")


def refit_built_target(target: Target, table: str, log: Callable[[str], None]) -> None:
    """A target built for this device (`--target auto`) gets its analytic parameters fitted
    to the table just measured (cost/fit.py), in its file in the cache."""
    from sparsecc.cost.calibrated import CalibratedCostModel
    from sparsecc.cost.fit import fit, write_fit
    path = cache_dir() / "targets" / f"{target.name}.json"
    if not path.is_file():
        return
    fitted, errors = fit(target, CalibratedCostModel.from_jsonl(table, target))
    write_fit(str(path), fitted, table, errors)
    log(f"fitted {target.name}'s analytic model to the table (median error "
        f"{errors.get('all', float('nan')):.3f}): {path}")


def write_table(path: str, rows: list[dict], env: dict) -> None:
    """The table as JSON lines (environment first), written atomically."""
    lines = [json.dumps({"environment": env})] + [json.dumps(r) for r in rows]
    write_text("\n".join(lines) + "\n", path)


def run(target_name: str = "auto", out: str | None = None, quick: bool = False,
        max_seconds: float = 290.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the table; returns a summary (path, rows, seconds, skipped)."""
    start = time.monotonic()
    target, device, found = resolve(target_name)
    into_cache = out is None
    out = out or default_out(target)
    env = environment(device, target)
    log(f"{found}; calibrating {target.name} on {'the GPU' if device == 'cuda' else 'the CPU'}")
    skipped: list[str] = []
    if device == "cuda":
        points = grid(quick, gpu_patterns(target, log))
    else:
        points, n_slow = cpu_grid(target, quick)
        if n_slow:
            skipped.append(f"{n_slow} GEMM points over {CPU_POINT_US / 1e3:.0f} ms a call")
        log("  block patterns: the CPU's block kernel is TVM's, compiled per shape: not measured "
            "(the analytic model prices them)")
    ops = op_cases(device, quick)
    total = len(points) + len(ops)
    log(f"  {len(points)} GEMM points and {len(ops)} other ops -> {out}")
    rows: list[dict] = []
    last_log = time.monotonic()
    jobs = [("gemm", p) for p in points] + [("op", c) for c in ops]
    # at a terminal a bar; in a log, the lines below (they also say the time left)
    shown = progress(jobs, label="calibrate", unit="points", lines=False)
    for i, (kind, job) in enumerate(shown, 1):
        elapsed = time.monotonic() - start
        if elapsed > max_seconds:
            skipped.append(f"{total - i + 1} points left at the {max_seconds:.0f} s limit")
            log(f"  stopped at the {max_seconds:.0f} s limit with {i - 1} of {total} points")
            break
        try:
            rows.append(_gemm_row(target, device, job) if kind == "gemm"
                        else _op_row(target, device, job))
        except Exception as e:              # noqa: BLE001 - one failed point, said, then on
            what = job if kind == "gemm" else f"{job[0].kind} {job[3]}"
            log(f"  {what}: failed ({str(e).splitlines()[0][:160]}); not in the table")
            skipped.append(f"{what}: {str(e).splitlines()[0][:80]}")
        now = time.monotonic()
        if now - last_log >= LOG_EVERY_S or i == total:
            last_log = now
            rate = (now - start) / i
            log(f"  {i}/{total} points, {now - start:.0f} s, about {rate * (total - i):.0f} s left")
            write_table(out + ".partial", rows, env)
    env["seconds"] = round(time.monotonic() - start, 1)
    env["skipped"] = skipped
    write_table(out, rows, env)
    if os.path.exists(out + ".partial"):
        os.unlink(out + ".partial")
    log(f"wrote {len(rows)} rows to {out} in {env['seconds']} s; compiles for {target.name} on "
        f"this machine now use it" if into_cache else
        f"wrote {len(rows)} rows to {out} in {env['seconds']} s")
    if target.name not in target_names() and any(r["op"] == "gemm" for r in rows):
        refit_built_target(target, out, log)
    return {"path": out, "rows": len(rows), "seconds": env["seconds"], "skipped": skipped,
            "target": target.name, "device": device}
