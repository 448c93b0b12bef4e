"""Building and refreshing the statistics index (docs/index.md); its tables are :mod:`modelstore.catalog.index`.

Building is one pass for the chunk boundaries (``rank()`` over the ordering column) and grouped
aggregates for the statistics (rows bucketed by ``width_bucket`` over the boundaries), a slice of
chunks per statement so that a progress bar can follow; the hierarchy is merged in Python. Refreshing
after appends re-chunks from the last chunk on, with the same global numbering, so the result equals an
index built from scratch on the grown table.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import psycopg
from psycopg import sql

from modelstore.catalog.index import (
    IndexInfo, hierarchy, levels_for, load, node_bytes, node_values, write_nodes,
)
from modelstore.request.cuts import Cut, make_cut
from modelstore.request.descriptor import Descriptor, Range, bound_text, parse_bound
from modelstore.request.source import Table
from modelstore.errors import InputError, NonFiniteValueError
from modelstore.execution import executor
from modelstore.stats import engine as stats_engine
from modelstore.families import FAMILIES
from modelstore.planner.costs import CostModel

#: rows aggregated per statement while building (one progress step each)
ROWS_PER_STATEMENT = 500_000
#: default storage budget: the index may take this fraction of the base table's size
DEFAULT_STORAGE_BUDGET = 0.03


def choose_chunk_rows(cost_model: CostModel, family: str, k: int, total_rows: float, table_bytes: float,
                      budget: float = DEFAULT_STORAGE_BUDGET, *, double_double: bool = True) -> int:
    """The chunk size that minimises a random range's expected cost, within the storage budget.

    A range pays two partial-chunk scans — on average a quarter chunk each, scanning the cheaper side —
    and fetches and merges about 2·log2(N/c) nodes: cost(c) ≈ (c/2)·row + 2·log2(N/c)·node, minimal at
    c* = 4·node / (row·ln 2). The index stores about 2N/c nodes, so the budget asks
    c ≥ 2N·node_bytes / (budget·table_bytes), node_bytes counting the low parts of double-double statistics
    (``double_double``: the C aggregate builds them; they double a node). The larger of the two, rounded up
    to two significant digits.
    """
    values = node_values(family, k)
    node_ms = cost_model.fetch_ms(values, rows=1) + cost_model.merge_ms(values)
    row_ms = cost_model.row_ms(family, k) + cost_model.index_read_ms(1.0)
    best = 4 * node_ms / (row_ms * math.log(2))
    per_node = node_bytes(family, k, double_double=double_double)
    allowed = max(1.0, budget * table_bytes)
    c = max(best, 2 * total_rows * per_node / allowed, 16.0)
    digits = 10 ** max(0, int(math.log10(c)) - 1)
    chunk = int(math.ceil(c / digits) * digits)
    # the last chunk is partial: the count that decides the size is ⌈N/c⌉ (as build_index checks it)
    while 2 * math.ceil(total_rows / chunk) * per_node > allowed and chunk < total_rows:
        chunk += digits
    return chunk


def _boundaries(conn, table: Table, order_by: str, chunk_rows: int, *, offset: int = 0, start=None):
    """(chunk start values, rows per chunk, last value): chunks by global rank, ties kept together."""
    ord_ = sql.Identifier(order_by)
    where = sql.SQL("{} IS NOT NULL").format(ord_)
    if start is not None:
        where = sql.SQL("{} AND {} >= {}").format(where, ord_, sql.Literal(start))
    rows = conn.execute(sql.SQL(
        "SELECT min(o), count(*), max(o) FROM (SELECT {ord} AS o, (rank() OVER (ORDER BY {ord}) - 1 + {off}) / {c} "
        "AS chunk FROM {t} WHERE {w}) AS s GROUP BY chunk ORDER BY chunk"
    ).format(ord=ord_, off=sql.Literal(offset), c=sql.Literal(chunk_rows), t=table.identifier, w=where)).fetchall()
    return [r[0] for r in rows], [int(r[1]) for r in rows], (rows[-1][2] if rows else None)


def _chunk_stats(conn, table: Table, descriptor: Descriptor, starts: list, last_value, *, max_classes: int,
                 progress: Callable[[int], None] | None = None) -> list:
    """Statistics of each chunk [starts[i], starts[i+1]) (the last up to ``last_value``), by grouped aggregates."""
    order_by = descriptor.source.order_by
    ord_ = sql.Identifier(order_by)
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    engine = stats_engine.engine(conn)
    out = []
    per_slice = max(1, ROWS_PER_STATEMENT // max(1, descriptor.params.get("chunk_rows", 1)))
    for first in range(0, len(starts), per_slice):
        block = starts[first : first + per_slice]
        upper = (sql.SQL("{} < {}").format(ord_, sql.Literal(starts[first + per_slice]))
                 if first + per_slice < len(starts) else sql.SQL("{} <= {}").format(ord_, sql.Literal(last_value)))
        where = sql.SQL("{} >= {} AND {}").format(ord_, sql.Literal(block[0]), upper)
        part = sql.SQL("width_bucket({}, {}) - 1").format(ord_, sql.Literal(block))
        query = descriptor.family.aggregate_query(table.identifier, values, where, descriptor.target, max_classes,
                                                  part, len(block), engine=engine)
        by_part: dict[int, list] = {i: [] for i in range(len(block))}
        for row in conn.execute(query).fetchall():
            by_part[row[0]].append(row[1:])
        for i in range(len(block)):
            rng = Range(block[i], starts[first + i + 1] if first + i + 1 < len(starts) else last_value)
            out.append(executor.from_rows(descriptor, rng, by_part[i], max_classes, engine))
        if progress:
            progress(len(block))
    return out


def _chunk_cuts(starts: list, last_value, kind: str) -> list[Cut]:
    """The n + 1 boundary cuts of n chunks: before each start, and just after the last value."""
    return [make_cut(v, 0, kind) for v in starts] + [make_cut(last_value, 1, kind)]


def build(conn: psycopg.Connection, table: Table, source_id: int, descriptor: Descriptor, chunk_rows: int, *,
          max_classes: int = 1000, progress=None) -> IndexInfo:
    """Build (or rebuild) the index of the descriptor's source, family and columns. Run it in a
    REPEATABLE READ transaction so that boundaries and statistics see the same rows."""
    kind = descriptor.source.order_kind
    starts, counts, last = _boundaries(conn, table, descriptor.source.order_by, chunk_rows)
    if not starts:
        raise InputError(f"table {table.display} has no rows with a non-NULL {descriptor.source.order_by!r} to index")
    if progress:
        progress(total=len(starts))
    chunks = _chunk_stats(conn, table, descriptor, starts, last, max_classes=max_classes,
                          progress=(lambda n: progress(advance=n)) if progress else None)
    _check_finite(descriptor, chunks)
    cuts = _chunk_cuts(starts, last, kind)
    row = conn.execute(
        """
        INSERT INTO modelstore.stat_indexes (source_id, family, target, columns, chunk_rows, n_chunks, levels,
                                             rows_indexed, null_rows, end_key, end_value)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (source_id, family, target, columns) DO UPDATE SET
            chunk_rows = EXCLUDED.chunk_rows, n_chunks = EXCLUDED.n_chunks, levels = EXCLUDED.levels,
            rows_indexed = EXCLUDED.rows_indexed, null_rows = EXCLUDED.null_rows, end_key = EXCLUDED.end_key,
            end_value = EXCLUDED.end_value, refreshed_at = now()
        RETURNING index_id
        """,
        [source_id, descriptor.kind, descriptor.class_column, list(descriptor.stats_columns), chunk_rows,
         len(chunks), levels_for(len(chunks)), sum(counts), sum(c.null_rows for c in chunks), cuts[-1].key,
         bound_text(last)],
    ).fetchone()
    write_nodes(conn, row[0], hierarchy(chunks), cuts)
    return load(conn, row[0], kind)


def refresh(conn: psycopg.Connection, table: Table, info: IndexInfo, descriptor: Descriptor, *,
            max_classes: int = 1000, progress=None) -> tuple[IndexInfo, int]:
    """Extend the index over rows appended past its end: re-chunk from its last chunk on (same global
    numbering as a build from scratch), recompute those chunks and their ancestors. Returns the
    refreshed index and the number of rows added. Rows changed *inside* the indexed range are detected
    (by count) and refused: rebuild the index then."""
    kind = descriptor.source.order_kind
    ord_ = sql.Identifier(descriptor.source.order_by)
    inside = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} <= {}").format(
        table.identifier, ord_, sql.Literal(info.end_value))).fetchone()[0]
    if inside != info.rows_indexed:
        raise InputError(
            f"rows changed inside the indexed range of index #{info.index_id} ({info.rows_indexed} indexed, "
            f"{inside} now): rebuild it with build_index(...)"
        )
    last = conn.execute(
        "SELECT lo, n + null_rows FROM modelstore.index_nodes WHERE index_id = %s AND level = 0 AND pos = %s",
        [info.index_id, info.n_chunks - 1],
    ).fetchone()
    last_start, last_rows = parse_bound(last[0], kind), int(last[1])
    offset = info.rows_indexed - last_rows
    starts, counts, last_value = _boundaries(conn, table, descriptor.source.order_by, info.chunk_rows,
                                             offset=offset, start=last_start)
    added = offset + sum(counts) - info.rows_indexed
    if added == 0:
        return info, 0
    old = [s for _, s in sorted(_level0(conn, info, descriptor).items())][: info.n_chunks - 1]
    old_starts = _level0_starts(conn, info, kind)[: info.n_chunks - 1]
    if progress:
        progress(total=len(starts))
    fresh = _chunk_stats(conn, table, descriptor, starts, last_value, max_classes=max_classes,
                         progress=(lambda n: progress(advance=n)) if progress else None)
    _check_finite(descriptor, fresh)
    chunks = old + fresh
    cuts = _chunk_cuts(old_starts + starts, last_value, kind)
    conn.execute(
        """
        UPDATE modelstore.stat_indexes SET n_chunks = %s, levels = %s, rows_indexed = %s, null_rows = %s,
               end_key = %s, end_value = %s, refreshed_at = now()
        WHERE index_id = %s
        """,
        [len(chunks), levels_for(len(chunks)), offset + sum(counts), sum(c.null_rows for c in chunks),
         cuts[-1].key, bound_text(last_value), info.index_id],
    )
    write_nodes(conn, info.index_id, hierarchy(chunks), cuts, min_pos_changed=info.n_chunks - 1)
    return load(conn, info.index_id, kind), added


def _level0(conn, info: IndexInfo, descriptor: Descriptor) -> dict[int, object]:
    rows = conn.execute(
        "SELECT pos, n, null_rows, classes, counts, mean, moments, mean_lo, moments_lo FROM modelstore.index_nodes "
        "WHERE index_id = %s AND level = 0", [info.index_id], binary=True).fetchall()
    unpack = FAMILIES[info.family].unpack
    return {row[0]: unpack(info.columns, *row[1:], triangle=True) for row in rows}


def _level0_starts(conn, info: IndexInfo, kind: str) -> list:
    rows = conn.execute("SELECT lo FROM modelstore.index_nodes WHERE index_id = %s AND level = 0 ORDER BY pos",
                        [info.index_id]).fetchall()
    return [parse_bound(r[0], kind) for r in rows]


def _check_finite(descriptor: Descriptor, chunks: list) -> None:
    for c in chunks:
        bad = c.non_finite_columns()
        if bad:
            raise NonFiniteValueError(f"column(s) {bad} hold NaN or ±Infinity; the index cannot summarise them "
                                      f"(exclude them, or index other columns)")


# -- reading ---------------------------------------------------------------------------------------------------


__all__ = ["DEFAULT_STORAGE_BUDGET", "build", "choose_chunk_rows", "refresh"]
