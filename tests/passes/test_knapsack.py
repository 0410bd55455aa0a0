import itertools
import math

from hypothesis import given, settings, strategies as st

from sparsecc.passes.knapsack import rounded, solve_min_cost, solve_min_weight

option = st.tuples(st.floats(0, 100), st.floats(0, 1))
items_st = st.lists(st.lists(option, min_size=1, max_size=4), min_size=1, max_size=5)


def brute_force(items, capacity):
    best, arg = math.inf, None
    for combo in itertools.product(*[range(len(o)) for o in items]):
        cost = sum(items[i][j][0] for i, j in enumerate(combo))
        weight = sum(items[i][j][1] for i, j in enumerate(combo))
        if weight <= capacity + 1e-9 and cost < best:
            best, arg = cost, combo
    return best, arg


@settings(max_examples=200, deadline=None)
@given(items=items_st, capacity=st.floats(0.01, 3))
def test_dp_equals_brute_force_on_the_rounded_problem(items, capacity):
    res = 200
    grid = rounded(items, capacity, res)
    best, _ = brute_force(grid, capacity)
    got = solve_min_cost(items, capacity, res)
    if best == math.inf:
        assert got is None
        return
    assert got is not None
    cost = sum(items[i][j][0] for i, j in enumerate(got))
    weight = sum(items[i][j][1] for i, j in enumerate(got))
    assert weight <= capacity + 1e-9          # feasible for the real weights
    assert math.isclose(cost, best, rel_tol=1e-9, abs_tol=1e-9)
    # never worse than the real optimum: rounding only tightens the budget
    assert cost >= brute_force(items, capacity)[0] - 1e-9


@settings(max_examples=100, deadline=None)
@given(items=st.lists(st.lists(st.tuples(st.integers(0, 50).map(float),
                                         st.integers(0, 10).map(lambda k: k / 10)),
                               min_size=1, max_size=4), min_size=1, max_size=5),
       capacity_tenths=st.integers(0, 30))
def test_dp_is_exact_when_weights_are_on_the_grid(items, capacity_tenths):
    capacity = capacity_tenths / 10
    best, _ = brute_force(items, capacity)
    got = solve_min_cost(items, capacity, resolution=max(capacity_tenths, 1) * 10)
    if best == math.inf:
        assert got is None
    else:
        assert math.isclose(sum(items[i][j][0] for i, j in enumerate(got)), best, abs_tol=1e-9)


def test_min_weight_dual():
    items = [[(10.0, 0.0), (6.0, 0.3)], [(20.0, 0.0), (8.0, 0.5), (12.0, 0.1)]]
    assert solve_min_weight(items, max_cost=23.0) == [0, 2]   # 22 µs at error 0.1
    assert solve_min_weight(items, max_cost=19.0) == [1, 2]   # 18 µs at error 0.4
    assert solve_min_weight(items, max_cost=100.0) == [0, 0]
    assert solve_min_weight(items, max_cost=5.0) is None


def test_negative_weights_are_shifted():
    # a group option that saves 5 µs (weight -5) against a 12 µs budget on a 15 µs layer
    items = [[(0.0, 15.0), (0.3, 9.0)], [(0.0, 0.0), (0.2, -5.0)]]
    assert solve_min_weight([[(w, c) for c, w in o] for o in items], 12.0) is not None
    picks = solve_min_cost([[(w, c) for c, w in o] for o in items], 0.25)
    assert picks == [0, 1]   # error 0.2 buys 5 µs; 0.3 + 0.2 would exceed 0.25
