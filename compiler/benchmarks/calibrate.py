"""`sparsecc calibrate`: measure the calibrated cost model's table on this GPU.

The grid: the GEMM shapes (K, N) of the zoo's transformer layers and a few generic ones, M from
decode (1) to large prefill (16384), the patterns the compiler chooses between (dense, 2:4,
64x64 and 32x32 blocks at 10/25/50% density; channel patterns are dense GEMMs at the kept width,
which the calibrated model reads off the dense series), in float16, and bfloat16 for dense and
2:4. Every point is one `time_linear` (the kernel checked against F.linear, then the median of
CUDA-graph replays on fresh random inputs). Rows are written in the calibrated model's own
format, one JSON object per line, after an environment line; the file is written atomically.
`--quick` measures a small subset (for a smoke test).
"""
from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterable

import torch

from sparsecc.targets import Target

from . import write_text
from .gpu import environment
from .gpu_layers import time_linear

SHAPES = [(4096, 4096), (4096, 1024), (4096, 14336), (14336, 4096),    # llama3-8b layer
          (384, 384), (384, 1536), (1536, 384)]                          # minilm
ROWS = [1, 16, 128, 1024, 4096]
F16_PATTERNS = ["dense", "2:4", "block64x64@0.1", "block64x64@0.25", "block64x64@0.5"]
BF16_PATTERNS = ["dense"]
QUICK = ([(4096, 4096), (384, 1536)], [16, 4096], ["dense", "2:4", "block64x64@0.25"], ["dense"])


def grid(quick: bool = False) -> list[tuple[str, str, int, int, int]]:
    shapes, rows, f16, bf16 = QUICK if quick else (SHAPES, ROWS, F16_PATTERNS, BF16_PATTERNS)
    out = []
    for (k, n), m in itertools.product(shapes, rows):
        out += [("f16", p, k, n, m) for p in f16]
        out += [("bf16", p, k, n, m) for p in bf16]
    return out


def calibrate(target: Target, points: Iterable[tuple[str, str, int, int, int]],
              log: Callable[[str], None] = print,
              checkpoint: Callable[[list[dict]], None] | None = None) -> list[dict]:
    rows = []
    points = list(points)
    start = time.monotonic()
    for i, (dtype, pattern, k, n, m) in enumerate(points, 1):
        t = time_linear(n, k, m, pattern, torch.float16 if dtype == "f16" else torch.bfloat16,
                        reps=15)
        row = {"target": target.name, "op": "gemm", "K": k, "N": n, "M": m, "dtype": dtype,
               "pattern": pattern, "us": round(t.us, 3), "kernel": t.kernel}
        if t.note:
            row["note"] = t.note
        rows.append(row)
        if i % 25 == 0 or i == len(points):
            log(f"  {i}/{len(points)} points, {time.monotonic() - start:.0f} s")
            if checkpoint is not None:
                checkpoint(rows)
    return rows


def write_table(path: str, rows: list[dict], env: dict) -> None:
    """The table as JSON lines (environment first), written atomically."""
    lines = [json.dumps({"environment": env})] + [json.dumps(r) for r in rows]
    write_text("\n".join(lines) + "\n", path)


def run(target: Target, out: str, quick: bool = False, log: Callable[[str], None] = print) -> int:
    env = environment()
    pts = grid(quick)
    log(f"calibrating {target.name} on {env.get('gpu')}: {len(pts)} points")
    start = time.monotonic()
    rows = calibrate(target, pts, log,
                     checkpoint=lambda r: write_table(out + ".partial", r, env))
    env["seconds"] = round(time.monotonic() - start, 1)
    write_table(out, rows, env)
    if os.path.exists(out + ".partial"):
        os.unlink(out + ".partial")
    log(f"wrote {len(rows)} rows to {out} in {env['seconds']} s")
    return len(rows)
