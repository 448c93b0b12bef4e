"""A from-scratch store.fit against T0 (issue #20: gain ≥ 0.95×; docs/planner.md, "Round trips").

A 50,000-row linear fit (10 features) over disjoint ranges of the ``bench/index_latency.py`` table (no
statistics index): each range timed as T0 — the executor's aggregate scan plus the solve, no catalog — and
then as ``store.fit`` (plan, scan, solve, materialise). ``--named`` gives every model a name (its commit then
waits for the WAL flush, docs/freshness.md); ``--profile N`` prints cProfile's top N functions of the fits.

    .venv/bin/python bench/scratch_latency.py [--rows 1000000] [--ranges 18] [--named] [--profile 25]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))

import index_latency as il  # noqa: E402

import modelstore  # noqa: E402
from modelstore.benchmark.data import prewarm  # noqa: E402
from modelstore.execution.executor import scan  # noqa: E402
from modelstore.models.linear import LinearRegression  # noqa: E402
from modelstore.request.source import resolve_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ranges", type=int, default=18)
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--named", action="store_true")
    parser.add_argument("--reload", action="store_true", help="generate the table again")
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--callers", help="with --profile: print the callers of functions matching this")
    parser.add_argument("--dsn")
    args = parser.parse_args()
    with modelstore.connect(args.dsn) as store:
        conn = store.conn
        if args.reload or resolve_table_missing(conn):
            il.load(conn, args.rows)
        # every earlier run's statistics and statistics indexes go (bench/index_latency.py builds one on this
        # table): each range is fitted from scratch
        for catalog in ("statistics", "stat_indexes"):
            conn.execute(sql.SQL("DELETE FROM modelstore.{} WHERE source_id IN "
                                 "(SELECT source_id FROM modelstore.sources WHERE table_name = %s)").format(
                                     sql.Identifier(catalog)), [il.TABLE])
        conn.commit()
        cache = prewarm(conn, [il.TABLE])  # T0 and the fit both read from memory (docs/planner.md)

        def fit(lo, hi, name=None):
            return store.fit("linear", table=il.TABLE, target="y", features=il.FEATURES, order_by="id", lo=lo,
                             hi=hi, name=name, replace=name is not None)

        fit(1, 1000)  # described, source recorded, capture installed
        tbl = resolve_table(conn, il.TABLE)
        step = args.rows // (args.ranges + 1)
        t0s, ends, plans = [], [], []
        profile = cProfile.Profile() if args.profile else None
        for k in range(1, args.ranges + 1):
            lo = k * step + 1
            hi = lo + args.size - 1
            d = store.explain("linear", table=il.TABLE, target="y", features=il.FEATURES, order_by="id", lo=lo,
                              hi=hi).descriptor
            conn.commit()
            a = time.perf_counter()
            LinearRegression.from_stats(scan(conn, tbl, d, d.range))
            t0s.append((time.perf_counter() - a) * 1e3)
            conn.commit()
            if profile:
                profile.enable()
            a = time.perf_counter()
            m = fit(lo, hi, f"scratch_{k}" if args.named else None)
            ends.append((time.perf_counter() - a) * 1e3)
            if profile:
                profile.disable()
            plans.append("+".join(s.op for s in m.plan.plan.steps))
    # the ranges are disjoint and nothing is stored beforehand: every plan should be the one scan
    print(json.dumps({"named": args.named, "cache": cache, "plans": dict(Counter(plans)),
                      "T0_median_ms": round(statistics.median(t0s), 2),
                      "fit_median_ms": round(statistics.median(ends), 2),
                      "gain_median": round(statistics.median(t / e for t, e in zip(t0s, ends)), 3),
                      "overhead_median_ms": round(statistics.median(e - t for t, e in zip(t0s, ends)), 2)}))
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
        if args.callers:
            pstats.Stats(profile).print_callers(args.callers)


def resolve_table_missing(conn) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NULL", [il.TABLE]).fetchone()[0]


if __name__ == "__main__":
    main()
