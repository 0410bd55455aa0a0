"""Probe (H200): is the ~230 ms host cost of a row-layout (transpose_result=True) cuSPARSELt call
paid inside a CUDA-graph capture too, and does any call option avoid it?"""
import time

import torch


def wall(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return round((time.perf_counter() - t) * 1e3, 2)


n, k, m = 4096, 4096, 4096
w = torch.randn(n, k, device="cuda", dtype=torch.float16)
w = w * (torch.rand_like(w).reshape(n, -1, 4).argsort(-1).argsort(-1) < 2).reshape(n, k)
c = torch._cslt_compress(w)
x = torch.randn(m, k, device="cuda", dtype=torch.float16)
f = torch._cslt_sparse_mm
variants = {
    "row alg6": lambda: f(c, x.t(), None, transpose_result=True, alg_id=6),
    "row alg6 split_k_mode=0": lambda: f(c, x.t(), None, transpose_result=True, alg_id=6, split_k=1, split_k_mode=0),
    "row alg6 split_k_mode=1": lambda: f(c, x.t(), None, transpose_result=True, alg_id=6, split_k=1, split_k_mode=1),
    "row alg6 out_dtype f16": lambda: f(c, x.t(), None, out_dtype=torch.float16, transpose_result=True, alg_id=6),
    "col alg6": lambda: f(c, x.t(), None, alg_id=6),
    "col alg6 + t().contiguous()": lambda: f(c, x.t(), None, alg_id=6).t().contiguous(),
}
for name, fn in variants.items():
    try:
        print(name, "eager ms", [wall(fn) for _ in range(3)])
    except RuntimeError as e:
        print(name, "failed", str(e)[:80])
for name in ("row alg6", "col alg6"):
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        t = time.perf_counter()
        g.capture_begin()
        for _ in range(3):
            variants[name]()
        g.capture_end()
        torch.cuda.synchronize()
    print(name, "capture of 3 calls ms", round((time.perf_counter() - t) * 1e3, 1))
