"""Test helpers: load a DataFrame into PostgreSQL, count base-table reads, count catalog rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

_PG_TYPES = {"i": "bigint", "u": "bigint", "f": "double precision", "b": "boolean", "O": "text", "M": "timestamp"}


def load_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame, *, types: dict | None = None,
               schema: str = "public") -> None:
    """(Re)create ``schema.table`` with the frame's columns and COPY its rows in (None/NaN → NULL)."""
    types = types or {}
    ident = sql.Identifier(schema, table)
    cols = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types.get(c, _PG_TYPES[frame[c].dtype.kind])))
            for c in frame.columns]
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, sql.SQL(", ").join(cols)))
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                ident, sql.SQL(", ").join(map(sql.Identifier, frame.columns)))) as copy:
            for row in frame.itertuples(index=False):
                copy.write_row([_py(v) for v in row])
    conn.execute(sql.SQL("ANALYZE {}").format(ident))


def _py(v):
    """A cell as psycopg wants it; pandas' missing values (None, NaN) become NULL."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v


def table_reads(store_conn: psycopg.Connection, observer: psycopg.Connection, table: str, schema: str = "public") -> int:
    """Rows the server has read from ``schema.table`` (sequential + index fetches), flushed now.

    PostgreSQL 15 keeps a backend's table statistics pending until it goes idle; force the store's
    connection to publish them, then read them from another connection's fresh snapshot.
    """
    store_conn.execute("SELECT pg_stat_force_next_flush()")
    store_conn.execute("SELECT 1")
    observer.execute("SELECT pg_stat_clear_snapshot()")
    row = observer.execute(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables "
        "WHERE schemaname = %s AND relname = %s",
        [schema, table],
    ).fetchone()
    return int(row[0])


def catalog_counts(conn: psycopg.Connection) -> tuple[int, int, int]:
    """(sources, statistics, models) rows in the catalog — what a failed request must not change."""
    return conn.execute(
        "SELECT (SELECT count(*) FROM modelstore.sources), (SELECT count(*) FROM modelstore.statistics), "
        "(SELECT count(*) FROM modelstore.fitted_models)"
    ).fetchone()


def rel_err(a, b) -> float:
    """Largest elementwise relative error, relative to the reference's magnitude."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(b), 1e-300)
    return float(np.max(np.abs(a - b) / scale)) if a.size else 0.0
