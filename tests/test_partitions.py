"""Partitioned tables keep exact stored statistics (issue #19 part 1; docs/scale-out.md).

Every check compares the catalog with numpy on the rows the partitioned parent holds at that moment
(tests/test_freshness.py's ``assert_catalog_true``): writes through the parent and straight into a
partition, ATTACH, DETACH and DROP PARTITION, with range, list and hash partitioning.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from psycopg import sql

from tests.test_freshness import FEATURES, PATHS, _capture_path, _fit_linear, _lstsq, _rel, _store, assert_catalog_true

#: the three ways to partition the same table: on the ordering column (as pg_partman does), on the class
#: column, and by a hash of the ordering column
SCHEMES = {
    "range": ("RANGE (id)", ["FROM (MINVALUE) TO (1000)", "FROM (1000) TO (2000)", "FROM (2000) TO (MAXVALUE)"]),
    "list": ("LIST (c)", ["IN ('a')", "IN ('b')", "IN ('c', 'q', 'z')"]),
    "hash": ("HASH (id)", ["WITH (MODULUS 3, REMAINDER 0)", "WITH (MODULUS 3, REMAINDER 1)",
                           "WITH (MODULUS 3, REMAINDER 2)"]),
}


def _load_partitioned(conn, scheme: str, n: int = 3000, seed: int = 7) -> None:
    key, bounds = SCHEMES[scheme]
    rng = np.random.default_rng(seed)
    conn.execute("SET search_path = public")
    conn.execute(sql.SQL("CREATE TABLE public.t (id int, x1 float8, x2 float8, y float8, c text, w float8) "
                         "PARTITION BY {}").format(sql.SQL(key)))
    for i, bound in enumerate(bounds):
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF public.t FOR VALUES {}").format(
            sql.Identifier("public", f"t_{i}"), sql.SQL(bound)))
    with conn.cursor().copy("COPY public.t FROM STDIN") as copy:
        for i in range(1, n + 1):
            x1, x2 = rng.normal(size=2)
            copy.write_row([i, x1, x2 + 100.0, 2 * x1 - x2 + rng.normal(), "abc"[i % 3], abs(x1) * 3])


def _capture_triggers(conn, relid: str) -> int:
    return conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass "
                        "AND tgname LIKE 'modelstore\\_capture\\_%%'", [relid]).fetchone()[0]


def _stored(conn) -> int:
    return conn.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0]


def _nodes(conn) -> int:
    return conn.execute("SELECT count(*) FROM modelstore.index_nodes").fetchone()[0]


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_writes_through_the_parent_and_into_partitions_keep_statistics_exact(dsn, scheme, path):
    with _store(dsn) as store:
        c = store.conn
        _capture_path(c, path)
        _load_partitioned(c, scheme)
        first = _fit_linear(store, 1, 1500)
        assert first.plan.plan.scans  # computed from the rows once
        _fit_linear(store, 500, 2500)
        store.fit("gaussian_nb", table="t", target="c", features=FEATURES, order_by="id", lo=200, hi=2200)
        store.build_index("t", "id", FEATURES, "y", kind="linear", chunk_rows=250)
        # capture on the parent and on every partition (writes to a partition fire only its own triggers)
        assert [_capture_triggers(c, r) for r in ("t", "t_0", "t_1", "t_2")] == [4, 4, 4, 4]
        changes = [
            "INSERT INTO t VALUES (10, 1.5, 99.5, 3, 'a', 1), (1600, 5, 105, 5, 'b', 2), (600, NULL, 101, 1, 'b', 1)",
            "INSERT INTO t_1 SELECT id, x1 + 1, x2, y, c, w FROM t_1 WHERE id < 1100" if scheme != "range"
            else "INSERT INTO t_1 VALUES (1500, 2, 98, 1, 'c', 1), (1999, 3, 97, 2, 'a', 2)",
            "UPDATE t SET x1 = x1 + 1 WHERE id BETWEEN 20 AND 60",
            "UPDATE t SET id = id + 700 WHERE id BETWEEN 900 AND 1140",            # rows move between partitions
            "UPDATE t SET c = 'q' WHERE id BETWEEN 300 AND 320",                   # and, for list, across them
            "UPDATE t_0 SET y = y * 2 WHERE x1 > 1",                               # straight into one partition
            "DELETE FROM t_2 WHERE x2 > 101",
            "DELETE FROM t WHERE id BETWEEN 1900 AND 1950",
        ]
        # range partitions on id: the two requests that contain t_1 ([1000, 1999]) also keep it on its own
        summaries = 3 + (2 if scheme == "range" else 0)
        assert _stored(c) == summaries
        for change in changes:
            c.execute(change)
            assert assert_catalog_true(c) == summaries + _nodes(c)
        for lo, hi in [(1, 1500), (1, 2500), (300, 1400)]:
            m = _fit_linear(store, lo, hi)
            assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(c, lo, hi)) < 1e-9
        again = _fit_linear(store, 1, 1500)
        assert not again.plan.plan.scans  # the maintained summary answers without reading a row


def test_attach_detach_and_drop_partition_keep_statistics_exact(dsn):
    with _store(dsn) as store:
        c = store.conn
        _load_partitioned(c, "range")
        c.execute("DROP TABLE t_2")  # the rows from 2000 on leave; a partition for them comes back later
        _fit_linear(store, 1, 2999)
        _fit_linear(store, 900, 1200)
        store.fit("gaussian_nb", table="t", target="c", features=FEATURES, order_by="id", lo=1, hi=5000)
        store.build_index("t", "id", FEATURES, "y", kind="linear", chunk_rows=300)
        stored = _stored(c)
        assert stored == 3 + 2  # the first and third requests contain t_1 ([1000, 1999]) and keep it on its own

        # ATTACH: the new partition's rows enter every summary whose range they fall in, and it is captured
        c.execute("CREATE TABLE public.t_new (LIKE public.t)")
        c.execute("INSERT INTO t_new SELECT g, g * 0.001, 100 + (g % 7), g * 0.002 + (g % 5), 'abc'::text, 1 "
                  "FROM generate_series(2000, 2600) AS g")
        c.execute("ALTER TABLE t ATTACH PARTITION t_new FOR VALUES FROM (2000) TO (3000)")
        assert _stored(c) == stored and _capture_triggers(c, "t_new") == 4
        assert assert_catalog_true(c) == stored + _nodes(c)
        c.execute("UPDATE t_new SET x1 = -x1 WHERE id % 3 = 0")  # straight into the attached partition
        assert assert_catalog_true(c) == stored + _nodes(c)

        # DETACH: the partition's rows leave exactly
        c.execute("ALTER TABLE t DETACH PARTITION t_0")
        assert _stored(c) == stored
        assert assert_catalog_true(c) == stored + _nodes(c)
        c.execute("INSERT INTO t_0 VALUES (5, 1, 1, 1, 'a', 1)")  # a write to the detached table: not t's
        assert assert_catalog_true(c) == stored + _nodes(c)

        # DROP: the rows are gone before any trigger can read them; the source's summaries are forgotten
        c.execute("DROP TABLE t_new")
        assert _stored(c) == 0 and _nodes(c) == 0
        for lo, hi in [(1, 2999), (900, 1200), (1000, 2600)]:
            m = _fit_linear(store, lo, hi)
            assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(c, lo, hi)) < 1e-9
        assert assert_catalog_true(c) == 3 + 1  # and t_1 on its own


def test_a_tree_change_the_event_trigger_missed_forgets_the_statistics(dsn):
    """Without the partition event trigger (a catalog owner who is not a superuser cannot install it),
    the next request sees a partition tree other than the recorded one and forgets what was stored."""
    with _store(dsn) as store:
        c = store.conn
        _load_partitioned(c, "range")
        _fit_linear(store, 1, 2500)
        c.execute("ALTER EVENT TRIGGER modelstore_capture_partitions DISABLE")
        try:
            c.execute("ALTER TABLE t DETACH PARTITION t_1")
            assert _stored(c) == 2  # untouched (the request's summary and t_1's own): nobody saw the detach
            m = _fit_linear(store, 1, 2500)
            assert m.plan.plan.scans  # not answered from the summary that still counts t_1's rows
            assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(c, 1, 2500)) < 1e-9
            c.execute("CREATE TABLE public.t_1b PARTITION OF t FOR VALUES FROM (1000) TO (1500)")
            c.execute("INSERT INTO t_1b VALUES (1200, 1, 100, 3, 'a', 1)")  # no capture on it yet
            m = _fit_linear(store, 1, 2500)
            assert m.plan.plan.scans and _capture_triggers(c, "t_1b") == 4  # the request installed it
            assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(c, 1, 2500)) < 1e-9
            assert assert_catalog_true(c) == 2  # the request's summary and t_1b's own
        finally:
            c.execute("ALTER EVENT TRIGGER modelstore_capture_partitions ENABLE")


def test_explain_shows_partition_pruning_and_when_there_is_none(dsn):
    with _store(dsn) as store:
        c = store.conn
        _load_partitioned(c, "range")
        m = _fit_linear(store, 1100, 1800)
        note = m.plan.extra["Partitions"]
        assert "t_1" in note and "t_0" not in note and "t_2" not in note and "1 of 3" in note
        m = _fit_linear(store, 900, 2100)
        assert "3 of 3" in m.plan.extra["Partitions"]
        plan = store.explain("linear", table="t", target="y", features=FEATURES, order_by="id", lo=10, hi=20)
        assert any("partitioned by id" in n and "pruning" in n for n in plan.notes)
    with _store(dsn) as store:
        c = store.conn
        c.execute("DROP TABLE t")
        _load_partitioned(c, "list")
        m = _fit_linear(store, 1100, 1800)
        assert "3 of 3" in m.plan.extra["Partitions"]
        plan = store.explain("linear", table="t", target="y", features=FEATURES, order_by="id", lo=10, hi=20)
        assert any("partitioned by c, not by the ordering column id" in n for n in plan.notes)


def test_a_partition_on_its_own_is_scanned_and_stores_nothing(dsn):
    with _store(dsn) as store:
        c = store.conn
        _load_partitioned(c, "range")
        m = store.fit("linear", table="t_1", target="y", features=FEATURES, order_by="id", lo=1000, hi=1999)
        assert _stored(c) == 0 and any("is a partition" in n for n in m.plan.plan.notes)
        assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(c, 1000, 1999, table="t_1")) < 1e-9


def test_a_deployment_over_a_partitioned_table_follows_writes_to_every_partition(dsn):
    """The deployment's trigger is on every member of the tree (and on partitions attached later): a write
    straight into a partition marks it pending, and the refreshed model is numpy's on the window."""
    with _store(dsn) as store:
        c = store.conn
        _load_partitioned(c, "list")
        d = store.deploy("part_now", "linear", table="t", target="y", features=FEATURES, order_by="id", window=500)

        def window():
            lo = c.execute("SELECT id FROM t ORDER BY id DESC OFFSET 499 LIMIT 1").fetchone()[0]
            return _lstsq(c, lo, 10**9)

        assert _rel(np.r_[d.model.intercept_, d.model.coef_], window()) < 1e-9
        for change in ["INSERT INTO t_0 VALUES (3001, 1, 100, 50, 'a', 1)",    # straight into a partition
                       "UPDATE t SET y = y * 3 WHERE id BETWEEN 2700 AND 2800",  # through the parent
                       "CREATE TABLE public.t_3 PARTITION OF t FOR VALUES IN ('d')",
                       "INSERT INTO t_3 SELECT g, 1, 100 + g % 5, g % 11, 'd', 1 FROM generate_series(5000, 5100) g"]:
            c.execute(change)
            if not change.startswith("CREATE"):
                assert d.pending() == 1, change
            assert d.refresh().refreshed, change
            assert _rel(np.r_[d.model.intercept_, d.model.coef_], window()) < 1e-9, change
        store.undeploy("part_now")
        assert c.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'modelstore_deploy'").fetchone()[0] == 0


@pytest.fixture
def readable_folder():
    """A folder the server's (unprivileged) user can read: pytest's own tmp_path is private to root."""
    folder = Path(tempfile.mkdtemp(prefix="modelstore-file-fdw-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_foreign_partition_without_pushdown_is_scanned_and_nothing_is_stored(dsn, readable_folder):
    """A file_fdw partition (no aggregate pushdown, no change counter): requests are computed from the
    rows, per partition, every time; EXPLAIN names the partition (docs/scale-out.md, "Bad input")."""
    rng = np.random.default_rng(3)
    csv = readable_folder / "t_file.csv"
    csv.write_text("".join(f"{i},{x1},{x2},{2 * x1 - x2},b,1\n"
                           for i, (x1, x2) in zip(range(1000, 1400), rng.normal(size=(400, 2)).tolist())))
    csv.chmod(0o644)
    with _store(dsn) as store:
        c = store.conn
        c.execute("SET search_path = public")
        c.execute("CREATE EXTENSION IF NOT EXISTS file_fdw")
        c.execute("CREATE SERVER files FOREIGN DATA WRAPPER file_fdw")
        c.execute("CREATE TABLE public.t (id int, x1 float8, x2 float8, y float8, c text, w float8) "
                  "PARTITION BY RANGE (id)")
        c.execute("CREATE TABLE public.t_local PARTITION OF t FOR VALUES FROM (0) TO (1000)")
        c.execute("INSERT INTO t_local SELECT g, sin(g), cos(g), g % 7, 'a', 1 FROM generate_series(0, 999) g")
        c.execute(sql.SQL("CREATE FOREIGN TABLE public.t_file PARTITION OF t FOR VALUES FROM (1000) TO (2000) "
                          "SERVER files OPTIONS (filename {}, format 'csv')").format(sql.Literal(str(csv))))
        for _ in range(2):
            m = _fit_linear(store, 0, 1999)
            assert m.plan.plan.scans and _stored(c) == 0
            assert any("t_file" in n and "not a postgres_fdw server" in n for n in m.plan.plan.notes)
            assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(c, 0, 1999)) < 1e-9
            assert "2 of 2 partitions" in m.plan.extra["Partitions"]


def test_sub_partitions_are_captured_and_a_detached_subtree_leaves_exactly(dsn):
    """A partition that is itself partitioned: writes through it fire its own triggers, which reach the
    root's summaries; detaching it takes all its leaves' rows out; attaching it back brings them in."""
    with _store(dsn) as store:
        c = store.conn
        _load_partitioned(c, "range", n=0)
        c.execute("DROP TABLE t_1")
        c.execute("CREATE TABLE public.t_1 PARTITION OF t FOR VALUES FROM (1000) TO (2000) PARTITION BY LIST (c)")
        c.execute("CREATE TABLE public.t_1a PARTITION OF t_1 FOR VALUES IN ('a')")
        c.execute("CREATE TABLE public.t_1rest PARTITION OF t_1 DEFAULT")
        rng = np.random.default_rng(4)
        with c.cursor().copy("COPY public.t FROM STDIN") as copy:
            for i in range(1, 3001):
                x1, x2 = rng.normal(size=2)
                copy.write_row([i, x1, x2 + 100.0, 2 * x1 - x2 + rng.normal(), "abc"[i % 3], abs(x1) * 3])
        _fit_linear(store, 1, 3000)
        store.fit("gaussian_nb", table="t", target="c", features=FEATURES, order_by="id", lo=500, hi=2500)
        assert [_capture_triggers(c, r) for r in ("t", "t_1", "t_1a", "t_1rest")] == [4, 4, 4, 4]
        for change in ["UPDATE t_1 SET x1 = x1 + 2 WHERE id BETWEEN 1100 AND 1400",   # through the middle table
                       "UPDATE t_1 SET c = 'a' WHERE id BETWEEN 1500 AND 1530",       # moves rows between its leaves
                       "DELETE FROM t_1a WHERE id > 1900"]:
            c.execute(change)
            assert assert_catalog_true(c) == 2 + 2  # and, per request, t_1 ([1000, 1999]) on its own
        c.execute("ALTER TABLE t DETACH PARTITION t_1")
        assert _stored(c) == 4 and assert_catalog_true(c) == 4
        c.execute("ALTER TABLE t ATTACH PARTITION t_1 FOR VALUES FROM (1000) TO (2000)")
        assert _stored(c) == 4 and assert_catalog_true(c) == 4
        m = _fit_linear(store, 1, 3000)
        assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(c, 1, 3000)) < 1e-9


def _monthly(conn) -> None:
    """``m`` range-partitioned by day into January, February and March 2024, 40 rows a day."""
    rng = np.random.default_rng(11)
    conn.execute("SET search_path = public")
    conn.execute("CREATE TABLE public.m (day date, x1 float8, x2 float8, y float8) PARTITION BY RANGE (day)")
    for month in (1, 2, 3):
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF public.m FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier("public", f"m_{month}"), sql.Literal(f"2024-{month:02d}-01"),
            sql.Literal(f"2024-{month + 1:02d}-01")))
    with conn.cursor().copy("COPY public.m FROM STDIN") as copy:
        for d in range(91):
            for _ in range(40):
                x1, x2 = rng.normal(size=2)
                copy.write_row([dt.date(2024, 1, 1) + dt.timedelta(days=d), x1, x2, 2 * x1 - x2 + d / 30 + rng.normal()])


def _monthly_fit(store, lo, hi):
    return store.fit("linear", table="m", target="y", features=FEATURES, order_by="day", lo=lo, hi=hi)


def _monthly_lstsq(conn, lo, hi):
    rows = np.array(conn.execute("SELECT x1, x2, y FROM m WHERE day BETWEEN %s AND %s", [lo, hi]).fetchall(), dtype=float)
    return np.linalg.lstsq(np.c_[np.ones(len(rows)), rows[:, :2]], rows[:, 2], rcond=None)[0]


def test_whole_partitions_are_stored_one_by_one_and_reused(dsn):
    d = dt.date
    month = {1: (d(2024, 1, 1), d(2024, 1, 31)), 2: (d(2024, 2, 1), d(2024, 2, 29)), 3: (d(2024, 3, 1), d(2024, 3, 31))}
    with _store(dsn) as store:
        c = store.conn
        _monthly(c)
        # mid-January to the end of February: February is whole, January is not
        first = _monthly_fit(store, d(2024, 1, 15), d(2024, 2, 29))
        assert "m_2" in first.plan.extra["Per-partition statistics"]
        stored = {(r[0], r[1]): r[2] for r in c.execute(
            "SELECT lo::date, hi::date, n FROM modelstore.statistics").fetchall()}
        assert stored == {(d(2024, 1, 15), d(2024, 2, 29)): 40 * 46, month[2]: 40 * 29}
        # February to March: February's statistics are reused, only March is scanned (and kept)
        plan = store.explain("linear", table="m", target="y", features=FEATURES, order_by="day",
                             lo=d(2024, 2, 1), hi=d(2024, 3, 31))
        assert any("whole partition(s) m_2 are reused" in n for n in plan.notes), plan.notes
        second = _monthly_fit(store, d(2024, 2, 1), d(2024, 3, 31))
        steps = second.plan.plan.steps
        assert [(s.op, s.range.lo, s.range.hi) for s in steps if s.op == "stored"] == [("stored", *month[2])]
        assert second.plan.rows_scanned == 40 * 31  # the March partition only
        assert "reused the stored statistics of whole partition(s) m_2" in second.plan.extra["Per-partition statistics"]
        assert "Per-partition statistics: reused" in str(second.plan)
        assert _rel(np.r_[second.intercept_, second.coef_], _monthly_lstsq(c, *month[2][:1], month[3][1])) < 1e-9
        # February and March whole, January's tail: at most January's part is scanned (the planner may
        # instead take the first request's summary less a few January days)
        third = _monthly_fit(store, d(2024, 1, 20), d(2024, 3, 31))
        assert 0 < third.plan.rows_scanned <= 40 * 12
        assert all(s.range.hi < month[2][0] for s in third.plan.plan.scans)
        assert _rel(np.r_[third.intercept_, third.coef_], _monthly_lstsq(c, d(2024, 1, 20), d(2024, 3, 31))) < 1e-9
        # from nothing stored, a fit over the whole parent keeps every partition, January too (its first
        # day is the table's first, so the scan's piece of January is all of it); then nothing is scanned
        c.execute("DELETE FROM modelstore.statistics")
        c.execute("DELETE FROM m WHERE day IN ('2024-01-01', '2024-01-02', '2024-03-31')")  # the extent: [Jan 3, Mar 30]
        whole = store.fit("linear", table="m", target="y", features=FEATURES, order_by="day")
        assert "m_1, m_2, m_3" in whole.plan.extra["Per-partition statistics"]
        assert {(r[0], r[1]) for r in c.execute("SELECT lo::date, hi::date FROM modelstore.statistics")} == {
            *month.values(), (d(2024, 1, 3), d(2024, 3, 30))}
        # with a row outside the request in a cut partition, that partition is not whole
        c.execute("DELETE FROM modelstore.statistics")
        hi_only = store.fit("linear", table="m", target="y", features=FEATURES, order_by="day", hi=d(2024, 3, 15))
        assert "m_1, m_2" in hi_only.plan.extra["Per-partition statistics"]
        assert c.execute("SELECT count(*) FROM modelstore.statistics WHERE lo::date = %s", [month[3][0]]).fetchone()[0] == 0
        c.execute("DELETE FROM modelstore.statistics")
        whole = store.fit("linear", table="m", target="y", features=FEATURES, order_by="day")
        again = _monthly_fit(store, d(2024, 1, 1), d(2024, 2, 29))
        assert again.plan.rows_scanned == 0 and len(again.plan.plan.stored) >= 1
        assert _rel(np.r_[again.intercept_, again.coef_], _monthly_lstsq(c, d(2024, 1, 1), d(2024, 2, 29))) < 1e-9
        assert _rel(np.r_[whole.intercept_, whole.coef_], _monthly_lstsq(c, d(2024, 1, 1), d(2024, 3, 31))) < 1e-9
        # the per-partition summaries are kept true by capture like any other
        c.execute("INSERT INTO m_2 VALUES ('2024-02-10', 5, 5, 50)")
        c.execute("UPDATE m SET y = y + 1 WHERE day BETWEEN '2024-03-05' AND '2024-03-07'")
        assert assert_catalog_true_by_day(c) == c.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0]
        late = _monthly_fit(store, d(2024, 2, 1), d(2024, 3, 31))
        assert late.plan.rows_scanned == 0
        assert _rel(np.r_[late.intercept_, late.coef_], _monthly_lstsq(c, d(2024, 2, 1), d(2024, 3, 31))) < 1e-9


def assert_catalog_true_by_day(conn) -> int:
    """Every stored linear summary over ``m`` has numpy's count and means of its day range's rows."""
    checked = 0
    for lo, hi, n, mean in conn.execute(
            "SELECT lo::date, hi::date, n, mean FROM modelstore.statistics WHERE family = 'linear'").fetchall():
        rows = np.array(conn.execute("SELECT x1, x2, y FROM m WHERE day BETWEEN %s AND %s", [lo, hi]).fetchall(),
                        dtype=float)
        assert n == len(rows)
        assert np.allclose(mean, rows.mean(axis=0), rtol=1e-12, atol=1e-12)
        checked += 1
    return checked


def test_timestamptz_partitions_are_kept_as_closed_ranges_to_the_microsecond(dsn):
    """Daily partitions of a timestamptz column: [day, next day) is [day, next day − 1 µs], PostgreSQL's
    resolution, so a whole day is a stored model; partial days at a request's ends are scanned."""
    utc = dt.timezone.utc
    day = [dt.datetime(2024, 5, d, tzinfo=utc) for d in (1, 2, 3, 4)]
    rng = np.random.default_rng(3)
    with _store(dsn) as store:
        c = store.conn
        c.execute("SET search_path = public")
        c.execute("CREATE TABLE public.ev (ts timestamptz, x1 float8, x2 float8, y float8) PARTITION BY RANGE (ts)")
        for i in range(3):
            c.execute(sql.SQL("CREATE TABLE {} PARTITION OF public.ev FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier("public", f"ev_{i}"), sql.Literal(day[i]), sql.Literal(day[i + 1])))
        with c.cursor().copy("COPY public.ev FROM STDIN") as copy:
            for second in range(0, 3 * 24 * 3600, 20):  # enough rows a day that reuse beats a scan
                x1, x2 = rng.normal(size=2)
                copy.write_row([day[0] + dt.timedelta(seconds=second), x1, x2, x1 - 3 * x2 + rng.normal()])

        def fit(lo, hi):
            return store.fit("linear", table="ev", target="y", features=FEATURES, order_by="ts", lo=lo, hi=hi)

        def reference(lo, hi):
            rows = np.array(c.execute("SELECT x1, x2, y FROM ev WHERE ts BETWEEN %s AND %s", [lo, hi]).fetchall(),
                            dtype=float)
            return np.linalg.lstsq(np.c_[np.ones(len(rows)), rows[:, :2]], rows[:, 2], rcond=None)[0]

        first = fit(day[0] + dt.timedelta(hours=12), day[2] + dt.timedelta(hours=23))
        assert "ev_1" in first.plan.extra["Per-partition statistics"]
        whole_day = (day[1], day[2] - dt.timedelta(microseconds=1))
        assert c.execute("SELECT count(*) FROM modelstore.statistics WHERE lo::timestamptz = %s AND hi::timestamptz = %s",
                         whole_day).fetchone()[0] == 1
        lo, hi = day[1], day[2] + dt.timedelta(hours=6)
        second = fit(lo, hi)
        assert [(s.range.lo, s.range.hi) for s in second.plan.plan.stored] == [whole_day]
        assert second.plan.rows_scanned == c.execute("SELECT count(*) FROM ev WHERE ts >= %s AND ts <= %s",
                                                     [day[2], hi]).fetchone()[0]
        assert _rel(np.r_[second.intercept_, second.coef_], reference(lo, hi)) < 1e-9


def test_a_float_ordering_column_keeps_no_partition_on_its_own(dsn):
    """[FROM, TO) of a float8 column has no closed form: its partitions' bounds are read (a shard's change
    would drop only the summaries over it) but no partition is kept on its own; requests stay exact."""
    from modelstore.request.bounds import range_partitions
    from modelstore.request.source import resolve_table

    with _store(dsn) as store:
        c = store.conn
        c.execute("SET search_path = public")
        c.execute("CREATE TABLE public.f (v float8, x1 float8, x2 float8, y float8) PARTITION BY RANGE (v)")
        c.execute("CREATE TABLE public.f_0 PARTITION OF public.f FOR VALUES FROM (MINVALUE) TO (0.5)")
        c.execute("CREATE TABLE public.f_1 PARTITION OF public.f FOR VALUES FROM (0.5) TO (1.5)")
        c.execute("CREATE TABLE public.f_2 PARTITION OF public.f FOR VALUES FROM (1.5) TO (MAXVALUE)")
        c.execute("INSERT INTO f SELECT g / 1000.0, sin(g), cos(g), g % 11 FROM generate_series(0, 2000) g")
        parts = range_partitions(c, resolve_table(c, "f"), "v", "number")
        assert [(p.lo, p.hi, p.closed) for p in parts] == [
            (None, Decimal("0.5"), None), (Decimal("0.5"), Decimal("1.5"), None), (Decimal("1.5"), None, None)]
        m = store.fit("linear", table="f", target="y", features=FEATURES, order_by="v", lo=0.1, hi=1.9)
        assert "Per-partition statistics" not in m.plan.extra
        assert c.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0] == 1
        rows = np.array(c.execute("SELECT x1, x2, y FROM f WHERE v BETWEEN 0.1 AND 1.9").fetchall(), dtype=float)
        want = np.linalg.lstsq(np.c_[np.ones(len(rows)), rows[:, :2]], rows[:, 2], rcond=None)[0]
        assert _rel(np.r_[m.intercept_, m.coef_], want) < 1e-9


def test_an_infinite_date_bound_is_unbounded_and_the_finite_partitions_are_kept(dsn):
    with _store(dsn) as store:
        c = store.conn
        c.execute("SET search_path = public")
        c.execute("CREATE TABLE public.inf (day date, x1 float8, x2 float8, y float8) PARTITION BY RANGE (day)")
        c.execute("CREATE TABLE public.inf_old PARTITION OF public.inf FOR VALUES FROM ('-infinity') TO ('2024-01-01')")
        c.execute("CREATE TABLE public.inf_jan PARTITION OF public.inf FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')")
        c.execute("INSERT INTO inf SELECT date '2023-12-01' + g % 62, sin(g), cos(g), g % 5 FROM generate_series(1, 3000) g")
        m = store.fit("linear", table="inf", target="y", features=FEATURES, order_by="day")
        assert "inf_jan" in m.plan.extra["Per-partition statistics"]
        assert "inf_old" not in m.plan.extra["Per-partition statistics"]
        rows = np.array(c.execute("SELECT x1, x2, y FROM inf").fetchall(), dtype=float)
        want = np.linalg.lstsq(np.c_[np.ones(len(rows)), rows[:, :2]], rows[:, 2], rcond=None)[0]
        assert _rel(np.r_[m.intercept_, m.coef_], want) < 1e-9
