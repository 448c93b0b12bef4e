"""Per-group statistics from one grouped aggregate (issue #18; docs/serving.md, "Per-group models").

The family's own aggregate statement, grouped by ``group_column::text`` through the executor's *part*
mechanism (the one that aggregates several ranges in one statement): one scan of the request's rows
gives every group's statistics, however many groups there are — never one scan per group. ``only``
restricts it to some groups (a grouped deployment's refresh re-reads just the groups a write touched).
Rows whose group is NULL count in the global model only.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from modelstore.request.descriptor import Descriptor
from modelstore.request.predicates import range_predicate, with_filter
from modelstore.request.source import Table
from modelstore.stats import engine as stats_engine

#: the most groups one grouped model holds (bounds the Naive Bayes families' LIMIT)
MAX_GROUPS = 1_000_000


def group_expression(column: str) -> sql.Composable:
    return sql.SQL("({})::text").format(sql.Identifier(column))


def grouped_query(table: Table, descriptor: Descriptor, group_column: str, *, only=None, max_classes: int = 1000,
                  engine: tuple[str, str] = ("sql", "")) -> sql.Composed:
    """The one statement: the descriptor's statistics per value of ``group_column``."""
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    where = with_filter(descriptor, range_predicate(descriptor.source.order_by, descriptor.range))
    key = group_expression(group_column)
    if only is not None:
        where = sql.SQL("({}) AND {} = ANY({}::text[])").format(where, key, sql.Literal(sorted(only)))
    return descriptor.family.aggregate_query(table.identifier, values, where, descriptor.target, max_classes, key,
                                             MAX_GROUPS, engine=engine)


def scan_groups(conn: psycopg.Connection, table: Table, descriptor: Descriptor, group_column: str, *, only=None,
                max_classes: int = 1000) -> dict:
    """{group key: statistics} of the request's rows, by one aggregate statement."""
    if only is not None and not only:
        return {}
    engine = stats_engine.engine(conn)
    rows = conn.execute(grouped_query(table, descriptor, group_column, only=only, max_classes=max_classes,
                                      engine=engine)).fetchall()
    by_group: dict[str, list] = {}
    for row in rows:
        if row[0] is not None:
            by_group.setdefault(row[0], []).append(row[1:])
    return {key: descriptor.family.from_aggregate(descriptor.stats_columns, part, target=descriptor.target,
                                                  where=f"group {group_column} = {key!r}", max_classes=max_classes,
                                                  engine=engine)
            for key, part in by_group.items()}


__all__ = ["scan_groups", "grouped_query", "group_expression", "MAX_GROUPS"]
