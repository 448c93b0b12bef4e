"""A table sharded over three PostgreSQL servers with postgres_fdw (issue #19 part 2; docs/scale-out.md).

The module starts three throwaway PostgreSQL clusters as real subprocesses (modelstore's embedded server,
ephemeral: its own temporary directory, 127.0.0.1 only, run as the unprivileged server user) and stops
them at the end. The coordinator is the test's own database: ``t`` is partitioned by ``id`` into three
foreign partitions, one per shard, and one local partition. Every model is checked against numpy on the
union of the rows read from each server directly.
"""

from __future__ import annotations

import os
import re
import signal
import time

import numpy as np
import psycopg
import pytest
from psycopg import sql

import modelstore
from modelstore.execution import executor
from modelstore.execution import shards as shard_scans
from modelstore.planner.costs import CostModel
from modelstore.request.descriptor import Range
from modelstore.request.source import resolve_table
from modelstore.server import EmbeddedServer
from modelstore.stats import engine as stats_engine

FEATURES = ["x1", "x2"]
#: shard i holds ids [1000 i, 1000 (i + 1)); the coordinator's local partition holds [3000, ∞)
ROWS_PER_SHARD = 1000


@pytest.fixture(scope="module")
def shard_servers():
    servers = []
    try:
        for _ in range(3):
            servers.append(EmbeddedServer(ephemeral=True).start())
        for s in servers:  # every statement a shard runs goes to its log: what crossed the wire
            with psycopg.connect(s.dsn, autocommit=True) as c:
                c.execute("ALTER SYSTEM SET log_statement = 'all'")
                c.execute("SELECT pg_reload_conf()")
        yield servers
    finally:
        for s in servers:
            s.stop()


def _shard(server) -> psycopg.Connection:
    return psycopg.connect(server.dsn, autocommit=True)


@pytest.fixture
def sharded(dsn, shard_servers):
    """A store on the coordinator with ``t`` sharded over the three servers (fresh rows each test)."""
    rng = np.random.default_rng(19)
    for i, server in enumerate(shard_servers):
        with _shard(server) as c:
            c.execute("DROP SCHEMA IF EXISTS modelstore_shard CASCADE")
            c.execute("DROP TABLE IF EXISTS public.t")
            c.execute("CREATE TABLE public.t (id int, x1 float8, x2 float8, y float8, c text)")
            with c.cursor().copy("COPY public.t FROM STDIN") as copy:
                for j in range(i * ROWS_PER_SHARD, (i + 1) * ROWS_PER_SHARD):
                    x1, x2 = rng.normal(size=2)
                    copy.write_row([j, x1, x2 + 10 * i, 3 * x1 - x2 + i + rng.normal(), "abc"[j % 3]])
    store = modelstore.connect(dsn)
    store._cost_model = CostModel.default()
    c = store.conn
    c.execute("SET search_path = public")
    c.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    c.execute("CREATE TABLE public.t (id int, x1 float8, x2 float8, y float8, c text) PARTITION BY RANGE (id)")
    for i, server in enumerate(shard_servers):
        name = f"s{i}"
        c.execute(sql.SQL("CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS "
                          "(host '127.0.0.1', port {}, dbname 'modelstore', async_capable 'true')").format(
            sql.Identifier(name), sql.Literal(str(server.port))))
        c.execute(sql.SQL("CREATE USER MAPPING FOR CURRENT_USER SERVER {} OPTIONS (user 'modelstore')").format(
            sql.Identifier(name)))
        c.execute(sql.SQL("CREATE FOREIGN TABLE {} PARTITION OF public.t FOR VALUES FROM ({}) TO ({}) SERVER {} "
                          "OPTIONS (schema_name 'public', table_name 't')").format(
            sql.Identifier("public", f"t_{name}"), sql.Literal(i * ROWS_PER_SHARD),
            sql.Literal((i + 1) * ROWS_PER_SHARD), sql.Identifier(name)))
    c.execute("CREATE TABLE public.t_local PARTITION OF public.t FOR VALUES FROM (3000) TO (MAXVALUE)")
    c.execute("INSERT INTO t_local SELECT g, sin(g), cos(g) * 3, g % 7, 'abc'::text FROM generate_series(3000, 3499) g")
    try:
        yield store
    finally:
        store.close()


def _all_rows(store, shard_servers, lo, hi):
    """(x1, x2, y) of every row with lo ≤ id ≤ hi, read from each server directly (not through the fdw)."""
    rows = []
    query = "SELECT x1, x2, y FROM public.t WHERE id BETWEEN %s AND %s AND x1 IS NOT NULL AND y IS NOT NULL"
    for server in shard_servers:
        with _shard(server) as c:
            rows += c.execute(query, [lo, hi]).fetchall()
    rows += store.conn.execute(query.replace("public.t", "public.t_local"), [lo, hi]).fetchall()
    return np.array(rows, dtype=float).reshape(-1, 3)


def _lstsq(rows):
    A = np.c_[np.ones(len(rows)), rows[:, :2]]
    return np.linalg.lstsq(A, rows[:, 2], rcond=None)[0]


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def _fit(store, lo, hi):
    return store.fit("linear", table="t", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)


def test_random_ranges_across_shard_boundaries_are_exact(sharded, shard_servers):
    rng = np.random.default_rng(5)
    ranges = [(0, 3499), (990, 1010), (500, 2500), (2990, 3100)]
    ranges += [(int(a), int(a + w)) for a, w in zip(rng.integers(0, 3000, size=6), rng.integers(20, 1500, size=6))]
    for lo, hi in ranges:
        m = _fit(sharded, lo, hi)
        assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, lo, hi))) < 1e-9
    m = sharded.fit("gaussian_nb", table="t", target="c", features=FEATURES, order_by="id", lo=100, hi=3200)
    with _shard(shard_servers[1]) as c:
        want = c.execute("SELECT count(*) FROM t WHERE c = 'a' AND id BETWEEN 100 AND 3200").fetchone()[0]
    local = sharded.conn.execute("SELECT count(*) FROM t_local WHERE c = 'a' AND id <= 3200").fetchone()[0]
    others = 0
    for server in (shard_servers[0], shard_servers[2]):
        with _shard(server) as c:
            others += c.execute("SELECT count(*) FROM t WHERE c = 'a' AND id BETWEEN 100 AND 3200").fetchone()[0]
    assert dict(zip(m.classes_, m.class_count_))["a"] == want + local + others


def test_the_aggregate_runs_on_each_shard_concurrently_and_no_rows_cross_the_wire(sharded, shard_servers):
    c = sharded.conn
    table = resolve_table(c, "t")
    descriptor = sharded.explain("linear", table="t", target="y", features=FEATURES, order_by="id",
                                 lo=0, hi=3499).descriptor
    touched = shard_scans.touched_partitions(c, table, descriptor, [descriptor.range])
    assert [p.name for p in touched] == ["t_s0", "t_s1", "t_s2", "t_local"]
    query = shard_scans.scan_query(table, descriptor, [descriptor.range], touched, 1000, ("sql", ""))
    plan = "\n".join(r[0] for r in c.execute(sql.SQL("EXPLAIN (VERBOSE) ") + query).fetchall())
    assert plan.count("Async Foreign Scan") == 3  # the three shards at once
    remote = re.findall(r"Remote SQL: (.*)", plan)
    assert len(remote) == 3 and all("regr_sxy(" in r and "count(" in r for r in remote)
    # a from-scratch fit over every shard: what each shard ran (its statement log) is the aggregate
    marks = [os.path.getsize(s.log_path) for s in shard_servers]
    m = _fit(sharded, 0, 3499)
    assert m.plan.plan.scans and "Shards" in m.plan.extra
    for server, mark in zip(shard_servers, marks):
        with open(server.log_path, encoding="utf-8", errors="replace") as f:
            f.seek(mark)
            log = f.read()
        # postgres_fdw runs each remote query as DECLARE … CURSOR FOR <query>, logged over several lines
        entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", log)
        reads = [e for e in entries if "CURSOR FOR" in e and "public.t" in e]
        assert reads and all("regr_sxy(" in s for s in reads), reads
    # a prefix inside one shard reads that shard alone (partition pruning), and says so
    m = _fit(sharded, 1100, 1800)
    assert "1 of 4 partitions (t_s1)" in m.plan.extra["Partitions"]


def test_a_shards_change_counter_keeps_stored_statistics_true(sharded, shard_servers):
    c = sharded.conn
    assert sharded.prepare_shards("t") == ["s0", "s1", "s2"]
    _fit(sharded, 0, 3499)
    again = _fit(sharded, 0, 3499)
    assert not again.plan.plan.scans  # every shard's counter as recorded: the stored summary answers
    versions = c.execute("SELECT count(*) FROM modelstore.shard_versions").fetchone()[0]
    assert versions == 3
    with _shard(shard_servers[1]) as s1:  # a write on the shard itself, not through the coordinator
        s1.execute("UPDATE t SET y = y + 100 WHERE id BETWEEN 1200 AND 1300")
    m = _fit(sharded, 0, 3499)
    assert m.plan.plan.scans  # the stale summary was not used
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 0, 3499))) < 1e-9
    with _shard(shard_servers[2]) as s2:
        s2.execute("DELETE FROM t WHERE id > 2500")  # committed
    m = _fit(sharded, 0, 3499)
    assert m.plan.plan.scans
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 0, 3499))) < 1e-9
    with _shard(shard_servers[2]) as s2:  # a rolled-back write leaves the counter, and the summary, as they were
        s2.execute("BEGIN")
        s2.execute("DELETE FROM t WHERE id < 2100")
        s2.execute("ROLLBACK")
    assert not _fit(sharded, 0, 3499).plan.plan.scans
    # a write to the local partition is captured by its triggers as on any partitioned table
    c.execute("INSERT INTO t_local VALUES (3600, 1, 2, 3, 'a')")
    m = _fit(sharded, 0, 3999)
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 0, 3999))) < 1e-9


def test_an_unprepared_shard_is_scanned_and_nothing_is_stored(sharded, shard_servers):
    m = _fit(sharded, 0, 3499)
    assert m.plan.plan.scans and any("change counter" in n for n in m.plan.plan.notes)
    assert sharded.conn.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0] == 0
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 0, 3499))) < 1e-9


def test_attach_and_detach_a_shard(sharded, shard_servers):
    c = sharded.conn
    sharded.prepare_shards("t")
    _fit(sharded, 0, 3499)
    c.execute("ALTER TABLE t DETACH PARTITION t_s1")
    m = _fit(sharded, 0, 3499)
    assert m.plan.plan.scans
    rows = _all_rows(sharded, [shard_servers[0], shard_servers[2]], 0, 3499)
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(rows)) < 1e-9
    c.execute("ALTER TABLE t ATTACH PARTITION t_s1 FOR VALUES FROM (1000) TO (2000)")
    m = _fit(sharded, 0, 3499)
    assert m.plan.plan.scans
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 0, 3499))) < 1e-9


def _stop_by_pid(server) -> None:
    """Stop a shard's postmaster by the PID in its postmaster.pid (fast shutdown) and wait for it."""
    pid = int((server.datadir / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"shard postmaster {pid} did not stop")


def test_a_shard_that_is_down_gives_a_named_error_and_nothing_is_stored(sharded, shard_servers):
    c = sharded.conn
    sharded.prepare_shards("t")
    _fit(sharded, 0, 999)
    stored = c.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0]
    models = c.execute("SELECT count(*) FROM modelstore.fitted_models").fetchone()[0]
    _stop_by_pid(shard_servers[2])
    try:
        with pytest.raises(modelstore.ShardUnavailableError, match=r"shard 's2'.*t_s2") as caught:
            _fit(sharded, 500, 2500)
        assert caught.value.server == "s2" and caught.value.partitions == ['"public"."t_s2"']
        assert c.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0] == stored
        assert c.execute("SELECT count(*) FROM modelstore.fitted_models").fetchone()[0] == models
        # a request whose range does not meet s2's partition still works (scanned: s2's counter is unreadable)
        m = _fit(sharded, 0, 1500)
        assert m.plan.plan.scans and any("cannot be reached" in n for n in m.plan.plan.notes)
        assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers[:2], 0, 1500))) < 1e-9
    finally:
        shard_servers[2].start()
    m = _fit(sharded, 500, 2500)
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 500, 2500))) < 1e-9


def test_the_aggregates_are_citus_ready(sharded):
    """Citus distributes an aggregate that has a combine function and a state it can ship: the built-in
    aggregates of the SQL engine and the C extension's have both (docs/scale-out.md, "Citus"). The
    combine function's exactness is tests/test_engine.py's test_combine_equals_aggregate_over_both."""
    c = sharded.conn
    wanted = ["avg(double precision)", "regr_sxy(double precision,double precision)"]
    if stats_engine.installed_schema(c) is not None:
        wanted += ["modelstore.dd_moments(\"any\")", "modelstore.dd_diag(\"any\")"]
    rows = c.execute(
        "SELECT a.aggfnoid::regprocedure::text, a.aggtranstype::regtype::text, a.aggcombinefn::text "
        "FROM pg_aggregate a WHERE a.aggfnoid::regprocedure::text = ANY (%s)", [wanted]).fetchall()
    assert sorted(r[0] for r in rows) == sorted(wanted)
    for name, state, combine in rows:
        assert state == "double precision[]" and combine != "-", (name, state, combine)


def test_the_c_aggregate_is_pushed_down_where_the_shards_have_it(sharded, shard_servers):
    c = sharded.conn
    schema = stats_engine.installed_schema(c)
    if schema is None or stats_engine.requested() == "sql":
        pytest.skip("the modelstore_stats C aggregate is not the coordinator's engine here")
    for i, server in enumerate(shard_servers):
        with _shard(server) as s:
            try:
                s.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                s.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS modelstore_stats SCHEMA {}").format(
                    sql.Identifier(schema)))
            except psycopg.Error as exc:
                pytest.skip(f"the shards' server cannot create the extension: {exc}")
        c.execute(sql.SQL("ALTER SERVER {} OPTIONS (ADD extensions 'modelstore_stats')").format(
            sql.Identifier(f"s{i}")))
    table = resolve_table(c, "t")
    descriptor = sharded.explain("linear", table="t", target="y", features=FEATURES, order_by="id",
                                 lo=0, hi=3499).descriptor
    touched = shard_scans.touched_partitions(c, table, descriptor, [descriptor.range])
    engine = shard_scans.shard_engine(touched, stats_engine.engine(c))
    assert engine[0] == "c"
    query = shard_scans.scan_query(table, descriptor, [descriptor.range], touched, 1000, engine)
    plan = "\n".join(r[0] for r in c.execute(sql.SQL("EXPLAIN (VERBOSE) ") + query).fetchall())
    remote = re.findall(r"Remote SQL: (.*)", plan)
    assert len(remote) == 3 and all("dd_moments(" in r for r in remote)
    m = _fit(sharded, 0, 3499)
    assert "double-double" in m.plan.extra["Statistics"]
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 0, 3499))) < 1e-9


def test_a_deployment_over_a_sharded_table_is_refused(sharded):
    with pytest.raises(modelstore.errors.SourceKindError, match="some of its partitions are foreign tables"):
        sharded.deploy("sharded_now", "linear", table="t", target="y", features=FEATURES, order_by="id", window=100)
    c = sharded.conn
    assert c.execute("SELECT count(*) FROM modelstore.deployments").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'modelstore_deploy'").fetchone()[0] == 0


def test_several_ranges_in_one_statement_are_each_exact(sharded, shard_servers):
    """A plan's gap scans go in one statement: each arm (one per partition) groups its rows by range, and
    each range's statistics are the merge of its parts on every shard it meets."""
    c = sharded.conn
    table = resolve_table(c, "t")
    descriptor = sharded.explain("linear", table="t", target="y", features=FEATURES, order_by="id",
                                 lo=0, hi=3499).descriptor
    ranges = [Range(10, 990), Range(1500, 2600, lo_closed=False), Range(2900, 3300, hi_closed=False)]
    got = executor.scan_many(c, table, descriptor, ranges)
    for r, stats in zip(ranges, got):
        lo = r.lo if r.lo_closed else r.lo + 1
        hi = r.hi if r.hi_closed else r.hi - 1
        rows = _all_rows(sharded, shard_servers, lo, hi)
        assert stats.n == len(rows)
        assert _rel(stats.mean, rows.mean(axis=0)) < 1e-12
        centered = rows - rows.mean(axis=0)
        assert _rel(stats.comoment, centered.T @ centered) < 1e-9


def _catalog_true(store, shard_servers) -> int:
    """Every stored linear summary of ``t`` has numpy's count and means of today's rows in its range."""
    checked = 0
    for lo, hi, n, mean in store.conn.execute(
            "SELECT lo::int, hi::int, n, mean FROM modelstore.statistics WHERE family = 'linear'").fetchall():
        rows = _all_rows(store, shard_servers, lo, hi)
        assert n == len(rows), (lo, hi)
        assert np.allclose(mean, rows.mean(axis=0), rtol=1e-12, atol=1e-12), (lo, hi)
        checked += 1
    return checked


def test_whole_shards_are_stored_summaries_and_a_change_drops_only_that_shards(sharded, shard_servers):
    c = sharded.conn
    sharded.prepare_shards("t")
    shard_ranges = [(0, 999), (1000, 1999), (2000, 2999)]
    first = _fit(sharded, 0, 3499)  # each shard's pushed-down aggregate is kept as its partition's summary
    assert "t_s0, t_s1, t_s2" in first.plan.extra["Per-partition statistics"]
    stored = {(lo, hi) for lo, hi in c.execute("SELECT lo::int, hi::int FROM modelstore.statistics")}
    assert stored == {(0, 3499), *shard_ranges}
    # the scan cut at the shards' bounds: each shard's arm aggregates its own piece, no CASE on the shard
    table = resolve_table(c, "t")
    descriptor = first.plan.plan.descriptor
    pieces = [Range(0, 999), Range(1000, 1999), Range(2000, 2999), Range(3000, 3499)]
    touched = shard_scans.touched_partitions(c, table, descriptor, pieces)
    meets = shard_scans.meeting(c, table, descriptor, pieces, touched)
    assert meets == [[0], [1], [2], [3]]
    query = shard_scans.scan_query(table, descriptor, pieces, touched, 1000, ("sql", ""), meets)
    remote = re.findall(r"Remote SQL: (.*)", "\n".join(
        r[0] for r in c.execute(sql.SQL("EXPLAIN (VERBOSE) ") + query).fetchall()))
    # each arm's part is a constant (partition × 4 + piece), not a CASE over the four pieces
    assert sorted(int(re.match(r"SELECT (\d+), ", r).group(1)) for r in remote) == [0, 5, 10]
    across = _fit(sharded, 500, 2999)  # half of s0, then s1 and s2 whole: only s0's half is scanned
    assert across.plan.rows_scanned == 500
    assert _rel(np.r_[across.intercept_, across.coef_], _lstsq(_all_rows(sharded, shard_servers, 500, 2999))) < 1e-9

    with _shard(shard_servers[1]) as s1:  # a write on the middle shard, not through the coordinator
        s1.execute("UPDATE t SET y = y + 100 WHERE id BETWEEN 1200 AND 1300")
    for lo, hi in (shard_ranges[0], shard_ranges[2]):  # the other shards' summaries: still reused, still exact
        m = _fit(sharded, lo, hi)
        assert not m.plan.plan.scans
        assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, lo, hi))) < 1e-9
    # every summary that read the middle shard is gone: [0, 3499], [500, 2999], [1000, 1999]
    assert {(lo, hi) for lo, hi in c.execute("SELECT lo::int, hi::int FROM modelstore.statistics")} == {
        shard_ranges[0], shard_ranges[2]}
    assert _catalog_true(sharded, shard_servers) == 2
    m = _fit(sharded, 0, 2999)  # s0 and s2 stored, s1 scanned (and kept again)
    assert [(s.range.lo, s.range.hi) for s in m.plan.plan.stored] == [shard_ranges[0], shard_ranges[2]]
    assert m.plan.rows_scanned == ROWS_PER_SHARD
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 0, 2999))) < 1e-9
    assert not _fit(sharded, 1000, 1999).plan.plan.scans  # s1's fresh summary
    assert _catalog_true(sharded, shard_servers) == 4

    with _shard(shard_servers[2]) as s2:  # the last shard: the middle one's summary survives
        s2.execute("DELETE FROM t WHERE id > 2900")
    m = _fit(sharded, 0, 2999)
    assert [(s.range.lo, s.range.hi) for s in m.plan.plan.stored] == [shard_ranges[0], shard_ranges[1]]
    assert m.plan.rows_scanned == ROWS_PER_SHARD - 99
    assert _rel(np.r_[m.intercept_, m.coef_], _lstsq(_all_rows(sharded, shard_servers, 0, 2999))) < 1e-9
    assert _catalog_true(sharded, shard_servers) == c.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0]
