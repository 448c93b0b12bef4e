"""Round trips per request, counted on the wire: libpq's protocol trace of the store's connection
(every Sync or simple Query message the client sends is one wait for the server)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
import pytest

import modelstore
from modelstore.planner.costs import CostModel
from tests.helpers import load_frame

N = 4000
FEATURES = ["x1", "x2", "x3"]


@pytest.fixture(scope="module")
def store(module_dsn):
    s = modelstore.connect(module_dsn)
    s._cost_model = CostModel.default()
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(N, 3)), columns=FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["y"] = frame.x1 - 2 * frame.x2 + rng.normal(size=N)
    load_frame(s.conn, "rt", frame)
    s.conn.execute("CREATE INDEX ON rt (id)")
    s.conn.execute("ANALYZE rt")
    yield s
    s.close()


def traced(store, fn):
    """(fn's result, the statements sent, the round trips) while ``fn`` runs."""
    fd, path = tempfile.mkstemp()
    try:
        store.conn.pgconn.trace(fd)
        try:
            out = fn()
        finally:
            store.conn.pgconn.untrace()
        with open(path) as fh:
            lines = [line.split("\t") for line in fh.read().splitlines()]
    finally:
        os.close(fd)
        os.unlink(path)
    sent = [p for p in lines if len(p) > 3 and p[1] == "F"]
    statements = [p[4] if len(p) > 4 else "" for p in sent if p[3] in ("Parse", "Query")]
    return out, statements, sum(1 for p in sent if p[3] in ("Sync", "Query"))


def fit(store, lo, hi, **kw):
    return store.fit("linear", table="rt", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi, **kw)


def test_planning_is_one_round_trip_without_an_index(store):
    fit(store, 100, 2000)
    fit(store, 1500, 3500)
    source_id = store.conn.execute("SELECT source_id FROM modelstore.sources WHERE table_name = 'rt'").fetchone()[0]
    descriptor = store._describe("linear", "rt", "y", FEATURES, "id", 120, 3400, None, {})[0]
    store._plan(source_id, descriptor)  # row estimates cached
    plan, statements, trips = traced(store, lambda: store._plan(source_id, descriptor))
    assert plan.stored and plan.graph["relevant"] == 2 and not plan.graph["truncated"]
    # the index lookup and the session's catalog (its version, or the arrays) in one pipelined round trip,
    # whatever the catalog's size (docs/planner.md, "The session's catalog cache")
    assert trips == 1, statements
    assert any("plan_catalog" in s for s in statements) and any("stat_indexes" in s for s in statements)
    again, statements, trips = traced(store, lambda: store._plan(source_id, descriptor))
    assert trips == 1 and again.graph["catalog_hit"] and again.steps == plan.steps


def test_an_unnamed_model_is_numbered_inside_its_insert(store):
    fit(store, 10, 500)
    model, statements, trips = traced(store, lambda: fit(store, 10, 500))
    assert model.name.startswith("rt_linear_")
    assert not any("nextval" in s and "INSERT" not in s for s in statements), statements
    # a request answered by one stored summary: BEGIN + modelstore.request_context, then INSERT + COMMIT
    assert trips <= 2, statements
    assert any("request_context" in s for s in statements)


def test_a_stored_answer_with_the_index_built_is_two_round_trips(store):
    store.build_index("rt", "id", FEATURES, "y", chunk_rows=200)
    first = fit(store, 333, 2777)  # index spans and partial-chunk scans: stored for reuse
    model, statements, trips = traced(store, lambda: fit(store, 333, 2777))
    assert [s.op for s in model.plan.plan.steps] == ["stored"]
    assert trips <= 2, statements
    np.testing.assert_allclose(model.coef_, first.coef_, rtol=1e-12)
    # the index plan itself: BEGIN + request_context (the source lock, then the context) + the partial-chunk
    # pieces' aggregate, then the statistics' and the model's INSERT + COMMIT (docs/planner.md)
    model, statements, trips = traced(store, lambda: fit(store, 1333, 3777))
    assert {s.op for s in model.plan.plan.steps} >= {"index", "scan"}, model.plan
    assert trips <= 2, statements


def reference(store, lo, hi):
    """(intercept and coefficients by numpy's least squares, rows) over id in [lo, hi]."""
    rows = np.array(store.conn.execute(
        "SELECT x1, x2, x3, y FROM rt WHERE id BETWEEN %s AND %s", [lo, hi]).fetchall(), dtype=float)
    X = np.c_[np.ones(len(rows)), rows[:, :3]]
    return np.linalg.lstsq(X, rows[:, 3], rcond=None)[0], len(rows)


@pytest.mark.parametrize("lo, hi", [(211, 3089), (1250, 1333), (1401, 1799), (17, 3999)])
def test_an_index_plan_in_two_round_trips_is_exact_and_stored(store, lo, hi):
    store.build_index("rt", "id", FEATURES, "y", chunk_rows=200)
    fit(store, 5, 60)  # the table described (the fast path builds the request from that description)
    model, statements, trips = traced(store, lambda: fit(store, lo, hi))
    assert trips <= 2, statements
    expected, rows = reference(store, lo, hi)
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], expected, rtol=1e-9, atol=1e-12)
    assert model.n_obs == rows
    # the request's statistics are stored, and the model row and its plan name them
    stats_id = model.plan.stored_stats_id
    assert stats_id is not None
    row = store.conn.execute(
        "SELECT s.lo, s.hi, s.n, m.stats_id, (m.plan ->> 'stored_stats_id')::bigint FROM modelstore.statistics s "
        "JOIN modelstore.fitted_models m ON m.stats_id = s.stats_id WHERE s.stats_id = %s AND m.name = %s",
        [stats_id, model.name]).fetchone()
    assert row == (str(lo), str(hi), rows, stats_id, stats_id)
    # asked again: one stored summary, no lock (docs/freshness.md)
    again, statements, trips = traced(store, lambda: fit(store, lo, hi))
    assert [s.op for s in again.plan.plan.steps] == ["stored"] and trips <= 2
    assert not any("UPDATE modelstore.sources" in s for s in statements)


def test_a_taken_name_on_the_two_round_trip_path_writes_nothing(store):
    store.build_index("rt", "id", FEATURES, "y", chunk_rows=200)
    fit(store, 1000, 1100, name="rt_taken", replace=True)
    count = "SELECT count(*) FROM modelstore.statistics WHERE lo = '1431' AND hi = '2777'"
    with pytest.raises(modelstore.InputError, match="already exists"):
        fit(store, 1431, 2777, name="rt_taken")
    assert store.conn.execute(count).fetchone()[0] == 0
    assert store.conn.info.transaction_status == 0  # idle: the failed transaction was rolled back
    assert store.model("rt_taken").plan.plan.descriptor.range.lo == 1000
    # replace=True on the same path upserts the model and stores the statistics
    replaced = fit(store, 1431, 2777, name="rt_taken", replace=True)
    assert store.conn.execute(count).fetchone()[0] == 1
    assert store.model("rt_taken").plan.stored_stats_id == replaced.plan.stored_stats_id


def test_a_date_ordered_index_plan_is_two_round_trips(store):
    rng = np.random.default_rng(5)
    n = 1500
    frame = pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "b"])
    frame.insert(0, "day", pd.date_range("2020-01-01", periods=n, freq="D").date)
    frame["y"] = 3 * frame.a - frame.b + rng.normal(size=n)
    load_frame(store.conn, "rt_days", frame, types={"day": "date"})
    store.conn.execute("CREATE INDEX ON rt_days (day)")
    store.build_index("rt_days", "day", ["a", "b"], "y", chunk_rows=100)
    import datetime as dt

    def fit_days(lo, hi):
        return store.fit("linear", table="rt_days", target="y", features=["a", "b"], order_by="day", lo=lo, hi=hi)

    fit_days(dt.date(2020, 1, 1), dt.date(2020, 1, 20))
    lo, hi = dt.date(2020, 3, 17), dt.date(2023, 5, 2)
    model, statements, trips = traced(store, lambda: fit_days(lo, hi))
    assert {s.op for s in model.plan.plan.steps} >= {"index", "scan"} and trips <= 2, statements
    sel = frame[(frame.day >= lo) & (frame.day <= hi)]
    expected = np.linalg.lstsq(np.c_[np.ones(len(sel)), sel[["a", "b"]]], sel.y, rcond=None)[0]
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], expected, rtol=1e-9, atol=1e-12)


def test_a_from_scratch_plan_is_two_round_trips_planned_once_and_exact(store, monkeypatch):
    rng = np.random.default_rng(11)
    n = 3000
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)
    frame.insert(0, "id", np.arange(1, n + 1))
    frame["y"] = 2 * frame.x1 + frame.x3 + rng.normal(size=n)
    load_frame(store.conn, "rt_scratch", frame)

    def fit_s(lo, hi):
        return store.fit("linear", table="rt_scratch", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)

    fit_s(1, 50)  # the table described, its source recorded and captured
    planned = []
    plan = store._plan
    monkeypatch.setattr(store, "_plan", lambda *a, **kw: planned.append(a) or plan(*a, **kw))
    # nothing stored overlaps: BEGIN + request_context (the lock taken) + the from-scratch scan, pipelined;
    # then the statistics' and the model's INSERT + COMMIT
    model, statements, trips = traced(store, lambda: fit_s(700, 2400))
    assert [s.op for s in model.plan.plan.steps] == ["scan"], model.plan
    assert trips <= 2, statements
    assert len(planned) == 1
    assert any("UPDATE modelstore.sources" in s for s in statements) or any("request_context" in s for s in statements)
    sel = frame[(frame.id >= 700) & (frame.id <= 2400)]
    expected = np.linalg.lstsq(np.c_[np.ones(len(sel)), sel[FEATURES]], sel.y, rcond=None)[0]
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], expected, rtol=1e-9, atol=1e-12)
    assert model.n_obs == len(sel)
    stats_id = model.plan.stored_stats_id
    row = store.conn.execute("SELECT lo, hi, n FROM modelstore.statistics WHERE stats_id = %s", [stats_id]).fetchone()
    assert row == ("700", "2400", len(sel))
    # a gap plan (the stored summary plus the scans around it): one more round trip for the scans, planned once
    planned.clear()
    model, statements, trips = traced(store, lambda: fit_s(500, 2900))
    assert "stored" in {s.op for s in model.plan.plan.steps} and "scan" in {s.op for s in model.plan.plan.steps}
    assert trips <= 3, statements
    assert len(planned) == 1
    sel = frame[(frame.id >= 500) & (frame.id <= 2900)]
    expected = np.linalg.lstsq(np.c_[np.ones(len(sel)), sel[FEATURES]], sel.y, rcond=None)[0]
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], expected, rtol=1e-9, atol=1e-12)
    assert model.plan.stored_stats_id is not None and model.plan.stored_stats_id != stats_id


def test_an_unnamed_model_commits_without_waiting_for_the_wal_flush_and_a_named_one_waits(store):
    """docs/freshness.md, "Asynchronous commit of derived rows": a trigger on the models' table records the
    transaction's synchronous_commit as each model row is inserted."""
    conn = store.conn
    conn.execute("CREATE TABLE commit_seen (name text, sync text)")
    conn.execute("""
        CREATE FUNCTION commit_seen() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO public.commit_seen VALUES (NEW.name, current_setting('synchronous_commit'));
            RETURN NULL;
        END $$""")
    conn.execute("CREATE TRIGGER commit_seen AFTER INSERT ON modelstore.fitted_models "
                 "FOR EACH ROW EXECUTE FUNCTION commit_seen()")
    # the test cluster runs without durability (modelstore.server, ephemeral): the session asks for it
    conn.execute("SET synchronous_commit = on")
    conn.commit()
    try:
        unnamed_fast = fit(store, 210, 1400).name  # the two-round-trip path
        named_fast = fit(store, 220, 1400, name="kept_durably").name
        unnamed_usual = fit(store, 230, 1400, where="x1 > -10").name  # a filter: the usual path
        named_usual = fit(store, 240, 1400, where="x1 > -10", name="kept_durably_too").name
        with conn.transaction():  # a caller's own transaction keeps its durability
            inside = fit(store, 250, 1400).name
        seen = dict(conn.execute("SELECT name, sync FROM commit_seen").fetchall())
        assert seen == {unnamed_fast: "off", named_fast: "on", unnamed_usual: "off", named_usual: "on",
                        inside: "on"}
        # SET LOCAL: the session's own setting is untouched
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        conn.commit()
    finally:
        conn.execute("RESET synchronous_commit")
        conn.execute("DROP TRIGGER commit_seen ON modelstore.fitted_models")
        conn.execute("DROP FUNCTION commit_seen()")
        conn.execute("DROP TABLE commit_seen")
        conn.commit()


def reference_where(store, lo, hi, where):
    """numpy's least squares over id in [lo, hi] and ``where`` (a literal condition of this module)."""
    rows = np.array(store.conn.execute(
        "SELECT x1, x2, x3, y FROM rt WHERE id BETWEEN %s AND %s AND " + where, [lo, hi]).fetchall(), dtype=float)
    X = np.c_[np.ones(len(rows)), rows[:, :3]]
    return np.linalg.lstsq(X, rows[:, 3], rcond=None)[0], len(rows)


@pytest.mark.parametrize("where", ["x3 > 0", "x1 < 0.5 AND x2 > -1"])
def test_a_filtered_request_is_two_round_trips_from_scratch_and_stored(store, where):
    fit(store, 5, 60)  # the table described
    # nothing stored with this filter: the filter checked, the lock and the filtered from-scratch scan in the
    # first round trip; the statistics, the model and COMMIT in the second
    model, statements, trips = traced(store, lambda: fit(store, 150, 3150, where=where))
    assert [s.op for s in model.plan.plan.steps] == ["scan"], model.plan
    assert trips <= 2, statements
    expected, rows = reference_where(store, 150, 3150, where)
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], expected, rtol=1e-9, atol=1e-12)
    assert model.n_obs == rows
    filter_sql, n = store.conn.execute("SELECT filter_sql, n FROM modelstore.statistics WHERE stats_id = %s",
                                       [model.plan.stored_stats_id]).fetchone()
    assert filter_sql != "" and n == rows
    # asked again: the stored filtered summary, no lock
    again, statements, trips = traced(store, lambda: fit(store, 150, 3150, where=where))
    assert [s.op for s in again.plan.plan.steps] == ["stored"] and trips <= 2, statements
    assert not any("UPDATE modelstore.sources" in s for s in statements)
    np.testing.assert_allclose(again.coef_, model.coef_, rtol=1e-12)
    # a write inside the range drops the filtered summary (capture, docs/freshness.md): the next request scans
    # again, and sees the write
    store.conn.execute("UPDATE rt SET y = y + 100 WHERE id = (SELECT min(id) FROM rt WHERE id >= 151 AND " + where + ")")
    after = fit(store, 150, 3150, where=where)
    assert [s.op for s in after.plan.plan.steps] == ["scan"]
    expected, _ = reference_where(store, 150, 3150, where)
    np.testing.assert_allclose(np.r_[after.intercept_, after.coef_], expected, rtol=1e-9, atol=1e-12)
    store.conn.execute("UPDATE rt SET y = y - 100 WHERE id = (SELECT min(id) FROM rt WHERE id >= 151 AND " + where + ")")


def test_a_bad_filter_on_the_fast_path_is_named_and_writes_nothing(store):
    fit(store, 5, 60)
    count = "SELECT (SELECT count(*) FROM modelstore.fitted_models), (SELECT count(*) FROM modelstore.statistics)"
    before = store.conn.execute(count).fetchone()
    with pytest.raises(modelstore.errors.FilterError, match="not a valid condition"):
        fit(store, 100, 900, where="x1 > 'abc'")
    with pytest.raises(modelstore.errors.FilterError):
        fit(store, 100, 900, where="nosuchfunction(x1) > 0")
    assert store.conn.execute(count).fetchone() == before
    assert store.conn.info.transaction_status == 0  # idle: nothing left open
    # and the next good request still takes the fast path
    _, statements, trips = traced(store, lambda: fit(store, 100, 900, where="x2 < 0"))
    assert trips <= 2, statements


# -- timestamp and timestamptz ordering columns (whole keys in microseconds: request/cuts.py) ------------------

import datetime as dt  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from modelstore.request.cuts import cut_at, make_cut, whole_key, whole_keys  # noqa: E402
from modelstore.request.descriptor import bound_key  # noqa: E402

UTC = dt.timezone.utc


def ts_table(store, name, kind, *, year=2021, n=3000, seed=7):
    """``name`` (t timestamp or timestamptz, x1..x3, y): irregular times to the microsecond about ten minutes
    apart — about three weeks, across both daylight-saving changes of March 2021 — with some times shared by
    two rows (a cut between them is impossible). Returns the times in row order (UTC for timestamptz)."""
    rng = np.random.default_rng(seed)
    gaps = rng.integers(1, 1_200_000_000, size=n)
    gaps[rng.random(n) < 0.05] = 0
    start = dt.datetime(year, 3, 10, 0, 0, 0, 1, tzinfo=UTC if kind == "timestamptz" else None)
    times = [start + dt.timedelta(microseconds=int(u)) for u in np.cumsum(gaps)]
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)
    frame.insert(0, "t", pd.Series(times, dtype=object))
    frame["y"] = frame.x1 - 2 * frame.x2 + 0.5 * frame.x3 + rng.normal(size=n)
    load_frame(store.conn, name, frame, types={"t": kind})
    store.conn.execute(f"CREATE INDEX ON {name} (t)")
    store.conn.execute(f"ANALYZE {name}")
    return times


def fit_t(store, table, lo, hi, **kw):
    return store.fit("linear", table=table, target="y", features=FEATURES, order_by="t", lo=lo, hi=hi, **kw)


def reference_t(store, table, lo, hi, where=None):
    """numpy's least squares over the table's rows with t in [lo, hi] (and ``where``, a literal condition of
    this module), fetched by PostgreSQL itself."""
    rows = np.array(store.conn.execute(
        f"SELECT x1, x2, x3, y FROM {table} WHERE t BETWEEN %s AND %s" + (f" AND {where}" if where else ""),
        [lo, hi]).fetchall(), dtype=float)
    X = np.c_[np.ones(len(rows)), rows[:, :3]]
    return np.linalg.lstsq(X, rows[:, 3], rcond=None)[0], len(rows)


def assert_exact(store, table, model, lo, hi, where=None):
    expected, rows = reference_t(store, table, lo, hi, where)
    np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], expected, rtol=1e-9, atol=1e-12)
    assert model.n_obs == rows


def ops(model) -> list[str]:
    return [s.op for s in model.plan.plan.steps]


@pytest.mark.parametrize("kind", ["timestamp", "timestamptz"])
def test_a_timestamp_ordered_request_is_two_round_trips_from_scratch_stored_and_filtered(store, kind):
    table = f"rt_{kind}"
    times = ts_table(store, table, kind)
    us = dt.timedelta(microseconds=1)
    fit_t(store, table, times[0], times[40])  # the table described, its source recorded and captured
    # bounds with microseconds: one on a row's time (closed: that row is in), one a microsecond short of one
    lo, hi = times[700], times[2301] - us
    if kind == "timestamptz":  # a bound in another zone is the same instant
        lo = lo.astimezone(dt.timezone(dt.timedelta(hours=-4)))
    model, statements, trips = traced(store, lambda: fit_t(store, table, lo, hi))
    assert ops(model) == ["scan"] and trips <= 2, statements
    assert any("request_context" in s for s in statements)
    assert_exact(store, table, model, lo, hi)
    # the catalog keys the stored range as before: seconds since the epoch (UTC for timestamptz), to the µs
    keys = store.conn.execute("SELECT lo_key, hi_key FROM modelstore.statistics WHERE stats_id = %s",
                              [model.plan.stored_stats_id]).fetchone()
    assert keys == (bound_key(lo), bound_key(hi)) and keys[0] % 1 != 0
    # asked again: the stored summary, two round trips, no lock
    again, statements, trips = traced(store, lambda: fit_t(store, table, lo, hi))
    assert ops(again) == ["stored"] and trips <= 2, statements
    assert not any("UPDATE modelstore.sources" in s for s in statements)
    np.testing.assert_allclose(again.coef_, model.coef_, rtol=1e-12)
    # a range that meets the stored one only by the microsecond after it is a new component: from scratch
    after, statements, trips = traced(store, lambda: fit_t(store, table, times[2301], times[2900]))
    assert ops(after) == ["scan"] and trips <= 2, statements
    assert_exact(store, table, after, times[2301], times[2900])
    # both summaries and the scan between them (rows at times[2301] belong to the second only): exact
    both = fit_t(store, table, times[600], times[2900])
    assert "stored" in ops(both)
    assert_exact(store, table, both, times[600], times[2900])
    # a filtered request: from scratch, then stored, each in two round trips
    where = "x3 > 0"
    flo, fhi = times[150] + 3 * us, times[2750] + 7 * us
    filtered, statements, trips = traced(store, lambda: fit_t(store, table, flo, fhi, where=where))
    assert ops(filtered) == ["scan"] and trips <= 2, statements
    assert_exact(store, table, filtered, flo, fhi, where)
    again, statements, trips = traced(store, lambda: fit_t(store, table, flo, fhi, where=where))
    assert ops(again) == ["stored"] and trips <= 2, statements
    assert_exact(store, table, again, flo, fhi, where)


@pytest.mark.parametrize("kind", ["timestamp", "timestamptz"])
@pytest.mark.parametrize("year", [2021, 2400])  # 2400: past 2^53 µs since 1970 (the pieces' keys are still exact)
def test_a_timestamp_ordered_index_plan_is_two_round_trips_and_exact(store, kind, year):
    table = f"rt_{kind}_ix_{year}"
    times = ts_table(store, table, kind, year=year, seed=year)
    us = dt.timedelta(microseconds=1)
    store.build_index(table, "t", FEATURES, "y", chunk_rows=200)
    fit_t(store, table, times[5], times[60])  # the table described
    # ends inside chunks (partial-chunk pieces), bounds with microseconds, one end between two rows one µs apart
    for lo, hi in [(times[333] + us, times[2777]), (times[1250] - 5 * us, times[1333] + 9 * us),
                   (times[17], times[2999] - us)]:
        model, statements, trips = traced(store, lambda: fit_t(store, table, lo, hi))
        assert trips <= 2, statements
        assert_exact(store, table, model, lo, hi)
        assert model.plan.stored_stats_id is not None
        again, statements, trips = traced(store, lambda: fit_t(store, table, lo, hi))
        assert ops(again) == ["stored"] and trips <= 2, statements
        assert_exact(store, table, again, lo, hi)
    # a range of many chunks, its ends inside chunks: the index's spans and the pieces' scans
    model, statements, trips = traced(store, lambda: fit_t(store, table, times[411] + 2 * us, times[2588] - 2 * us))
    assert {"index", "scan"} <= set(ops(model)) and trips <= 2, (model.plan, statements)
    assert_exact(store, table, model, times[411] + 2 * us, times[2588] - 2 * us)


def test_a_timestamptz_request_gives_the_same_plan_and_model_under_two_session_time_zones(store):
    table = "rt_tz_zones"
    times = ts_table(store, table, "timestamptz", seed=23)
    store.build_index(table, "t", FEATURES, "y", chunk_rows=200)
    fit_t(store, table, times[5], times[60])  # the table described
    # the request spans both daylight-saving changes; its bounds written in a third zone
    zone = dt.timezone(dt.timedelta(hours=9))
    lo = (times[401] + dt.timedelta(microseconds=11)).astimezone(zone)
    hi = (times[2688] - dt.timedelta(microseconds=13)).astimezone(zone)
    seen = []
    try:
        for tz in ("Asia/Kathmandu", "America/Los_Angeles"):
            store.conn.execute("SELECT set_config('TimeZone', %s, false)", [tz])
            model, statements, trips = traced(store, lambda: fit_t(store, table, lo, hi))
            assert trips <= 2, statements
            assert {"index", "scan"} <= set(ops(model)), model.plan
            assert_exact(store, table, model, lo, hi)
            keys = store.conn.execute("SELECT lo_key, hi_key FROM modelstore.statistics WHERE stats_id = %s",
                                      [model.plan.stored_stats_id]).fetchone()
            assert keys == (bound_key(lo), bound_key(hi))
            seen.append(([(s.sign, s.op, s.range, s.est_rows, s.nodes) for s in model.plan.plan.steps],
                         np.r_[model.intercept_, model.coef_], model.n_obs))
            # the next zone plans over the same catalog: this request's summary and model are dropped
            store.conn.execute("DELETE FROM modelstore.fitted_models WHERE name = %s", [model.name])
            store.conn.execute("DELETE FROM modelstore.statistics WHERE stats_id = %s", [model.plan.stored_stats_id])
    finally:
        store.conn.execute("RESET TimeZone")
    (steps_a, coef_a, n_a), (steps_b, coef_b, n_b) = seen
    assert steps_a == steps_b and n_a == n_b
    np.testing.assert_allclose(coef_a, coef_b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["timestamp", "timestamptz"])
def test_logistic_chunks_on_a_timestamp_column_are_reused_from_the_arrays(store, kind):
    """Logistic chunk models (contained in the request, forward only) come from plan_candidates' arrays too."""
    table = f"rt_{kind}_logistic"
    times = ts_table(store, table, kind, seed=31)
    store.conn.execute(f"ALTER TABLE {table} ADD COLUMN c text")
    store.conn.execute(f"UPDATE {table} SET c = CASE WHEN y > 0 THEN 'a' ELSE 'b' END")
    kw = dict(table=table, target="c", features=FEATURES, order_by="t", chunk_rows=500)
    first = store.fit("logistic", lo=times[0], hi=times[1999], **kw)
    assert [s.op for s in first.plan.plan.steps] == ["train"]
    chunks = store.conn.execute(
        "SELECT lo_key, hi_key FROM modelstore.statistics s JOIN modelstore.sources o USING (source_id) "
        "WHERE o.table_name = %s AND s.family = 'logistic' ORDER BY lo_key", [table]).fetchall()
    assert len(chunks) == 4 and all(lo % 1 != 0 or hi % 1 != 0 for lo, hi in chunks)  # microseconds kept
    second = store.fit("logistic", lo=times[0], hi=times[2999], **kw)
    steps = second.plan.plan.steps
    assert [s.op for s in steps] == ["stored"] * 4 + ["train"], second.plan
    # the stored steps are exactly the chunks, to the microsecond (whole keys back to values)
    assert [(bound_key(s.range.lo), bound_key(s.range.hi)) for s in steps[:4]] == chunks
    # the same model as one trained with nothing stored
    store.conn.execute("DELETE FROM modelstore.statistics WHERE source_id = "
                       "(SELECT source_id FROM modelstore.sources WHERE table_name = %s)", [table])
    fresh = store.fit("logistic", lo=times[0], hi=times[2999], **kw)
    assert [s.op for s in fresh.plan.plan.steps] == ["train"]
    np.testing.assert_allclose(second.coef_, fresh.coef_, rtol=1e-9, atol=1e-12)


# whole keys of timestamps: from datetimes and back (request/cuts.py), and in SQL (sql/request.sql)
_ZONES = st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=5, minutes=45)),
                          dt.timezone(dt.timedelta(hours=-9, minutes=-30))])
_TIMES = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30))


@settings(max_examples=300, deadline=None)
@given(value=_TIMES, zone=_ZONES, aware=st.booleans())
def test_a_timestamps_whole_key_is_its_microseconds_since_the_epoch_and_back(value, zone, aware):
    kind = "timestamptz" if aware else "timestamp"
    if aware:
        value = value.replace(tzinfo=zone)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc if aware else None)
    cut = make_cut(value, 0, kind)
    key = whole_key(cut, kind)
    assert key == (value - epoch) // dt.timedelta(microseconds=1)  # exact integer arithmetic, no float
    back = cut_at(key, kind)
    assert back == cut and back.value == value and whole_keys(cut, make_cut(value, 1, kind), kind)
    # "just after" a value is the next microsecond's whole key
    assert whole_key(make_cut(value, 1, kind), kind) == key + 1


def test_a_number_column_has_no_whole_keys():
    assert not whole_keys(make_cut(1.5, 0, "number"), make_cut(2.5, 1, "number"), "number")
    assert not whole_keys(make_cut(1, 0, "number"), make_cut(2, 0, "number"), "number")
    with pytest.raises(ValueError, match="no whole keys"):
        cut_at(3, "number")


def test_whole_keys_become_the_same_timestamps_in_sql_whatever_the_time_zone(store):
    rng = np.random.default_rng(41)
    lo, hi = (whole_key(make_cut(v, 0, "timestamp"), "timestamp")
              for v in (dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30)))
    keys = [int(k) for k in rng.integers(lo, hi, size=2000)] + [0, -1, 1, 2**53, 2**53 + 1, -(2**53) - 1,
                                                               86_400_000_000, -86_400_000_000, lo, hi]
    naive = [cut_at(k, "timestamp").value for k in keys]
    aware = [cut_at(k, "timestamptz").value for k in keys]
    try:
        for tz in ("UTC", "Asia/Kathmandu", "America/St_Johns"):
            store.conn.execute("SELECT set_config('TimeZone', %s, false)", [tz])
            got = store.conn.execute(
                "SELECT array_agg(modelstore.whole_key_timestamp(k) ORDER BY i), "
                "array_agg(modelstore.whole_key_timestamptz(k) ORDER BY i) "
                "FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(k, i)", [keys]).fetchone()
            assert got[0] == naive
            assert got[1] == aware  # equal instants (psycopg returns them in the session's zone)
    finally:
        store.conn.execute("RESET TimeZone")


@pytest.mark.parametrize("kind", ["timestamp", "timestamptz"])
def test_writes_to_a_timestamp_ordered_table_are_seen_by_the_two_round_trip_path(store, kind):
    """Capture (docs/freshness.md) keeps stored summaries and index nodes exact under writes at microsecond
    times — at a range's first row, a microsecond past its last, inside a chunk — and the fast path reads them."""
    table = f"rt_{kind}_writes"
    times = ts_table(store, table, kind, seed=53)
    us = dt.timedelta(microseconds=1)
    store.build_index(table, "t", FEATURES, "y", chunk_rows=200)
    lo, hi = times[512] + 3 * us, times[2222]
    fit_t(store, table, lo, hi)  # stored
    index_lo, index_hi = times[301] - us, times[2703] + us
    writes = [
        (f"UPDATE {table} SET y = y + 100 WHERE t = %s", [times[1000]]),  # inside both ranges
        (f"INSERT INTO {table} (t, x1, x2, x3, y) VALUES (%s, 0.5, -0.5, 1, 7)", [hi]),  # on the last time
        (f"INSERT INTO {table} (t, x1, x2, x3, y) VALUES (%s, 1, 1, 1, -7)", [hi + us]),  # just past it
        (f"DELETE FROM {table} WHERE t = %s", [times[513]]),  # the range's first row
        (f"INSERT INTO {table} (t, x1, x2, x3, y) VALUES (%s, 2, 0, -1, 3)", [lo - us]),  # just before it
    ]
    for statement, params in writes:
        store.conn.execute(statement, params)
        model, statements, trips = traced(store, lambda: fit_t(store, table, lo, hi))
        assert ops(model) == ["stored"] and trips <= 2, statements
        assert_exact(store, table, model, lo, hi)
        model, statements, trips = traced(store, lambda: fit_t(store, table, index_lo, index_hi))
        assert {"index", "scan"} <= set(ops(model)) and trips <= 2, (model.plan, statements)
        assert_exact(store, table, model, index_lo, index_hi)
        store.conn.execute("DELETE FROM modelstore.statistics WHERE stats_id = %s", [model.plan.stored_stats_id])
