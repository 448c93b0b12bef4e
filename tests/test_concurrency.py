"""Concurrent requests (issue #7, part 2): many connections fitting overlapping models at once, readers
next to a writer, and two connections building the same statistics index.

Every thread has its own ``modelstore.Store`` (its own connection); threads start together on a
``threading.Barrier``. After each scenario the catalog's invariants (tests/invariants.py) must hold and
every model must equal its from-scratch reference on the same rows.
"""

from __future__ import annotations

import threading
import traceback
from decimal import Decimal

import numpy as np
import psycopg
import pytest
from sklearn.naive_bayes import GaussianNB as SkGaussianNB

import modelstore
from modelstore.errors import ModelstoreError
from tests.helpers import rel_err
from tests.invariants import catalog_row_counts, check_catalog, descriptor_counts, expected_nodes
from tests.reference import fetch_matrix, ols

N = 200_000
FEATURES = ["x1", "x2", "x3", "x4"]
COLUMNS = ["id", *FEATURES, "y", "cls"]
THREADS = 8
ROUNDS = 3
JOIN_TIMEOUT = 120.0  # seconds: a thread still running after this is stuck (a lock wait that never ends)


def create_table(conn: psycopg.Connection, table: str, rows: int, seed: float = 0.25) -> None:
    """A seeded table of ``rows`` rows, generated inside PostgreSQL: four features, a linear target with
    noise and a three-class label derived from it."""
    conn.execute("SELECT setseed(%s)", [seed])
    conn.execute(f"DROP TABLE IF EXISTS public.{table}")
    conn.execute(f"""
        CREATE TABLE public.{table} AS
        SELECT g::bigint AS id, x1, x2, x3, x4,
               3.0 + 1.5 * x1 - 0.7 * x2 + 2.0 * x3 + 0.05 * x4 + (random() - 0.5) AS y,
               CASE WHEN x1 + x3 + 0.3 * random() < 0.6 THEN 0 WHEN x1 + x3 + 0.3 * random() < 1.1 THEN 1
                    ELSE 2 END AS cls
        FROM (SELECT g, random() AS x1, 3.0 * random() + 5.0 AS x2, 0.5 * random() - 0.2 AS x3,
                     10.0 * random() + 20.0 AS x4
              FROM generate_series(1, {int(rows)}) AS g) AS s""")
    conn.execute(f"ALTER TABLE public.{table} ADD PRIMARY KEY (id)")
    conn.execute(f"ANALYZE public.{table}")


class Rows:
    """The table's rows in memory, and from-scratch references on any id range (cached)."""

    def __init__(self, matrix: np.ndarray):
        self.m = matrix
        self.ids = matrix[:, 0]
        self._cache: dict = {}

    def select(self, lo, hi) -> np.ndarray:
        return self.m[(self.ids >= lo) & (self.ids <= hi)]

    def linear(self, lo, hi) -> np.ndarray:
        key = ("linear", lo, hi)
        if key not in self._cache:
            sel = self.select(lo, hi)
            self._cache[key] = ols(sel[:, 1:5], sel[:, 5])
        return self._cache[key]

    def gaussian_nb(self, lo, hi) -> SkGaussianNB:
        key = ("gaussian_nb", lo, hi)
        if key not in self._cache:
            sel = self.select(lo, hi)
            self._cache[key] = SkGaussianNB().fit(sel[:, 1:5], sel[:, 6].astype(int))
        return self._cache[key]


def check_model(rows: Rows, kind: str, lo, hi, model) -> None:
    """The model equals the from-scratch one on rows [lo, hi] to 1e-9 relative."""
    if kind == "linear":
        got = np.r_[model.intercept_, model.coef_]
        assert rel_err(got, rows.linear(lo, hi)) < 1e-9, (kind, lo, hi, got, rows.linear(lo, hi))
        assert model.n_obs == hi - lo + 1
        return
    ref = rows.gaussian_nb(lo, hi)
    assert [int(c) for c in model.classes_] == [int(c) for c in ref.classes_]
    for attr in ("theta_", "var_", "class_prior_", "class_count_"):
        assert rel_err(getattr(model, attr), getattr(ref, attr)) < 1e-9, (kind, lo, hi, attr)


def run_threads(targets: list, timeout: float = JOIN_TIMEOUT) -> list[tuple[int, BaseException, str]]:
    """Run each callable in its own thread; return (thread number, exception, traceback) of every failure."""
    errors: list = []
    lock = threading.Lock()

    def wrap(i, fn):
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - every failure is reported by the test
            with lock:
                errors.append((i, exc, traceback.format_exc()))

    threads = [threading.Thread(target=wrap, args=(i, fn), daemon=True) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    stuck = [i for i, t in enumerate(threads) if t.is_alive()]
    assert not stuck, f"threads {stuck} still running after {timeout} s: a lock wait that never ended"
    return errors


def format_errors(errors) -> str:
    return "\n".join(f"thread {i}: {type(e).__module__}.{type(e).__name__}: {e}\n{tb}" for i, e, tb in errors)


@pytest.fixture(scope="module")
def table(module_dsn):
    """Table ``public.t`` (200,000 rows) in a database whose catalog exists and is calibrated."""
    with modelstore.Store(module_dsn) as store:  # creates the catalog once, before any thread connects
        create_table(store.conn, "t", N)
        store.cost_model  # calibrate now, not in eight threads at once
        rows = Rows(fetch_matrix(store.conn, "t", COLUMNS))
    assert rows.m.shape == (N, len(COLUMNS))
    return rows


def ranges_of_round(r: int) -> list[tuple[int, int]]:
    """Four overlapping 60,000-row ranges, shifted by 5,000 rows from one to the next (and per round)."""
    return [(1 + (4 * r + i) * 5000, 60000 + (4 * r + i) * 5000) for i in range(4)]


def test_overlapping_requests_from_eight_connections(module_dsn, table):
    """8 connections × 3 rounds request overlapping linear and Gaussian NB models at the same instant; two
    threads ask for each identical descriptor. No deadlock, no unique violation, one statistics row per
    descriptor, every model exact."""
    stores: list = [None] * THREADS
    results: list = []
    results_lock = threading.Lock()
    requested: set = set()
    with psycopg.connect(module_dsn, autocommit=True) as observer:
        before = catalog_row_counts(observer)

        for r in range(ROUNDS):
            ranges = ranges_of_round(r)
            barrier = threading.Barrier(THREADS, timeout=60)

            def work(t, ranges=ranges, barrier=barrier, r=r):
                if stores[t] is None:
                    stores[t] = modelstore.Store(module_dsn)  # concurrent connects: the catalog is current
                lo, hi = ranges[t % 4]
                kinds = ["linear", "gaussian_nb"] if t % 2 == 0 else ["gaussian_nb", "linear"]
                barrier.wait()
                for kind in kinds:
                    target = "y" if kind == "linear" else "cls"
                    m = stores[t].fit(kind, table="t", target=target, features=FEATURES, order_by="id", lo=lo, hi=hi)
                    with results_lock:
                        results.append((r, t, kind, lo, hi, m))

            for lo, hi in ranges:
                requested.add(("linear", lo, hi))
                requested.add(("gaussian_nb", lo, hi))
            errors = run_threads([lambda t=t: work(t) for t in range(THREADS)])
            assert not errors, f"round {r}:\n{format_errors(errors)}"

        for s in stores:
            if s is not None:
                s.close()

        assert len(results) == ROUNDS * THREADS * 2
        for _, _, kind, lo, hi, m in results:
            check_model(table, kind, lo, hi, m)
        names = [m.name for *_, m in results]
        assert len(set(names)) == len(names), "two requests got the same model name"

        summary = check_catalog(observer)
        after = catalog_row_counts(observer)
        assert after["fitted_models"] - before["fitted_models"] == len(results)
        assert after["sources"] - before["sources"] <= 1
        counts = descriptor_counts(observer, "t")
        for kind, lo, hi in sorted(requested):
            if kind == "linear":
                key = ("linear", Decimal(lo), Decimal(hi), "", "", "", (*FEATURES, "y"))
            else:
                key = ("gaussian_nb", Decimal(lo), Decimal(hi), "", "cls", "", tuple(FEATURES))
            assert counts.get(key) == 1, f"{kind} [{lo}, {hi}]: {counts.get(key, 0)} statistics rows, want exactly 1"
        # every requested descriptor is stored once; nothing else was stored for this table
        assert sum(counts.values()) == len(requested) == after["statistics"] - before["statistics"]
        assert summary["statistics"] == after["statistics"]


# -- readers next to a writer ---------------------------------------------------------------------------------

WRITES = 30
NAME = "live"
PROBE = [0.5, 6.0, 0.1, 25.0]


def test_readers_never_see_a_half_written_model(module_dsn, table):
    """A writer replaces the model named 'live' again and again (alternating three ranges); readers
    load it with store.model() and read it through the modelstore.models view and modelstore.predict()
    at the same time. Every read is one whole model: its coefficients, rows and statistics all belong
    to one of the ranges written, and it is never missing."""
    ranges = [(20_001, 50_000), (90_001, 150_000), (120_001, 135_000)]
    expected = {(lo, hi): table.linear(lo, hi) for lo, hi in ranges}
    done = threading.Event()
    seen_api: list = []
    seen_sql: list = []

    writer = modelstore.Store(module_dsn)
    readers = [modelstore.Store(module_dsn) for _ in range(2)]
    try:
        first = writer.fit("linear", table="t", target="y", features=FEATURES, order_by="id",
                           lo=ranges[0][0], hi=ranges[0][1], name=NAME, replace=True)
        check_model(table, "linear", *ranges[0], first)
        start = threading.Barrier(3, timeout=60)

        def write():
            start.wait()
            try:
                for i in range(1, WRITES + 1):
                    lo, hi = ranges[i % len(ranges)]
                    m = writer.fit("linear", table="t", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi,
                                   name=NAME, replace=True)
                    check_model(table, "linear", lo, hi, m)
            finally:
                done.set()

        def read_api(store):
            start.wait()
            while not done.is_set() or len(seen_api) < 5:
                m = store.model(NAME)
                rng = (int(m.descriptor.range.lo), int(m.descriptor.range.hi))
                assert rng in expected, f"read a model of range {rng}, never written"
                got = np.r_[m.intercept_, m.coef_]
                assert rel_err(got, expected[rng]) < 1e-9, f"model of {rng} has coefficients {got}"
                assert m.n_obs == rng[1] - rng[0] + 1
                seen_api.append(rng)

        def read_sql(store):
            start.wait()
            probe = np.r_[1.0, PROBE]
            while not done.is_set() or len(seen_sql) < 5:
                rows = store.conn.execute(
                    """
                    SELECT m.lo, m.hi, m.rows_used, m.stats_id, s.lo_key, s.hi_key, s.n,
                           modelstore.predict(m.name, %s::float8[])
                    FROM modelstore.models AS m LEFT JOIN modelstore.statistics AS s USING (stats_id)
                    WHERE m.name = %s
                    """, [PROBE, NAME]).fetchall()
                assert len(rows) == 1, f"{len(rows)} rows named {NAME!r} in modelstore.models"
                lo, hi, rows_used, stats_id, lo_key, hi_key, n, predicted = rows[0]
                rng = (int(lo), int(hi))
                assert rng in expected, f"the view shows range {rng}, never written"
                assert rows_used == rng[1] - rng[0] + 1
                assert stats_id is not None and (lo_key, hi_key, n) == (rng[0], rng[1], rows_used), \
                    f"model of {rng} points at statistics #{stats_id} of [{lo_key}, {hi_key}] n={n}"
                assert rel_err(predicted, probe @ expected[rng]) < 1e-9
                seen_sql.append(rng)

        errors = run_threads([write, lambda: read_api(readers[0]), lambda: read_sql(readers[1])])
        assert not errors, format_errors(errors)
    finally:
        done.set()
        writer.close()
        for r in readers:
            r.close()
    # the readers really ran next to the writer: they saw the model change
    assert len(set(seen_api)) >= 2 and len(set(seen_sql)) >= 2, (len(seen_api), len(seen_sql))
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        check_catalog(conn)
        assert conn.execute("SELECT count(*) FROM modelstore.fitted_models WHERE name = %s", [NAME]).fetchone()[0] == 1
        counts = descriptor_counts(conn, "t")
        for lo, hi in ranges:
            assert counts[("linear", Decimal(lo), Decimal(hi), "", "", "", (*FEATURES, "y"))] == 1


def test_two_writers_replacing_one_name(module_dsn, table):
    """Two writers replace the same name at the same instant, 20 times: both always succeed (the last
    commit wins), and exactly one model of that name remains."""
    lo, hi = 20_001, 50_000  # stored by the test above (or by the first round here): a one-step plan
    writers = [modelstore.Store(module_dsn) for _ in range(2)]
    errors: list = []
    try:
        writers[0].fit("linear", table="t", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi,
                       name="shared", replace=True)
        for _ in range(20):
            barrier = threading.Barrier(2, timeout=60)

            def write(store, barrier=barrier):
                barrier.wait()
                m = store.fit("linear", table="t", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi,
                              name="shared", replace=True)
                check_model(table, "linear", lo, hi, m)

            errors += run_threads([lambda s=s: write(s) for s in writers])
    finally:
        for s in writers:
            s.close()
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        check_catalog(conn)
        assert conn.execute("SELECT count(*) FROM modelstore.fitted_models WHERE name = 'shared'").fetchone()[0] == 1
    assert not errors, f"{len(errors)} of 40 replacing fits failed:\n" + format_errors(errors[:2])


# -- two connections building the same index ------------------------------------------------------------------

IX_ROWS = 150_000
IX_CHUNK = 2_000


def race_build_index(dsn: str) -> tuple[Rows, list, list]:
    """Two connections build the index of the same table and columns at the same instant. Returns the
    rows, the successful results and the failures."""
    with modelstore.Store(dsn) as store:
        create_table(store.conn, "ix", IX_ROWS, seed=0.5)
        store.cost_model
        rows = Rows(fetch_matrix(store.conn, "ix", COLUMNS))
    stores = [modelstore.Store(dsn) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=60)
    built: list = []

    def build(store):
        barrier.wait()
        built.append(store.build_index("ix", "id", FEATURES, "y", chunk_rows=IX_CHUNK))

    try:
        errors = run_threads([lambda s=s: build(s) for s in stores])
    finally:
        for s in stores:
            s.close()
    return rows, built, errors


def test_concurrent_build_index(dsn):
    """Two connections build the same index at once: both finish, or the one that loses says so with a
    ModelstoreError (never a raw unique violation or serialization failure). At least one succeeds, the
    catalog then holds one whole index, a model answered from it is exact, and a later build succeeds."""
    rows, built, errors = race_build_index(dsn)
    assert len(built) + len(errors) == 2
    raw = [e for _, e, _ in errors if not isinstance(e, ModelstoreError)]
    assert not raw, "raw errors from a concurrent build_index:\n" + format_errors(errors)
    assert built, "neither concurrent build_index succeeded:\n" + format_errors(errors)
    for out in built:
        assert out["n_chunks"] == -(-IX_ROWS // IX_CHUNK) and out["rows_indexed"] == IX_ROWS
    with psycopg.connect(dsn, autocommit=True) as conn:
        summary = check_catalog(conn)
        assert summary["stat_indexes"] == 1
        n_chunks = -(-IX_ROWS // IX_CHUNK)
        assert conn.execute("SELECT n_chunks, rows_indexed FROM modelstore.stat_indexes").fetchone() == (n_chunks, IX_ROWS)
    with modelstore.Store(dsn) as store:
        again = store.build_index("ix", "id", FEATURES, "y", chunk_rows=IX_CHUNK)
        assert again["n_chunks"] == n_chunks
        lo, hi = 3_333, 141_000
        m = store.fit("linear", table="ix", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)
        assert any(step.op == "index" for step in m.plan.plan.steps), str(m.plan)
        assert rel_err(np.r_[m.intercept_, m.coef_], rows.linear(lo, hi)) < 1e-9
        summary = check_catalog(store.conn)
        assert summary["stat_indexes"] == 1


# -- the checker itself ---------------------------------------------------------------------------------------

CORRUPTIONS = [
    ("UPDATE modelstore.statistics SET mean = mean[1:2] WHERE stats_id = (SELECT min(stats_id) "
     "FROM modelstore.statistics WHERE family = 'linear')", "linear mean has 2 values"),
    ("UPDATE modelstore.statistics SET n = n + 1 WHERE family = 'gaussian_nb'", "class counts sum"),
    ("UPDATE modelstore.statistics SET moments[2] = 'NaN' WHERE family = 'linear'", "NaN"),
    ("DROP INDEX modelstore.statistics_descriptor_key; "
     "INSERT INTO modelstore.statistics (source_id, family, lo, hi, lo_key, hi_key, filter_sql, target, params_key, "
     "columns, n, null_rows, classes, counts, mean, moments) SELECT source_id, family, lo, hi, lo_key, hi_key, "
     "filter_sql, target, params_key, columns, n, null_rows, classes, counts, mean, moments "
     "FROM modelstore.statistics WHERE family = 'linear' LIMIT 1", "share a descriptor"),
    ("UPDATE modelstore.fitted_models SET stats_id = (SELECT min(stats_id) FROM modelstore.statistics "
     "WHERE family = 'gaussian_nb') WHERE kind = 'linear'", "refers to gaussian_nb statistics"),
    ("UPDATE modelstore.sources SET table_name = ''", "no table name"),
    ("DELETE FROM modelstore.index_nodes WHERE index_id = {linear} AND level = 0 AND pos = 3",
     r"nodes missing \[\(0, 3\)\]"),
    ("UPDATE modelstore.stat_indexes SET levels = levels + 1 WHERE index_id = {nb}", "levels recorded"),
    ("UPDATE modelstore.index_nodes SET n = n + 1 WHERE index_id = {linear} AND level = 1 AND pos = 0",
     r"node \(1, 0\): n = "),
    ("UPDATE modelstore.index_nodes SET null_rows = null_rows + 1 WHERE index_id = {linear} AND level = 0 "
     "AND pos = 5", "null_rows"),
    # linear node moments: the comoment's upper triangle of [x1..x4, y], row-major — [1] is C11, [2] C12, [6] C22
    ("UPDATE modelstore.index_nodes SET moments[1] = moments[1] * (1 + 1e-7) WHERE index_id = {linear} "
     "AND level = 2 AND pos = 1", r"node \(2, 1\): comoment differs"),
    ("UPDATE modelstore.index_nodes SET moments[2] = moments[2] + 1e-7 * sqrt(moments[1] * moments[6]) "
     "WHERE index_id = {linear} AND level = 3 AND pos = 0", r"node \(3, 0\): comoment differs .* at element \(0, 1\)"),
    ("UPDATE modelstore.index_nodes SET mean[1] = mean[1] + 1e-6 WHERE index_id = {linear} AND level = 1 AND pos = 2",
     r"node \(1, 2\): mean differs"),
    ("UPDATE modelstore.index_nodes SET hi_key = hi_key + 1 WHERE index_id = {linear} AND level = 0 AND pos = 4",
     "chunk 4 ends at"),
    ("UPDATE modelstore.index_nodes SET counts[1] = counts[1] + 1, n = n + 1 WHERE index_id = {nb} "
     "AND level = 0 AND pos = 7", r"node \(1, 3\): n = "),
    ("UPDATE modelstore.index_nodes SET counts[2] = counts[2] + 1, counts[1] = counts[1] - 1 WHERE index_id = {nb} "
     "AND level = 2 AND pos = 0", r"node \(2, 0\): class .* count"),
    ("UPDATE modelstore.index_nodes SET moments[3] = moments[3] * (1 + 1e-7) WHERE index_id = {nb} "
     "AND level = 1 AND pos = 1", r"node \(1, 1\): class .* second moments differs"),
    ("UPDATE modelstore.index_nodes SET mean[1] = mean[1] + 1e-6 WHERE index_id = {nb} AND level = 4 AND pos = 0",
     r"node \(4, 0\): class .* means differs"),
]


def test_check_catalog_catches_corruption(dsn):
    """check_catalog is not vacuous: a clean catalog passes, and each corruption of it is reported."""
    with modelstore.Store(dsn) as store:
        create_table(store.conn, "small", 20_000, seed=0.75)
        for lo, hi in [(1, 9_000), (5_001, 20_000)]:
            store.fit("linear", table="small", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)
            store.fit("gaussian_nb", table="small", target="cls", features=FEATURES, order_by="id", lo=lo, hi=hi)
        ids = {"linear": store.build_index("small", "id", FEATURES, "y", chunk_rows=1_000)["index_id"],
               "nb": store.build_index("small", "id", FEATURES, "cls", kind="gaussian_nb", chunk_rows=1_000)["index_id"]}
        summary = check_catalog(store.conn)
        assert summary["statistics_by_family"] == {"linear": 2, "gaussian_nb": 2}
        assert summary["fitted_models"] == 4 and summary["stat_indexes"] == 2
        assert summary["index_nodes"] == 2 * len(expected_nodes(20))
        for statement, message in CORRUPTIONS:
            with store.conn.transaction():
                store.conn.execute(statement.format(**{k: int(v) for k, v in ids.items()}))
                with pytest.raises(AssertionError, match=message):
                    check_catalog(store.conn)
                raise psycopg.Rollback()
        assert check_catalog(store.conn) == summary
