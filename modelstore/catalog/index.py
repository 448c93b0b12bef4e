"""The statistics index's tables: index rows, their chunk hierarchy, and reading it (docs/index.md).

Level 0 cuts a source's rows, in ordering-column order, into chunks of about ``chunk_rows`` rows
(rows with equal ordering values stay in one chunk); node (L, p) above them is the sum of chunks
[p·2^L, (p+1)·2^L). Any run of whole chunks is the sum of at most 2·log2(n) nodes — never a difference,
so no large prefix is subtracted — and any range is such a run plus at most two partial chunks.

To the planner an index is a source of *spans*: edges between the chunk boundaries around the
request's ends, each the canonical decomposition of its run of chunks (:func:`spans`). The planner
never sees the hierarchy itself — a handful of edges, whatever the number of nodes. Building and
refreshing an index reads the table and lives with the executor
(:mod:`modelstore.execution.index_build`).
"""

from __future__ import annotations

import math
from decimal import Decimal
from dataclasses import dataclass

import psycopg
from psycopg import sql

from modelstore.request.cuts import Cut, make_cut
from modelstore.request.descriptor import Descriptor, bound_text, parse_bound
from modelstore.errors import InputError
from modelstore.families import FAMILIES, statistics_family

#: per-node bytes beyond its floats (tuple header, keys, counts, array headers), measured
NODE_OVERHEAD_BYTES = 160
#: the two low-part arrays' headers of a double-double node
DD_OVERHEAD_BYTES = 48


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
        return (descriptor.filter_sql == "" and descriptor.kind == self.family
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

def node_values(family: str, k: int, classes: int = 2) -> int:
    """Floats stored per node (what fetching one costs): a symmetric matrix as its upper triangle."""
    return FAMILIES[family].stored_values(k, classes, triangle=True)


def node_bytes(family: str, k: int, *, double_double: bool) -> int:
    """Bytes one node row takes (``pg_column_size`` of the row, what ``list_indexes`` sums): its floats, once
    more for their low parts when the statistics are double-double (the C aggregate's), and the row's fixed
    columns and array headers (a 10-feature linear node: 776 bytes in float64, 1,440 in double-double)."""
    values = node_values(family, k)
    if double_double:
        return 16 * values + NODE_OVERHEAD_BYTES + DD_OVERHEAD_BYTES
    return 8 * values + NODE_OVERHEAD_BYTES


def estimated_bytes(family: str, k: int, n_chunks: int, *, double_double: bool = True) -> int:
    """The index's size: about two nodes per chunk (the hierarchy above the chunks halves at each level)."""
    return 2 * n_chunks * node_bytes(family, k, double_double=double_double)


# -- building ------------------------------------------------------------------------------------------------

def write_nodes(conn, index_id: int, nodes: dict, cuts: list[Cut], *, min_pos_changed: int = 0) -> None:
    """(Re)write the nodes whose chunks start at or after ``min_pos_changed`` (all of them by default)."""
    rows = []
    for (level, pos), stats in nodes.items():
        if (pos + 1) << level <= min_pos_changed:
            continue  # wholly before the changed chunks: unchanged
        lo, hi = cuts[pos << level], cuts[min((pos + 1) << level, len(cuts) - 1)]
        arrays = statistics_family(stats).pack(stats, triangle=True)
        rows.append((index_id, level, pos, lo.key, lo.side, hi.key, hi.side, bound_text(lo.value),
                     bound_text(hi.value), stats.n, stats.null_rows, arrays["classes"], arrays["counts"],
                     arrays["mean"], arrays["moments"], arrays.get("mean_lo"), arrays.get("moments_lo")))
    if min_pos_changed:
        conn.execute(
            "DELETE FROM modelstore.index_nodes WHERE index_id = %s AND ((pos + 1) << level) > %s",
            [index_id, min_pos_changed],
        )
    else:
        conn.execute("DELETE FROM modelstore.index_nodes WHERE index_id = %s", [index_id])
    with conn.cursor().copy(
        "COPY modelstore.index_nodes (index_id, level, pos, lo_key, lo_side, hi_key, hi_side, lo, hi, n, null_rows,"
        " classes, counts, mean, moments, mean_lo, moments_lo) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)


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


def find(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor,
         rows: list | None = None) -> IndexInfo | None:
    """The index that can serve the request (the one with the fewest columns), if any (``rows``: the
    stat_indexes rows modelstore.request_context read, catalog/context.py)."""
    if source_id is None or descriptor.filter_sql or not descriptor.family.indexable:
        return None
    rows = rows if rows is not None else conn.execute(sql.SQL(
        "SELECT {} FROM modelstore.stat_indexes WHERE source_id = %s AND family = %s AND target = %s "
        "AND columns @> %s ORDER BY cardinality(columns)").format(sql.SQL(_INFO_COLUMNS)),
        [source_id, descriptor.kind, descriptor.class_column, list(descriptor.stats_columns)]).fetchall()
    for row in rows:
        info = _info(row, descriptor.source.order_kind)
        if info.serves(descriptor):
            return info
    return None


def spans(conn: psycopg.Connection, info: IndexInfo, s: Cut, t: Cut, kind: str, k: int,
          rows: list | None = None) -> list[IndexSpan]:
    """Planning edges from the index for a request between cuts s < t: every run of whole chunks between
    the chunk boundaries around s and t (at most four boundaries, six spans), each with its nodes
    (``rows``: the boundaries modelstore.request_context read for this index)."""
    rows = rows if rows is not None else conn.execute(
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
    boundary = {pos: Cut(Decimal(key), side, parse_bound(lo, kind)) for pos, key, side, lo in rows}
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
                wanted: dict[int, tuple[str, tuple[str, ...], set[tuple[int, int]]]],
                known: dict | None = None) -> dict[tuple[int, int, int], object]:
    """Nodes of several indexes in one round trip (none when ``known``, nodes read already by
    modelstore.request_context, holds them all). ``wanted``: index id → (family, columns, nodes);
    returns {(index id, level, pos): statistics}."""
    if known:
        keys = [(i, level, pos) for i, (_, _, nodes) in wanted.items() for level, pos in nodes]
        if all(key in known for key in keys):
            return {key: known[key] for key in keys}
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
        SELECT n.index_id, n.level, n.pos, n.n, n.null_rows, n.classes, n.counts, n.mean, n.moments, n.mean_lo,
               n.moments_lo
        FROM modelstore.index_nodes AS n
        JOIN unnest(%s::bigint[], %s::smallint[], %s::int[]) AS w (index_id, level, pos)
          USING (index_id, level, pos)
        """,
        [ids, levels, positions],
        binary=True,
    ).fetchall()
    out = {}
    for index_id, level, pos, n, nr, cl, co, me, mo, me_lo, mo_lo in rows:
        family, columns, _ = wanted[index_id]
        out[(index_id, level, pos)] = FAMILIES[family].unpack(columns, n, nr, cl, co, me, mo, me_lo, mo_lo,
                                                              triangle=True)
    if len(out) != len(ids):
        raise LookupError("statistics index nodes disappeared while the request ran; plan again")
    return out


def list_indexes(conn: psycopg.Connection) -> list[dict]:
    """Every index with its size next to its table's. An index whose table was dropped, or dropped and
    created again (another oid: the index describes rows that are gone), is listed with that ``status``
    and no table size, instead of failing the listing."""
    cur = conn.execute(
        """
        SELECT i.index_id, format('%I.%I', s.schema_name, s.table_name) AS source, s.order_by, i.family,
               NULLIF(i.target, '') AS target, i.columns, i.chunk_rows, i.n_chunks, i.levels, i.rows_indexed,
               i.end_value, i.refreshed_at,
               (SELECT coalesce(sum(pg_column_size(n.*)), 0) FROM modelstore.index_nodes n
                 WHERE n.index_id = i.index_id)
               + (SELECT coalesce(sum(pg_column_size(g.*)), 0) FROM modelstore.index_group_nodes g
                   WHERE g.index_id = i.index_id) AS index_bytes,
               CASE WHEN t.oid IS NOT NULL THEN pg_total_relation_size(t.oid) END AS table_bytes,
               CASE WHEN t.oid IS NULL THEN 'table dropped'
                    WHEN s.relid IS NOT NULL AND t.oid <> s.relid THEN 'table re-created'
                    ELSE 'ok' END AS status
        FROM modelstore.stat_indexes i JOIN modelstore.sources s USING (source_id)
        LEFT JOIN LATERAL (SELECT to_regclass(format('%I.%I', s.schema_name, s.table_name))::oid AS oid) t ON true
        ORDER BY i.index_id
        """
    )
    return [dict(zip([c.name for c in cur.description], row)) for row in cur.fetchall()]


def drop(conn: psycopg.Connection, index_id: int) -> bool:
    return conn.execute("DELETE FROM modelstore.stat_indexes WHERE index_id = %s", [index_id]).rowcount > 0


__all__ = ["IndexInfo", "IndexSpan", "decompose", "drop", "fetch_nodes", "find", "hierarchy", "levels_for",
           "estimated_bytes", "list_indexes", "load", "node_bytes", "node_values", "spans", "write_nodes"]
