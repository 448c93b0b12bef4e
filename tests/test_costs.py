"""The cost model: calibrated on the real server, monotone, stored and loaded, and descriptive of
the database (its scan cost predicts a real aggregate on a table it never saw)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
import time

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row

from modelstore.planner import costs
from modelstore.catalog import migrate
from modelstore.planner.costs import FAMILY_DEGREE, FLOOR_MS, MAX_K, CostModel, calibration
from modelstore.request.source import Column
from modelstore.stats import gaussian_nb, linear

FAMILIES = sorted(FAMILY_DEGREE)


@pytest.fixture(scope="module")
def module_conn(module_dsn):
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def quick_model(module_conn) -> CostModel:
    """One quick calibration shared by the module's tests (what first use measures)."""
    return costs.calibrate(module_conn, quick=True)


def _settings(conn) -> dict:
    names = ["jit", "max_parallel_workers_per_gather", "enable_seqscan", "enable_bitmapscan"]
    return {n: conn.execute("SELECT current_setting(%s)", [n]).fetchone()[0] for n in names}


def _temp_tables(conn) -> int:
    return conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()").fetchone()[0]


# -- calibration ---------------------------------------------------------------------------------------

def test_quick_calibration_is_fast_positive_and_finite(module_conn):
    """First use calibrates in quick mode: a guard on that cost (< 3 s), not a performance claim."""
    started = time.perf_counter()
    model = costs.calibrate(module_conn, quick=True)
    assert time.perf_counter() - started < 3.0
    assert model.method == "calibrated" and model.details["mode"] == "quick"
    assert model.server_version == module_conn.execute("SELECT current_setting('server_version')").fetchone()[0]
    assert abs(model.measured_at - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=1)
    for name in ("statement_ms", "seq_row_ms", "index_row_ms", "fetch_value_ms", "merge_value_ms"):
        value = getattr(model, name)
        assert math.isfinite(value) and value > 0, name
    for name in ("term_ms", "fetch_row_ms", "merge_op_ms"):
        assert math.isfinite(getattr(model, name)) and getattr(model, name) >= 0, name
    for family in FAMILIES:
        for k in (1, 4, 11, MAX_K):
            assert math.isfinite(model.row_ms(family, k)) and model.row_ms(family, k) >= FLOOR_MS
    assert all(math.isfinite(c) and c >= 0 for c in model.train_row_ms + model.train_chunk_ms)
    # a round trip costs more than aggregating one row, and less than a second
    assert model.row_ms("linear", 2) < model.statement_ms < 1000


def test_calibration_leaves_the_connection_as_it_was(module_conn, quick_model):
    before = (_settings(module_conn), _temp_tables(module_conn))
    costs.calibrate(module_conn, quick=True)
    assert (_settings(module_conn), _temp_tables(module_conn)) == before
    assert module_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_a_failed_calibration_leaves_nothing_behind(module_conn, monkeypatch):
    before = (_settings(module_conn), _temp_tables(module_conn))

    def broken(cur, table, *args):
        cur.execute(sql.SQL("SELECT 1 / 0 FROM {}").format(table))

    monkeypatch.setattr(calibration, "_measure_scans", broken)
    with pytest.raises(psycopg.errors.DivisionByZero):
        costs.calibrate(module_conn, quick=True)
    assert (_settings(module_conn), _temp_tables(module_conn)) == before
    assert module_conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_calibration_inside_a_transaction_and_with_another_row_factory(module_dsn):
    """A caller's open transaction stays open (savepoints only); a dict row factory does not matter."""
    with psycopg.connect(module_dsn, row_factory=dict_row) as conn:  # not autocommit
        conn.execute("CREATE TEMP TABLE mine (x int)")
        model = costs.calibrate(conn, quick=True)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("SELECT count(*) AS n FROM mine").fetchone() == {"n": 0}
        assert conn.execute("SELECT count(*) AS n FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
                            ).fetchone()["n"] == 1
        assert model.row_ms("linear", 3) > 0
        conn.rollback()


def test_linear_per_row_cost_grows_with_the_comoments(quick_model):
    """The linear family's per-row cost grows faster than linearly in k (k(k+1)/2 comoments); the
    Naive Bayes ones are fitted linear in k."""
    a, b, c = quick_model.scan_row_ms["linear"]
    assert c > 0
    assert quick_model.row_ms("linear", 12) > 12 * quick_model.row_ms("linear", 1)
    assert len(quick_model.scan_row_ms["gaussian_nb"]) == len(quick_model.scan_row_ms["multinomial_nb"]) == 2


# -- monotone (paper §5) ---------------------------------------------------------------------------------

def test_every_cost_is_monotone_in_rows_and_k(quick_model):
    m = quick_model
    rows = [0, 1, 10, 1_000, 50_000, 10**6, 10**8]
    for family in FAMILIES:
        per_row = [m.row_ms(family, k) for k in range(1, MAX_K + 1)]
        assert all(p >= FLOOR_MS for p in per_row)
        assert per_row == sorted(per_row), family
        for k in (1, 2, 7, 11, 33, MAX_K):
            scans = [m.scan_ms(family, k, n) for n in rows]
            assert scans == sorted(scans) and scans[0] == 0.0
            statements = [m.range_scan_ms(family, k, n, table_rows=10**6, has_index=idx)
                          for idx in (False, True) for n in rows[:-1]]
            assert statements[:6] == sorted(statements[:6]) and statements[6:] == sorted(statements[6:])
    for f in (m.seq_read_ms, m.fetch_ms, m.merge_ms, m.index_read_ms, m.stored_ms):
        values = [f(n) for n in rows]
        assert values == sorted(values)
    train = [[m.train_ms(k, n) for n in rows] for k in range(1, MAX_K + 1)]
    assert all(t == sorted(t) for t in train)
    assert all(train[i][j] <= train[i + 1][j] for i in range(MAX_K - 1) for j in range(len(rows)))


@given(k1=st.integers(1, MAX_K), k2=st.integers(1, MAX_K),
       r1=st.floats(0, 1e9, allow_nan=False), r2=st.floats(0, 1e9, allow_nan=False),
       family=st.sampled_from(FAMILIES))
def test_monotone_property(quick_model, k1, k2, r1, r2, family):
    (k1, k2), (r1, r2) = sorted((k1, k2)), sorted((r1, r2))
    m = quick_model
    assert m.scan_ms(family, k1, r1) <= m.scan_ms(family, k2, r2)
    assert m.scan_statement_ms(family, k1) <= m.scan_statement_ms(family, k2)
    assert m.train_ms(k1, r1) <= m.train_ms(k2, r2)
    assert m.fetch_ms(r1) <= m.fetch_ms(r2) and m.merge_ms(r1) <= m.merge_ms(r2)


@given(coefficients=st.lists(st.floats(0, 1e-2, allow_nan=False), min_size=3, max_size=3))
def test_any_accepted_model_is_monotone(coefficients):
    """Monotonicity holds by construction: whatever figures the model accepts."""
    a, b, c = coefficients
    try:
        model = dataclasses.replace(CostModel.default(), scan_row_ms={
            "linear": (a, b, c), "gaussian_nb": (a, b), "multinomial_nb": (a, c)})
    except ValueError:
        assert a < FLOOR_MS
        return
    for family in FAMILIES:
        per_row = [model.row_ms(family, k) for k in range(1, MAX_K + 1)]
        assert per_row == sorted(per_row) and per_row[0] >= FLOOR_MS


@pytest.mark.parametrize("change", [
    {"scan_row_ms": {"linear": (1e-4, -1e-6, 1e-5), "gaussian_nb": (1e-4, 1e-4), "multinomial_nb": (1e-4, 1e-4)}},
    {"scan_row_ms": {"linear": (0.0, 1e-6, 1e-5), "gaussian_nb": (1e-4, 1e-4), "multinomial_nb": (1e-4, 1e-4)}},
    {"scan_row_ms": {"linear": (1e-4, 1e-6), "gaussian_nb": (1e-4, 1e-4), "multinomial_nb": (1e-4, 1e-4)}},
    {"scan_row_ms": {"linear": (1e-4, 1e-6, 1e-5), "gaussian_nb": (1e-4, 1e-4)}},
    {"seq_row_ms": 0.0},
    {"statement_ms": float("nan")},
    {"merge_op_ms": -1.0},
    {"train_row_ms": (1e-4, -1.0)},
    {"measured_at": dt.datetime(2025, 1, 1)},
])
def test_non_monotone_or_broken_figures_are_refused(change):
    with pytest.raises(ValueError):
        dataclasses.replace(CostModel.default(), **change)


def test_bad_arguments_are_refused(quick_model):
    with pytest.raises(ValueError, match="family"):
        quick_model.scan_ms("logistic", 3, 10)
    with pytest.raises(ValueError, match="k"):
        quick_model.row_ms("linear", 0)
    with pytest.raises(ValueError, match="NaN"):
        quick_model.scan_ms("linear", 3, float("nan"))
    assert quick_model.scan_ms("linear", 3, -5) == 0.0


# -- storage -----------------------------------------------------------------------------------------------

def test_json_round_trip(quick_model):
    again = CostModel.from_json(quick_model.to_json())
    assert again == quick_model
    assert again.measured_at == quick_model.measured_at and again.details == quick_model.details


def test_save_and_load(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert costs.load(conn) is None  # no catalog yet: None, not an error
        migrate.migrate(conn)
        assert costs.load(conn) is None
        model = costs.calibrate(conn, quick=True)
        first = costs.save(conn, model)
        assert costs.load(conn) == model
        newer = dataclasses.replace(model, measured_at=model.measured_at + dt.timedelta(seconds=1), statement_ms=1.0)
        second = costs.save(conn, newer)
        assert second > first
        assert costs.load(conn) == newer
        row = conn.execute("SELECT method, server_version, measured_by = current_user, params->>'statement_ms' "
                           "FROM modelstore.cost_model WHERE cost_model_id = %s", [second]).fetchone()
        assert row == ("calibrated", model.server_version, True, "1.0")
        # a later calibration of another server version is not this server's
        other = dataclasses.replace(model, measured_at=model.measured_at + dt.timedelta(days=1), server_version="99.0")
        costs.save(conn, other)
        assert costs.load(conn) == newer
        assert costs.load(conn, any_version=True) == other


def test_load_or_calibrate_measures_once(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate.migrate(conn)
        first = costs.load_or_calibrate(conn)
        assert first.details["mode"] == "quick"
        second = costs.load_or_calibrate(conn)
        assert second.measured_at == first.measured_at
        assert second == first
        assert conn.execute("SELECT count(*) FROM modelstore.cost_model").fetchone()[0] == 1
    with psycopg.connect(dsn, autocommit=True) as other:  # another session loads, never re-measures
        assert costs.load_or_calibrate(other).measured_at == first.measured_at


def test_default_model_is_usable():
    model = CostModel.default()
    assert model.method == "default"
    assert model.scan_ms("linear", 11, 50_000) > model.stored_ms(132)


# -- the model describes the database ---------------------------------------------------------------

def _median_ms(conn, query, reps=5) -> float:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        conn.execute(query, prepare=False).fetchall()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def test_calibrated_scan_cost_predicts_a_real_aggregate(module_conn, quick_model):
    """On a regular (not TEMP) table of another size and shape — 100,000 rows, 6 features — the
    quick calibration predicts the executor's aggregate within a factor of 3, for a whole-table
    scan and a range scan without an index, and for a range read through an index."""
    conn = module_conn
    columns = ["a", "b", "c", "d", "e", "f"]
    randoms = sql.SQL(", ").join(sql.SQL("random() * 100 AS {}").format(sql.Identifier(c)) for c in columns)
    conn.execute(sql.SQL("CREATE TABLE sanity AS SELECT i AS id, i % 3 AS cls, {} FROM generate_series(1, 100000) i")
                 .format(randoms))
    conn.execute("VACUUM ANALYZE sanity")
    values = [Column(c, "double precision", "N").value_expr() for c in columns]
    table = sql.Identifier("public", "sanity")
    # the statistics engine the calibration measured (the C aggregate when the extension is installed)
    from modelstore.stats import engine as stats_engine
    eng = stats_engine.engine(conn)

    def where(lo, hi):
        return sql.SQL("id >= {} AND id <= {}").format(sql.Literal(lo), sql.Literal(hi))

    checks = []
    for lo, hi in ((1, 100_000), (20_001, 60_000)):
        rows = hi - lo + 1
        conn.execute(linear.aggregate_query(table, values, where(lo, hi), None, *eng)).fetchall()  # warm
        checks.append((_median_ms(conn, linear.aggregate_query(table, values, where(lo, hi), None, *eng)),
                       quick_model.range_scan_ms("linear", 6, rows, table_rows=100_000, has_index=False)))
        gnb = (gaussian_nb.dd_aggregate_query(table, values[:5], where(lo, hi), sql.Identifier("cls"), 1000,
                                              schema=eng[1]) if eng[0] == "c" else
               gaussian_nb.aggregate_query(table, values[:5], where(lo, hi), sql.Identifier("cls"), 1000))
        checks.append((_median_ms(conn, gnb),
                       quick_model.range_scan_ms("gaussian_nb", 5, rows, table_rows=100_000, has_index=False)))
    conn.execute("CREATE INDEX ON sanity (id)")
    conn.execute("ANALYZE sanity")
    checks.append((_median_ms(conn, linear.aggregate_query(table, values, where(5_001, 15_000), None, *eng)),
                   quick_model.range_scan_ms("linear", 6, 10_000, table_rows=100_000, has_index=True)))
    for actual, predicted in checks:
        assert actual / 3 < predicted < actual * 3, (actual, predicted)
