"""The benchmark's data: a seeded synthetic table in the spirit of the paper's §6.

The paper generates regression and classification data with scikit-learn's synthesizers, "with
random noise and interdependency among features", 5M points × 10 features. We generate one table
that serves both problems (the experiments never read a column they do not model):

- ``id`` bigint 1…N, the ordering column (primary key: a btree, so range scans read only their rows);
- ``x1 … x10``: mixed Gaussian factors (a fixed random mixing matrix makes them correlated), on
  scales from 1 to 10 with offsets (the paper's scikit-learn synthesizers give unit-scale features;
  scales over many orders of magnitude make every logistic fit — modelstore's chunks, the baselines'
  and the analyst's alike — crawl in L-BFGS), with a product term (x3 depends on x1·x2), a near-copy (x7 ≈ 0.8·x6),
  a skewed feature (x9 log-normal) and a slow drift of x1's mean along ``id`` (seasonality), so that
  chunks and ranges are not identically distributed;
- ``y`` = Xβ + N(0, σ²) noise, the regression target;
- ``label`` ∈ {0, 1}, drawn from a logistic model on the standardised features, the class column
  (about 90% learnable, never separable, so logistic chunk models are all finite).

Rows are generated in fixed batches, each from its own seed (``[seed, batch]``), so a table of N rows
is the same whatever else runs, and loaded with ``COPY … (FORMAT BINARY)`` built from numpy arrays
(no per-row Python). Then the primary key is added and the table is ``VACUUM ANALYZE``d, so the
first request does not pay for hint bits and the planner's row estimates come from pg_stats.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import numpy as np
import psycopg
from psycopg import sql

SCHEMA = "modelstore_bench"
TABLE = "data"
FEATURES = tuple(f"x{i}" for i in range(1, 11))
TARGET = "y"
LABEL = "label"
#: bump when the generator changes: a stored table with another version is reloaded
GENERATOR_VERSION = 2
BATCH_ROWS = 250_000

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_N_FIELDS = 1 + len(FEATURES) + 2


def qualified() -> str:
    return f"{SCHEMA}.{TABLE}"


def _model(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The generator's fixed parameters (mixing matrix, scales, β, γ), from the seed alone."""
    rng = np.random.default_rng([seed, 0xB0])
    d = len(FEATURES)
    mixing = np.eye(d) + rng.normal(0.0, 0.35, (d, d))
    scales = 10.0 ** rng.uniform(0.0, 1.0, d)
    offsets = rng.normal(0.0, 5.0, d) * scales
    beta = rng.normal(0.0, 2.0, d) / scales
    gamma = rng.normal(0.0, 1.0, d)
    return mixing, scales, offsets, beta, gamma


def generate_batch(seed: int, batch: int, start: int, rows: int, total_rows: int) -> dict[str, np.ndarray]:
    """Rows ``start+1 … start+rows`` of the table (ids are 1-based) as column arrays."""
    mixing, scales, offsets, beta, gamma = _model(seed)
    rng = np.random.default_rng([seed, batch + 1])
    d = len(FEATURES)
    ids = np.arange(start + 1, start + rows + 1, dtype=np.int64)
    z = rng.normal(size=(rows, d)) @ mixing
    z[:, 0] += 0.8 * np.sin(2.0 * np.pi * ids / max(total_rows, 1) * 3.0)  # slow drift of x1 along id
    z[:, 2] += 0.5 * z[:, 0] * z[:, 1]  # a product term
    z[:, 6] = 0.8 * z[:, 5] + 0.6 * z[:, 6]  # a near-copy
    z[:, 8] = np.exp(0.5 * z[:, 8])  # skewed
    X = z * scales + offsets
    y = X @ beta + 3.0 + rng.normal(0.0, 2.0, rows)
    zs = (z - z.mean(axis=0)) / z.std(axis=0)
    logit = zs @ gamma * 0.9 + 0.2
    label = (logit + rng.logistic(size=rows) * 0.6 > 0).astype(np.int32)
    return {"id": ids, "X": X, "y": y, "label": label}


def binary_block(batch: dict[str, np.ndarray]) -> bytes:
    """One batch in PostgreSQL's binary COPY row format (without the file header and trailer)."""
    fields = [("nf", ">i2"), ("id_len", ">i4"), ("id", ">i8")]
    for name in (*FEATURES, TARGET):
        fields += [(f"{name}_len", ">i4"), (name, ">f8")]
    fields += [("label_len", ">i4"), ("label", ">i4")]
    rec = np.empty(len(batch["id"]), dtype=np.dtype(fields))
    rec["nf"] = _N_FIELDS
    rec["id_len"], rec["id"] = 8, batch["id"]
    for j, name in enumerate(FEATURES):
        rec[f"{name}_len"], rec[name] = 8, batch["X"][:, j]
    rec[f"{TARGET}_len"], rec[TARGET] = 8, batch["y"]
    rec["label_len"], rec["label"] = 4, batch["label"]
    return rec.tobytes()


def batches(rows: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    for b, start in enumerate(range(0, rows, BATCH_ROWS)):
        yield generate_batch(seed, b, start, min(BATCH_ROWS, rows - start), rows)


def _signature(rows: int, seed: int) -> str:
    return f"modelstore benchmark data: rows={rows} seed={seed} generator={GENERATOR_VERSION}"


def table_signature(conn: psycopg.Connection) -> str | None:
    """The comment the loader left on the table (None if there is no such table)."""
    row = conn.execute(
        "SELECT obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", [SCHEMA, TABLE]).fetchone()
    return None if row is None else row[0]


def clear_catalog(conn: psycopg.Connection) -> None:
    """Forget every model, statistic (and index) stored for the benchmark table (the FKs cascade)."""
    conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s", [SCHEMA, TABLE])


def load(conn: psycopg.Connection, rows: int, seed: int, *, reuse: bool = True,
         advance: Callable[[int], None] | None = None) -> bool:
    """Create and fill the benchmark table; returns False when an identical table was already there.

    ``advance(n)`` is called after each batch of n rows (a progress bar)."""
    if rows < 100:
        raise ValueError(f"rows must be at least 100, got {rows!r} instead")
    ident = sql.Identifier(SCHEMA, TABLE)
    if reuse and table_signature(conn) == _signature(rows, seed):
        clear_catalog(conn)
        if advance:
            advance(rows)
        return False
    columns = [sql.SQL("id bigint NOT NULL")]
    columns += [sql.SQL("{} float8 NOT NULL").format(sql.Identifier(c)) for c in (*FEATURES, TARGET)]
    columns += [sql.SQL("{} integer NOT NULL").format(sql.Identifier(LABEL))]
    names = sql.SQL(", ").join(sql.Identifier(c) for c in ("id", *FEATURES, TARGET, LABEL))
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        clear_catalog(conn)
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, sql.SQL(", ").join(columns)))
        with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(ident, names)) as copy:
            copy.write(_HEADER)
            for batch in batches(rows, seed):
                copy.write(binary_block(batch))
                if advance:
                    advance(len(batch["id"]))
            copy.write(_TRAILER)
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(ident))
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(ident, sql.Literal(_signature(rows, seed))))
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(ident))
    return True


#: modelstore's catalog tables a request reads (with their indexes), warmed with the benchmark's table
CATALOG_TABLES = ("modelstore.sources", "modelstore.statistics", "modelstore.stat_indexes", "modelstore.index_nodes",
                  "modelstore.column_sets", "modelstore.fitted_models")


def prewarm(conn: psycopg.Connection, tables=(), *, catalog: bool = True) -> str:
    """Read ``tables`` (qualified names), their indexes and (``catalog``) modelstore's catalog tables into the
    operating system's page cache, so that T0 and modelstore's requests both read from memory: on this
    machine's virtual disk a cold index or heap page costs about 0.4 ms, and a run's first touch of a range
    would otherwise be charged to whichever method reads it first. Returns what was done, for the report.

    Uses pg_prewarm's 'read' mode (the contrib extension, created when missing: the embedded server's role
    is a superuser); without it, the heaps are read by ``count(*)`` and the indexes stay cold."""
    names = [*tables, *(CATALOG_TABLES if catalog else ())]
    rels = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_catalog.pg_class AS c WHERE c.oid = ANY (ARRAY("
        "SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)) "
        "UNION ALL SELECT i.indexrelid::regclass::text FROM pg_catalog.pg_index AS i "
        "WHERE i.indrelid = ANY (ARRAY(SELECT to_regclass(t) FROM unnest(%s::text[]) AS t))",
        [names, names]).fetchall()
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    except psycopg.Error as exc:
        for t in names:
            if conn.execute("SELECT to_regclass(%s)", [t]).fetchone()[0] is not None:
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*t.split(".", 1))))
        return f"heaps read by count(*) (no pg_prewarm: {exc.diag.message_primary or exc}); indexes cold"
    pages = sum(conn.execute("SELECT pg_prewarm(%s::regclass, 'read')", [r]).fetchone()[0] for (r,) in rels)
    return f"{len(rels)} relations ({pages * 8 // 1024:,} MB) read into the OS page cache by pg_prewarm"


def table_bytes(conn: psycopg.Connection) -> int:
    """pg_total_relation_size of the base table: heap, TOAST and its index."""
    return conn.execute("SELECT pg_total_relation_size(%s::regclass)", [qualified()]).fetchone()[0]


def read_rows(conn: psycopg.Connection, lo: int, hi: int, columns) -> np.ndarray:
    """Rows [lo, hi] of ``columns`` as a float matrix, in id order (for accuracy checks)."""
    q = sql.SQL("SELECT {} FROM {} WHERE id BETWEEN %s AND %s ORDER BY id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(SCHEMA, TABLE))
    with conn.cursor(binary=True) as cur:
        cur.execute(q, [lo, hi])
        return np.array(cur.fetchall(), dtype=float).reshape(-1, len(columns))


#: the columns a copy of the benchmark table keeps (capture and deployment experiments)
COPY_COLUMNS = ("id", *FEATURES, TARGET, LABEL)


def ident(table: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, table)


def copy_table(ctx, table: str, rows: int) -> None:  # ctx: the run's benchmark Context
    """The first ``rows`` rows of the benchmark table, ids doubled, with a primary key on id."""
    others = sql.SQL(", ").join(sql.Identifier(c) for c in COPY_COLUMNS[1:])
    with ctx.conn.transaction():
        ctx.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(table)))
        ctx.conn.execute(sql.SQL("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s"),
                         [SCHEMA, table])
        ctx.conn.execute(sql.SQL("CREATE TABLE {} AS SELECT 2 * id AS id, {} FROM {} WHERE id <= %s").format(
            ident(table), others, sql.Identifier(SCHEMA, TABLE)), [rows])
        ctx.conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(ident(table)))
    ctx.conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(ident(table)))
