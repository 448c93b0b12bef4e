"""The planning graph without a database: Dijkstra on the small graph finds the optimum of the paper's
complete graph (brute force over every plan), and the paper's Figure 1 example plans as the paper says."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelstore.request.descriptor import Range
from modelstore.request.cuts import range_cuts
from modelstore.planner.graph import SCAN_WORDS, PlanCosts, solve, solve_indexed
from tests.bruteforce import brute_force


@dataclass(frozen=True)
class Model:
    stats_id: int
    range: Range
    n_values: int = 12

    @property
    def rows(self):
        return self.range.hi - self.range.lo + 1


def cuts_of(m):
    return range_cuts(m.range, "integer")


def uniform_costs(*, stored=0.05, per_row=0.01, part=0.02, fetch_once=0.3, scan_once=0.4):
    """One row per integer ordering value; costs in ms."""
    return PlanCosts(
        stored_ms=lambda m: stored + 0.001 * m.n_values,
        scan_ms=lambda n: per_row * n,
        part_ms=part,
        fetch_once_ms=fetch_once,
        scan_once_ms=scan_once,
        rows=lambda lo, hi: float(max(0, hi.value - lo.value)) if lo < hi else 0.0,
    )


def signed(solution):
    return [(e.op, e.sign, e.lo.value, e.hi.value, e.model.stats_id if e.model else None) for e in solution.edges]


# The paper's Figure 1 on integer positions a < b < … < f: the figure's ranges meet at the letters, so
# D1 = [a, c), D2 = [a, b), D3 = [b, d), D4 = [d, f) and the query is [c, e) — as closed ranges below.
A, B, C, D, E, F = 0, 100, 150, 400, 700, 750
FIGURE_1 = [Model(1, Range(A, C - 1)), Model(2, Range(A, B - 1)), Model(3, Range(B, D - 1)), Model(4, Range(D, F - 1))]
QUERY = Range(C, E - 1)


def test_figure_1_path_c_a_b_d_f_e():
    """Cheap stored models: the paper's path (c, a, b, d, f, e) = −D1 + D2 + D3 + D4 − [e, f] (its Eq. 4)."""
    s, t = range_cuts(QUERY, "integer")
    sol = solve(s, t, FIGURE_1, cuts_of, uniform_costs())
    assert signed(sol) == [
        ("stored", -1, A, C, 1),  # c → a: remove D1
        ("stored", +1, A, B, 2),  # a → b: add D2
        ("stored", +1, B, D, 3),  # b → d: add D3
        ("stored", +1, D, F, 4),  # d → f: add D4
        ("scan", -1, E, F, None),  # f → e: remove the rows [e, f)
    ]
    assert sol.cost_ms == pytest.approx(brute_force(s, t, FIGURE_1, cuts_of, uniform_costs()))
    assert sol.cost_ms < sol.scratch_ms


def test_figure_1_other_equations_when_costs_change():
    s, t = range_cuts(QUERY, "integer")
    # dearer stored models: the paper's Eq. 3, D3 + D4 − [b, c] − [e, f]
    dearer = uniform_costs(stored=0.5)
    sol = solve(s, t, FIGURE_1, cuts_of, dearer)
    assert sorted(signed(sol), key=lambda e: e[2]) == [
        ("scan", -1, B, C, None), ("stored", +1, B, D, 3), ("stored", +1, D, F, 4), ("scan", -1, E, F, None)]
    # rows cheap or stored models very dear: one scan of the request
    for costs in (uniform_costs(per_row=0.0002), uniform_costs(stored=100.0)):
        assert signed(solve(s, t, FIGURE_1, cuts_of, costs)) == [("scan", +1, C, E, None)]
    for costs in (dearer, uniform_costs(per_row=0.0002), uniform_costs(stored=100.0), uniform_costs(part=5.0)):
        assert solve(s, t, FIGURE_1, cuts_of, costs).cost_ms == pytest.approx(brute_force(s, t, FIGURE_1, cuts_of, costs))


@st.composite
def configurations(draw):
    points = st.integers(0, 60)
    models = []
    for i in range(draw(st.integers(0, 4))):
        lo, hi = sorted((draw(points), draw(points)))
        models.append(Model(i + 1, Range(lo, hi), draw(st.integers(2, 30))))
    for j in range(draw(st.integers(0, 2)) if models else 0):  # rule 1: same cuts as another, other cost
        twin = models[draw(st.integers(0, len(models) - 1))]
        models.append(Model(100 + j, twin.range, draw(st.integers(2, 30))))
    lo, hi = sorted((draw(points), draw(points)))
    costs = uniform_costs(stored=draw(st.floats(0.0, 1.0)), per_row=draw(st.floats(0.0, 0.2)),
                          part=draw(st.floats(0.0, 1.0)), fetch_once=draw(st.floats(0.0, 2.0)),
                          scan_once=draw(st.floats(0.0, 2.0)))
    return models, Range(lo, hi), costs, draw(st.booleans())


@given(configurations())
def test_dijkstra_on_the_small_graph_equals_brute_force(config):
    """Optimality without the O(V²) scan edges: equal to the best plan of the complete graph."""
    models, request, costs, backward = config
    s, t = range_cuts(request, "integer")
    sol = solve(s, t, models, cuts_of, costs, backward=backward)
    assert sol.cost_ms == pytest.approx(brute_force(s, t, models, cuts_of, costs, backward=backward), abs=1e-9)
    # the plan's signed steps add up to exactly the request's rows
    covered = {}
    for e in sol.edges:
        for v in range(e.lo.value, e.hi.value):
            covered[v] = covered.get(v, 0) + e.sign
    assert {v for v, c in covered.items() if c} == set(range(request.lo, request.hi + 1))
    assert all(c in (0, 1) for c in covered.values())
    if not backward:
        assert all(e.sign > 0 for e in sol.edges)


def test_graph_size_is_linear():
    """V cuts and M models give 3V nodes and O(V + M) edges, not the complete graph's V²."""
    models = [Model(i, Range(10 * i, 10 * i + 25)) for i in range(200)]
    s, t = range_cuts(Range(5, 1500), "integer")
    sol = solve(s, t, models, cuts_of, uniform_costs())
    cuts = len({c for m in models for c in cuts_of(m)} | {s, t})
    assert sol.graph_nodes == 3 * cuts
    assert sol.graph_edges <= 2 * len(models) + 6 * cuts


def test_rule_1_keeps_the_cheapest_of_models_with_the_same_cuts():
    """Three models over the same cuts: only the cheapest enters the graph, and the plan uses it."""
    models = [Model(1, Range(10, 49), 30), Model(2, Range(10, 49), 5), Model(3, Range(10, 49), 12)]
    s, t = range_cuts(Range(10, 49), "integer")
    sol = solve(s, t, models, cuts_of, uniform_costs())
    assert signed(sol) == [("stored", +1, 10, 50, 2)]
    assert sol.pruned == 2
    assert sol.cost_ms == pytest.approx(brute_force(s, t, models, cuts_of, uniform_costs()))


def test_many_models_solve_over_arrays_like_objects():
    """solve_indexed on thousands of models (arrays) agrees with solve on the same models (objects)."""
    import numpy as np

    from modelstore.planner.graph import solve_indexed

    rng = np.random.default_rng(5)
    lo = rng.integers(0, 20_000, 3000)
    models = [Model(i, Range(int(a), int(a + w)), 12) for i, (a, w) in enumerate(zip(lo, rng.integers(50, 900, 3000)))]
    s, t = range_cuts(Range(5000, 9000), "integer")
    costs = uniform_costs(per_row=0.002)
    by_objects = solve(s, t, models, cuts_of, costs)
    keys = sorted({c.value for m in models for c in cuts_of(m)} | {s.value, t.value})
    pos = {k: i for i, k in enumerate(keys)}
    sol = solve_indexed(len(keys), pos[s.value], pos[t.value],
                        np.array([pos[m.range.lo] for m in models]), np.array([pos[m.range.hi + 1] for m in models]),
                        np.array([costs.stored_ms(m) for m in models]), np.diff(np.array(keys, dtype=float)), costs)
    assert sol.cost_ms == pytest.approx(by_objects.cost_ms)
    assert sol.cost_ms < sol.scratch_ms


def test_heap_dijkstra_equals_scipy_on_random_graphs():
    """The small-graph solver (heap Dijkstra in Python) and scipy's agree on distance, and the path each
    returns is made of edges of the graph that sum to it (zero-weight edges included, like leaving a scan)."""
    import numpy as np

    from modelstore.planner.graph import shortest_path

    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        m = int(rng.integers(0, 4 * n))
        src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
        keep = src != dst
        src, dst = src[keep], dst[keep]
        pairs = {}
        for a, b, c in zip(src.tolist(), dst.tolist(), rng.choice([0.0, 0.5, 1.0, 2.5], len(src)).tolist()):
            pairs[a, b] = min(c, pairs.get((a, b), np.inf))  # one edge per pair, as the planner builds it
        src = np.array([a for a, _ in pairs], dtype=np.int64)
        dst = np.array([b for _, b in pairs], dtype=np.int64)
        w = np.array(list(pairs.values()), dtype=float)
        s, t = 0, n - 1
        heap = shortest_path(n, src, dst, w, s, t, small=10**9)
        scipy = shortest_path(n, src, dst, w, s, t, small=0)
        assert (heap[1] is None) == (scipy[1] is None)
        if heap[1] is None:
            continue
        assert heap[0] == pytest.approx(scipy[0])
        for dist, path in (heap, scipy):
            assert path[0] == s and path[-1] == t
            assert sum(pairs[a, b] for a, b in zip(path, path[1:])) == pytest.approx(dist)


def test_cached_cut_graph_with_virtual_ends_equals_the_request_graph():
    """search.solve (the cut graph of the stored models, built once, with the request's ends as two virtual
    nodes, and the bidirectional search) finds plans of the same cost as solve_indexed over the request's own
    graph, whose steps add up to the request and cost what they say — random catalogs with ends on and off
    stored cuts, with and without backward edges, free and dear stored models, empty and dense pieces."""
    from modelstore.planner import search

    rng = np.random.default_rng(20)
    for _ in range(1500):
        m, span = int(rng.integers(0, 12)), int(rng.integers(5, 60))
        lo = rng.integers(0, span, m)
        hi = lo + rng.integers(0, span // 2 + 1, m)
        density = rng.random(span + 200) * rng.choice([0.0, 1.0, 10.0])
        cum = np.concatenate(([0.0], np.cumsum(density)))

        def below_of(keys):
            return cum[np.clip(np.asarray(keys, dtype=np.int64), 0, len(density))]

        s = int(rng.integers(-2, span))
        t = s + int(rng.integers(1, span))
        cost = rng.choice([0.0, 0.01, 0.5, 1.0, 3.0], m) + rng.random(m) * rng.choice([0, 1])
        part, row = float(rng.choice([0, 0.2, 1.0])), float(rng.choice([0.01, 0.1, 1.0]))
        f1, s1 = float(rng.choice([0, 0.5, 2])), float(rng.choice([0, 0.5, 2]))
        backward = bool(rng.integers(0, 2))
        costs = PlanCosts(stored_ms=None, scan_ms=lambda n, row=row: row * n, part_ms=part, fetch_once_ms=f1,
                          scan_once_ms=s1, rows=None)
        cuts, inv = np.unique(np.concatenate((lo, hi + 1, [s, t])), return_inverse=True)
        want = solve_indexed(len(cuts), int(inv[2 * m]), int(inv[2 * m + 1]), inv[:m], inv[m:2 * m], cost,
                             np.maximum(np.diff(below_of(cuts)), 0), costs, backward=backward)
        g = search.build(lo, hi, cost, below_of, part_ms=part, row_ms=row, backward=backward)
        bs, bt = below_of([s, t])
        got = search.solve(g, search.ends(g, s, t, bs, bt), fetch_once_ms=f1, scan_once_ms=s1, words=SCAN_WORDS)
        assert got.cost_ms == pytest.approx(want.cost_ms, rel=1e-9, abs=1e-12)
        total = np.zeros(3 * span + 10)
        for op, sign, a, b, rows, c, j in got.steps:
            total[a + 5 : b + 5] += sign
            if op == "stored":
                assert (lo[j], hi[j] + 1) == (a, b) and sign in ((1, -1) if backward else (1,))
        request = np.zeros_like(total)
        request[s + 5 : t + 5] = 1
        assert np.array_equal(total, request)
        assert sum(st[5] for st in got.steps) + search._once(got.steps, f1, s1) == pytest.approx(got.cost_ms)
