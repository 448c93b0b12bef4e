"""The statistics index: chunk statistics in a binary hierarchy (Data Canopy style; docs/index.md).

Level 0 cuts a source's rows, in ordering-column order, into chunks of about ``chunk_rows`` rows
(rows with equal ordering values stay in one chunk); node (L, p) above them is the sum of chunks
[p·2^L, (p+1)·2^L). Any run of whole chunks is the sum of at most 2·log2(n) nodes — never a difference,
so no large prefix is subtracted — and any range is such a run plus at most two partial chunks.

Building is one pass for the chunk boundaries (``rank()`` over the ordering column) and grouped
aggregates for the statistics (rows bucketed by ``width_bucket`` over the boundaries), a slice of
chunks per statement so that a progress bar can follow; the hierarchy is merged in Python. Refreshing
after appends re-chunks from the last chunk on, with the same global numbering, so the result equals an
index built from scratch on the grown table.

To the planner an index is a source of *spans*: edges between the chunk boundaries around the
request's ends, each the canonical decomposition of its run of chunks (:func:`spans`). The planner
never sees the hierarchy itself — a handful of edges, whatever the number of nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from modelstore import executor  # the module, not its names: the executor imports this module too
from modelstore.cuts import Cut, make_cut
from modelstore.descriptor import Descriptor, Range, bound_text, parse_bound
from modelstore.errors import InputError
from modelstore.source import Table
from modelstore.stats import GaussianNBStats, LinearStats, MultinomialNBStats, gaussian_nb, linear, multinomial_nb

if TYPE_CHECKING:
    from modelstore.costs import CostModel

#: rows aggregated per statement while building (one progress step each)
ROWS_PER_STATEMENT = 500_000
#: default storage budget: the index may take this fraction of the base table's size
DEFAULT_STORAGE_BUDGET = 0.03
#: per-node bytes beyond its floats (tuple header, keys, counts, array headers), measured
NODE_OVERHEAD_BYTES = 160


@dataclass(frozen=True)
class IndexInfo:
    """A row of ``modelstore.stat_indexes``."""

    index_id: int
    source_id: int
    family: str
    target: str
    columns: tuple[str, ...]
    chunk_rows: int
    n_chunks: int
    levels: int
    rows_indexed: int
    null_rows: int
    end_value: object  # the last indexed ordering value
    end: Cut  # the cut just after it

    def serves(self, descriptor: Descriptor) -> bool:
        """Whether this index holds the statistics a request needs (unfiltered rows only)."""
        wanted, held = set(descriptor.stats_columns), set(self.columns)
        return (descriptor.filter_sql == "" and descriptor.family == self.family
                and descriptor.class_column == self.target and wanted <= held
                and (wanted == held or self.null_rows == 0))


@dataclass(frozen=True)
class IndexSpan:
    """A run of whole chunks [first, last) as one planning edge: the sum of its canonical nodes."""

    index_id: int
    first: int
    last: int
    lo: Cut
    hi: Cut
    nodes: tuple[tuple[int, int], ...]
    columns: tuple[str, ...]
    n_values: int  # floats fetched for all its nodes
    rows: float = 0.0  # estimated rows (filled by the planner)

    @property
    def stats_id(self) -> int:
        return self.index_id

    @property
    def fetched_rows(self) -> int:
        return len(self.nodes)


# -- the hierarchy ----------------------------------------------------------------------------------------

def decompose(first: int, last: int) -> list[tuple[int, int]]:
    """The canonical (level, pos) nodes whose chunks are exactly [first, last): at most 2·log2 nodes.

    >>> decompose(3, 9)
    [(0, 3), (0, 8), (2, 1)]
    """
    nodes, level = [], 0
    while first < last:
        if first & 1:
            nodes.append((level, first))
            first += 1
        if last & 1:
            last -= 1
            nodes.append((level, last))
        first >>= 1
        last >>= 1
        level += 1
    return sorted(nodes, key=lambda n: (n[0], n[1]))


def levels_for(n_chunks: int) -> int:
    return max(1, math.ceil(math.log2(n_chunks)) + 1) if n_chunks > 1 else 1


def hierarchy(chunks: list) -> dict[tuple[int, int], object]:
    """Every node (level, pos) of the binary hierarchy over the chunk statistics."""
    nodes = {(0, p): s for p, s in enumerate(chunks)}
    level, width = 0, len(chunks)
    while width > 1:
        for p in range((width + 1) // 2):
            left = nodes[(level, 2 * p)]
            right = nodes.get((level, 2 * p + 1))
            nodes[(level + 1, p)] = left if right is None else left + right
        level += 1
        width = (width + 1) // 2
    return nodes


# -- storage --------------------------------------------------------------------------------------------------

def _pack(stats) -> dict:
    """Arrays of one node; the linear comoment as its upper triangle (it is symmetric)."""
    if isinstance(stats, LinearStats):
        iu = np.triu_indices(len(stats.columns))
        return {"classes": None, "counts": None, "mean": stats.mean.tolist(), "moments": stats.comoment[iu].tolist()}
    if isinstance(stats, GaussianNBStats):
        return {"classes": Jsonb(list(stats.classes)), "counts": stats.counts.tolist(),
                "mean": stats.means.ravel().tolist(), "moments": stats.m2.ravel().tolist()}
    return {"classes": Jsonb(list(stats.classes)), "counts": stats.counts.tolist(), "mean": None,
            "moments": stats.feature_sums.ravel().tolist()}


def unpack(family: str, columns: Sequence[str], n: int, null_rows: int, classes, counts, mean, moments):
    """A node's statistics object from its stored arrays."""
    k = len(columns)
    if family == "linear":
        comoment = np.empty((k, k))
        iu = np.triu_indices(k)
        comoment[iu] = moments
        comoment.T[iu] = moments
        return LinearStats(columns, n, np.array(mean, dtype=float), comoment, null_rows)
    c = len(classes)
    if family == "gaussian_nb":
        return GaussianNBStats(columns, classes, counts, np.array(mean, dtype=float).reshape(c, k),
                               np.array(moments, dtype=float).reshape(c, k), null_rows)
    return MultinomialNBStats(columns, classes, counts, np.array(moments, dtype=float).reshape(c, k), null_rows)


def node_values(family: str, k: int, classes: int = 2) -> int:
    """Floats stored per node (what fetching one costs)."""
    if family == "linear":
        return k + k * (k + 1) // 2
    return classes * (2 * k if family == "gaussian_nb" else k)


# -- chunk size --------------------------------------------------------------------------------------------------

def choose_chunk_rows(cost_model: CostModel, family: str, k: int, total_rows: float, table_bytes: float,
                      budget: float = DEFAULT_STORAGE_BUDGET) -> int:
    """The chunk size that minimises a random range's expected cost, within the storage budget.

    A range pays two partial-chunk scans — on average a quarter chunk each, scanning the cheaper side —
    and fetches and merges about 2·log2(N/c) nodes: cost(c) ≈ (c/2)·row + 2·log2(N/c)·node, minimal at
    c* = 4·node / (row·ln 2). The index stores about 2N/c nodes, so the budget asks
    c ≥ 2N·node_bytes / (budget·table_bytes). The larger of the two, rounded to two significant digits.
    """
    values = node_values(family, k)
    node_ms = cost_model.fetch_ms(values, rows=1) + cost_model.merge_ms(values)
    row_ms = cost_model.row_ms(family, k) + cost_model.index_read_ms(1.0)
    best = 4 * node_ms / (row_ms * math.log(2))
    node_bytes = 8 * values + NODE_OVERHEAD_BYTES
    floor = 2 * total_rows * node_bytes / max(1.0, budget * table_bytes)
    c = max(best, floor, 16.0)
    digits = 10 ** max(0, int(math.log10(c)) - 1)
    return int(math.ceil(c / digits) * digits)


def estimated_bytes(family: str, k: int, n_chunks: int) -> int:
    return 2 * n_chunks * (8 * node_values(family, k) + NODE_OVERHEAD_BYTES)


# -- building ------------------------------------------------------------------------------------------------

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
    out = []
    per_slice = max(1, ROWS_PER_STATEMENT // max(1, descriptor.params.get("chunk_rows", 1)))
    for first in range(0, len(starts), per_slice):
        block = starts[first : first + per_slice]
        upper = (sql.SQL("{} < {}").format(ord_, sql.Literal(starts[first + per_slice]))
                 if first + per_slice < len(starts) else sql.SQL("{} <= {}").format(ord_, sql.Literal(last_value)))
        where = sql.SQL("{} >= {} AND {}").format(ord_, sql.Literal(block[0]), upper)
        part = sql.SQL("width_bucket({}, {}) - 1").format(ord_, sql.Literal(block))
        if descriptor.family == "linear":
            query = linear.aggregate_query(table.identifier, values, where, part)
        else:
            module = gaussian_nb if descriptor.family == "gaussian_nb" else multinomial_nb
            query = module.aggregate_query(table.identifier, values, where, sql.Identifier(descriptor.target),
                                           max_classes, part, len(block))
        by_part: dict[int, list] = {i: [] for i in range(len(block))}
        for row in conn.execute(query).fetchall():
            by_part[row[0]].append(row[1:])
        for i in range(len(block)):
            rng = Range(block[i], starts[first + i + 1] if first + i + 1 < len(starts) else last_value)
            out.append(executor.from_rows(descriptor, rng, by_part[i], max_classes))
        if progress:
            progress(len(block))
    return out


def _chunk_cuts(starts: list, last_value, kind: str) -> list[Cut]:
    """The n + 1 boundary cuts of n chunks: before each start, and just after the last value."""
    return [make_cut(v, 0, kind) for v in starts] + [make_cut(last_value, 1, kind)]


def _write_nodes(conn, index_id: int, nodes: dict, cuts: list[Cut], *, min_pos_changed: int = 0) -> None:
    """(Re)write the nodes whose chunks start at or after ``min_pos_changed`` (all of them by default)."""
    rows = []
    for (level, pos), stats in nodes.items():
        if (pos + 1) << level <= min_pos_changed:
            continue  # wholly before the changed chunks: unchanged
        lo, hi = cuts[pos << level], cuts[min((pos + 1) << level, len(cuts) - 1)]
        arrays = _pack(stats)
        rows.append((index_id, level, pos, lo.key, lo.side, hi.key, hi.side, bound_text(lo.value),
                     bound_text(hi.value), stats.n, stats.null_rows, arrays["classes"], arrays["counts"],
                     arrays["mean"], arrays["moments"]))
    if min_pos_changed:
        conn.execute(
            "DELETE FROM modelstore.index_nodes WHERE index_id = %s AND ((pos + 1) << level) > %s",
            [index_id, min_pos_changed],
        )
    else:
        conn.execute("DELETE FROM modelstore.index_nodes WHERE index_id = %s", [index_id])
    with conn.cursor().copy(
        "COPY modelstore.index_nodes (index_id, level, pos, lo_key, lo_side, hi_key, hi_side, lo, hi, n, null_rows,"
        " classes, counts, mean, moments) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)


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
        [source_id, descriptor.family, descriptor.class_column, list(descriptor.stats_columns), chunk_rows,
         len(chunks), levels_for(len(chunks)), sum(counts), sum(c.null_rows for c in chunks), cuts[-1].key,
         bound_text(last)],
    ).fetchone()
    _write_nodes(conn, row[0], hierarchy(chunks), cuts)
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
    _write_nodes(conn, info.index_id, hierarchy(chunks), cuts, min_pos_changed=info.n_chunks - 1)
    return load(conn, info.index_id, kind), added


def _level0(conn, info: IndexInfo, descriptor: Descriptor) -> dict[int, object]:
    rows = conn.execute(
        "SELECT pos, n, null_rows, classes, counts, mean, moments FROM modelstore.index_nodes "
        "WHERE index_id = %s AND level = 0", [info.index_id], binary=True).fetchall()
    return {pos: unpack(info.family, info.columns, n, nr, cl, co, me, mo) for pos, n, nr, cl, co, me, mo in rows}


def _level0_starts(conn, info: IndexInfo, kind: str) -> list:
    rows = conn.execute("SELECT lo FROM modelstore.index_nodes WHERE index_id = %s AND level = 0 ORDER BY pos",
                        [info.index_id]).fetchall()
    return [parse_bound(r[0], kind) for r in rows]


def _check_finite(descriptor: Descriptor, chunks: list) -> None:
    from modelstore.errors import NonFiniteValueError

    for c in chunks:
        bad = c.non_finite_columns()
        if bad:
            raise NonFiniteValueError(f"column(s) {bad} hold NaN or ±Infinity; the index cannot summarise them "
                                      f"(exclude them, or index other columns)")


# -- reading ---------------------------------------------------------------------------------------------------

_INFO_COLUMNS = ("index_id, source_id, family, target, columns, chunk_rows, n_chunks, levels, rows_indexed, "
                 "null_rows, end_key, end_value")


def _info(row, kind: str) -> IndexInfo:
    (index_id, source_id, family, target, columns, chunk_rows, n_chunks, levels, rows_indexed, null_rows,
     end_key, end_value) = row
    value = parse_bound(end_value, kind)
    end = make_cut(value, 1, kind)
    return IndexInfo(index_id, source_id, family, target, tuple(columns), chunk_rows, n_chunks, levels,
                     rows_indexed, null_rows, value, end)


def load(conn: psycopg.Connection, index_id: int, kind: str) -> IndexInfo:
    row = conn.execute(sql.SQL("SELECT {} FROM modelstore.stat_indexes WHERE index_id = %s").format(
        sql.SQL(_INFO_COLUMNS)), [index_id]).fetchone()
    if row is None:
        raise InputError(f"no statistics index #{index_id}")
    return _info(row, kind)


def find(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor) -> IndexInfo | None:
    """The index that can serve the request (the one with the fewest columns), if any."""
    if source_id is None or descriptor.filter_sql or descriptor.family not in ("linear", "gaussian_nb",
                                                                               "multinomial_nb"):
        return None
    rows = conn.execute(sql.SQL(
        "SELECT {} FROM modelstore.stat_indexes WHERE source_id = %s AND family = %s AND target = %s "
        "AND columns @> %s ORDER BY cardinality(columns)").format(sql.SQL(_INFO_COLUMNS)),
        [source_id, descriptor.family, descriptor.class_column, list(descriptor.stats_columns)]).fetchall()
    for row in rows:
        info = _info(row, descriptor.source.order_kind)
        if info.serves(descriptor):
            return info
    return None


def spans(conn: psycopg.Connection, info: IndexInfo, s: Cut, t: Cut, kind: str, k: int) -> list[IndexSpan]:
    """Planning edges from the index for a request between cuts s < t: every run of whole chunks between
    the chunk boundaries around s and t (at most four boundaries, six spans), each with its nodes."""
    rows = conn.execute(
        """
        WITH a AS (SELECT pos FROM modelstore.index_nodes
                   WHERE index_id = %(i)s AND level = 0 AND (lo_key, lo_side) <= (%(sk)s, %(ss)s)
                   ORDER BY lo_key DESC, lo_side DESC LIMIT 1),
             b AS (SELECT pos FROM modelstore.index_nodes
                   WHERE index_id = %(i)s AND level = 0 AND (lo_key, lo_side) < (%(tk)s, %(ts)s)
                   ORDER BY lo_key DESC, lo_side DESC LIMIT 1)
        SELECT pos, lo_key, lo_side, lo FROM modelstore.index_nodes
        WHERE index_id = %(i)s AND level = 0
          AND pos IN (SELECT pos FROM a UNION ALL SELECT pos + 1 FROM a UNION ALL SELECT 0
                      UNION ALL SELECT pos FROM b UNION ALL SELECT pos + 1 FROM b)
        """,
        {"i": info.index_id, "sk": s.key, "ss": s.side, "tk": t.key, "ts": t.side},
    ).fetchall()
    boundary = {pos: Cut(key, side, parse_bound(lo, kind)) for pos, key, side, lo in rows}
    boundary[info.n_chunks] = info.end
    if s >= info.end or not any(c < t for c in boundary.values()):
        return []  # the request lies wholly after or before the index
    a = max((p for p, c in boundary.items() if c <= s), default=None)  # the chunk holding s, if indexed
    b = max(p for p, c in boundary.items() if c < t)  # the chunk holding t's last row
    around = {b, min(b + 1, info.n_chunks)} | ({a, min(a + 1, info.n_chunks)} if a is not None else {0})
    around = sorted(around)
    per_node = node_values(info.family, len(info.columns))
    out = []
    for i, first in enumerate(around):
        for last in around[i + 1 :]:
            nodes = tuple(decompose(first, last))
            out.append(IndexSpan(info.index_id, first, last, boundary[first], boundary[last], nodes, info.columns,
                                 per_node * len(nodes)))
    return out


def fetch_nodes(conn: psycopg.Connection,
                wanted: dict[int, tuple[str, tuple[str, ...], set[tuple[int, int]]]]) -> dict[tuple[int, int, int], object]:
    """Nodes of several indexes in one round trip. ``wanted``: index id → (family, columns, nodes);
    returns {(index id, level, pos): statistics}."""
    ids, levels, positions = [], [], []
    for index_id, (_, _, nodes) in wanted.items():
        for level, pos in nodes:
            ids.append(index_id)
            levels.append(level)
            positions.append(pos)
    if not ids:
        return {}
    rows = conn.execute(
        """
        SELECT n.index_id, n.level, n.pos, n.n, n.null_rows, n.classes, n.counts, n.mean, n.moments
        FROM modelstore.index_nodes AS n
        JOIN unnest(%s::bigint[], %s::smallint[], %s::int[]) AS w (index_id, level, pos)
          USING (index_id, level, pos)
        """,
        [ids, levels, positions],
        binary=True,
    ).fetchall()
    out = {}
    for index_id, level, pos, n, nr, cl, co, me, mo in rows:
        family, columns, _ = wanted[index_id]
        out[(index_id, level, pos)] = unpack(family, columns, n, nr, cl, co, me, mo)
    if len(out) != len(ids):
        raise LookupError("statistics index nodes disappeared while the request ran; plan again")
    return out


def list_indexes(conn: psycopg.Connection) -> list[dict]:
    cur = conn.execute(
        """
        SELECT i.index_id, format('%I.%I', s.schema_name, s.table_name) AS source, s.order_by, i.family,
               NULLIF(i.target, '') AS target, i.columns, i.chunk_rows, i.n_chunks, i.levels, i.rows_indexed,
               i.end_value, i.refreshed_at,
               (SELECT coalesce(sum(pg_column_size(n.*)), 0) FROM modelstore.index_nodes n
                 WHERE n.index_id = i.index_id) AS index_bytes,
               pg_total_relation_size(format('%I.%I', s.schema_name, s.table_name)::regclass) AS table_bytes
        FROM modelstore.stat_indexes i JOIN modelstore.sources s USING (source_id)
        ORDER BY i.index_id
        """
    )
    return [dict(zip([c.name for c in cur.description], row)) for row in cur.fetchall()]


def drop(conn: psycopg.Connection, index_id: int) -> bool:
    return conn.execute("DELETE FROM modelstore.stat_indexes WHERE index_id = %s", [index_id]).rowcount > 0


__all__ = ["IndexInfo", "IndexSpan", "build", "choose_chunk_rows", "decompose", "drop", "fetch_nodes", "find",
           "hierarchy", "list_indexes", "refresh", "spans", "unpack"]
