"""Scans of a sharded table — a partitioned table whose partitions are postgres_fdw foreign tables on
other PostgreSQL servers (docs/scale-out.md, "Sharded tables").

PostgreSQL 15 does not push a partial aggregate through a partitioned table to its foreign partitions:
``SELECT agg(…) FROM parent`` would bring every row to the coordinator. So a scan names the partitions
the request's ranges meet (PostgreSQL's own pruning, read from its plan) and aggregates each one by
itself, all in one ``UNION ALL`` statement: each arm is an aggregate over one foreign table, which
postgres_fdw ships whole to its shard (``EXPLAIN VERBOSE`` shows it in the Remote SQL), and with the
servers' ``async_capable`` option the foreign scans run concurrently (an ``Async Foreign Scan`` under
the Append). The per-shard statistics are merged on the coordinator with the pairwise (Chan et al.)
merge, the ``+`` of the statistics classes (paper §3.3) — exact, in any order.

A shard that cannot be reached fails the statement; :class:`~modelstore.errors.ShardUnavailableError`
names its server and partitions, and the request's transaction rolls back (nothing is stored).
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from modelstore.errors import ShardUnavailableError
from modelstore.request import bounds
from modelstore.request.descriptor import Descriptor, Range
from modelstore.request.predicates import range_predicate, with_filter
from modelstore.request.source import Partition, Table
from modelstore.stats.engine import EXTENSION

#: postgres_fdw's words for a server it cannot reach: 'could not connect to server "s1"'
_SERVER_IN_MESSAGE = re.compile(r'server "((?:[^"]|"")+)"')


def _where(descriptor: Descriptor, ranges: list[Range]) -> sql.Composable:
    preds = [range_predicate(descriptor.source.order_by, r) for r in ranges]
    if len(preds) == 1:
        return with_filter(descriptor, preds[0])
    return with_filter(descriptor, sql.SQL(" OR ").join(sql.SQL("({})").format(p) for p in preds))


def _relations(node: dict, out: set) -> None:
    if "Relation Name" in node:
        out.add((node.get("Schema"), node["Relation Name"]))
    for child in node.get("Plans", ()):
        _relations(child, out)


def touched_partitions(conn: psycopg.Connection, table: Table, descriptor: Descriptor,
                       ranges: list[Range]) -> list[Partition]:
    """The leaves PostgreSQL's plan reads for ``ranges`` (partition pruning), in the table's order.
    Planning connects to no shard (postgres_fdw estimates locally unless use_remote_estimate is set)."""
    plan = conn.execute(sql.SQL("EXPLAIN (VERBOSE, FORMAT JSON) SELECT 1 FROM {} WHERE {}").format(
        table.identifier, _where(descriptor, ranges))).fetchone()[0]
    names: set = set()
    _relations(plan[0]["Plan"], names)
    return [p for p in table.partitions if (p.schema, p.name) in names]


def shard_engine(touched: list[Partition], engine: tuple[str, str]) -> tuple[str, str]:
    """The engine every arm uses (one statement has one row shape): the C aggregate only when every
    touched shard's server lists the extension in its ``extensions`` option — postgres_fdw pushes down
    only built-in functions and those of the extensions listed there — else the SQL aggregates, which
    are built in and always pushed down."""
    if engine[0] == "c" and all(EXTENSION in p.extensions for p in touched if p.kind == "f"):
        return engine
    return ("sql", "")


def meeting(conn: psycopg.Connection, table: Table, descriptor: Descriptor, ranges: list[Range],
            touched: list[Partition]) -> list[list[int]]:
    """For each touched partition, the ranges that meet its bounds (all of them where its bounds are not
    a range of the ordering column): on a table range-partitioned on it, a partition's arm then groups
    only by its own ranges — one, for ranges cut at the partition bounds (docs/scale-out.md)."""
    direct = {p.oid: p for p in bounds.range_partitions(conn, table, descriptor.source.order_by,
                                                         descriptor.source.order_kind)}
    out = []
    for leaf in touched:
        p = direct.get(leaf.oid)
        out.append([j for j, r in enumerate(ranges)
                    if p is None or ((p.lo is None or r.hi > p.lo or (r.hi == p.lo and r.hi_closed))
                                     and (p.hi is None or r.lo < p.hi))])
    return out


def scan_query(table: Table, descriptor: Descriptor, ranges: list[Range], touched: list[Partition],
               max_classes: int, engine: tuple[str, str], meets: list[list[int]] | None = None) -> sql.Composed:
    """One UNION ALL statement: per touched partition, the family's aggregate over that partition alone;
    each row starts with its part, ``partition index × len(ranges) + range index``. ``meets``: the ranges
    each partition's arm considers (:func:`meeting`; default all)."""
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    preds = [range_predicate(descriptor.source.order_by, r) for r in ranges]
    arms = []
    for i, leaf in enumerate(touched):
        offset = i * len(ranges)
        mine = list(range(len(ranges))) if meets is None else meets[i]
        if not mine:
            continue
        if len(mine) == 1:
            part = sql.Literal(offset + mine[0])
        else:
            part = sql.SQL("(CASE {} END)").format(sql.SQL(" ").join(
                sql.SQL("WHEN {} THEN {}").format(preds[j], sql.Literal(offset + j)) for j in mine))
        arms.append(descriptor.family.aggregate_query(leaf.identifier, values,
                                                      _where(descriptor, [ranges[j] for j in mine]),
                                                      descriptor.target, max_classes, part, len(ranges),
                                                      engine=engine))
    return sql.SQL(" UNION ALL ").join(sql.SQL("({})").format(a) for a in arms)


def unavailable(table: Table, touched: list[Partition], exc: psycopg.Error) -> ShardUnavailableError:
    """The named error for a shard that failed the statement."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = _SERVER_IN_MESSAGE.search(str(exc))
    server = match.group(1).replace('""', '"') if match else None
    on_it = [p.display for p in touched if p.server == server] if server else []
    if server is None:  # a message without the server's name: every shard the statement read is a suspect
        on_it = [p.display for p in touched if p.kind == "f"]
    where = f"shard {server!r}" if server else "a shard"
    return ShardUnavailableError(
        f"{where} of {table.display} (foreign partition(s) {', '.join(on_it)}) cannot be reached: {message}; "
        f"nothing was stored. Requests whose ranges do not meet its partitions still work.",
        server=server, partitions=on_it)


def scan_many(conn: psycopg.Connection, table: Table, descriptor: Descriptor, ranges: list[Range],
              max_classes: int, engine: tuple[str, str], from_rows) -> tuple[list, tuple[str, str], list[Partition]]:
    """Statistics of each of ``ranges`` over a sharded table (see the module's docstring); returns them
    with the engine the arms used and the partitions they read. ``from_rows`` turns one part's rows into
    statistics (the executor's)."""
    touched = touched_partitions(conn, table, descriptor, ranges)
    engine = shard_engine(touched, engine)
    by_part: dict[int, list] = {i: [] for i in range(len(touched) * len(ranges))}
    if touched:
        try:
            meets = meeting(conn, table, descriptor, ranges, touched) if len(ranges) > 1 else None
            rows = conn.execute(scan_query(table, descriptor, ranges, touched, max_classes, engine, meets)).fetchall()
        except psycopg.OperationalError as exc:
            raise unavailable(table, touched, exc) from exc
        for row in rows:
            by_part[row[0]].append(row[1:])
    out = []
    for j, r in enumerate(ranges):
        total = from_rows(descriptor, r, [], max_classes, engine) if not touched else None
        for i in range(len(touched)):
            part = from_rows(descriptor, r, by_part[i * len(ranges) + j], max_classes, engine)
            total = part if total is None else total + part
        out.append(total)
    return out, engine, touched
