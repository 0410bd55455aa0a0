"""The multiple-choice knapsack behind pattern selection, solved exactly by dynamic programming.

Items (layers or channel groups) each take exactly one option (cost, weight). `solve_min_cost`
minimizes the total cost subject to total weight <= capacity. Weights may be negative (time
saved): an item with a negative option is shifted so its lightest option weighs zero, and the
capacity with it. Weights are real numbers
rounded UP to a grid of `capacity / resolution`, so every returned solution is feasible for
the real weights; it is optimal for the rounded problem, and therefore at least as good as
the real optimum for the capacity reduced by n_items * capacity / resolution (each item's
weight grew by less than one grid step).

O(n_items * options * resolution) time, O(n_items * resolution) memory for the choices.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Option = tuple[float, float]   # (cost, weight)


def _grid(weight: float, step: float) -> int:
    if weight <= 0:
        return 0
    return int(math.ceil(weight / step - 1e-9))


def solve_min_cost(items: Sequence[Sequence[Option]], capacity: float,
                   resolution: int = 2000) -> list[int] | None:
    """The option index per item minimizing total cost with total weight <= capacity, or None
    when no choice fits. Options with infinite weight or cost are never chosen."""
    # Shift items with negative weights (e.g. latency saved) so their lightest option weighs 0;
    # the capacity shifts by the same total.
    shifts = []
    for options in items:
        finite = [w for c, w in options if math.isfinite(w) and math.isfinite(c)]
        shifts.append(min(0.0, min(finite)) if finite else 0.0)
    items = [[(c, w - sh) for c, w in options] for options, sh in zip(items, shifts)]
    capacity -= sum(shifts)
    if capacity < -1e-12:
        return None
    capacity = max(capacity, 0.0)
    n_bins = resolution
    step = capacity / n_bins if capacity > 0 else 1.0
    inf = math.inf
    best = np.full(n_bins + 1, inf)
    best[0] = 0.0
    choices = np.full((len(items), n_bins + 1), -1, dtype=np.int32)
    for i, options in enumerate(items):
        new = np.full(n_bins + 1, inf)
        pick = np.full(n_bins + 1, -1, dtype=np.int32)
        for j, (cost, weight) in enumerate(options):
            if not (math.isfinite(cost) and math.isfinite(weight)):
                continue
            w = _grid(weight, step) if capacity > 0 else (0 if weight <= 0 else n_bins + 1)
            if w > n_bins:
                continue
            shifted = np.full(n_bins + 1, inf)
            shifted[w:] = best[:n_bins + 1 - w] + cost
            better = shifted < new
            new[better] = shifted[better]
            pick[better] = j
        best, choices[i] = new, pick
    end = int(np.argmin(best))
    if not math.isfinite(best[end]):
        return None
    out = [0] * len(items)
    b = end
    for i in range(len(items) - 1, -1, -1):
        j = int(choices[i, b])
        out[i] = j
        cost, weight = items[i][j]
        b -= _grid(weight, step) if capacity > 0 else 0
    return out


def solve_min_weight(items: Sequence[Sequence[Option]], max_cost: float,
                     resolution: int = 2000) -> list[int] | None:
    """The dual: minimize total weight subject to total cost <= max_cost (costs rounded up)."""
    swapped = [[(w, c) for c, w in options] for options in items]
    return solve_min_cost(swapped, max_cost, resolution)


def rounded(items: Sequence[Sequence[Option]], capacity: float, resolution: int = 2000
            ) -> list[list[Option]]:
    """The items with weights rounded up to the solver's grid (for checking against brute force)."""
    step = capacity / resolution if capacity > 0 else 1.0
    return [[(c, _grid(w, step) * step) for c, w in options] for options in items]
