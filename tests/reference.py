"""From-scratch references for the concurrency and crash tests: table rows fetched fast, OLS by numpy."""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql


def fetch_matrix(conn: psycopg.Connection, table: str, columns: list[str], order_by: str = "id",
                 schema: str = "public") -> np.ndarray:
    """Every row of ``schema.table`` (ordered by ``order_by``) as a float matrix, through binary COPY.

    Each column is cast to float8, so every row of the COPY stream has the same width and the stream is
    one numpy structured array: no per-value parsing (a million rows take a fraction of a second).
    """
    query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT (FORMAT binary)").format(
        sql.SQL(", ").join(sql.SQL("{}::float8").format(sql.Identifier(c)) for c in columns),
        sql.Identifier(schema, table), sql.Identifier(order_by))
    chunks = []
    with conn.cursor().copy(query) as copy:
        for data in copy:
            chunks.append(bytes(data))
    raw = b"".join(chunks)
    signature = b"PGCOPY\n\xff\r\n\x00"
    assert raw.startswith(signature), "not a binary COPY stream"
    ext = int.from_bytes(raw[15:19], "big")
    body = raw[19 + ext : -2]  # header, extension area; the trailer is a 16-bit -1
    assert raw[-2:] == b"\xff\xff"
    fields = [("nfields", ">i2")]
    for i in range(len(columns)):
        fields += [(f"len{i}", ">i4"), (f"v{i}", ">f8")]
    rec = np.frombuffer(body, dtype=np.dtype(fields))
    assert (rec["nfields"] == len(columns)).all()
    for i in range(len(columns)):
        assert (rec[f"len{i}"] == 8).all(), f"column {columns[i]!r} holds NULLs; fetch_matrix wants complete rows"
    return np.column_stack([rec[f"v{i}"].astype(float) for i in range(len(columns))])


def ols(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[intercept, coefficients…] of ordinary least squares, from scratch (numpy lstsq)."""
    A = np.column_stack([np.ones(len(X)), X])
    return np.linalg.lstsq(A, y, rcond=None)[0]

