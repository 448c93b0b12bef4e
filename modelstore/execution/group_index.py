"""Per-group nodes of the statistics index: building them, and a grouped fit's statistics from them
(issue #18; docs/index.md "Per-group nodes"; tables in :mod:`modelstore.catalog.group_index`).

Building: one grouped aggregate over the indexed range, grouped by (chunk, ``column::text``) — rows
placed in chunks by ``width_bucket`` over the index's chunk starts, as the index build places them —
gives every group's share of every chunk; each group's hierarchy is then merged in Python (exact
pairwise merges, never subtraction) and all nodes are written with one COPY. Thousands of groups cost
one scan and one write.

Reading (a grouped fit over [lo, hi], :func:`group_statistics`): the run of whole chunks inside the
range is the sum of its canonical nodes (at most 2·log2 n), fetched for every group in one query; the
partial chunks at the two ends are read by one statement grouped by the column; each group's
statistics are the sum of its nodes and its partial rows.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from modelstore.catalog import group_index, index
from modelstore.catalog.index import IndexInfo
from modelstore.errors import InputError
from modelstore.execution import executor
from modelstore.execution.groups import MAX_GROUPS, group_expression
from modelstore.request.cuts import cuts_range, is_empty, range_cuts
from modelstore.request.descriptor import Descriptor, parse_bound
from modelstore.request.predicates import range_predicate
from modelstore.request.source import Table
from modelstore.stats import engine as stats_engine


def check_group_column(table: Table, descriptor: Descriptor, group_by: str) -> str:
    """The group column of a grouped index: a column of the table, not one of the index's columns."""
    table.column(group_by, "group_by")
    if group_by in descriptor.stats_columns or group_by == descriptor.class_column:
        raise InputError(f"group_by column {group_by!r} cannot also be one of the index's columns")
    return group_by


def build(conn: psycopg.Connection, table: Table, info: IndexInfo, descriptor: Descriptor, group_by: str, *,
          max_classes: int = 1000) -> int:
    """(Re)build the index's group nodes for ``group_by`` (module docstring). Run it in the transaction
    that built the index, so that both see the same rows. Returns the number of group nodes."""
    kind = descriptor.source.order_kind
    starts = [parse_bound(r[0], kind) for r in conn.execute(
        "SELECT lo FROM modelstore.index_nodes WHERE index_id = %s AND level = 0 ORDER BY pos",
        [info.index_id]).fetchall()]
    ord_ = sql.Identifier(descriptor.source.order_by)
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    where = sql.SQL("{} >= {} AND {} <= {}").format(ord_, sql.Literal(starts[0]), ord_, sql.Literal(info.end_value))
    # the part: "chunk group" (NULL for a row whose group is NULL: in no group's node)
    part = sql.SQL("((width_bucket({}, {}) - 1)::text || ' ' || {})").format(
        ord_, sql.Literal(starts), group_expression(group_by))
    engine = stats_engine.engine(conn)
    query = descriptor.family.aggregate_query(table.identifier, values, where, descriptor.target, max_classes, part,
                                              MAX_GROUPS * len(starts), engine=engine)
    by_part: dict[str, list] = {}
    for row in conn.execute(query).fetchall():
        if row[0] is not None:
            by_part.setdefault(row[0], []).append(row[1:])
    chunks: dict[str, dict[int, object]] = {}
    for name, rows in by_part.items():
        pos, key = name.split(" ", 1)
        stats = executor.from_rows(descriptor, descriptor.range, rows, max_classes, engine)
        chunks.setdefault(key, {})[int(pos)] = stats
    trees = {key: group_index.sparse_hierarchy(c, info.levels) for key, c in chunks.items()}
    # the group column's type is recorded with the source's: a change of it drops the group nodes
    # (modelstore.catalog.freshness)
    conn.execute("UPDATE modelstore.sources SET column_types = column_types || jsonb_build_object(%s::text, %s::text) "
                 "WHERE source_id = %s", [group_by, table.columns[group_by].signature, info.source_id])
    return group_index.write(conn, info.index_id, group_by, trees)


def _whole_chunks(conn, info: IndexInfo, descriptor: Descriptor):
    """The longest run of whole chunks inside the request's range, as an index span, and the cuts of the
    range (None when no whole chunk lies inside it)."""
    kind = descriptor.source.order_kind
    s, t = range_cuts(descriptor.range, kind)
    inside = [sp for sp in index.spans(conn, info, s, t, kind, len(info.columns)) if s <= sp.lo and sp.hi <= t]
    if not inside:
        return None, s, t
    return max(inside, key=lambda sp: (sp.last - sp.first, -sp.first)), s, t


def _served(conn: psycopg.Connection, descriptor: Descriptor, group_by: str, source_id: int | None):
    """(the index, its widest span of whole chunks inside the request, the partial-chunk ranges at the
    ends) when an index's group nodes for ``group_by`` serve the request; else None."""
    info = group_index.find(conn, source_id, descriptor, group_by)
    if info is None:
        return None
    span, s, t = _whole_chunks(conn, info, descriptor)
    if span is None:
        return None
    kind = descriptor.source.order_kind
    return info, span, [cuts_range(a, b, kind) for a, b in ((s, span.lo), (span.hi, t)) if not is_empty(a, b)]


def group_statistics(conn: psycopg.Connection, table: Table, descriptor: Descriptor, group_by: str,
                     source_id: int | None, *, only=None, max_classes: int = 1000) -> tuple[dict, dict] | None:
    """({group key: statistics}, the plan) of a grouped request from the index's group nodes, or None
    when no index with group nodes for ``group_by`` serves it (then the caller scans)."""
    served = _served(conn, descriptor, group_by, source_id)
    if served is None:
        return None
    info, span, pieces = served
    if only is not None and not only:
        return {}, {"groups": "index", "index_id": info.index_id, "nodes": 0, "rows_scanned": 0}
    from_nodes = group_index.fetch(conn, info, list(span.nodes), only)
    partial: dict[str, object] = {}
    engine = stats_engine.engine(conn)
    if pieces:
        order_by = descriptor.source.order_by
        where = sql.SQL(" OR ").join(sql.SQL("({})").format(range_predicate(order_by, r)) for r in pieces)
        key = group_expression(group_by)
        if only is not None:
            where = sql.SQL("({}) AND {} = ANY({}::text[])").format(where, key, sql.Literal(sorted(only)))
        values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
        query = descriptor.family.aggregate_query(table.identifier, values, sql.SQL("({})").format(where),
                                                  descriptor.target, max_classes, key, MAX_GROUPS, engine=engine)
        by_group: dict[str, list] = {}
        for row in conn.execute(query).fetchall():
            if row[0] is not None:
                by_group.setdefault(row[0], []).append(row[1:])
        partial = {k: executor.from_rows(descriptor, descriptor.range, rows, max_classes, engine)
                   for k, rows in by_group.items()}
    out = {}
    for key in set(from_nodes) | set(partial):
        parts = from_nodes.get(key, []) + ([partial[key]] if key in partial else [])
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        if total.n + total.null_rows > 0:
            out[key] = total
    plan = {"groups": "index", "index_id": info.index_id, "nodes": len(span.nodes),
            "group_nodes": sum(len(v) for v in from_nodes.values()),
            "chunks": (span.first, span.last), "partial": [str(r) for r in pieces],
            "rows_scanned": sum(s.n + s.null_rows for s in partial.values())}
    return out, plan


def describe(conn: psycopg.Connection, descriptor: Descriptor, group_by: str, source_id: int | None) -> str | None:
    """EXPLAIN's line for a grouped request an index's group nodes serve (None when none does)."""
    served = _served(conn, descriptor, group_by, source_id)
    if served is None:
        return None
    info, span, ranges = served
    pieces = [str(r) for r in ranges]
    scan = (f"+ one scan of {' and '.join(pieces)} grouped by {group_by!r}" if pieces else "no partial chunk to scan")
    return (f"groups by {group_by!r} from index #{info.index_id}: chunks [{span.first}, {span.last}) "
            f"{span.lo.value!r}..{span.hi.value!r} as {len(span.nodes)} node(s) per group {scan}")


__all__ = ["build", "check_group_column", "describe", "group_statistics"]
