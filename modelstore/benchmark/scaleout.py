"""The scale-out experiment (issue #19; docs/scale-out.md): the statistics aggregate over a table sharded
across 1, 2 and 3 PostgreSQL servers with postgres_fdw.

The experiment starts three throwaway clusters (modelstore's embedded server, ephemeral, on 127.0.0.1)
and stops them at the end. The first ``scaleout_rows`` rows of the benchmark table are split evenly over
n shards, n = 1, 2, 3; the coordinator's table is partitioned by id into n foreign partitions. For each n,
the median over ``scaleout_repeats`` runs of

* **wall**: one from-scratch linear statistics request over every row, through the coordinator
  (:func:`modelstore.execution.shards.scan_many`: one aggregate per shard, pushed down, concurrent);
* **per shard**: the same aggregate run on each shard's own connection (what the shard spends);
* **coordinator overhead**: wall − the slowest shard (planning, the round trips, the merge);
* **rows over the wire**: the rows the coordinator received (one per shard) against the rows scanned;
* **local**: the same aggregate over the same rows in one local table, the single-server baseline;

and whether the merged statistics equal the local ones. On one machine the shards share its cores
(2 on the reference machine), which bounds the speed-up; the projection to N machines assumes one shard
per machine: ``T(N) = t_coord + t_row · rows / N``, with t_row the measured per-row cost of a shard and
t_coord the measured overhead.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import psycopg
from psycopg import sql

from modelstore.benchmark import data
from modelstore.benchmark.context import Context
from modelstore.execution import shards as shard_scans
from modelstore.execution.executor import scan
from modelstore.families import FAMILIES
from modelstore.request.source import resolve_table
from modelstore.server import EmbeddedServer
from modelstore.stats import engine as stats_engine

SHARDS = (1, 2, 3)
#: machines the projection is stated for
PROJECTED = (1, 2, 4, 8, 16, 32)
SERVER = "modelstore_bench_shard{}"
COLUMNS = (*data.FEATURES, data.TARGET)


def _median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _table(n: int) -> str:
    return f"scaleout_{n}"


def _drop(conn) -> None:
    for i in range(max(SHARDS)):
        conn.execute(sql.SQL("DROP SERVER IF EXISTS {} CASCADE").format(sql.Identifier(SERVER.format(i))))
    for n in SHARDS:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(_table(n))))
        conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s",
                     [data.SCHEMA, _table(n)])


def _load_shard(conn, shard: psycopg.Connection, table: str, lo: int, hi: int) -> None:
    """Rows lo ≤ id ≤ hi of the benchmark table into ``table`` on the shard (binary COPY through here)."""
    columns = [sql.SQL("id bigint NOT NULL")] + [sql.SQL("{} float8 NOT NULL").format(sql.Identifier(c))
                                                  for c in COLUMNS]
    shard.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(data.SCHEMA)))
    shard.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(table)))
    shard.execute(sql.SQL("CREATE TABLE {} ({})").format(data.ident(table), sql.SQL(", ").join(columns)))
    names = sql.SQL(", ").join(sql.Identifier(c) for c in ("id", *COLUMNS))
    with conn.cursor().copy(sql.SQL("COPY (SELECT {} FROM {} WHERE id BETWEEN {} AND {}) TO STDOUT (FORMAT BINARY)").format(
            names, sql.Identifier(data.SCHEMA, data.TABLE), sql.Literal(lo), sql.Literal(hi))) as out, \
            shard.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(data.ident(table), names)) as into:
        for block in out:
            into.write(block)
    shard.execute(sql.SQL("VACUUM (ANALYZE) {}").format(data.ident(table)))


def _c_on_shard(shard: psycopg.Connection) -> bool:
    """The C aggregate on a shard, in the schema the coordinator's lives in (postgres_fdw ships the
    function schema-qualified); False when the shard's server does not have it."""
    try:
        with shard.transaction():
            shard.execute("CREATE SCHEMA IF NOT EXISTS modelstore")
            shard.execute("CREATE EXTENSION IF NOT EXISTS modelstore_stats SCHEMA modelstore")
        return True
    except psycopg.Error:
        return False


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def scaleout(ctx: Context) -> dict:
    conn, cfg = ctx.conn, ctx.config
    rows = min(cfg.scaleout_rows, cfg.rows)
    reps = cfg.scaleout_repeats
    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgres_fdw'").fetchone()
    if not superuser or available is None:
        return {"figure": "scale-out over postgres_fdw shards (issue #19)", "rows": rows,
                "skipped": "postgres_fdw is not available" if available is None
                else "CREATE EXTENSION postgres_fdw needs a superuser"}
    conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    _drop(conn)  # what an interrupted run left
    engine = stats_engine.engine(conn)
    servers: list[EmbeddedServer] = []
    points = []
    try:
        for _ in ctx.track(range(max(SHARDS)), "starting the shards' PostgreSQL clusters"):
            servers.append(EmbeddedServer(ephemeral=True).start())
        shard_conns = [psycopg.connect(s.dsn, autocommit=True) for s in servers]
        with_c = engine[0] == "c" and all(_c_on_shard(c) for c in shard_conns)
        for i, server in enumerate(servers):
            options = [sql.SQL("host '127.0.0.1', port {}, dbname 'modelstore', async_capable 'true'").format(
                sql.Literal(str(server.port)))]
            if with_c:
                options.append(sql.SQL("extensions 'modelstore_stats'"))
            conn.execute(sql.SQL("CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ({})").format(
                sql.Identifier(SERVER.format(i)), sql.SQL(", ").join(options)))
            conn.execute(sql.SQL("CREATE USER MAPPING FOR CURRENT_USER SERVER {} OPTIONS (user 'modelstore')").format(
                sql.Identifier(SERVER.format(i))))
        local_table = sql.Identifier(data.SCHEMA, data.TABLE)
        values = [sql.SQL("{}::float8").format(sql.Identifier(c)) for c in COLUMNS]
        where_all = sql.SQL("id <= {}").format(sql.Literal(rows))
        linear = FAMILIES["linear"]
        local_query = linear.aggregate_query(local_table, values, where_all, data.TARGET, 1000, engine=engine)
        local_ms = _median_ms(lambda: conn.execute(local_query).fetchall(), reps)
        local_stats = from_rows_of(conn, local_query, engine)
        for n in SHARDS:
            parent = data.ident(_table(n))
            bounds = [1 + (rows * i) // n for i in range(n + 1)]
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint NOT NULL, {}) PARTITION BY RANGE (id)").format(
                parent, sql.SQL(", ").join(sql.SQL("{} float8 NOT NULL").format(sql.Identifier(c)) for c in COLUMNS)))
            for i in ctx.track(range(n), f"loading {rows:,} rows onto {n} shard(s)"):
                _load_shard(conn, shard_conns[i], _table(n), bounds[i], bounds[i + 1] - 1)
                conn.execute(sql.SQL("CREATE FOREIGN TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}) SERVER {} "
                                     "OPTIONS (schema_name {}, table_name {})").format(
                    data.ident(f"{_table(n)}_s{i}"), parent, sql.Literal(bounds[i]), sql.Literal(bounds[i + 1]),
                    sql.Identifier(SERVER.format(i)), sql.Literal(data.SCHEMA), sql.Literal(_table(n))))
            table = resolve_table(conn, f"{data.SCHEMA}.{_table(n)}")
            descriptor = ctx.store.explain("linear", table=f"{data.SCHEMA}.{_table(n)}", target=data.TARGET,
                                           features=list(data.FEATURES), order_by="id", lo=1, hi=rows).descriptor
            r = descriptor.range
            touched = shard_scans.touched_partitions(conn, table, descriptor, [r])
            used = shard_scans.shard_engine(touched, engine)
            query = shard_scans.scan_query(table, descriptor, [r], touched, 1000, used)
            wire_rows = len(conn.execute(query).fetchall())
            plan = "\n".join(row[0] for row in conn.execute(sql.SQL("EXPLAIN (VERBOSE) ") + query).fetchall())
            wall_ms = _median_ms(lambda: scan(conn, table, descriptor, r, engine=engine), reps)
            merged = scan(conn, table, descriptor, r, engine=engine)
            per_shard = []
            for i in range(n):
                shard_query = linear.aggregate_query(
                    data.ident(_table(n)), values, sql.SQL("TRUE"), data.TARGET, 1000, engine=used)
                per_shard.append(_median_ms(lambda c=shard_conns[i], q=shard_query: c.execute(q).fetchall(), reps))
            slowest = max(per_shard)
            mean_a, mean_b = np.asarray(merged.mean, dtype=float), np.asarray(local_stats.mean, dtype=float)
            points.append({
                "shards": n, "rows": rows, "rows_per_shard": [bounds[i + 1] - bounds[i] for i in range(n)],
                "wall_ms": wall_ms, "per_shard_ms": per_shard, "slowest_shard_ms": slowest,
                "coordinator_ms": max(0.0, wall_ms - slowest), "rows_over_wire": wire_rows, "rows_scanned": rows,
                "async_foreign_scans": plan.count("Async Foreign Scan"),
                "aggregate_in_remote_sql": all(("regr_sxy(" in x or "dd_moments(" in x)
                                               for x in plan.split("Remote SQL: ")[1:]),
                "engine": used[0], "speedup_vs_local": local_ms / wall_ms if wall_ms > 0 else None,
                "exact": {"n_equal": int(merged.n) == int(local_stats.n),
                          "max_relative_error": max(_relative(mean_a, mean_b),
                                                    _relative(np.asarray(merged.comoment, dtype=float),
                                                              np.asarray(local_stats.comoment, dtype=float)))},
            })
        # the projection: per-row shard cost from the one-shard point, overhead as measured (median)
        one = points[0]
        t_row = one["slowest_shard_ms"] / rows
        t_coord = statistics.median(p["coordinator_ms"] for p in points)
        projection = {"formula": "T(N) = t_coord + t_row * rows / N (one shard per machine)",
                      "t_row_ms": t_row, "t_coord_ms": t_coord,
                      "rows": {str(size): {str(m): t_coord + t_row * size / m for m in PROJECTED}
                               for size in (rows, 5_000_000)}}
        for c in shard_conns:
            c.close()
    finally:
        try:
            _drop(conn)
        finally:
            for s in servers:
                s.stop()
    return {"figure": "scale-out over postgres_fdw shards (issue #19)", "rows": rows, "repeats": reps,
            "local_ms": local_ms, "engine": engine[0], "points": points, "projection": projection}


def from_rows_of(conn, query, engine):
    """The linear statistics of one aggregate statement's rows (the local baseline's)."""
    descriptor_columns = list(COLUMNS)
    return FAMILIES["linear"].from_aggregate(descriptor_columns, conn.execute(query).fetchall(), target=data.TARGET,
                                             where="the local baseline", max_classes=1000, engine=engine)
