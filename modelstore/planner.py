"""Planning a model request: which stored statistics and which base-row scans produce it.

This release plans two strategies: stored statistics for exactly the requested descriptor (same
range and filter, a superset of the columns — any ridge penalty) answer it without touching a base
row; otherwise one in-database aggregate scan of the range does. The cost graph of paper §5
(Algorithms 3 and 4: Dijkstra over stored models ± and scans ±) replaces :func:`plan_request` and
returns the same :class:`~modelstore.plan.Plan` of signed steps, which the executor already runs.
"""

from __future__ import annotations

import time

import psycopg

from modelstore import catalog
from modelstore.descriptor import Descriptor
from modelstore.plan import Plan, Step


def plan_request(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor) -> Plan:
    started = time.perf_counter()
    covering = catalog.covering_stats(conn, source_id, descriptor) if source_id is not None else []
    if covering:
        best = covering[0]
        steps = (Step(+1, "stored", descriptor.range, best.stats_id, best.columns, best.n + best.null_rows),)
        strategy = "stored statistics cover the request exactly"
    else:
        steps = (Step(+1, "scan", descriptor.range),)
        strategy = "no stored statistics cover the range: one aggregate scan"
    return Plan(descriptor, steps, strategy, time.perf_counter() - started)
