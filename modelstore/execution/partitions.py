"""Which partitions of a partitioned table a plan's scans read (docs/scale-out.md).

PostgreSQL prunes the partitions a scan's WHERE clause excludes; EXPLAIN ANALYZE (``model.plan``) says
which ones remain, from PostgreSQL's own plan of the scans' predicate, so that a range over a table
partitioned by time can be seen to read only the partitions it meets.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from modelstore.request.descriptor import Descriptor, Range
from modelstore.request.predicates import range_predicate, with_filter
from modelstore.request.source import Table


def _relations(node: dict, out: list[str]) -> None:
    if "Relation Name" in node:
        out.append(node["Relation Name"])
    for child in node.get("Plans", ()):
        _relations(child, out)


def scanned_partitions(conn: psycopg.Connection, table: Table, descriptor: Descriptor,
                       ranges: list[Range]) -> tuple[list[str], int]:
    """(the leaf partitions PostgreSQL's plan reads for ``ranges``, the number of leaf partitions)."""
    preds = [range_predicate(descriptor.source.order_by, r) for r in ranges]
    where = with_filter(descriptor, sql.SQL(" OR ").join(sql.SQL("({})").format(p) for p in preds))
    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}").format(
        table.identifier, where)).fetchone()[0]
    names: list[str] = []
    _relations(plan[0]["Plan"], names)
    leaves = conn.execute("SELECT count(*) FROM pg_catalog.pg_partition_tree(%s::oid) WHERE isleaf",
                          [table.oid]).fetchone()[0]
    return sorted(set(names)), leaves


def partitions_note(conn: psycopg.Connection, table: Table, descriptor: Descriptor, ranges: list[Range]) -> str:
    """EXPLAIN's line: how many of the table's partitions the scans read, and which."""
    names, leaves = scanned_partitions(conn, table, descriptor, ranges)
    pruned = leaves - len(names)
    return (f"scans read {len(names)} of {leaves} partitions ({', '.join(names) or 'none'})"
            + (f"; {pruned} pruned by PostgreSQL" if pruned > 0 else ""))
