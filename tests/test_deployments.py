"""Deployments (issue #16, docs/deployments.md): exact under a stream of writes, windows, versions and
rollback, prequential figures, bad input. The worker's own tests are in tests/test_worker.py.

Every check compares the deployed model with numpy (or scikit-learn) on the window's rows, fetched
independently from the table after each commit.
"""

from __future__ import annotations


import numpy as np
import psycopg
import pytest
from sklearn.naive_bayes import GaussianNB

import modelstore
from modelstore.errors import (
    NotDeployedError, SourceKindError, VersionNotFoundError, WindowError,
)
from tests.helpers import rel_err
from tests.invariants import check_catalog
from tests.reference import ols

TOL = 1e-9


@pytest.fixture
def store(dsn):
    with modelstore.Store(dsn) as s:
        s.conn.execute("SELECT setseed(0.25)")
        s.conn.execute("""
            CREATE TABLE public.sales (id bigint PRIMARY KEY, x1 float8, x2 float8, y float8, label int)""")
        # even ids: late rows (odd ids) can land inside the window later
        s.conn.execute("""
            INSERT INTO public.sales
            SELECT 2 * g, x1, x2, 3.0 + 1.5 * x1 - 0.7 * x2 + (random() - 0.5), (x1 > 0.5)::int + (x2 > 0.5)::int
            FROM (SELECT g, random() AS x1, random() AS x2 FROM generate_series(1, 400) g) s""")
        s.conn.execute("ANALYZE public.sales")
        yield s


def window_rows(conn, n: int | None, columns=("x1", "x2", "y")) -> np.ndarray:
    """The last n rows by id (every row when n is None), straight from the table."""
    if n is None:
        query = "SELECT {} FROM public.sales ORDER BY id"
        return np.array(conn.execute(query.format(", ".join(columns))).fetchall(), dtype=float)
    lo = conn.execute("SELECT id FROM public.sales ORDER BY id DESC OFFSET %s LIMIT 1", [n - 1]).fetchone()[0]
    query = "SELECT {} FROM public.sales WHERE id >= %s ORDER BY id"
    return np.array(conn.execute(query.format(", ".join(columns)), [lo]).fetchall(), dtype=float)


def assert_exact_linear(store, d, n, other: psycopg.Connection):
    rows = window_rows(store.conn, n)
    want = ols(rows[:, :2], rows[:, 2])
    model = d.model
    assert rel_err(np.r_[model.intercept_, model.coef_], want) < TOL
    assert model.n_obs == len(rows)
    # from another session, through SQL
    got = other.execute("SELECT modelstore.predict(%s, ARRAY[0.25, 0.75])", [d.name]).fetchone()[0]
    assert abs(got - (want[0] + 0.25 * want[1] + 0.75 * want[2])) < 1e-9 * abs(got)


def test_stream_of_writes_stays_exact(store, dsn):
    """Appends, late rows inside the window, updates, deletes, a write older than the window: after each
    commit and refresh, the deployed model is numpy's on the window's rows."""
    conn = store.conn
    d = store.deploy("sales_now", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id",
                     window=100)
    nb = store.deploy("sales_nb", "gaussian_nb", table="sales", target="label", features=["x1", "x2"],
                      order_by="id", window="150 rows")
    with psycopg.connect(dsn, autocommit=True) as other:
        assert_exact_linear(store, d, 100, other)
        steps = [
            ("append", "INSERT INTO sales SELECT g, random(), random(), 1 + 2 * random(), 1 FROM generate_series(802, 830, 2) g"),
            ("late rows inside the window", "INSERT INTO sales SELECT g, random(), random(), 5 * random(), 2 FROM generate_series(781, 799, 2) g"),
            ("update inside", "UPDATE sales SET y = y + 3, x1 = x1 / 2 WHERE id BETWEEN 760 AND 790"),
            ("delete inside", "DELETE FROM sales WHERE id BETWEEN 700 AND 740"),
            ("move a row", "UPDATE sales SET id = 1001 WHERE id = 720 OR id = 750"),
            ("append one", "INSERT INTO sales VALUES (1003, 0.5, 0.5, 9.0, 0)"),
        ]
        for what, statement in steps:
            conn.execute(statement)
            assert d.pending() == 1, what
            outcome = d.refresh()
            assert outcome.refreshed, what
            assert d.pending() == 0
            assert_exact_linear(store, d, 100, other)
            nb.refresh()
            rows = window_rows(conn, 150, ("x1", "x2", "label"))
            ref = GaussianNB(var_smoothing=1e-9).fit(rows[:, :2], rows[:, 2].astype(int))
            got = nb.model
            assert rel_err(got.theta_, ref.theta_) < TOL and rel_err(got.var_, ref.var_) < 1e-7
            assert (got.predict(rows[:, :2]) == ref.predict(rows[:, :2])).all()

        # a write older than the window's lower end never changes the model, and records no version
        before = d.versions()
        coef = d.model.coef_.copy()
        conn.execute("UPDATE sales SET y = y + 100 WHERE id < 100")
        outcome = d.refresh()
        assert outcome.version is None
        assert len(d.versions()) == len(before)
        assert np.array_equal(d.model.coef_, coef)
        assert_exact_linear(store, d, 100, other)
    check_catalog(conn)
    # each refresh replaced the previous window's summary: the catalog does not grow with the stream
    assert conn.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0] <= 4


def test_a_refresh_racing_a_commit_never_mixes_two_snapshots(store, dsn, monkeypatch):
    """A write that moves a row window (an append) and lands inside it (a late row) commits while a refresh
    runs, between the window's resolution and the statistics' read. The refresh holds the source lock from
    its first statement, so the writer waits for it: the model is the exact model of the table before the
    write (not the old window's range over the new rows, which is neither state), the write stays pending,
    and the next refresh makes the model exact on the table after it."""
    import threading

    from modelstore.deploy import refresh as refresh_module

    conn = store.conn
    d = store.deploy("race", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id", window=100)
    conn.execute("INSERT INTO sales VALUES (1001, 0.5, 0.5, 1.0, 0)")  # a change to refresh, as in the worker
    before = window_rows(conn, 100)
    write = "INSERT INTO sales VALUES (1003, 0.3, 0.9, 50.0, 0), (781, 0.8, 0.1, -40.0, 1)"
    writer = psycopg.connect(dsn, autocommit=True)
    watcher = psycopg.connect(dsn, autocommit=True)
    states = []
    real_bounds = refresh_module._bounds  # the window's ends, once read: the statistics are read next

    def bounds_then_commit_elsewhere(*args, **kwargs):
        bounds = real_bounds(*args, **kwargs)
        thread = threading.Thread(target=lambda: writer.execute(write))
        thread.start()
        states.append(thread)
        for _ in range(400):  # until the write has committed or waits on a lock (at most ~20 s)
            thread.join(0.05)
            waiting = watcher.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                                      [writer.info.backend_pid]).fetchone()[0]
            if not thread.is_alive() or waiting:
                states.append("committed" if not thread.is_alive() else "waiting")
                break
        return bounds

    monkeypatch.setattr(refresh_module, "_bounds", bounds_then_commit_elsewhere)
    try:
        outcome = d.refresh()
    finally:
        monkeypatch.setattr(refresh_module, "_bounds", real_bounds)
        states[0].join(30)
        writer.close()
        watcher.close()
    after = window_rows(conn, 100)
    model = d.model
    got = np.r_[model.intercept_, model.coef_]
    # the exact model of one state of the table: before the write or after it, never a mixture
    exact = [rel_err(got, ols(rows[:, :2], rows[:, 2])) < TOL for rows in (before, after)]
    assert outcome.refreshed and any(exact), "the refresh mixed two snapshots"
    # here: before it, since the writer waited for the refresh's source lock
    assert states[1] == "waiting" and exact[0] and model.n_obs == 100
    # the write is not lost: it is pending, and the next refresh absorbs it exactly
    assert d.pending() == 1
    assert d.refresh().refreshed
    assert rel_err(np.r_[d.model.intercept_, d.model.coef_], ols(after[:, :2], after[:, 2])) < TOL
    assert d.pending() == 0
    check_catalog(conn)


def test_refresh_after_truncate_and_a_filtered_deployment_take_the_planned_path(store):
    """Window arithmetic needs the previous window's summary (a TRUNCATE forgets it) and no filter: then the
    refresh resolves the window from scratch and fits it through the planner, and is as exact."""
    conn = store.conn
    d = store.deploy("t1", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id", window=50)
    f = store.deploy("f1", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id", window=80,
                     where="label >= 1")
    conn.execute("INSERT INTO sales SELECT g, random(), random(), 4 * random(), 1 FROM generate_series(802, 840, 2) g")
    outcome = f.refresh()
    assert outcome.refreshed and "previous window" not in outcome.detail
    lo = conn.execute("SELECT id FROM sales ORDER BY id DESC OFFSET 79 LIMIT 1").fetchone()[0]
    rows = np.array(conn.execute("SELECT x1, x2, y FROM sales WHERE id >= %s AND label >= 1", [lo]).fetchall(),
                    dtype=float)
    assert rel_err(np.r_[f.model.intercept_, f.model.coef_], ols(rows[:, :2], rows[:, 2])) < TOL
    assert "previous window" in d.refresh().detail  # window arithmetic
    conn.execute("TRUNCATE sales")
    conn.execute("INSERT INTO sales SELECT g, random(), random(), 2 + random(), 0 FROM generate_series(1, 70) g")
    outcome = d.refresh()
    assert outcome.refreshed and "previous window" not in outcome.detail
    rows = window_rows(conn, 50)
    assert d.model.n_obs == 50
    assert rel_err(np.r_[d.model.intercept_, d.model.coef_], ols(rows[:, :2], rows[:, 2])) < TOL
    conn.execute("INSERT INTO sales SELECT g, random(), random(), 2 + random(), 0 FROM generate_series(71, 75) g")
    assert "previous window" in d.refresh().detail  # its summary is stored again: arithmetic again
    rows = window_rows(conn, 50)
    assert rel_err(np.r_[d.model.intercept_, d.model.coef_], ols(rows[:, :2], rows[:, 2])) < TOL
    check_catalog(conn)


def test_window_every_row_and_plan_reuses_statistics(store, dsn):
    conn = store.conn
    conn.execute("INSERT INTO sales SELECT g, random(), random(), random(), 0 FROM generate_series(1001, 100000) g")
    conn.execute("ANALYZE sales")
    d = store.deploy("all_rows", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id")
    for k in range(3):
        conn.execute("INSERT INTO sales SELECT g, random(), random(), random(), 0 FROM generate_series(%s::int, %s::int) g",
                     [200000 + 10 * k, 200009 + 10 * k])
        outcome = d.refresh()
        # the refresh reads the new rows only: the stored window + a scan of the appended ones
        assert "10 rows scanned" in outcome.detail, outcome.detail
        rows = window_rows(conn, None)
        assert rel_err(np.r_[d.model.intercept_, d.model.coef_], ols(rows[:, :2], rows[:, 2])) < TOL


@pytest.mark.parametrize("kind", ["timestamp", "timestamptz", "date"])
def test_sliding_time_window_from_newest_row(dsn, kind):
    with modelstore.Store(dsn) as store:
        conn = store.conn
        step = "1 hour" if kind != "date" else "1 day"
        conn.execute(f"CREATE TABLE public.ev (ts {kind}, x float8, y float8)")
        conn.execute("CREATE INDEX ON public.ev (ts)")
        conn.execute(f"""INSERT INTO public.ev SELECT '2024-01-01'::{kind} + g * '{step}'::interval,
                         g % 7, 2 * (g % 7) + (g % 3) + g / 10.0 FROM generate_series(0, 99) g""")
        d = store.deploy("ev", "linear", table="public.ev", target="y", features=["x"], order_by="ts",
                         window="24 hours" if kind != "date" else "10 days")
        lower = "max(ts) - '24 hours'::interval" if kind != "date" else "max(ts) - 10"

        def check():
            rows = np.array(conn.execute(f"SELECT x, y FROM public.ev WHERE ts >= (SELECT {lower} FROM public.ev)")
                            .fetchall(), dtype=float)
            assert rel_err(np.r_[d.model.intercept_, d.model.coef_], ols(rows[:, :1], rows[:, 1])) < TOL
            return len(rows)

        n0 = check()
        assert n0 == (25 if kind != "date" else 11)
        for k in range(3):  # new rows push old ones out
            conn.execute(f"INSERT INTO public.ev SELECT '2024-01-01'::{kind}  + g * '{step}'::interval, g %% 5, g %% 11 "
                         f"FROM generate_series(%s::int, %s::int) g", [100 + 5 * k, 104 + 5 * k])
            d.refresh()
            assert check() == n0


def test_time_window_anchored_at_now_slides_without_writes(dsn):
    with modelstore.Store(dsn) as store:
        conn = store.conn
        conn.execute("CREATE TABLE public.live (ts timestamptz, x float8, y float8)")
        conn.execute("""INSERT INTO public.live SELECT now() - g * interval '2 seconds', g % 5, (g % 5) * (1 + g)
                        FROM generate_series(0, 59) g""")
        store.cost_model  # calibrated before the clock matters
        d = store.deploy("live", "linear", table="live", target="y", features=["x"], order_by="ts",
                         window="30 seconds", window_anchor="now")
        n_before = d.model.n_obs
        assert 10 <= n_before <= 16
        conn.execute("SELECT pg_sleep(2.5)")
        outcome = d.refresh()  # no write, but the window moved: rows slid out
        assert outcome.refreshed
        rows = np.array(conn.execute(
            "SELECT x, y FROM public.live WHERE ts >= %s::timestamptz", [d.info["lo"]]).fetchall(), dtype=float)
        assert d.model.n_obs == len(rows) < n_before
        assert rel_err(np.r_[d.model.intercept_, d.model.coef_], ols(rows[:, :1], rows[:, 1])) < TOL


def test_versions_rollback_and_strategies(store, dsn):
    conn = store.conn
    d = store.deploy("v", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id", window=50)
    assert d.version == 1
    for k in range(3):
        conn.execute("INSERT INTO sales SELECT g, random(), random(), 10 * random(), 0 FROM generate_series(%s::int, %s::int) g",
                     [1000 + 10 * k, 1004 + 10 * k])
        d.refresh()
    frame = d.versions()
    assert list(frame.version) == [1, 2, 3, 4] and list(frame.active) == [False, False, False, True]
    assert set(frame.reason) == {"deployed", "changed"}
    assert d.version == 4
    v1 = frame.iloc[0]
    with psycopg.connect(dsn, autocommit=True) as other:
        latest = other.execute("SELECT modelstore.predict('v', ARRAY[0.5, 0.5])").fetchone()[0]
        assert store.rollback("v", 1) == 1
        pinned = other.execute("SELECT modelstore.predict('v', ARRAY[0.5, 0.5])").fetchone()[0]
        assert pinned != latest and d.version == 1
        model_v1 = modelstore.families.family("linear").from_state(
            conn.execute("SELECT state FROM modelstore.deployment_versions WHERE version = 1").fetchone()[0])
        assert pinned == pytest.approx(float(model_v1.predict(np.array([[0.5, 0.5]]))[0]), rel=1e-12)
        assert v1.rows == 50
        # a pinned deployment still records versions, and keeps serving the pinned one
        conn.execute("INSERT INTO sales VALUES (2001, 0.1, 0.2, 50.0, 0)")
        outcome = d.refresh()
        assert outcome.version == 5 and outcome.active_version == 1
        assert other.execute("SELECT modelstore.predict('v', ARRAY[0.5, 0.5])").fetchone()[0] == pinned
        # SQL rollback to another version, then unpin: back to the newest exact model
        assert other.execute("SELECT modelstore.rollback('v', 2)").fetchone()[0] == 2
        assert d.version == 2
        other.execute("SELECT modelstore.rollback('v', NULL)")
        d.refresh()
        assert d.version == 5
        rows = window_rows(conn, 50)
        assert rel_err(np.r_[d.model.intercept_, d.model.coef_], ols(rows[:, :2], rows[:, 2])) < TOL
        with pytest.raises(psycopg.errors.NoDataFound, match="no version 99"):
            other.execute("SELECT modelstore.rollback('v', 99)")
    # ML.PREDICT scores the active version too
    got = store.query("SELECT * FROM ML.PREDICT(MODEL v, (SELECT 0.5::float8 AS x1, 0.5::float8 AS x2))")
    assert got.predicted_y[0] == pytest.approx(float(d.model.predict(np.array([[0.5, 0.5]]))[0]), rel=1e-12)
    assert list(store.deployments().name) == ["v"]


def test_version_policy_tolerance_and_pinned_strategy(store):
    conn = store.conn
    d = store.deploy("tol", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id",
                     record_tolerance=0.5)
    conn.execute("INSERT INTO sales VALUES (1001, 0.5, 0.5, 3.0, 0)")  # a small move: served, not recorded
    outcome = d.refresh()
    assert outcome.refreshed and outcome.version is None and len(d.versions()) == 1
    rows = window_rows(conn, None)
    assert rel_err(np.r_[d.model.intercept_, d.model.coef_], ols(rows[:, :2], rows[:, 2])) < TOL
    conn.execute("UPDATE sales SET y = -5 * x1 * 40")  # a large one: recorded
    assert d.refresh().version == 2

    p = store.deploy("pin", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id",
                     window=30, strategy="pinned")
    conn.execute("INSERT INTO sales VALUES (1005, 0.5, 0.5, 30.0, 0)")
    outcome = p.refresh()
    assert outcome.version == 2 and outcome.active_version == 1 and p.version == 1


def test_prequential_figures_by_hand(dsn):
    """A small stream: each batch is scored by the version serving when it arrived, before it is absorbed."""
    with modelstore.Store(dsn) as store:
        conn = store.conn
        conn.execute("CREATE TABLE public.s (id int PRIMARY KEY, x float8, y float8, c int)")
        conn.execute("INSERT INTO public.s VALUES (1, 0, 1, 0), (2, 1, 3, 0), (3, 2, 4, 1), (4, 3, 8, 1), (5, 4, 9, 1)")
        d = store.deploy("s", "linear", table="public.s", target="y", features=["x"], order_by="id")
        nb = store.deploy("s_nb", "gaussian_nb", table="public.s", target="c", features=["x"], order_by="id")
        data = np.array(conn.execute("SELECT x, y, c FROM public.s ORDER BY id").fetchall(), dtype=float)
        batches = [[(6, 5.0, 10.0, 1), (7, 6.0, 14.0, 1), (8, 0.5, 0.0, 1)], [(9, 7.0, 15.0, 0), (10, 2.5, 6.0, 1)]]
        expected_lin, expected_nb = [], []
        for batch in batches:
            b = np.array([r[1:] for r in batch], dtype=float)
            w = ols(data[:, :1], data[:, 1])  # the serving model: numpy's fit of the rows so far
            residual = b[:, 1] - (w[0] + w[1] * b[:, 0])
            expected_lin.append((len(b), float(residual @ residual), float(np.abs(residual).sum())))
            ref = GaussianNB(var_smoothing=1e-9).fit(data[:, :1], data[:, 2].astype(int))
            expected_nb.append((len(b), int((ref.predict(b[:, :1]) != b[:, 2]).sum())))
            conn.cursor().executemany("INSERT INTO public.s VALUES (%s, %s, %s, %s)", batch)
            d.refresh()
            nb.refresh()
            data = np.vstack([data, b])
        lin = d.metrics()
        assert list(lin.version) == [1, 2] and lin.active.all()
        for (n, sq, ab), row in zip(expected_lin, lin.itertuples()):
            assert row.rows == n
            assert row.loss_sum == pytest.approx(sq, rel=1e-9) and row.abs_sum == pytest.approx(ab, rel=1e-9)
        got_nb = nb.metrics()
        assert [(r.rows, r.loss_sum) for r in got_nb.itertuples()] == [(n, float(e)) for n, e in expected_nb]
        # per time bucket: one bucket, the active versions' sums
        bucket = d.metrics(bucket="day")
        assert bucket.rows.sum() == 5
        assert bucket.loss_sum.sum() == pytest.approx(sum(e[1] for e in expected_lin), rel=1e-9)
        versions = d.versions()
        assert versions.scored_rows.tolist()[:2] == [3, 2]
        # ML.EVALUATE of a deployment over a time range: the prequential figures per version (and bucket)
        got = store.query("SELECT * FROM ML.EVALUATE(MODEL s, STRUCT(TIMESTAMP '2000-01-01' AS since, "
                          "TIMESTAMP '2999-01-01' AS until))")
        assert list(got.version) == [1, 2] and list(got.rows) == [3, 2]
        for (n, sq, ab), row in zip(expected_lin, got.itertuples()):
            assert row.mean_squared_error == pytest.approx(sq / n, rel=1e-9)
            assert row.mean_absolute_error == pytest.approx(ab / n, rel=1e-9)
        assert store.query("SELECT * FROM ML.EVALUATE(MODEL s, STRUCT('2999-01-01' AS since))").empty
        by_hour = store.query("SELECT * FROM ML.EVALUATE(MODEL s_nb, STRUCT('hour' AS bucket))")
        assert list(by_hour.columns[:2]) == ["bucket", "version"] and by_hour.rows.sum() == 5


def test_page_hinkley_detects_a_shift():
    from modelstore.deploy.monitor import page_hinkley

    state, alarms = {}, []
    for t in range(200):
        state, drift = page_hinkley(state, 1.0 if t < 100 else 3.0, threshold=10.0)
        alarms.append(drift)
    assert not any(alarms[:100]) and any(alarms[100:120])


def test_drift_is_recorded_as_an_event(dsn):
    with modelstore.Store(dsn) as store:
        conn = store.conn
        conn.execute("CREATE TABLE public.d (id int PRIMARY KEY, x float8, y float8)")
        conn.execute("INSERT INTO public.d SELECT g, g % 10, 2 * (g % 10) FROM generate_series(1, 100) g")
        d = store.deploy("drifting", "linear", table="public.d", target="y", features=["x"], order_by="id", window=50)
        for k in range(12):  # the relation changes: the prequential error jumps
            slope = 2 if k < 6 else -40
            conn.execute("INSERT INTO public.d SELECT g, g %% 10, %s * (g %% 10) FROM generate_series(%s::int, %s::int) g",
                         [slope, 101 + 10 * k, 110 + 10 * k])
            d.refresh()
        events = d.events()
        assert "drift" in set(events.kind)


# -- bad input: a named error, and nothing written -----------------------------------------------------

def _catalog(conn):
    return conn.execute(
        "SELECT (SELECT count(*) FROM modelstore.deployments), (SELECT count(*) FROM modelstore.fitted_models), "
        "(SELECT count(*) FROM modelstore.statistics), (SELECT count(*) FROM modelstore.deployment_versions), "
        "(SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgname = 'modelstore_deploy')").fetchone()


@pytest.mark.parametrize("window, error, message", [
    ("30 fortnights", WindowError, "unknown unit 'fortnights'"),
    ("30 days", WindowError, "needs a date or timestamp ordering column"),
    (0, WindowError, "at least 1 row"),
    ("0 rows", WindowError, "at least 1 row"),
    (-5, WindowError, "at least 1 row"),
    ("soon", WindowError, "must look like"),
])
def test_bad_windows(store, window, error, message):
    before = _catalog(store.conn)
    with pytest.raises(error, match=message):
        store.deploy("bad", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id", window=window)
    assert _catalog(store.conn) == before


def test_bad_deployments(store):
    conn = store.conn
    conn.execute("CREATE VIEW public.sales_v AS SELECT * FROM public.sales")
    store.fit("linear", table="sales", target="y", features=["x1", "x2"], order_by="id", name="plain")
    store.deploy("real", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id")
    before = _catalog(conn)
    with pytest.raises(SourceKindError, match="is a view"):
        store.deploy("onview", "linear", table="sales_v", target="y", features=["x1", "x2"], order_by="id")
    with pytest.raises(VersionNotFoundError, match="no version 7"):
        store.rollback("real", 7)
    with pytest.raises(NotDeployedError, match="'plain' is a plain model"):
        store.undeploy("plain")
    with pytest.raises(NotDeployedError, match="no deployment named 'nothing'"):
        store.rollback("nothing", 1)
    with pytest.raises(modelstore.errors.UnknownColumnError, match="group_by"):
        store.deploy("g", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id", group_by="nope")
    with pytest.raises(modelstore.errors.DeploymentError, match="group_by"):
        store.deploy("gs", "sgd_linear", table="sales", target="y", features=["x1", "x2"], order_by="id",
                     group_by="label")
    with pytest.raises(modelstore.errors.DeploymentError, match="exists"):
        store.deploy("real", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id")
    with pytest.raises(modelstore.errors.InputError, match="already exists"):
        store.deploy("plain", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id")
    assert _catalog(conn) == before
    store.undeploy("real")
    assert _catalog(conn)[0] == 0 and _catalog(conn)[4] == 0  # the trigger went with the last deployment
    # writes to an undeployed table still work
    conn.execute("INSERT INTO sales VALUES (5000, 1, 1, 1, 1)")


def test_empty_window_keeps_serving(store):
    conn = store.conn
    d = store.deploy("e", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id", window=40)
    coef = d.model.coef_.copy()
    conn.execute("DELETE FROM sales")
    outcome = d.refresh()
    assert not outcome.refreshed and "RangeError" in outcome.detail
    assert np.array_equal(d.model.coef_, coef) and d.version == 1
    assert "error" in set(d.events().kind)
    assert d.pending() == 0


def test_model_language_deploys_and_lists_versions(store):
    from modelstore.language import LanguageError

    conn = store.conn
    model = store.query("""
        CREATE MODEL lang OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], order_by = 'id',
                                   window = 100, refresh = 'continuous')
        AS SELECT x1, x2, y FROM sales WHERE label >= 0""")
    assert model.n_obs == 100
    assert list(store.deployments().name) == ["lang"]
    conn.execute("INSERT INTO sales VALUES (1001, 0.5, 0.5, 30.0, 1)")
    store.deployment("lang").refresh()
    info = store.query("SELECT * FROM ML.TRAINING_INFO(MODEL lang)")
    assert list(info.version) == [1, 2] and list(info.active) == [False, True]
    assert list(info.reason) == ["deployed", "changed"]
    got = store.query("SELECT * FROM ML.PREDICT(MODEL lang, (SELECT x1, x2 FROM sales WHERE id = 1001))")
    rows = window_rows(conn, 100)
    want = ols(rows[:, :2], rows[:, 2])
    assert got.predicted_y[0] == pytest.approx(want[0] + 0.5 * want[1] + 0.5 * want[2], rel=1e-9)
    # a time window in the language: the same named error as in Python
    with pytest.raises(WindowError, match="date or timestamp"):
        store.query("CREATE MODEL t2 OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], order_by = 'id', "
                    "window = '30 days', refresh = 'continuous') AS SELECT x1, y FROM sales")
    with pytest.raises(LanguageError, match="refresh must be 'continuous'"):
        store.query("CREATE MODEL t3 OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], order_by = 'id', "
                    "window = 10) AS SELECT x1, y FROM sales")
    with pytest.raises(LanguageError, match="range is its window"):
        store.query("CREATE MODEL t4 OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], order_by = 'id', "
                    "refresh = 'continuous') AS SELECT x1, y FROM sales WHERE id > 50")
    store.query("DROP MODEL lang")
    assert store.deployments().empty
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'modelstore_deploy'").fetchone()[0] == 0


def test_a_tables_deployments_refreshed_together_stay_exact(store, dsn):
    """refresh_together (what the worker does when a change wakes it): one transaction, one claim and one
    pipelined read for a table's deployments; after each commit both equal numpy / scikit-learn on their own
    windows, and a deployment another session holds is skipped, not waited for nor refreshed twice."""
    from modelstore.deploy.refresh import refresh_together

    conn = store.conn
    d = store.deploy("together_lin", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id",
                     window=100)
    nb = store.deploy("together_nb", "gaussian_nb", table="sales", target="label", features=["x1", "x2"],
                      order_by="id", window="150 rows")
    ids = [r[0] for r in conn.execute("SELECT deployment_id FROM modelstore.deployments "
                                      "WHERE name IN ('together_lin', 'together_nb') ORDER BY deployment_id")]
    steps = [
        "INSERT INTO sales SELECT g, random(), random(), 1 + 2 * random(), 1 FROM generate_series(802, 830, 2) g",
        "INSERT INTO sales SELECT g, random(), random(), 5 * random(), 2 FROM generate_series(781, 799, 2) g",
        "UPDATE sales SET y = y + 3, x1 = x1 / 2 WHERE id BETWEEN 760 AND 790",
        "DELETE FROM sales WHERE id BETWEEN 700 AND 740",
        "INSERT INTO sales VALUES (1003, 0.5, 0.5, 9.0, 0)",
    ]
    with psycopg.connect(dsn, autocommit=True) as other:
        for statement in steps:
            conn.execute(statement)
            outcomes = refresh_together(store, ids)
            assert sorted(o.name for o in outcomes) == ["together_lin", "together_nb"], statement
            assert all(o.refreshed for o in outcomes), outcomes
            assert d.pending() == 0 and nb.pending() == 0
            assert_exact_linear(store, d, 100, other)
            rows = window_rows(conn, 150, ("x1", "x2", "label"))
            ref = GaussianNB(var_smoothing=1e-9).fit(rows[:, :2], rows[:, 2].astype(int))
            got = nb.model
            assert rel_err(got.theta_, ref.theta_) < TOL and rel_err(got.var_, ref.var_) < 1e-7
        # nothing pending: nothing refreshed, no version recorded
        assert not any(o.refreshed for o in refresh_together(store, ids))
        # another session holds the Gaussian NB deployment's row (as a refreshing worker does): skipped
        conn.execute("INSERT INTO sales VALUES (1005, 0.25, 0.75, 4.0, 1)")
        with other.transaction():
            other.execute("SELECT 1 FROM modelstore.deployments WHERE name = 'together_nb' FOR NO KEY UPDATE")
            outcomes = refresh_together(store, ids)
        assert [o.name for o in outcomes] == ["together_lin"] and outcomes[0].refreshed
        assert nb.pending() == 1
        assert_exact_linear(store, d, 100, other)
        assert [o.name for o in refresh_together(store, ids) if o.refreshed] == ["together_nb"]
        assert nb.pending() == 0
    check_catalog(conn)
