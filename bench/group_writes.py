"""What a one-row write costs a table with per-group summaries (issue #18, docs/serving.md "Under writes").

A 100,000-row table with 1,000 group values, a grouped linear fit that stores every group's summary,
then single-row INSERTs inside the range, UPDATEs moving a row between groups and 1,000-row INSERTs,
each timed from the client (autocommit). Run: .venv/bin/python bench/group_writes.py [--groups N]
(starts and stops its own throwaway cluster). A quick measurement, not a benchmark experiment: the
machine it ran on is shared, say so with its figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import modelstore
from modelstore.server import EmbeddedServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-group-statistics", action="store_true")
    a = ap.parse_args()
    with EmbeddedServer(ephemeral=True) as server:
        with modelstore.Store(server.dsn) as store:
            conn = store.conn
            conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, g text, x1 float8, x2 float8, y float8)")
            conn.execute(
                "INSERT INTO t SELECT i, 'g' || (i %% %s), random(), random(), random() FROM generate_series(1, %s) i",
                [a.groups, a.rows])
            conn.execute("ANALYZE t")
            t0 = time.perf_counter()
            store.fit("linear", table="t", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=10 * a.rows,
                      group_by="g", name="m", group_statistics=not a.no_group_statistics)
            fit_s = time.perf_counter() - t0
            rng = np.random.default_rng(1)
            next_id = a.rows + 1

            def timed(statement, params=None) -> float:
                t = time.perf_counter()
                conn.execute(statement, params)
                return (time.perf_counter() - t) * 1000

            out = {}
            ins = []
            for _ in range(a.repeat):
                ins.append(timed("INSERT INTO t VALUES (%s, %s, random(), random(), random())",
                                 [next_id, f"g{rng.integers(a.groups)}"]))
                next_id += 1
            out["one-row INSERT"] = ins
            out["one-row UPDATE moving groups"] = [
                timed("UPDATE t SET g = %s WHERE id = %s", [f"g{rng.integers(a.groups)}", int(rng.integers(1, a.rows))])
                for _ in range(a.repeat)]
            out["one-row DELETE"] = [timed("DELETE FROM t WHERE id = %s", [int(rng.integers(1, a.rows))])
                                     for _ in range(a.repeat)]
            bulk = []
            for _ in range(a.repeat):
                bulk.append(timed("INSERT INTO t SELECT i, 'g' || (i %% %s), random(), random(), random() "
                                  "FROM generate_series(%s, %s) i", [a.groups, next_id, next_id + 999]))
                next_id += 1000
            out["1,000-row INSERT"] = bulk
            out["one-row INSERT of a new group"] = [
                timed("INSERT INTO t VALUES (%s, %s, random(), random(), random())", [next_id + i, f"new{i}"])
                for i in range(a.repeat)]
            print(f"{a.groups} groups, {a.rows} rows; grouped fit {fit_s:.2f} s; load average "
                  f"{os.getloadavg()[0]:.1f}")
            for name, ms in out.items():
                print(f"  {name:32s} median {statistics.median(ms):7.1f} ms  (min {min(ms):.1f}, max {max(ms):.1f}; "
                      f"first {ms[0]:.1f})")


if __name__ == "__main__":
    main()
