"""Where a decode step's time goes: TinyLlama-1.1B-shaped HF Llama, fp16, static KV cache,
torch.compile (default mode) replayed in a CUDA graph, batch 1 and 16.

    python docs/results/probes/gen_profile.py --out profile.json

Per batch: the median step time over 50 replays (CUDA events), and the profiler's CUDA time
per kernel name (summed over 10 replays), the top 25 and the totals by family (GEMM,
attention, cache copy, elementwise/fused, other). A probe for planning, not a benchmark.
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch

from sparsecc.benchmarks.generate import GraphStepper
from sparsecc.models.generation import decoder_step
from sparsecc.models.tinyllama import TINYLLAMA_1B, build_hf_llama


def family(name: str) -> str:
    n = name.lower()
    if any(k in n for k in ("gemm", "gemv", "sm90_xmma", "cutlass", "ampere", "splitk", "matmul")):
        return "gemm"
    if any(k in n for k in ("flash", "fmha", "attention", "efficient")):
        return "attention"
    if "copy" in n or "index" in n or "scatter" in n:
        return "copy/index"
    if "triton" in n:
        return "triton fused"
    return "other"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--max-len", type=int, default=144)
    a = p.parse_args()
    model = build_hf_llama(TINYLLAMA_1B, seed=0).to("cuda", torch.float16).eval()
    step = decoder_step(model, inplace=True)
    compiled = torch.compile(step, dynamic=False)
    results = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "cases": []}
    for batch in (int(b) for b in a.batches.split(",")):
        caches = step.new_caches(batch, a.max_len, dtype=torch.float16, device="cuda")
        for name, module in (("eager", step), ("torch_compile", compiled)):
            s = GraphStepper(module, caches, batch)
            ids = torch.randint(0, 32000, (batch, 1), device="cuda")
            times = []
            for i in range(60):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                s(ids, 20 + i % 100)
                end.record()
                end.synchronize()
                if i >= 10:
                    times.append(start.elapsed_time(end) * 1000)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                for i in range(10):
                    s(ids, 30 + i)
                torch.cuda.synchronize()
            kernels: dict[str, list[float]] = {}
            for e in prof.events():
                if e.device_type == torch.autograd.DeviceType.CUDA:
                    k = kernels.setdefault(e.name, [0.0, 0])
                    k[0] += e.device_time / 10
                    k[1] += 1 / 10
            fam: dict[str, float] = {}
            for k, (us, n) in kernels.items():
                fam[family(k)] = fam.get(family(k), 0.0) + us
            top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:25]
            case = {"batch": batch, "variant": name, "step_us_median": statistics.median(times),
                    "kernel_us_per_step": sum(v[0] for v in kernels.values()),
                    "kernels_per_step": sum(v[1] for v in kernels.values()),
                    "by_family_us": fam,
                    "top": [{"kernel": k[:120], "us": round(v[0], 1), "calls": round(v[1], 1)}
                            for k, v in top]}
            results["cases"].append(case)
            print(json.dumps({k: case[k] for k in ("batch", "variant", "step_us_median",
                                                     "kernel_us_per_step", "kernels_per_step",
                                                     "by_family_us")}), flush=True)
            for t in case["top"][:12]:
                print("   ", t, flush=True)
            with open(a.out, "w") as f:
                json.dump(results, f, indent=1)
            del s


if __name__ == "__main__":
    main()
