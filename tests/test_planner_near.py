"""Rules 2 and 3 of docs/planner.md (modelstore/planner/bounds.py): when the plan found over the models
with a cut near the request's ends (rule 2), or reached from them by chains of models sharing cuts (rule
3: the default figures, where a scan statement costs more than many stored steps), costs less than the
rule's bound B, it is optimal over every stored model — checked
against brute force over every compatible model on small catalogs, and against the solver over the whole
catalog on a dense one, where the rule reads a small share of it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelstore.planner import plan_costs
from modelstore.planner.bounds import min_stored_ms, near_bound
from modelstore.planner.costs import CostModel
from modelstore.planner.graph import solve
from modelstore.request.cuts import range_cuts
from tests.test_planner import FEATURES, N, all_stored, fit, optimum, reset
from tests.test_planner import store  # noqa: F401 — the module's table ``p``

pytestmark = pytest.mark.store(cost_model=CostModel.default())

#: figures like a calibrated machine's (cheap statements, a stored row dearer than scanning ~80 rows), so
#: that the windows around the ends hold more than the ends themselves and plans with scans can prove
CHEAP_STATEMENTS = dataclasses.replace(CostModel.default(), statement_ms=0.04, term_ms=0.0004, fetch_row_ms=0.05)


@pytest.fixture(params=["default", "cheap statements"])
def figures(store, request):  # noqa: F811
    saved = store._cost_model
    store._cost_model = CostModel.default() if request.param == "default" else CHEAP_STATEMENTS
    yield request.param
    store._cost_model = saved


def explain(store, lo, hi):  # noqa: F811
    return store.explain("linear", table="p", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)


def near_end(draw_offset, end):
    return max(1, min(N, end + draw_offset))


# small catalogs whose models start or end within a few rows of the request's ends (so that rule 2 fires),
# plus one anywhere
@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(request=st.tuples(st.integers(200, 1200), st.integers(300, 1500)),
       ends=st.lists(st.tuples(st.integers(-8, 8), st.integers(-8, 8), st.integers(0, 3)), min_size=1, max_size=3),
       anywhere=st.tuples(st.integers(1, N - 20), st.integers(10, 1500)))
def test_rule2_plans_match_brute_force(store, figures, request, ends, anywhere):  # noqa: F811
    reset(store)
    lo, hi = request[0], min(N, request[0] + request[1])
    shapes = []
    for da, db, shape in ends:  # a model near both ends, near one end (two ways), or a pair sharing a far cut
        a, b = near_end(da, lo), near_end(db, hi)
        far = max(1, lo - 400)
        shapes += [[(a, b)], [(a, min(N, b + 300))], [(far, b)], [(far, a), (far, b)]][shape]
    shapes.append((anywhere[0], min(N, anywhere[0] + anywhere[1])))
    for a, b in shapes:
        if b - a >= 9:
            fit(store, a, b)
    plan = explain(store, lo, hi)
    d = plan.descriptor
    costs = plan_costs(store.cost_model, store._estimator(d.source), d)
    s, t = range_cuts(d.range, "integer")
    assert plan.est_cost_ms == pytest.approx(optimum(store, plan), rel=1e-9)
    if plan.graph["near_ends"]:  # the proof's premise held
        c0 = min_stored_ms(costs, d.family.catalog_values(len(d.stats_columns)))
        bound = near_bound(int(s.key), int(t.key), costs, store._estimator(d.source), c0, key_room=2**62)
        assert plan.est_cost_ms < bound.bound_ms
        assert bound.chain_depth is not None and bound.chain_depth >= 2  # rule 3's chains are followed
        # default figures: a scan statement outweighs the budget, the windows are the ends (rule 3 alone);
        # cheap statements: the windows reach past the ends (rule 2)
        assert (bound.windows[2][0] < bound.windows[2][1]) == (figures == "cheap statements")


def test_windows_hold_every_cut_a_budget_can_scan_to(store, figures):  # noqa: F811
    """Soundness of the windows: the first cut outside each costs at least its budget to scan to (and
    every farther cut more: the estimate is monotone), so no cut a plan under B can use is left out."""
    reset(store)
    fit(store, 1, 50)
    plan = explain(store, 700, 1900)
    d = plan.descriptor
    estimator = store._estimator(d.source)
    costs = plan_costs(store.cost_model, estimator, d)
    c0 = min_stored_ms(costs, d.family.catalog_values(len(d.stats_columns)))
    near = near_bound(700, 1901, costs, estimator, c0, key_room=2**62)
    beta1 = near.bound_ms - costs.fetch_once_ms - c0 - costs.scan_once_ms - costs.part_ms
    budgets = [beta1 - c0] * 2 + [beta1] * 2
    for (lo, hi), end, budget in zip(near.windows, [700, 1901, 700, 1901], budgets):
        assert lo <= end <= hi
        if budget <= 0:
            assert lo == hi == end
            continue
        for outside in (lo - 1, hi + 1):
            a, b = sorted((outside, end))
            rows = estimator.below_cuts(np.array([float(b)]), np.zeros(1, dtype=np.int8))[0] - \
                estimator.below_cuts(np.array([float(a)]), np.zeros(1, dtype=np.int8))[0]
            assert costs.scan_ms(rows) >= budget
    if store.cost_model is CHEAP_STATEMENTS:  # windows wider than the ends themselves
        assert near.windows[2][1] - near.windows[2][0] > 20


def synthetic_catalog(store, count: int, seed: int) -> None:  # noqa: F811
    """``count`` distinct linear summaries of ~N(300, 60) rows (zeros: planning never reads the arrays)."""
    reset(store)
    fit(store, 1, 50)  # registers the source
    source_id = store.conn.execute("SELECT source_id FROM modelstore.sources WHERE table_name = 'p'").fetchone()[0]
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.normal(300, 60, count * 2).round(), 10, N - 1).astype(int)
    los = np.array([rng.integers(1, N - s + 1) for s in sizes])
    pairs = np.unique(np.stack([los, los + sizes - 1], axis=1), axis=0)[:count]
    k = len(FEATURES) + 1
    columns = [*FEATURES, "y"]
    with store.conn.transaction():
        with store.conn.cursor().copy(
                "COPY modelstore.statistics (source_id, family, lo, hi, lo_key, hi_key, columns, n, null_rows, mean, "
                "moments, read_columns) FROM STDIN") as copy:
            for a, b in pairs.tolist():
                copy.write_row([source_id, "linear", str(a), str(b), a, b, columns, b - a + 1, 0, [0.0] * k,
                                [0.0] * (k * k), [*columns, "id"]])
    store.conn.execute("ANALYZE modelstore.statistics")


def test_rule2_on_a_dense_catalog_reads_a_small_share_and_stays_optimal(store, figures):  # noqa: F811
    synthetic_catalog(store, 2000, seed=5)
    rng = np.random.default_rng(6)
    ranges = store.conn.execute("SELECT lo_key::int, hi_key::int FROM modelstore.statistics "
                                "JOIN modelstore.sources USING (source_id) WHERE table_name = 'p' "
                                "ORDER BY lo_key, hi_key").fetchall()
    requests = []
    for i in rng.choice(len(ranges) - 1, 6, replace=False):  # the difference of two models: stored only
        (a, b), (c, e) = ranges[i], ranges[i + 1]
        requests.append((min(b, e) + 1, max(b, e)) if a == c else (a, b))
    for _ in range(6):  # anywhere
        lo = int(rng.integers(1, N - 600))
        requests.append((lo, lo + int(rng.integers(150, 500))))
    fired = 0
    for lo, hi in requests:
        if hi - lo < 2:
            continue
        plan = explain(store, lo, hi)
        d = plan.descriptor
        costs = plan_costs(store.cost_model, store._estimator(d.source), d)
        s, t = range_cuts(d.range, "integer")
        everything = all_stored(store, d)
        whole = solve(s, t, everything, lambda m: range_cuts(m.range, "integer"), costs)
        assert plan.est_cost_ms == pytest.approx(whole.cost_ms, rel=1e-9)
        if plan.graph["near_ends"]:
            fired += 1
            assert plan.graph["relevant"] < len(everything) / 2
    assert fired >= 6  # the rule does the work on a dense catalog, not only the fallback
