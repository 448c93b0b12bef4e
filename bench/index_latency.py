"""Latency of a random range model with the statistics index built (issue #4's measurement).

A seeded 5M-row, 10-feature table generated inside PostgreSQL (``setseed`` + ``random()``, features
interdependent, a noisy linear target), an index on the ordering column, the statistics index built
with the cost model's chunk size; then random range requests end to end through ``store.fit`` (plan,
fetch nodes, partial scans, solve, materialise) against the from-scratch aggregate scan of the same
ranges. Writes ``bench/results/index_latency.json``.

    .venv/bin/python bench/index_latency.py [--rows 5000000] [--queries 200] [--dsn DSN]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np
from psycopg import sql

import modelstore
from modelstore.benchmark.data import prewarm
from modelstore.execution.executor import scan
from modelstore.request.source import resolve_table

TABLE = "bench_index"
FEATURES = [f"x{i}" for i in range(1, 11)]


def load(conn, rows: int) -> None:
    """Generate the table server-side: deterministic (setseed) and fast."""
    ident = sql.Identifier(TABLE)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    conn.execute("DELETE FROM modelstore.sources WHERE table_name = %s", [TABLE])
    with conn.transaction():
        conn.execute("SELECT setseed(0.42)")
        gauss = "sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())"
        conn.execute(sql.SQL(
            "CREATE TABLE {} AS SELECT g::bigint AS id, " + ", ".join(f"{gauss} AS e{i}" for i in range(1, 12))
            + " FROM generate_series(1, {}) AS g").format(ident, sql.Literal(rows)))
        # interdependent features and a noisy linear target, as in the paper's synthetic data
        items = [sql.SQL("id")]
        for i in range(1, 11):
            expr = f"e{i} * {i}" + (f" + 0.5 * e{i - 1}" if i > 1 else "")
            items.append(sql.SQL(expr + " AS {}").format(sql.Identifier(f"x{i}")))
        y = " + ".join(f"{(-1) ** i * 0.3 * i} * e{i}" for i in range(1, 11)) + " + 2.0 * e11"
        items.append(sql.SQL(y + " AS y"))
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT {} FROM {}").format(
            sql.Identifier(TABLE + "_t"), sql.SQL(", ").join(items), ident))
        conn.execute(sql.SQL("DROP TABLE {}").format(ident))
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(TABLE + "_t"), ident))
        conn.execute(sql.SQL("CREATE INDEX ON {} (id)").format(ident))
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(ident))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scratch", type=int, default=40, help="from-scratch scans timed (a subset)")
    parser.add_argument("--dsn")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "index_latency.json"))
    args = parser.parse_args()
    rng = random.Random(7)
    with modelstore.connect(args.dsn) as store:
        t0 = time.perf_counter()
        load(store.conn, args.rows)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        info = store.build_index(TABLE, "id", FEATURES, "y")
        build_s = time.perf_counter() - t0
        # the table, its btree and the catalog in the OS page cache (a cold page costs ~0.4 ms on this disk)
        cache = prewarm(store.conn, [TABLE])
        requests = []
        for _ in range(args.queries):
            size = max(1000, int(rng.gauss(50_000, 12_500))) if len(requests) % 2 == 0 else rng.randint(1000, args.rows)
            lo = rng.randint(1, max(1, args.rows - size))
            requests.append((lo, lo + size - 1))
        ends, plans = [], []
        for lo, hi in requests:
            t0 = time.perf_counter()
            m = store.fit("linear", table=TABLE, target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)
            ends.append((time.perf_counter() - t0) * 1000)
            plans.append({"rows_scanned": m.plan.rows_scanned, "index_nodes": m.plan.index_nodes_used,
                          "planning_ms": m.plan.plan.planning_seconds * 1000, "steps": len(m.plan.results)})
        tbl = resolve_table(store.conn, TABLE)
        scratch = []
        for lo, hi in requests[: args.scratch]:
            d = store.explain("linear", table=TABLE, target="y", features=FEATURES, order_by="id", lo=lo,
                              hi=hi).descriptor
            t0 = time.perf_counter()
            scan(store.conn, tbl, d, d.range)
            scratch.append((time.perf_counter() - t0) * 1000)
        pair = [s / e for s, e in zip(scratch, ends[: len(scratch)])]
    result = {
        "experiment": "index_latency",
        "what": "end-to-end store.fit of a random range (linear, 10 features) with the statistics index built, "
                "vs the same statistics by one in-database aggregate scan",
        "rows": args.rows, "features": 10, "queries": args.queries,
        "query_sizes": "alternating N(50K, 12.5K) and uniform(1K, rows)",
        "load_seconds": round(load_s, 1), "index_build_seconds": round(build_s, 1), "cache": cache,
        "index": {k: (v.item() if hasattr(v, "item") else v) for k, v in info.items()
                  if k in ("chunk_rows", "n_chunks", "levels", "index_bytes", "table_bytes", "size_ratio")},
        "end_to_end_ms": {"median": statistics.median(ends), "p10": float(np.percentile(ends, 10)),
                          "p90": float(np.percentile(ends, 90)), "max": max(ends)},
        "planning_ms_median": statistics.median(p["planning_ms"] for p in plans),
        "rows_scanned_median": statistics.median(p["rows_scanned"] for p in plans),
        "index_nodes_median": statistics.median(p["index_nodes"] for p in plans),
        "from_scratch_ms": {"median": statistics.median(scratch), "p10": float(np.percentile(scratch, 10)),
                            "p90": float(np.percentile(scratch, 90)), "n": len(scratch)},
        "gain_median": statistics.median(pair),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "modelstore": modelstore.__version__,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
