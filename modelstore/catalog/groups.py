"""The per-group rows of a grouped model (migration 0009; docs/serving.md, "Per-group models"):
each group's statistics and its shrunk model, written in one batched statement (a pipeline, no round
trip per group) and read back in one query.
"""

from __future__ import annotations

import json

import dataclasses

import psycopg

from modelstore.catalog import records
from modelstore.catalog.records import _jsonable
from modelstore.request.descriptor import Descriptor, bound_key


def mark_grouped(conn: psycopg.Connection, model_id: int, group_by: str | None, group_l2: float | None) -> None:
    conn.execute("UPDATE modelstore.fitted_models SET group_by = %s, group_l2 = %s WHERE model_id = %s",
                 [group_by, group_l2, model_id])


def write(conn: psycopg.Connection, model_id: int, rows: list[tuple], *, keep_only: list[str] | None = None) -> None:
    """Upsert ``rows`` = (group key, rows used, stats state or None to keep the stored one, model state,
    coef, intercept); with ``keep_only``, delete the model's other groups (a full re-aggregation)."""
    if keep_only is not None:
        conn.execute("DELETE FROM modelstore.group_models WHERE model_id = %s AND group_key <> ALL(%s::text[])",
                     [model_id, keep_only])
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO modelstore.group_models AS g (model_id, group_key, rows_used, stats, state, coef, intercept)
            VALUES (%s, %s, %s, coalesce(%s::jsonb, '{}'::jsonb), %s::jsonb, %s, %s)
            ON CONFLICT (model_id, group_key) DO UPDATE
               SET rows_used = EXCLUDED.rows_used, state = EXCLUDED.state, coef = EXCLUDED.coef,
                   intercept = EXCLUDED.intercept, updated_at = clock_timestamp(),
                   stats = CASE WHEN %s THEN EXCLUDED.stats ELSE g.stats END
            """,
            [(model_id, key, rows_used, None if stats is None else _json(stats), _json(state), coef, intercept,
              stats is not None)
             for key, rows_used, stats, state, coef, intercept in rows])


def _strict(obj) -> str:
    return json.dumps(obj, allow_nan=False)


def _json(obj) -> str:
    """JSON text of a state or statistics: plain lists and finite floats (a fit refuses NaN/±inf) are
    dumped as they are, strictly; the catalog's general conversion (NaN → null, numpy → Python) only
    if they are not."""
    try:
        return _strict(obj)
    except (TypeError, ValueError):
        return _strict(_jsonable(obj))


def read(conn: psycopg.Connection, model_id: int, *, with_stats: bool = False) -> list[tuple]:
    """(group key, rows used, model state[, stats state]) of every group of the model."""
    query = ("SELECT group_key, rows_used, state, stats FROM modelstore.group_models WHERE model_id = %s "
             "ORDER BY group_key") if with_stats else (
             "SELECT group_key, rows_used, state FROM modelstore.group_models WHERE model_id = %s ORDER BY group_key")
    return conn.execute(query, [model_id]).fetchall()


# -- each group's statistics as ordinary stored statistics ---------------------------------------------
# A group's statistics are exactly those of the rows ``filter AND column = key`` over the request's range:
# stored under that descriptor (modelstore.statistics, filter_sql = the group's filter), the planner reuses
# them for a request that asks for that group alone, like any stored summary, and change capture treats
# them as every filtered summary (a write in their range deletes them: rebuilt on demand, never stale).
# ``extra`` marks the set they belong to — group column, key, the request's own filter — and
# ``modelstore.group_sets`` holds how many groups the set has, so a grouped fit over the same descriptor
# takes them all, or scans.


def store_group_stats(conn: psycopg.Connection, source_id: int, descriptor: Descriptor, group_by: str,
                      groups: list[tuple[str, str, object]]) -> None:
    """Store ``groups`` = (key, the group's normalised filter, statistics), one batched statement."""
    if not groups:
        return
    statement, rows = None, []
    read_columns = tuple(dict.fromkeys((*descriptor.read_columns, group_by)))  # every group's: one parse
    for key, filter_sql, stats in groups:
        extra = {"group_by": group_by, "group_key": key, "base_filter": descriptor.filter_sql}
        statement, values, _, _ = records.stats_insert(
            source_id, dataclasses.replace(descriptor, filter_sql=filter_sql), stats, extra=extra,
            read_columns=read_columns)
        rows.append(values)
    with conn.cursor() as cur:
        cur.executemany(statement, rows)
    # the set's count of groups, one row per set (migration 0015): what capture keeps as groups come and go
    conn.execute(
        """
        INSERT INTO modelstore.group_sets AS g (source_id, family, target, columns, params_key, lo_key, hi_key,
                                                group_by, base_filter, groups)
        VALUES (%s, %s, %s, %s, '', %s, %s, %s, %s, %s)
        ON CONFLICT (source_id, family, target, columns, params_key, lo_key, hi_key, group_by, base_filter)
        DO UPDATE SET groups = EXCLUDED.groups
        """,
        [source_id, descriptor.kind, descriptor.class_column, list(descriptor.stats_columns),
         bound_key(descriptor.range.lo), bound_key(descriptor.range.hi), group_by, descriptor.filter_sql,
         len(groups)])


def find_group_stats(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor, group_by: str,
                     filters) -> dict | None:
    """{group key: (stats id, statistics)} of a complete stored set for this descriptor and group column,
    or None. ``filters(keys)`` gives each group's filter: a row must carry exactly it (it always does
    unless the catalog was edited by hand)."""
    if source_id is None:
        return None
    r = descriptor.range
    rows = conn.execute(
        """
        SELECT s.stats_id, s.filter_sql, s.extra ->> 'group_key', g.groups
        FROM modelstore.statistics AS s
        JOIN modelstore.group_sets AS g
          ON g.source_id = s.source_id AND g.family = s.family AND g.target = s.target AND g.columns = s.columns
         AND g.params_key = s.params_key AND g.lo_key = s.lo_key AND g.hi_key = s.hi_key
         AND g.group_by = s.extra ->> 'group_by' AND g.base_filter = s.extra ->> 'base_filter'
        WHERE s.source_id = %s AND s.family = %s AND s.lo_key = %s AND s.hi_key = %s AND s.target = %s
          AND s.params_key = '' AND s.columns = %s AND s.extra ->> 'group_by' = %s AND s.extra ->> 'base_filter' = %s
        """,
        [source_id, descriptor.kind, bound_key(r.lo), bound_key(r.hi), descriptor.class_column,
         list(descriptor.stats_columns), group_by, descriptor.filter_sql],
    ).fetchall()
    expected = filters([key for _, _, key, _ in rows]) if rows else None
    if not rows or any(n != len(rows) or f != expected[key] for _, f, key, n in rows):
        return None  # none stored, or a write deleted some of them (capture): scan
    found = records.fetch_stats(conn, [sid for sid, *_ in rows])
    return {key: (sid, found[sid]) for sid, _, key, _ in rows}


__all__ = ["mark_grouped", "write", "read", "store_group_stats", "find_group_stats"]
