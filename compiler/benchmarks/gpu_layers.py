"""One weight layer on the GPU: time a linear layer of shape (N, K) at M rows with a pattern.

`time_linear(N, K, M, pattern)` builds a random weight obeying the pattern (N(0, 1) entries, the
pattern's magnitude mask), puts it on the kernel the GPU runtime would use (cuBLAS for dense and
channel-pruned, cuSPARSELt for 2:4, our Triton BSR for blocks; a composite shrinks the channels
then applies its N:M part), checks the kernel against F.linear on the same masked weight, and
returns the median µs of CUDA-graph replays over three fresh random inputs. This is the one
measurement the bench (per layer), `sparsecc calibrate` (the cost-model table) and the kernel
benchmarks share.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from sparsecc.backends.torch.bsr import BsrLinear
from sparsecc.backends.torch.semi24 import KernelUnavailable, Semi24Linear
from sparsecc.backends.torch.timing import graph_time_us, relative_error
from sparsecc.patterns import NM, Block, Channel, Composite, Dense, parse_pattern

CHECK_TOL = 1e-2        # fp16/bf16 kernel vs F.linear on the same weight, relative


@dataclasses.dataclass(frozen=True)
class LayerTime:
    us: float
    kernel: str
    shape: tuple[int, int]      # (N, K) actually run (channel patterns shrink N)
    rel_err: float              # vs F.linear on the same masked weight
    note: str = ""


def masked_weight(n: int, k: int, pattern, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    w = torch.randn(n, k, generator=gen, device="cuda", dtype=torch.float32)
    if isinstance(pattern, (NM, Block)):
        w = torch.where(pattern.mask(w), w, torch.zeros((), device="cuda"))
    return w.to(dtype)


def kernel_for(w: torch.Tensor, pattern):
    """(callable x -> y, kernel name, note); dense on cuBLAS when the sparse kernel refuses."""
    try:
        if isinstance(pattern, NM):
            k = Semi24Linear(w)
            return k, k.kernel, ""
        if isinstance(pattern, Block):
            k = BsrLinear(w, pattern.rows, pattern.cols)
            return k, k.kernel, ""
    except KernelUnavailable as e:
        return (lambda x: F.linear(x, w)), "aten", f"runs dense: {e}"
    return (lambda x: F.linear(x, w)), "aten", ""


def time_linear(n: int, k: int, m: int, pattern, dtype: torch.dtype = torch.float16,
                seed: int = 0, reps: int = 20) -> LayerTime:
    p = parse_pattern(pattern) if isinstance(pattern, str) else pattern
    if isinstance(p, Channel):
        n, p = p.kept_channels(n), Dense()
    elif isinstance(p, Composite):
        n, p = p.channel.kept_channels(n), p.nm
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w = masked_weight(n, k, p, dtype, gen)
    fn, kernel, note = kernel_for(w, p)
    inputs = [(torch.randn(m, k, generator=gen, device="cuda", dtype=dtype),) for _ in range(3)]
    x = inputs[0][0]
    err = relative_error(fn(x), F.linear(x.float(), w.float()))
    if not err <= CHECK_TOL:
        raise RuntimeError(f"{kernel} {n}x{k} M={m} {pattern}: relative error {err:.2e} > "
                           f"{CHECK_TOL}")
    us = graph_time_us(fn, inputs, warmup=5, reps=reps, warm=0)   # the check above warmed it
    return LayerTime(us, kernel, (n, k), err, note)
