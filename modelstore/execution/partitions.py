"""Which partitions of a partitioned table a plan's scans read (docs/scale-out.md).

PostgreSQL prunes the partitions a scan's WHERE clause excludes; EXPLAIN ANALYZE (``model.plan``) says
which ones remain, from PostgreSQL's own plan of the scans' predicate, so that a range over a table
partitioned by time can be seen to read only the partitions it meets. A request that covers whole
partitions of a table range-partitioned on the ordering column keeps their statistics one by one
(:func:`whole_partitions`): a whole partition is a natural stored model.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from modelstore.request import bounds
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


def whole_partitions(conn: psycopg.Connection, table: Table, descriptor: Descriptor, *, open_lo: bool = False,
                     open_hi: bool = False) -> list[tuple[Range, Range, str]]:
    """The partitions a request's statistics can be kept for one by one (docs/scale-out.md, "Statistics
    per partition"): those of a table range-partitioned on the ordering column whose closed range the
    request's range contains, as (the piece to scan, the partition's closed range, its name).

    ``open_lo`` / ``open_hi``: the request omitted that bound, so its range starts at the table's first
    (ends at its last) value; a partition cut there is whole too when it holds no row outside the request
    — checked in one statement — and the piece's statistics are then those of the whole partition."""
    order_by = descriptor.source.order_by
    r = descriptor.range
    out: list[tuple[Range, Range, str]] = []
    cut_ends: list[tuple[Range, Range, str]] = []
    for p in bounds.range_partitions(conn, table, order_by, descriptor.source.order_kind):
        c = p.closed
        if c is None or not bounds.overlaps(r, c):
            continue
        if bounds.contains(r, c):
            out.append((c, c, p.name))
        elif (open_lo or c.lo >= r.lo) and (open_hi or c.hi <= r.hi):
            cut_ends.append((Range(max(c.lo, r.lo), min(c.hi, r.hi)), c, p.name))
    if cut_ends:
        # rows of those partitions outside the request (none, when its ends are the table's extent)
        outside = [Range(c.lo, piece.lo, True, False) for piece, c, _ in cut_ends if c.lo < piece.lo]
        outside += [Range(piece.hi, c.hi, False, True) for piece, c, _ in cut_ends if piece.hi < c.hi]
        any_row = bool(outside) and conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
            table.identifier, sql.SQL(" OR ").join(
                sql.SQL("({})").format(range_predicate(order_by, o)) for o in outside))).fetchone()[0]
        if not any_row:
            out += cut_ends
    return sorted(out, key=lambda e: e[1].lo)


def reused_partitions(conn: psycopg.Connection, table: Table, plan) -> list[str]:
    """The partitions whose own stored statistics ``plan`` reads (a stored step over a partition's
    closed range), for EXPLAIN."""
    stored = {s.range for s in plan.steps if s.op == "stored"}
    if table.kind != "p" or not stored:
        return []
    source = plan.descriptor.source
    return [p.name for p in bounds.range_partitions(conn, table, source.order_by, source.order_kind)
            if p.closed is not None and p.closed in stored]
