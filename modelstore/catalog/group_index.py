"""Per-group nodes of the statistics index (migration 0015; docs/index.md, "Per-group nodes").

An index built with ``group_by`` keeps, beside each node (level, pos) of its hierarchy, one summary per
value of the group column among that node's rows (``modelstore.index_group_nodes``): node (L, p) of group
g is the sum of group g's parts of chunks [p·2^L, (p+1)·2^L), merged with the exact pairwise formulas,
never subtracted. A node holds only the groups that have rows in it, so the table grows with the
(group, node) pairs that exist, not with groups × nodes. A grouped fit then reads every group's share of
a run of whole chunks from the run's canonical nodes (:func:`modelstore.catalog.index.decompose`), all
groups in one query. Building reads the table and lives with the executor
(:mod:`modelstore.execution.group_index`); change capture keeps the nodes exact
(``sql/capture_5_trigger.sql``).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from modelstore.catalog.index import _INFO_COLUMNS, IndexInfo, _info
from modelstore.families import FAMILIES, statistics_family
from modelstore.request.descriptor import Descriptor


def sparse_hierarchy(chunks: dict[int, object], levels: int) -> dict[tuple[int, int], object]:
    """Every node (level, pos) of one group's hierarchy over its chunks {pos: statistics}, up to the
    index's ``levels``: a node is present when one of its chunks holds rows of the group (the tree of
    :func:`modelstore.catalog.index.hierarchy`, without the empty nodes)."""
    nodes = {(0, p): s for p, s in chunks.items()}
    current = dict(chunks)
    for level in range(1, levels):
        parents: dict[int, object] = {}
        for p in sorted(current):
            parent = p >> 1
            parents[parent] = current[p] if parent not in parents else parents[parent] + current[p]
        for p, s in parents.items():
            nodes[(level, p)] = s
        current = parents
    return nodes


def write(conn: psycopg.Connection, index_id: int, group_by: str,
          nodes: dict[str, dict[tuple[int, int], object]]) -> int:
    """Replace the index's group nodes with ``nodes`` = {group key: {(level, pos): statistics}}, written
    with one COPY. Returns the number of nodes written."""
    conn.execute("DELETE FROM modelstore.index_group_nodes WHERE index_id = %s", [index_id])
    conn.execute("UPDATE modelstore.stat_indexes SET group_by = %s WHERE index_id = %s", [group_by, index_id])
    written = 0
    with conn.cursor().copy(
        "COPY modelstore.index_group_nodes (index_id, level, pos, group_key, n, null_rows, classes, counts, mean,"
        " moments, mean_lo, moments_lo) FROM STDIN"
    ) as copy:
        for key, tree in nodes.items():
            for (level, pos), stats in tree.items():
                arrays = statistics_family(stats).pack(stats, triangle=True)
                copy.write_row((index_id, level, pos, key, stats.n, stats.null_rows, arrays["classes"],
                                arrays["counts"], arrays["mean"], arrays["moments"], arrays.get("mean_lo"),
                                arrays.get("moments_lo")))
                written += 1
    return written


def forget(conn: psycopg.Connection, index_id: int) -> None:
    """The index without its group nodes (an index built again without ``group_by``)."""
    conn.execute("DELETE FROM modelstore.index_group_nodes WHERE index_id = %s", [index_id])
    conn.execute("UPDATE modelstore.stat_indexes SET group_by = NULL WHERE index_id = %s", [index_id])


def group_by_of(conn: psycopg.Connection, index_id: int) -> str | None:
    row = conn.execute("SELECT group_by FROM modelstore.stat_indexes WHERE index_id = %s", [index_id]).fetchone()
    return None if row is None else row[0]


def find(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor, group_by: str) -> IndexInfo | None:
    """The index with group nodes for ``group_by`` that holds exactly the request's statistics columns
    (unfiltered requests only), if any."""
    if source_id is None or descriptor.filter_sql or not descriptor.family.indexable:
        return None
    row = conn.execute(sql.SQL(
        "SELECT {} FROM modelstore.stat_indexes WHERE source_id = %s AND family = %s AND target = %s "
        "AND columns = %s AND group_by = %s").format(sql.SQL(_INFO_COLUMNS)),
        [source_id, descriptor.kind, descriptor.class_column, list(descriptor.stats_columns), group_by]).fetchone()
    return None if row is None else _info(row, descriptor.source.order_kind)


def fetch(conn: psycopg.Connection, info: IndexInfo, nodes: list[tuple[int, int]], only=None) -> dict[str, list]:
    """{group key: [statistics of its canonical nodes]} — every group's share of ``nodes``, one query
    (``only``: just these groups)."""
    if not nodes:
        return {}
    levels, positions = [level for level, _ in nodes], [pos for _, pos in nodes]
    only_sql = sql.SQL("") if only is None else sql.SQL(" AND g.group_key = ANY(%(only)s::text[])")
    rows = conn.execute(sql.SQL(
        """
        SELECT g.group_key, g.n, g.null_rows, g.classes, g.counts, g.mean, g.moments, g.mean_lo, g.moments_lo
        FROM modelstore.index_group_nodes AS g
        JOIN unnest(%(l)s::smallint[], %(p)s::int[]) AS w (level, pos) ON g.level = w.level AND g.pos = w.pos
        WHERE g.index_id = %(i)s{}
        """).format(only_sql), {"i": info.index_id, "l": levels, "p": positions, "only": None if only is None
                                else sorted(only)}, binary=True).fetchall()
    unpack = FAMILIES[info.family].unpack
    out: dict[str, list] = {}
    for key, *values in rows:
        out.setdefault(key, []).append(unpack(info.columns, *values, triangle=True))
    return out


__all__ = ["sparse_hierarchy", "write", "forget", "group_by_of", "find", "fetch"]
