"""The per-group rows of a grouped model (migration 0009; docs/serving.md, "Per-group models"):
each group's statistics and its shrunk model, written in one batched statement (a pipeline, no round
trip per group) and read back in one query.
"""

from __future__ import annotations

import json

import psycopg

from modelstore.catalog.records import _jsonable


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


__all__ = ["mark_grouped", "write", "read"]
