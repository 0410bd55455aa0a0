"""The accuracy a user can reason about: the relative error of the compiled model's outputs.

    e = sqrt(sum_b ||y'_b - y_b||^2) / sqrt(sum_b ||y_b||^2)

over the calibration batches b (the example inputs when there are none), y the captured
model's outputs and y' the planned graph's (channels removed, masks applied, weights
reconstructed: what the artifact computes), both run by the IR interpreter in float32. Every
floating output counts, except state the plan shrank (a KV cache with fewer heads: its kept
part is compared, the removed heads are gone by design).

`search_budget` finds the plan for a given end-to-end error: the selector works on per-layer
error estimates (their sum is its "proxy budget"), so it tries proxy budgets, measures each
plan end to end, and keeps the fastest plan within the error. A few trials, each re-running
only the passes from selection on.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .ir import Graph, Interpreter
from .ir.state import state_pairs

MAX_TRIALS = 6


def _positional(graph: Graph, batch: Any) -> tuple:
    if isinstance(batch, Mapping):
        return tuple(batch[n] for n in graph.inputs)
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


def end_to_end_error(before: Graph, after: Graph, batches: Sequence[Any]) -> dict[str, Any]:
    """The relative output error of `after` against `before` on `batches` (module docstring)."""
    from sparsecc.passes.shrink_channels import shrunk_inputs
    kept = after.analyses.get("kept_positions") or {}
    state = state_pairs(before)
    diff = ref = 0.0
    compared: set[str] = set()
    for batch in batches:
        args = _positional(before, batch)
        want = Interpreter(before).run(args)
        got = Interpreter(after).run(shrunk_inputs(after, args, kept))
        for name, a, b in zip(before.outputs, want, got):
            if not (isinstance(a, torch.Tensor) and a.is_floating_point()):
                continue
            if name in state:       # shrunk state: compare the positions it kept
                for (value, axis), keep in kept.items():
                    if value == name:
                        a = a.index_select(axis, keep)
            if a.shape != b.shape:
                continue
            a, b = a.detach().double(), b.detach().double()
            diff += float(((b - a) ** 2).sum())
            ref += float((a ** 2).sum())
            compared.add(name)
    error = math.sqrt(diff / ref) if ref > 0 else (0.0 if diff == 0 else math.inf)
    return {"relative_error": error, "batches": len(batches),
            "outputs": [o for o in before.outputs if o in compared]}


@dataclasses.dataclass
class Trial:
    proxy_budget: float
    error: float
    speedup: float | None
    sparse_layers: int
    graph: Any = None


def search_budget(plan_with: Callable[[float], Graph], measure: Callable[[Graph], float],
                  speedup_of: Callable[[Graph], float | None], max_error: float,
                  log: Callable[[str], None] | None = None) -> tuple[Graph, list[Trial]]:
    """The fastest plan whose measured error is within `max_error`: proxy budgets tried from
    `max_error` up or down by 4x until the error is bracketed, then halved geometrically;
    at most MAX_TRIALS plans. The all-dense plan (budget 0) is the fallback."""
    trials: list[Trial] = []

    def trial(budget: float) -> Trial:
        g = plan_with(budget)
        plan = g.analyses["plan"]
        sparse = sum(d.chosen != "dense" for d in plan.decisions)
        t = Trial(budget, measure(g) if sparse else 0.0, speedup_of(g), sparse, g)
        trials.append(t)
        if log:
            log(f"proxy budget {budget:.3g}: {sparse} layers sparse, measured error "
                f"{t.error:.4f}, predicted {t.speedup or 1.0:.2f}x")
        return t

    ok: Trial | None = None
    bad: Trial | None = None
    budget = max(max_error, 1e-4)
    while len(trials) < MAX_TRIALS:
        t = trial(budget)
        if t.error <= max_error:
            if ok is None or (t.speedup or 1.0) >= (ok.speedup or 1.0):
                ok = t
            if bad is None and ok.sparse_layers and len(trials) > 1 and \
                    trials[-2].sparse_layers == t.sparse_layers and \
                    trials[-2].error == t.error:
                break            # a larger budget chose the same plan: nothing more to gain
        else:
            bad = t if bad is None or t.proxy_budget < bad.proxy_budget else bad
        if ok is not None and bad is not None:
            lo, hi = ok.proxy_budget, bad.proxy_budget
            if hi / lo < 1.5:
                break
            budget = math.sqrt(lo * hi)
        elif ok is not None:
            budget = ok.proxy_budget * 4
        else:
            budget = bad.proxy_budget / 4
    if ok is None:
        ok = trial(0.0)
    for t in trials:
        if t is not ok:
            t.graph = None
    return ok.graph, trials
