"""The statistics engine experiment (issue #15; DESIGN §7 "the statistics aggregate over a range"):
over ranges of 50K, 500K and 5M rows × 10 features (capped at the table's size), serial and with 2
parallel workers, the median time of

- ``count(last column)``: reading every column of the rows (the floor),
- the C aggregate ``modelstore.dd_moments`` (one call per row, double-double), when installed,
- today's SQL aggregates (``avg`` + ``regr_sxy``, the fallback engine),

and the ratios the targets are stated in: C / count ≤ 2.5, SQL / C ≥ 5.
"""

from __future__ import annotations

import statistics
import time

from psycopg import sql

from modelstore.benchmark import data
from modelstore.benchmark.context import Context
from modelstore.families import FAMILIES
from modelstore.stats import engine as stats_engine

SIZES = (50_000, 500_000, 5_000_000)
WORKERS = (0, 2)


def _median_ms(conn, query, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        conn.execute(query).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def engine(ctx: Context) -> dict:
    conn, cfg = ctx.conn, ctx.config
    table = sql.SQL(ctx.table)
    columns = [*data.FEATURES, data.TARGET]
    values = [sql.SQL("{}::float8").format(sql.Identifier(c)) for c in columns]
    schema = stats_engine.installed_schema(conn)
    reps = 3 if cfg.mode == "quick" else 7
    sizes = sorted({min(s, cfg.rows) for s in SIZES})
    results = []
    for rows in sizes:
        where = sql.SQL("id <= {}").format(sql.Literal(rows))
        queries = {
            "count_last_column": sql.SQL("SELECT count({}) FROM {} WHERE {}").format(
                sql.Identifier(columns[-1]), table, where),
            "sql_aggregates": FAMILIES["linear"].aggregate_query(table, values, where, data.TARGET, 1000,
                                                                  engine=("sql", "")),
        }
        if schema is not None:
            queries["c_aggregate"] = FAMILIES["linear"].aggregate_query(table, values, where, data.TARGET, 1000,
                                                                         engine=("c", schema))
        for workers in WORKERS:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL max_parallel_workers_per_gather = {}").format(sql.Literal(workers)))
                conn.execute("SET LOCAL jit = off")
                if workers:
                    for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
                        conn.execute(sql.SQL("SET LOCAL {} = 0").format(sql.Identifier(setting)))
                for q in queries.values():  # warm the cache
                    conn.execute(q).fetchall()
                ms = {name: _median_ms(conn, q, reps) for name, q in queries.items()}
            entry = {"rows": rows, "features": len(data.FEATURES), "workers": workers, "ms": ms}
            if "c_aggregate" in ms:
                entry["c_over_count"] = ms["c_aggregate"] / ms["count_last_column"]
                entry["sql_over_c"] = ms["sql_aggregates"] / ms["c_aggregate"]
            results.append(entry)
            ctx.console.print(f"engine: {rows:,} rows, {workers} workers: "
                              + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
                              + (f"; C/count {entry['c_over_count']:.2f}, SQL/C {entry['sql_over_c']:.2f}"
                                 if "c_over_count" in entry else ""))
    return {"figure": "statistics engine", "extension": schema is not None,
            "targets": {"c_over_count_max": 2.5, "sql_over_c_min": 5.0}, "results": results}
