"""Kernel benchmarks on the GPU: our 2:4 and BSR paths against torch's own, side by side.

    python -m sparsecc.benchmarks.kernels --out docs/results/kernels-h100.json [--quick]

2:4: y = x Wᵀ with W [N, K] 2:4, fp16, three ways on the same weight and inputs: dense F.linear
(cuBLAS), torch's default semi-structured path (F.linear on `to_sparse_semi_structured(W)`), and
ours (`Semi24Linear`: compressed once, layout and algorithm tuned per M; the result made
row-major, copy included).
BSR: W with 64x64 (and 32x32, 128x128) blocks at 10/25/50% density, fp16: dense, torch's
Triton `bsr_dense_mm` (untuned, on W.to_sparse_bsr) and our Triton kernel (`BsrLinear`, taking
kept blocks one and two at a time; `ours_us` is the runtime's default).

Every path is first checked against F.linear in fp32 on the same masked weight (relative error
<= 1e-2), then timed as the median of CUDA-graph replays over three fresh random inputs, so host
overhead is out of every number.
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from sparsecc.backends.torch.bsr import UNROLL as BSR_UNROLL, BsrLinear, torch_bsr_dense_mm
from sparsecc.backends.torch.semi24 import Semi24Linear, default_semi24
from sparsecc.backends.torch.timing import graph_time_us, relative_error
from sparsecc.patterns import NM, Block

from . import write_json
from .gpu import environment, require_cuda
from .gpu_layers import masked_weight

TOL = 1e-2
SEMI_CASES = [((4096, 4096), m) for m in (1, 16, 32, 64, 128, 1024, 4096, 16384)] + \
             [((4096, 14336), m) for m in (16, 128, 4096)]
BSR_CASES = [((4096, 14336), 64, d, 4096) for d in (0.1, 0.25, 0.5)] + \
            [((4096, 14336), 64, 0.25, 1024), ((4096, 14336), 128, 0.25, 4096)]


def _check(name: str, y: torch.Tensor, ref: torch.Tensor) -> float:
    err = relative_error(y, ref)
    if not err <= TOL:
        raise RuntimeError(f"{name}: relative error {err:.2e} > {TOL}")
    return err


def semi_row(k: int, n: int, m: int, gen: torch.Generator) -> dict:
    w = masked_weight(n, k, NM(2, 4), torch.float16, gen)
    xs = [(torch.randn(m, k, generator=gen, device="cuda", dtype=torch.float16),) for _ in range(3)]
    ref = F.linear(xs[0][0].float(), w.float())
    row = {"K": k, "N": n, "M": m}
    row["dense_us"] = graph_time_us(lambda x: F.linear(x, w), xs)
    try:
        ws = default_semi24(w)
        _check("default 2:4", F.linear(xs[0][0], ws), ref)
        row["default_us"] = graph_time_us(lambda x: F.linear(x, ws), xs)
    except (RuntimeError, NotImplementedError) as e:
        row["default_us"], row["default_error"] = None, str(e).splitlines()[0][:200]
    ours = Semi24Linear(w)
    row["rel_err"] = _check("ours 2:4", ours(xs[0][0]), ref)
    row["ours_us"] = graph_time_us(lambda x: ours(x), xs)
    cfg = ours.tune(m)
    row["ours_layout"], row["ours_alg"] = cfg.layout, cfg.alg_id
    row["ours_vs_dense"] = row["dense_us"] / row["ours_us"]
    row["ours_vs_default"] = (row["default_us"] / row["ours_us"]) if row["default_us"] else None
    return row


def bsr_row(k: int, n: int, bs: int, density: float, m: int, gen: torch.Generator) -> dict:
    w = masked_weight(n, k, Block(bs, bs, density), torch.float16, gen)
    xs = [(torch.randn(m, k, generator=gen, device="cuda", dtype=torch.float16),) for _ in range(3)]
    ref = F.linear(xs[0][0].float(), w.float())
    row = {"K": k, "N": n, "M": m, "block": bs, "density": density}
    row["dense_us"] = graph_time_us(lambda x: F.linear(x, w), xs)
    theirs = torch_bsr_dense_mm(w, bs, bs)
    _check("torch bsr_dense_mm", theirs(xs[0][0]).t(), ref)
    row["torch_bsr_us"] = graph_time_us(theirs, xs)
    for unroll in (1, 2):
        k = BsrLinear(w, bs, bs, unroll=unroll)
        row[f"rel_err_unroll{unroll}"] = _check(f"ours bsr unroll {unroll}", k(xs[0][0]), ref)
        row[f"ours_unroll{unroll}_us"] = graph_time_us(k, xs)
    row["ours_us"] = row[f"ours_unroll{BSR_UNROLL}_us"]
    row["ours_vs_dense"] = row["dense_us"] / row["ours_us"]
    row["ours_vs_torch_bsr"] = row["torch_bsr_us"] / row["ours_us"]
    row["torch_bsr_vs_dense"] = row["dense_us"] / row["torch_bsr_us"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="a few points (smoke test)")
    a = ap.parse_args(argv)
    require_cuda("the kernel benchmark")
    gen = torch.Generator(device="cuda").manual_seed(0)
    semi_cases, bsr_cases = SEMI_CASES, BSR_CASES
    if a.quick:
        semi_cases, bsr_cases = SEMI_CASES[1:2], BSR_CASES[1:2]
    env = environment()
    env["command"] = "python -m sparsecc.benchmarks.kernels " + " ".join(sys.argv[1:] if argv is None else argv)
    semi: list[dict] = []
    bsr: list[dict] = []

    def save() -> None:          # after every row: a run cut short keeps what it measured
        write_json({"environment": env, "semi24": semi, "bsr": bsr}, a.out)

    for (k, n), m in semi_cases:
        r = semi_row(k, n, m, gen)
        semi.append(r)
        save()
        d = r["ours_vs_default"]
        print(f"2:4 K={k} N={n} M={m}: dense {r['dense_us']:.1f} default "
              f"{r['default_us'] or float('nan'):.1f} ours {r['ours_us']:.1f} µs "
              f"({r['ours_layout']}, alg {r['ours_alg']}): vs default "
              f"{d if d else float('nan'):.2f}x, vs dense {r['ours_vs_dense']:.2f}x", flush=True)
    for (k, n), bs, dens, m in bsr_cases:
        r = bsr_row(k, n, bs, dens, m, gen)
        bsr.append(r)
        save()
        print(f"bsr{bs} d={dens} K={k} N={n} M={m}: dense {r['dense_us']:.1f} torch "
              f"{r['torch_bsr_us']:.1f} ours {r['ours_us']:.1f} µs: vs torch "
              f"{r['ours_vs_torch_bsr']:.2f}x, vs dense {r['ours_vs_dense']:.2f}x (unroll 1: "
              f"{r['ours_unroll1_us']:.1f} µs)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
