"""The cost model learns from executed plans (issue #20): the robust fit, its convergence on a real
table from deliberately wrong figures, its bounds, its catalog record; and the scan margin."""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np
import pandas as pd
import pytest

import modelstore
from modelstore.planner import SCAN_MARGIN
from modelstore.planner import costs
from modelstore.planner.costs import CostModel, learning
from modelstore.planner.costs.learning import CostLearner, Correction
from modelstore.stats import engine as stats_engine
from tests.helpers import load_frame

N = 20_000
FEATURES = ["x1", "x2", "x3"]


def _frame(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["y"] = 1.0 + X @ [2.0, -1.0, 0.5] + rng.normal(0, 0.1, N)
    return frame


def _fit(store, lo, hi, table="t"):
    return store.fit("linear", table=table, target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)


def _ratio(model) -> float:
    plan = model.plan
    return plan.plan.est_cost_ms / (plan.execution_seconds * 1000)


# -- the fit, on synthetic observations ---------------------------------------------------------------

def test_fit_recovers_factors_and_overhead_despite_outliers():
    """actual = 0.1·agg + 3·read + 0.5·fixed + 2 ms, with every tenth plan slowed 5× by "load": the
    robust fit finds the generating figures; an ordinary least-squares fit on the same data does not."""
    rng = np.random.default_rng(3)
    n = 120
    parts = np.c_[rng.uniform(1, 100, n), rng.uniform(0, 10, n), rng.uniform(0.5, 5, n)]
    truth = Correction(0.1, 3.0, 0.5, 2.0)
    actual = truth.estimate(parts) * np.exp(rng.normal(0, 0.05, n))
    actual[::10] *= 5.0
    c = learning.fit(parts, actual)
    assert c.n == n
    assert c.agg == pytest.approx(0.1, rel=0.15) and c.read == pytest.approx(3.0, rel=0.15)
    assert c.overhead_ms == pytest.approx(2.0, abs=1.0)
    clean = np.ones(n, dtype=bool)
    clean[::10] = False
    ratio = c.estimate(parts[clean]) / actual[clean]
    assert np.all((ratio > 0.8) & (ratio < 1.25))
    # the reference: plain least squares is pulled by the slowed plans (what the robust loss avoids)
    design = np.c_[parts, np.ones(n)]
    ols = np.linalg.lstsq(design, actual, rcond=None)[0]
    assert abs(ols[0] - 0.1) / 0.1 > 0.3 or abs(ols[3] - 2.0) > 1.0


def test_a_part_the_plans_cannot_tell_apart_keeps_its_calibrated_figure():
    """Every plan reads the same whole table (read is constant): the overhead and the read factor are
    confounded, and the prior keeps the read factor at 1 rather than letting it wander."""
    rng = np.random.default_rng(4)
    parts = np.c_[rng.uniform(1, 50, 60), np.full(60, 4.0), rng.uniform(0.5, 2, 60)]
    actual = parts[:, 0] * 0.5 + 4.0 + parts[:, 2] + 1.0
    c = learning.fit(parts, actual)
    assert c.read == pytest.approx(1.0, rel=0.2)
    assert np.all(np.abs(np.log(c.estimate(parts) / actual)) < np.log(1.1))


def _scipy_fit(parts, actual):
    """The reference: scipy's least_squares on the same residuals, loss and bounds (what fit minimises)."""
    import math

    from scipy.optimize import least_squares

    X, y = np.asarray(parts, dtype=float), np.asarray(actual, dtype=float)
    weight = np.sqrt(0.5 ** ((len(y) - 1 - np.arange(len(y))) / learning.HALF_LIFE))

    def residuals(theta):
        estimate = X @ np.exp(theta[:3]) + theta[3]
        return np.concatenate((weight * (np.log(np.maximum(estimate, 1e-6)) - np.log(y)),
                               learning.PRIOR_WEIGHT * theta[:3]))

    bound = math.log(learning.FACTOR_BOUND)
    start = np.array([0.0, 0.0, 0.0, max(float(np.median(y - X.sum(axis=1))), 0.0)])
    theta = least_squares(residuals, start, loss="soft_l1", f_scale=learning.LOSS_SCALE, xtol=1e-12, ftol=1e-12,
                          bounds=([-bound] * 3 + [0.0], [bound] * 3 + [np.inf])).x
    return Correction(*np.exp(theta[:3]), theta[3], n=len(y))


@pytest.mark.parametrize("seed", range(6))
def test_fit_finds_scipys_least_squares_minimum(seed):
    """The IRLS Gauss–Newton fit reaches the minimum scipy's least_squares finds on the same objective
    (a request's overhead dominating, an overhead at its bound 0, factors far from 1), and a refit started
    from a previous fit reaches it too."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, learning.WINDOW + 1))
    parts = np.c_[rng.uniform(0.5, 30, n), rng.uniform(0.0, 5, n), rng.uniform(0.2, 2, n)]
    truth = Correction(*np.exp(rng.uniform(-3, 3, 3)), (0.0, 0.5, 8.0)[seed % 3])
    actual = truth.estimate(parts) * np.exp(rng.normal(0, 0.1, n))
    actual[rng.random(n) < 0.1] *= 4.0  # bursts of load
    want, got = _scipy_fit(parts, actual), learning.fit(parts, actual)
    assert got.n == want.n == n
    for name in ("agg", "read", "fixed"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-3), name
    assert got.overhead_ms == pytest.approx(want.overhead_ms, rel=1e-3, abs=1e-4)
    moved = actual * np.exp(rng.normal(0, 0.05, n))
    again = learning.fit(parts, moved, start=got)
    want_again = _scipy_fit(parts, moved)
    assert again.agg == pytest.approx(want_again.agg, rel=1e-3)
    assert again.overhead_ms == pytest.approx(want_again.overhead_ms, rel=1e-3, abs=1e-4)


def test_scaled_models_stay_monotone_and_valid():
    base = CostModel.default()
    scaled = base.scaled(agg=0.1, read=3.0, fixed=0.5, overhead_ms=2.0)
    assert scaled.row_ms("linear", 4) == pytest.approx(0.1 * base.row_ms("linear", 4))
    assert scaled.seq_row_ms == pytest.approx(3 * base.seq_row_ms) and scaled.overhead_ms == 2.0
    assert scaled.statement_ms == pytest.approx(0.5 * base.statement_ms)
    assert CostModel.from_json(scaled.to_json()) == scaled
    with pytest.raises(ValueError, match="agg"):
        base.scaled(agg=0.0)


# -- on a real table ----------------------------------------------------------------------------------

@pytest.fixture(params=[0.01, 1000.0], ids=["100x-cheap", "1000x-dear"])
def wrong_store(dsn, request):
    """A store whose stored calibration is the default figures scaled ``request.param``× (what it
    loads, so that it learns); the table ``t`` has no index on its ordering column. (The default
    figures price this small table's plans near its requests' overhead, so 10× dearer is about right
    by accident, and a loaded machine can make a request several times slower: the factors are
    chosen to be wrong by far more than load can explain.)"""
    factor = request.param
    with modelstore.connect(dsn) as probe:
        server_version = probe.conn.execute("SELECT current_setting('server_version')").fetchone()[0]
        engine = stats_engine.engine(probe.conn)[0]
        wrong = dataclasses.replace(CostModel.default(engine).scaled(agg=factor, read=factor, fixed=factor),
                                    server_version=server_version, method="manual")
        costs.save(probe.conn, wrong)
        load_frame(probe.conn, "t", _frame())
        probe.conn.execute("ANALYZE t")
    store = modelstore.connect(dsn)
    store.factor = factor
    yield store
    store.close()


def test_the_learned_correction_converges_from_wrong_figures(wrong_store):
    store = wrong_store
    assert store.cost_model.statement_ms == pytest.approx(store.factor * CostModel.default().statement_ms)
    rng = np.random.default_rng(11)
    ratios = []
    for _ in range(48):
        lo = int(rng.integers(1, N - 4000))
        ratios.append(_ratio(_fit(store, lo, lo + int(rng.integers(500, 4000)))))
    first, last = np.array(ratios[:4]), np.array(ratios[16:])
    assert not 0.5 <= np.median(first) <= 2.0, ratios[:4]  # the figures are wrong at first
    assert np.all(np.abs(np.log(first)) > np.log(5.0)), ratios[:4]
    # then the estimates follow the actuals (a median and a share: a burst of load on a shared machine
    # moves the actuals of a few plans, which the correction follows only over its next refits)
    assert 0.5 <= np.median(last) <= 2.0, ratios[16:]
    assert np.mean((last >= 0.5) & (last <= 2.0)) >= 0.6, ratios[16:]
    c = store.cost_learner.correction("public.t", store.cost_model.engine, "seq")
    assert c is not None and c.n >= learning.MIN_OBSERVATIONS
    # stored for the next session, which starts from it
    row = store.conn.execute("SELECT correction, jsonb_array_length(observations) FROM modelstore.cost_corrections "
                             "WHERE table_name = 'public.t' AND path = 'seq'").fetchone()
    assert row is not None and row[1] <= learning.WINDOW and row[0]["n"] >= learning.MIN_OBSERVATIONS
    with modelstore.connect(store.dsn) as other:
        base = other.cost_model
        corrected = other.cost_learner.model_for(base, "public.t", "seq")
        assert corrected.overhead_ms == pytest.approx(row[0]["overhead_ms"])
        assert corrected.row_ms("linear", 3) == pytest.approx(row[0]["agg"] * base.row_ms("linear", 3))


def test_learning_is_bounded_old_plans_are_dropped(wrong_store):
    store = wrong_store
    store.cost_learner = CostLearner(window=10, refresh_every=4, min_observations=4)
    actuals = [_fit(store, 1 + 100 * i, 3000 + 100 * i).plan.execution_seconds * 1000 for i in range(15)]
    kept = store.cost_learner.observations("public.t", store.cost_model.engine, "seq")
    assert len(kept) == 10
    assert [o[3] for o in kept] == pytest.approx(actuals[-10:])  # the last ten, oldest first
    stored = store.conn.execute("SELECT observations FROM modelstore.cost_corrections "
                                "WHERE table_name = 'public.t' AND path = 'seq'").fetchone()[0]
    assert 4 <= len(stored) <= 10
    # refits are written at most every SAVE_INTERVAL_S (the first usable one at once); flush writes the last
    store.cost_learner.flush(store.conn)
    stored = store.conn.execute("SELECT observations, correction FROM modelstore.cost_corrections "
                                "WHERE table_name = 'public.t' AND path = 'seq'").fetchone()
    assert [o[3] for o in stored[0]] == pytest.approx(actuals[-10:])
    assert stored[1] == store.cost_learner.correction("public.t", store.cost_model.engine, "seq").to_json()
    assert store.cost_learner.flush(store.conn) == 0  # nothing refitted since
    # a new calibration voids what was learned against the old one
    recalibrated = dataclasses.replace(store.cost_model, measured_at=store.cost_model.measured_at.replace(year=2030))
    assert store.cost_learner.model_for(recalibrated, "public.t", "seq") is recalibrated
    assert store.cost_learner.observations("public.t", store.cost_model.engine, "seq") == []


def _round_trips(conn, fn):
    """(fn's result, the round trips it waited for: every Sync or simple Query message sent)."""
    fd, path = tempfile.mkstemp()
    try:
        conn.pgconn.trace(fd)
        try:
            out = fn()
        finally:
            conn.pgconn.untrace()
        with open(path) as fh:
            sent = [line.split("\t") for line in fh.read().splitlines()]
    finally:
        os.close(fd)
        os.unlink(path)
    return out, sum(1 for p in sent if len(p) > 3 and p[1] == "F" and p[3] in ("Sync", "Query"))


def test_corrections_are_written_in_one_round_trip_all_or_none(dsn):
    """A refit writes its table's key and the pooled one together: one round trip on the store's connection,
    a savepoint inside a caller's transaction, and for a role that may not write nothing at all — and the
    caller's transaction goes on."""
    c = Correction(agg=2.0, read=0.5, fixed=1.5, overhead_ms=0.3, n=9)
    window = np.ones((9, 4))
    rows = [(("public.t", "c", "seq"), c, window), ((learning.POOLED, "c", "seq"), c, window)]
    with modelstore.connect(dsn) as store:
        conn = store.conn  # autocommit, as a store's requests run
        ok, trips = _round_trips(conn, lambda: learning.save_many(conn, "stamp", rows))
        assert ok and trips == 1
        stored = conn.execute("SELECT table_name, correction FROM modelstore.cost_corrections "
                              "WHERE base_model = 'stamp' ORDER BY table_name").fetchall()
        assert [r[0] for r in stored] == [learning.POOLED, "public.t"] and stored[1][1] == c.to_json()
        conn.execute("CREATE ROLE ms_costs_reader")
        conn.execute("GRANT USAGE ON SCHEMA modelstore TO ms_costs_reader")
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (7)")
            conn.execute("SET LOCAL ROLE ms_costs_reader")
            changed = [(key, dataclasses.replace(c, agg=9.0), window) for key, _, window in rows]
            ok, trips = _round_trips(conn, lambda: learning.save_many(conn, "stamp", changed))
            assert not ok
            conn.execute("RESET ROLE")
            assert conn.execute("SELECT x FROM kept").fetchone() == (7,)  # the caller's transaction goes on
        assert conn.execute("SELECT count(*) FROM modelstore.cost_corrections WHERE base_model = 'stamp' "
                            "AND (correction->>'agg')::float8 = 9.0").fetchone() == (0,)
        conn.execute("REVOKE ALL ON SCHEMA modelstore FROM ms_costs_reader")
        conn.execute("DROP ROLE ms_costs_reader")


def test_a_pinned_cost_model_is_not_corrected(dsn):
    with modelstore.connect(dsn) as store:
        load_frame(store.conn, "t", _frame())
        store.conn.execute("ANALYZE t")
        store._cost_model = CostModel.default()
        for i in range(learning.MIN_OBSERVATIONS + 2):
            model = _fit(store, 1 + 50 * i, 2000 + 50 * i)
        assert store.cost_learner.observations("public.t", "sql", "seq") == []
        assert store.cost_learner.observations("public.t", "c", "seq") == []
        assert store.cost_learner.correction("public.t", "sql", "seq") is None
        assert model.plan.plan.graph["est_parts"]["fixed"] > 0  # observable, but not observed


# -- the scan margin ----------------------------------------------------------------------------------

def test_the_margin_keeps_the_scan_when_another_plan_is_only_marginally_cheaper(dsn):
    with modelstore.connect(dsn) as store:
        load_frame(store.conn, "t", _frame())
        store.conn.execute("ANALYZE t")
        store._cost_model = CostModel.default()  # pinned: the plans do not depend on load
        assert store.scan_margin == SCAN_MARGIN
        _fit(store, 1, 8000)
        request = store.explain("linear", table="t", target="y", features=FEATURES, order_by="id", lo=1, hi=9000)
        descriptor = request.descriptor
        source_id = store.conn.execute("SELECT source_id FROM modelstore.sources WHERE table_name = 't'").fetchone()[0]

        def plan(margin):
            store.scan_margin = margin
            return store._plan(source_id, descriptor)

        best = plan(0.0)
        assert any(s.op == "stored" for s in best.steps)
        saving = 1.0 - best.est_cost_ms / best.scratch_cost_ms
        assert 0.05 < saving < 0.95
        # cheaper, but by less than the margin: the one scan
        kept = plan(saving + 0.02)
        assert [(s.op, s.sign) for s in kept.steps] == [("scan", 1)]
        assert kept.steps[0].range == descriptor.range and kept.est_cost_ms == pytest.approx(kept.scratch_cost_ms)
        assert "saves less than" in kept.strategy
        # cheaper by more than the margin: the other plan
        assert plan(saving - 0.02).steps == best.steps
        with pytest.raises(ValueError, match="scan_margin"):
            plan(1.0)


# -- the calibrated per-range cost of a sequential scan ------------------------------------------------

def test_each_range_beyond_the_first_costs_a_sequential_scan_a_pass_over_the_table(dsn):
    """Two gaps of a table without an index are one statement testing two ranges on every row: with
    that priced (seq_range_row_ms), a plan of two scans loses to one scan it used to beat."""
    with modelstore.connect(dsn) as store:
        load_frame(store.conn, "t", _frame())
        store.conn.execute("ANALYZE t")
        store._cost_model = CostModel.default()
        store.scan_margin = 0.0
        _fit(store, 5001, 15000)
        request = dict(table="t", target="y", features=FEATURES, order_by="id", lo=1, hi=N)
        two = store.explain("linear", **request)
        assert [s.op for s in two.steps].count("scan") == 2
        per_range = 1e-3  # ms per table row and extra range: 20 ms for the second gap
        store._cost_model = dataclasses.replace(CostModel.default(), seq_range_row_ms=per_range)
        one = store.explain("linear", **request)
        assert [s.op for s in one.steps].count("scan") == 1
        # the two-scan plan, priced again, costs one more pass over the table's rows
        assert store._cost_model.seq_ranges_ms(N, 2) == pytest.approx(N * per_range, rel=0.01)
        assert two.graph["est_parts"]["read"] == pytest.approx(CostModel.default().seq_read_ms(N), rel=0.05)


def test_calibration_measures_the_per_range_cost(module_dsn):
    import psycopg

    with psycopg.connect(module_dsn, autocommit=True) as conn:
        model = costs.calibrate(conn, quick=True)
    assert 0.0 <= model.seq_range_row_ms < 10 * model.seq_row_ms
    assert set(model.details["seq_ranges_ms"]) == {"one", "many"}
    assert CostModel.from_json(model.to_json()).seq_range_row_ms == model.seq_range_row_ms
