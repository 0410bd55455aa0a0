"""TVM on the CPU: our BSR kernel (a compiled block-sparse Linear) vs the best dense GEMM.

    python -m sparsecc.benchmarks.tvm_cpu --out docs/results/tvm-cpu.json

For the minilm FFN shapes (weight 1536x384 and 384x1536) at M = 128 and 512 rows and 16x16
blocks at 10% and 25% density: a one-Linear model is compiled with the block pattern forced and
lowered with the TVM backend (`compile_tvm`: the TIR BSR kernel through call_tir), and timed
against dense numpy (`x @ W.T`) and dense torch (`F.linear`) on the same masked weight, and TVM's
own dense lowering. Correctness first (each output vs F.linear in fp32, 1e-4 relative), then
after warm-up the paths are timed alternately on rotating fresh inputs; medians and the ratio of
the best dense to BSR are reported. fp32, all cores of this machine.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import sparsecc

from . import write_json

CASES = [((1536, 384), m, d) for m in (128, 512) for d in (0.1, 0.25)] + \
        [((384, 1536), m, d) for m in (128, 512) for d in (0.1, 0.25)]
BLOCK = 16


def one_case(n: int, k: int, m: int, density: float, reps: int, seed: int = 0) -> dict:
    from sparsecc.backends.tvm import compile_tvm
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=g))
    x0 = torch.randn(m, k, generator=g)
    pattern = f"block{BLOCK}x{BLOCK}@{density}"
    res = sparsecc.compile(lin, (x0,), sparsecc.CompileConfig(target="cpu",
                                                              overrides={".*": pattern}),
                           dynamic_dims={"input": {0: "rows"}}, name="linear")
    w = next(iter(res.ir.params.values()))          # the masked weight
    bsr = compile_tvm(res.ir)
    dense_res = sparsecc.compile(lin, (x0,), sparsecc.CompileConfig(target="cpu",
                                                                    overrides={".*": "dense"}),
                                 dynamic_dims={"input": {0: "rows"}}, name="linear")
    tvm_dense = compile_tvm(dense_res.ir)
    assert len(bsr.kernels) == 1, bsr.kernels
    xs = [torch.randn(m, k, generator=g) for _ in range(4)]
    ref = F.linear(xs[0].double(), w.double())
    import tvm
    bsr_fn, tdense_fn = bsr.main, tvm_dense.main
    txs = [tvm.runtime.tensor(x.numpy()) for x in xs]
    wn, wt = w.numpy(), w
    nxs = [x.numpy() for x in xs]
    out = bsr_fn(txs[0]).numpy()
    err = float(np.abs(out - ref.numpy()).max() / np.abs(ref.numpy()).max())
    if not err <= 1e-4:
        raise RuntimeError(f"BSR {n}x{k} M={m} d={density}: relative error {err:.2e}")
    paths = {
        "numpy_dense": lambda i: nxs[i] @ wn.T,
        "torch_dense": lambda i: F.linear(xs[i], wt),
        "tvm_dense": lambda i: tdense_fn(txs[i]),
        "tvm_bsr": lambda i: bsr_fn(txs[i]),
    }
    times = {p: [] for p in paths}
    for r in range(reps + 5):
        for p, fn in paths.items():
            t = time.perf_counter()
            fn(r % 4)
            dt = (time.perf_counter() - t) * 1e6
            if r >= 5:
                times[p].append(dt)
    med = {p: statistics.median(v) for p, v in times.items()}
    best_dense = min(med["numpy_dense"], med["torch_dense"])
    gflop = 2 * m * n * k / 1e9
    return {"N": n, "K": k, "M": m, "block": BLOCK, "density": density, "rel_err": err,
            **{f"{p}_us": v for p, v in med.items()},
            "best_dense_gflops": gflop / (best_dense / 1e6),
            "bsr_vs_best_dense": best_dense / med["tvm_bsr"],
            "bsr_vs_tvm_dense": med["tvm_dense"] / med["tvm_bsr"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=40)
    a = ap.parse_args(argv)
    import tvm
    rows = []
    for (n, k), m, d in CASES:
        r = one_case(n, k, m, d, a.reps)
        rows.append(r)
        print(f"W {n}x{k} M={m} {BLOCK}x{BLOCK}@{d}: numpy {r['numpy_dense_us']:.0f} torch "
              f"{r['torch_dense_us']:.0f} tvm-dense {r['tvm_dense_us']:.0f} bsr "
              f"{r['tvm_bsr_us']:.0f} µs -> {r['bsr_vs_best_dense']:.2f}x the best dense "
              f"({r['best_dense_gflops']:.0f} GFLOP/s)", flush=True)
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": np.__version__, "tvm": tvm.__version__, "machine": platform.machine(),
           "processor": platform.processor(), "cpus": torch.get_num_threads(),
           "command": "python -m sparsecc.benchmarks.tvm_cpu " + " ".join(
               sys.argv[1:] if argv is None else argv)}
    write_json({"environment": env, "cases": rows}, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
