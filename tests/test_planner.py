"""The planner against PostgreSQL: optimal over every stored model (brute force), exact on every path,
the paper's Figure 1, plans that change when a cheaper model appears, the numerical guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelstore.planner.costs import CostModel
from modelstore.request.descriptor import Range, parse_bound
from modelstore.planner import plan_costs
from modelstore.request.cuts import range_cuts
from modelstore.planner.relevant import StoredModel
from tests.bruteforce import brute_force
from tests.data import longley
from tests.helpers import load_frame, rel_err

N = 3000
FEATURES = ["x1", "x2", "x3"]


# fixed figures (tests/fixtures.py): the plans asserted below do not depend on load
pytestmark = pytest.mark.store(cost_model=CostModel.default())


@pytest.fixture(scope="module")
def store(store):
    """The shared store with the table ``p``; ``store.frame`` holds its rows."""
    rng = np.random.default_rng(21)
    X = rng.normal(size=(N, 3)) * [1.0, 5.0, 0.2] + [3.0, -20.0, 0.0]
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["y"] = 2.0 + X @ [1.0, 0.3, -4.0] + rng.normal(0, 0.5, N)
    load_frame(store.conn, "p", frame)
    store.conn.execute("CREATE INDEX ON p (id)")
    store.conn.execute("ANALYZE p")
    store.frame = frame
    return store


def reset(store, table="p"):
    store.conn.execute("DELETE FROM modelstore.sources WHERE table_name = %s", [table])


def fit(store, lo, hi, **kw):
    return store.fit("linear", table=kw.pop("table", "p"), target="y", features=kw.pop("features", FEATURES),
                     order_by="id", lo=lo, hi=hi, **kw)


def reference(frame, lo, hi, features=FEATURES):
    sel = frame[(frame.id >= lo) & (frame.id <= hi)]
    X = np.c_[np.ones(len(sel)), sel[features].to_numpy()]
    return np.linalg.lstsq(X, sel.y.to_numpy(), rcond=None)[0]


def all_stored(store, descriptor) -> list[StoredModel]:
    """Every compatible stored model of the source — not just the relevant set — for brute force."""
    rows = store.conn.execute(
        """
        SELECT s.stats_id, s.lo, s.hi, s.columns, s.n, s.null_rows, cardinality(s.moments) + cardinality(s.mean)
        FROM modelstore.statistics s JOIN modelstore.sources USING (source_id)
        WHERE table_name = %s AND family = 'linear' AND columns @> %s
        """,
        [descriptor.source.table, list(descriptor.stats_columns)],
    ).fetchall()
    kind = descriptor.source.order_kind
    return [StoredModel(sid, Range(parse_bound(lo, kind), parse_bound(hi, kind)), tuple(c), n, nr, nv)
            for sid, lo, hi, c, n, nr, nv in rows]


def optimum(store, plan) -> float:
    """The cost of the best plan over every compatible stored model of the catalog (brute force over the
    paper's complete graph), with the single scan kept unless the best saves more than the store's margin
    (docs/planner.md, "Cost model")."""
    d = plan.descriptor
    costs = plan_costs(store.cost_model, store._estimator(d.source), d)
    s, t = range_cuts(d.range, "integer")
    best = brute_force(s, t, all_stored(store, d), lambda m: range_cuts(m.range, "integer"), costs)
    return plan.scratch_cost_ms if best > (1 - store.scan_margin) * plan.scratch_cost_ms else best


# ranges of at least 10 rows, so that every fit is determined
ranges = st.tuples(st.integers(1, N - 9), st.integers(9, N)).map(lambda p: (p[0], min(N, p[0] + p[1])))


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(ranges, max_size=3), request=ranges)
def test_plan_is_optimal_over_all_stored_models_and_exact(store, stored, request):
    reset(store)
    for lo, hi in stored:
        fit(store, lo, hi)
    lo, hi = request
    plan = store.explain("linear", table="p", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)
    assert plan.est_cost_ms == pytest.approx(optimum(store, plan), rel=1e-9)
    m = fit(store, lo, hi)
    assert m.plan.plan.steps == plan.steps
    assert rel_err(np.r_[m.intercept_, m.coef_], reference(store.frame, lo, hi)) < 1e-9
    assert m.n_obs == hi - lo + 1


def test_figure_1_of_the_paper(store):
    """D1 = [a, c), D2 = [a, b), D3 = [b, d), D4 = [d, f); the query [c, e) is −D1 + D2 + D3 + D4 − [e, f)."""
    reset(store)
    a, b, c, d, e, f = 1, 1001, 1201, 2001, 2801, 2901
    ids = {name: fit(store, lo, hi - 1).plan.stored_stats_id
           for name, (lo, hi) in {"D1": (a, c), "D2": (a, b), "D3": (b, d), "D4": (d, f)}.items()}
    m = fit(store, c, e - 1)
    steps = [(s.op, s.sign, s.range.lo, s.range.hi, s.stats_id) for s in m.plan.plan.steps]
    assert steps == [
        ("stored", -1, a, c - 1, ids["D1"]),
        ("stored", +1, a, b - 1, ids["D2"]),
        ("stored", +1, b, d - 1, ids["D3"]),
        ("stored", +1, d, f - 1, ids["D4"]),
        ("scan", -1, e, f - 1, None),
    ]
    assert m.plan.rows_scanned == f - e
    assert rel_err(np.r_[m.intercept_, m.coef_], reference(store.frame, c, e - 1)) < 1e-9
    text = str(m.plan)
    assert "− stored #%d [1, 1200]" % ids["D1"] in text and "− scan [2801, 2900]" in text
    assert "From scratch (one scan): cost=" in text and "actual rows=100" in text


def test_nothing_stored_scans_once(store):
    reset(store)
    plan = store.explain("linear", table="p", target="y", features=FEATURES, order_by="id", lo=100, hi=999)
    assert [(s.op, s.sign, s.range.lo, s.range.hi) for s in plan.steps] == [("scan", 1, 100, 999)]
    assert plan.est_cost_ms == pytest.approx(plan.scratch_cost_ms)
    m = fit(store, 100, 999)
    assert m.plan.rows_scanned == 900 and len(m.plan.results) == 1


def test_a_cheaper_model_switches_the_plan(store):
    reset(store)
    whole = fit(store, 1, 2000).plan.stored_stats_id
    before = store.explain("linear", table="p", target="y", features=FEATURES, order_by="id", lo=101, hi=2000)
    assert sorted((s.op, s.sign, s.range.lo, s.range.hi) for s in before.steps) == [
        ("scan", -1, 1, 100), ("stored", 1, 1, 2000)]
    head = fit(store, 1, 100).plan.stored_stats_id
    after = fit(store, 101, 2000)
    assert sorted((s.op, s.sign, s.stats_id) for s in after.plan.plan.steps) == [("stored", -1, head), ("stored", 1, whole)]
    assert after.plan.rows_scanned == 0
    assert after.plan.plan.est_cost_ms < before.est_cost_ms
    assert rel_err(np.r_[after.intercept_, after.coef_], reference(store.frame, 101, 2000)) < 1e-9


def test_gaps_are_scanned_in_one_statement(store):
    reset(store)
    for lo, hi in ((201, 1000), (1201, 2000)):
        fit(store, lo, hi)
    m = fit(store, 101, 2100)  # three gaps around two stored models
    scans = [s for s in m.plan.plan.steps if s.op == "scan"]
    assert [(s.range.lo, s.range.hi) for s in scans] == [(101, 200), (1001, 1200), (2001, 2100)]
    assert m.plan.rows_scanned == 100 + 200 + 100
    assert rel_err(np.r_[m.intercept_, m.coef_], reference(store.frame, 101, 2100)) < 1e-9


def test_subset_of_features_from_a_stored_superset(store):
    reset(store)
    fit(store, 1, 2500)
    m = fit(store, 501, 2500, features=["x3", "x1"])
    stored = [s for s in m.plan.plan.steps if s.op == "stored"]
    assert len(stored) == 1 and stored[0].stored_columns == ("x1", "x2", "x3", "y")
    assert rel_err(np.r_[m.intercept_, m.coef_], reference(store.frame, 501, 2500, ["x3", "x1"])) < 1e-9


@pytest.fixture(scope="module")
def guarded(module_dsn, store):
    """Rows 1..1000 small, 1001..2000 enormous: subtracting the latter from the whole cancels ~14 digits."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2000, 2))
    X[1000:] *= 1e7
    frame = pd.DataFrame(X, columns=["u", "v"])
    frame.insert(0, "id", np.arange(1, 2001))
    frame["y"] = 1.0 + frame.u - 2.0 * frame.v + rng.normal(0, 0.1, 2000)
    load_frame(store.conn, "g", frame)
    store.conn.execute("CREATE INDEX ON g (id)")
    store.conn.execute("ANALYZE g")
    return frame


@pytest.fixture
def sql_engine(monkeypatch):
    """The float64 SQL aggregates: the numerical guard is about their cancellation (double-double
    statistics carry 15 more digits, and a subtraction of them is not refused: tests/test_engine.py)."""
    from modelstore.stats import engine as stats_engine

    monkeypatch.setenv(stats_engine.ENV, "sql")
    stats_engine.forget()
    yield
    stats_engine.forget()


def test_numerical_guard_refuses_a_cancelling_subtraction(store, guarded, sql_engine):
    reset(store, "g")
    fit(store, 1, 2000, table="g", features=["u", "v"])
    fit(store, 1001, 2000, table="g", features=["u", "v"])
    planned = store.explain("linear", table="g", target="y", features=["u", "v"], order_by="id", lo=1, hi=1000)
    assert [(s.op, s.sign) for s in planned.steps] == [("stored", 1), ("stored", -1)]  # cheapest on paper
    m = fit(store, 1, 1000, table="g", features=["u", "v"])
    assert m.plan.rejected and m.plan.rejected[0]["digits_lost"] > store.max_digits_lost
    assert all(s.sign > 0 for s in m.plan.plan.steps) and m.plan.digits_lost == 0
    assert rel_err(np.r_[m.intercept_, m.coef_], reference(guarded, 1, 1000, ["u", "v"])) < 1e-9
    assert "Rejected:" in str(m.plan)


@pytest.fixture(scope="module")
def longley_table(store):
    data = np.array(longley.ROWS, dtype=float)
    extra = data * np.array([1.02, 1.01, 0.97, 1.05, 0.99, 1.03, 1.0]) + np.array([0, 0, 0, 0, 0, 0, 16])
    frame = pd.DataFrame(np.vstack([data, extra]), columns=["y", *longley.FEATURES])
    frame.insert(0, "id", np.arange(1, 33))
    load_frame(store.conn, "longley", frame, types={c: "numeric" for c in ["y", *longley.FEATURES]})
    store.conn.execute("ANALYZE longley")


def test_longley_through_a_planned_subtraction(store, longley_table, sql_engine):
    reset(store, "longley")
    feats = list(longley.FEATURES)
    for lo, hi in ((1, 32), (17, 32)):
        fit(store, lo, hi, table="longley", features=feats)
    m = fit(store, 1, 16, table="longley", features=feats)
    assert [(s.op, s.sign) for s in m.plan.plan.steps] == [("stored", 1), ("stored", -1)]
    assert 0 < m.plan.digits_lost < store.max_digits_lost
    est = np.r_[m.intercept_, m.coef_]
    digits = -np.log10(np.max(np.abs(est - longley.CERTIFIED_PARAMS) / np.abs(longley.CERTIFIED_PARAMS)))
    print(f"\nLongley via the planner's subtraction plan: {digits:.2f} digits (guard measured "
          f"{m.plan.digits_lost:.2f} digits lost)")
    assert digits >= 10


def test_estimates_and_actuals_are_recorded(store):
    reset(store)
    fit(store, 1, 1000)
    m = fit(store, 1, 1500)
    for r in m.plan.results:
        assert r.step.est_rows is not None and r.step.est_cost_ms is not None and r.seconds >= 0
    saved = store.model(m.name).plan
    assert [r.step.est_cost_ms for r in saved.results] == [r.step.est_cost_ms for r in m.plan.results]
    assert saved.plan.scratch_cost_ms == m.plan.plan.scratch_cost_ms
