"""GPU timing: CUDA events around CUDA-graph replays, medians.

`graph_time_us(fn, inputs)` captures one CUDA graph that calls `fn` once on each input set in
`inputs` (rotating buffers, so a small problem is not timed out of a warm cache holding one
input), replays it `reps` times after `warmup` replays, and returns the median µs per call.
Capturing removes the host launch gaps, which is how a runtime that replays graphs sees a
kernel. `event_time_us` times plain calls (no graph) the same way.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch


def _median_us(run: Callable[[], Any], calls: int, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / calls)
    return statistics.median(times)


def event_time_us(fn: Callable[..., Any], inputs: Sequence[tuple], warmup: int = 5,
                  reps: int = 20) -> float:
    """Median µs per call of fn(*args), rotating over `inputs`, without a CUDA graph."""
    def run() -> None:
        for args in inputs:
            fn(*args)
    return _median_us(run, len(inputs), warmup, reps)


def capture(fn: Callable[[], Any], warm: int = 1,
            warm_fn: Callable[[], Any] | None = None) -> tuple[torch.cuda.CUDAGraph, Any]:
    """(graph, result of fn()) captured on a side stream after `warm` eager calls there (of
    `warm_fn` when given: the same work, possibly cheaper to set up, its result discarded).

    Uses capture_begin/capture_end directly: `torch.cuda.graph` runs gc.collect() on every
    capture, which costs ~0.5 s in a process holding a large IR."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        for _ in range(warm):                # allocator, handles, kernel tuning: not captured
            (warm_fn or fn)()
        stream.synchronize()
        graph.capture_begin()
        try:
            out = fn()
        finally:
            graph.capture_end()
    torch.cuda.current_stream().wait_stream(stream)
    return graph, out


def graph_time_us(fn: Callable[..., Any], inputs: Sequence[tuple], warmup: int = 5,
                  reps: int = 20, warm: int = 1) -> float:
    """Median µs per call of fn(*args) replayed from one CUDA graph over all `inputs`
    (`warm` eager passes before capture; 0 when fn is known to be capture-safe)."""
    def all_inputs() -> None:
        for args in inputs:
            fn(*args)
    graph, _ = capture(all_inputs, warm)
    return _median_us(graph.replay, len(inputs), warmup, reps)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (inf when out has NaN/inf)."""
    o, r = out.double(), ref.double()
    if not torch.isfinite(o).all():
        return float("inf")
    return float((o - r).norm() / r.norm().clamp_min(1e-30))
