"""ONNX file sizes: dense, masked, and masked with sparse initializers.

    python -m sparsecc.benchmarks.onnx_sizes --out docs/results/onnx-sizes.json

Each plan forces one pattern on every layer where it fits (minilm's encoder Linears). Sizes are
of model.onnx as `CompileResult.save` writes it. ONNX Runtime densifies sparse initializers at
load, so these are disk and download sizes, not memory or time. Without minilm's weights package
the run prints a one-line note and records `{"model": "minilm", "skipped": reason}`.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile

import sparsecc
from sparsecc import models

from . import write_json
from .ort_cpu import machine, skip_note

PLANS = {"dense": None, "2:4": "2:4", "block32x32@0.25": "block32x32@0.25",
         "block32x32@0.1": "block32x32@0.1"}


def sizes(name: str = "minilm") -> list[dict]:
    z = models.get(name, tiny=True)
    rows = []
    for label, pattern in PLANS.items():
        for sparse_init in (False, True):
            if pattern is None and sparse_init:
                continue
            cfg = sparsecc.CompileConfig(
                target="cpu-x86", patterns=("dense",), budget=100.0,
                overrides={r".*encoder.*": pattern} if pattern else (),
                sparse_initializers=sparse_init)
            result = sparsecc.compile(z.model, z.example_inputs, cfg,
                                      dynamic_dims=z.dynamic_dims, name=name)
            with tempfile.TemporaryDirectory() as d:
                out = result.save(os.path.join(d, "out"))
                size = os.path.getsize(os.path.join(out, "model.onnx"))
            rows.append({"model": name, "plan": label, "sparse_initializers": sparse_init,
                         "layers_sparse": sum(x.chosen != "dense" for x in result.plan.decisions),
                         "sparse_tensors": len(result.artifact.graph.sparse_initializer),
                         "bytes": size})
            print(f"{name} {label:16s} sparse_initializers={sparse_init!s:5s} "
                  f"{size / 1e6:8.2f} MB")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        results = sizes()
    except models.WeightsUnavailable as e:    # raised by models.get before any work
        results = [skip_note("minilm", str(e))]
    doc = {"command": "python -m sparsecc.benchmarks.onnx_sizes " + " ".join(argv or sys.argv[1:]),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "results": results}
    write_json(doc, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
