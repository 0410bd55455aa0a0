"""Probe (H200): what a cuSPARSELt 2:4 call costs on the host outside a CUDA graph, per call.

Prints device properties, then wall time of consecutive eager `torch._cslt_sparse_mm` calls
for a few algorithm ids and both layouts, of compression and of cuSPARSELt's search, and of a
CUDA-graph capture containing one call. Used to decide what the tuning cache must avoid.
"""
import json
import time

import torch

p = torch.cuda.get_device_properties(0)
print("props:", {a: getattr(p, a) for a in dir(p) if not a.startswith("_")
                 and not callable(getattr(p, a))})
try:
    import pynvml
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    print("nvml: sm max", pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
          "mem max", pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
          "bus", pynvml.nvmlDeviceGetMemoryBusWidth(h), "driver", pynvml.nvmlSystemGetDriverVersion())
except Exception as e:
    print("nvml failed:", e)
print("cusparselt", torch.backends.cusparselt.version(), torch.__version__)


def wall(fn, n=1):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e3


out = {}
for (n, k) in ((4096, 4096), (14336, 4096)):
    w = torch.randn(n, k, device="cuda", dtype=torch.float16)
    w = w * (torch.rand_like(w).reshape(n, -1, 4).argsort(-1).argsort(-1) < 2).reshape(n, k)
    t = time.perf_counter(); c = torch._cslt_compress(w); torch.cuda.synchronize()
    out[f"{n}x{k} compress ms"] = (time.perf_counter() - t) * 1e3
    for m in (16, 4096):
        x = torch.randn(m, k, device="cuda", dtype=torch.float16)
        t = time.perf_counter(); r = torch._C._cusparselt.mm_search(c, x.t(), None, None, None, False)
        torch.cuda.synchronize()
        out[f"{n}x{k} M={m} search ms"] = (time.perf_counter() - t) * 1e3
        out[f"{n}x{k} M={m} search result"] = [int(r[0]), int(r[3])]
        for alg in (0, 3, 6):
            for layout in ("col", "row"):
                def call():
                    if layout == "row":
                        torch._cslt_sparse_mm(c, x.t(), None, transpose_result=True, alg_id=alg)
                    else:
                        torch._cslt_sparse_mm(c, x.t(), None, alg_id=alg)
                try:
                    first = wall(call)
                    nxt = [round(wall(call), 3) for _ in range(4)]
                    out[f"{n}x{k} M={m} alg{alg} {layout} ms"] = [round(first, 3)] + nxt
                except RuntimeError as e:
                    out[f"{n}x{k} M={m} alg{alg} {layout}"] = str(e)[:100]
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            t = time.perf_counter()
            g.capture_begin()
            torch._cslt_sparse_mm(c, x.t(), None, alg_id=0)
            g.capture_end()
            torch.cuda.synchronize()
            out[f"{n}x{k} M={m} capture ms"] = (time.perf_counter() - t) * 1e3
        out[f"{n}x{k} M={m} replay ms"] = wall(g.replay, 10)
        # a dense F.linear for comparison
        out[f"{n}x{k} M={m} dense eager ms"] = wall(lambda: torch.nn.functional.linear(x, w), 5)
for k, v in out.items():
    print(k, v)
