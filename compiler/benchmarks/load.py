"""Save and load a compiled torch artifact: is the loaded module the saved one, and how fast?

    python -m sparsecc.benchmarks.load MODEL [--plan FILE] [--target T] [--batch B --seq S]
                                            [--device cuda] --out FILE.json

1. compile MODEL (backend torch), move the module to the device, run it on a fixed input
   (this also tunes its kernels, filling the tuning cache), save it;
2. in a fresh process: `sparsecc.load(dir, device)`, timed to the module being ready (weights
   read, checked and packed) and to its first output; the output must equal step 1's exactly.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from . import write_json


def _child(directory: str, device: str, inputs: str, expected: str) -> dict:
    from safetensors.torch import load_file
    import sparsecc
    start = time.perf_counter()
    module = sparsecc.load(directory, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    ready = time.perf_counter() - start
    xs = load_file(inputs, device=device)
    args = [xs[f"x{i}"] for i in range(len(xs))]
    with torch.no_grad():
        out = module(*args)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if device == "cuda":
        torch.cuda.synchronize()
    first = time.perf_counter() - start
    ref = load_file(expected, device=device)["y"]
    return {"ready_s": round(ready, 3), "first_output_s": round(first, 3),
            "identical": bool(torch.equal(out, ref)),
            "max_abs_diff": float((out.float() - ref.float()).abs().max()),
            "kernels": module.kernel_table()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--plan")
    ap.add_argument("--target", default="auto")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child[0], a.device, a.child[1], a.child[2])))
        return 0
    from safetensors.torch import save_file
    import sparsecc
    from sparsecc.loader import load_model
    from .gpu import bench_inputs
    loaded = load_model(a.model, tiny=a.tiny)
    config = sparsecc.CompileConfig(target=a.target, backend="torch", reconstruct=False,
                                    batch=a.batch, seq=a.seq,
                                    dtype="f16" if a.device == "cuda" else "f32")
    start = time.perf_counter()
    result = sparsecc.compile(loaded.model, loaded.example_inputs, config,
                              dynamic_dims=loaded.dynamic_dims, name=loaded.name,
                              workload=loaded.workload, plan_file=a.plan)
    compile_s = time.perf_counter() - start
    dtype = torch.float16 if a.device == "cuda" else torch.float32
    module = result.module.to(a.device)
    gen = torch.Generator().manual_seed(0)
    x = bench_inputs(loaded.example_inputs, list(result.ir.inputs), loaded.dynamic_dims,
                     a.batch, a.seq, gen, dtype, device=a.device)
    start = time.perf_counter()
    with torch.no_grad():
        y = module(*x)
    y = y[0] if isinstance(y, (tuple, list)) else y
    first_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = os.path.join(tmp, "artifact")
        start = time.perf_counter()
        result.save(out_dir)
        save_s = time.perf_counter() - start
        inputs, expected = os.path.join(tmp, "x.safetensors"), os.path.join(tmp, "y.safetensors")
        save_file({f"x{i}": t.contiguous().cpu() for i, t in enumerate(x)}, inputs)
        save_file({"y": y.contiguous().cpu()}, expected)
        size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
        proc = subprocess.run([sys.executable, "-m", "sparsecc.benchmarks.load", a.model,
                               "--out", "-", "--device", a.device,
                               "--child", out_dir, inputs, expected],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        child = json.loads(proc.stdout.strip().splitlines()[-1])
    doc = {"command": "python -m sparsecc.benchmarks.load " + " ".join(argv or sys.argv[1:]),
           "model": loaded.name, "device": a.device,
           "gpu": torch.cuda.get_device_name() if a.device == "cuda" else None,
           "torch": torch.__version__, "plan": {d.layer.name: d.chosen
                                                 for d in result.plan.decisions},
           "compile_s": round(compile_s, 2), "first_call_after_compile_s": round(first_s, 3),
           "save_s": round(save_s, 3), "artifact_bytes": size, "load": child}
    print(f"{loaded.name}: saved {size / 1e6:.1f} MB in {save_s:.2f} s; a fresh process loads "
          f"it ready in {child['ready_s']:.2f} s, first output at {child['first_output_s']:.2f} s, "
          f"identical: {child['identical']}")
    write_json(doc, a.out)
    return 0 if child["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
