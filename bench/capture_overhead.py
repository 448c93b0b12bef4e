"""What change capture costs writers (issue #7's measurement): rows/s with and without it.

One 10-feature table generated inside PostgreSQL; each case loads the same rows into a fresh copy of it
and times the statement, median over repetitions:

* ``plain``: no capture triggers (the table has never had stored statistics);
* ``append``: capture installed, stored statistics and a statistics index over the existing rows, the
  new rows appended past their end (the common case: it should cost almost nothing);
* ``inside``: the same, the new rows landing inside the stored ranges (every summary and index node
  they fall in absorbs the delta);
* ``update``: ``UPDATE`` of rows inside the stored ranges, with and without capture.

    .venv/bin/python bench/capture_overhead.py [--rows 200000] [--batch 20000] [--repeat 5] [--dsn DSN]

Writes ``bench/results/capture_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import modelstore
from psycopg import sql

FEATURES = [f"x{i}" for i in range(1, 11)]


def _create(conn, name: str, rows: int, start: int) -> None:
    ident = sql.Identifier(name)
    cols = sql.SQL(", ").join(sql.SQL("{} float8").format(sql.Identifier(f)) for f in FEATURES)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    conn.execute(sql.SQL("CREATE TABLE {} (id bigint, {}, y float8)").format(ident, cols))
    _insert(conn, name, rows, start)
    conn.execute(sql.SQL("CREATE INDEX ON {} (id)").format(ident))


def _insert(conn, name: str, rows: int, start: int, step: int = 1) -> float:
    values = sql.SQL(", ").join(sql.SQL("random()") for _ in FEATURES)
    started = time.perf_counter()
    conn.execute(sql.SQL("INSERT INTO {} SELECT {} + g * {}, {}, random() FROM generate_series(0, {} - 1) g").format(
        sql.Identifier(name), sql.Literal(start), sql.Literal(step), values, sql.Literal(rows)))
    return time.perf_counter() - started


def _with_statistics(store, name: str, rows: int) -> None:
    for lo in range(1, rows - rows // 5, rows // 10):  # every range inside the existing rows
        store.fit("linear", table=name, target="y", features=FEATURES, order_by="id", lo=lo, hi=lo + rows // 5)
    store.build_index(name, "id", FEATURES, "y", kind="linear", chunk_rows=max(100, rows // 200))


def run(dsn, rows: int, batch: int, repeat: int) -> dict:
    store = modelstore.connect(dsn)
    conn = store.conn
    conn.execute("SELECT setseed(0.7)")
    out: dict[str, list[float]] = {"plain": [], "append": [], "inside": [], "update_plain": [], "update_captured": []}
    for _ in range(repeat):
        _create(conn, "capture_plain", rows, 1)
        out["plain"].append(batch / _insert(conn, "capture_plain", batch, rows + 1))
        started = time.perf_counter()
        cur = conn.execute("UPDATE capture_plain SET x1 = x1 + 1 WHERE id BETWEEN %s AND %s", [1000, 1000 + batch - 1])
        out["update_plain"].append(cur.rowcount / (time.perf_counter() - started))

        _create(conn, "capture_on", rows, 1)
        _with_statistics(store, "capture_on", rows)
        out["append"].append(batch / _insert(conn, "capture_on", batch, rows + 1))
        # inside: between existing ids (x.5 keys would need a float column; use the same ids again)
        out["inside"].append(batch / _insert(conn, "capture_on", batch, 1000))
        started = time.perf_counter()  # the rows inserted inside are updated too: count what changed
        cur = conn.execute("UPDATE capture_on SET x1 = x1 + 1 WHERE id BETWEEN %s AND %s", [1000, 1000 + batch - 1])
        out["update_captured"].append(cur.rowcount / (time.perf_counter() - started))
    summary = {k: statistics.median(v) for k, v in out.items()}
    store.close()
    return {
        "experiment": "capture_overhead",
        "parameters": {"rows": rows, "batch": batch, "repeat": repeat, "features": len(FEATURES),
                       "stored_models": 8, "index": True},
        "rows_per_second_median": summary,
        "ratio_to_plain": {"append": summary["append"] / summary["plain"],
                           "inside": summary["inside"] / summary["plain"],
                           "update": summary["update_captured"] / summary["update_plain"]},
        "runs": out,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    result = run(args.dsn, args.rows, args.batch, args.repeat)
    path = Path(__file__).parent / "results" / "capture_overhead.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"rows_per_second_median": result["rows_per_second_median"],
                      "ratio_to_plain": result["ratio_to_plain"]}, indent=2))


if __name__ == "__main__":
    main()
