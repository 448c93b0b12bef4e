"""Migrations: applied once, recorded, idempotent, atomic, and safe when many connect at once."""

from __future__ import annotations

import threading

import psycopg
import pytest

import modelstore
from modelstore.catalog import migrate
# the freshness tests' own check (every stored summary and index node equals numpy on today's rows)
from tests.test_freshness import PATHS, _capture_path, _fit_linear, _load, _store, assert_catalog_true


def test_first_connect_creates_the_catalog(dsn):
    with modelstore.connect(dsn) as store:
        versions = store.conn.execute("SELECT version, name FROM modelstore.schema_version ORDER BY version").fetchall()
        assert versions == [(s.version, s.name) for s in migrate.migration_scripts()]
        tables = {r[0] for r in store.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'modelstore'")}
        assert {"sources", "statistics", "fitted_models", "models", "schema_version", "schema_objects"} <= tables
        assert migrate.is_current(store.conn)


def test_migrate_is_idempotent(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = migrate.migrate(conn)
        assert first and "0001_catalog" in first
        assert migrate.migrate(conn) == []
        assert migrate.ensure_current(conn) == []
        assert conn.execute("SELECT count(*) FROM modelstore.schema_version").fetchone()[0] == len(migrate.migration_scripts())


def test_concurrent_first_connections_migrate_once(dsn):
    """Eight connections migrate at once: the advisory lock serialises them, one applies, none fails."""
    results, failures = [], []

    def worker():
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                results.append(migrate.ensure_current(conn))
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    applied = [r for r in results if r]
    assert len(applied) == 1
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM modelstore.schema_version").fetchone()[0] == len(migrate.migration_scripts())


def test_failed_migration_leaves_nothing(dsn, monkeypatch):
    """A script that fails half-way rolls back entirely: no schema, no version rows."""
    broken = migrate.Script(9999, "9999_broken", "CREATE TABLE modelstore.half (x int); SELECT 1/0;")
    real = migrate.migration_scripts()
    monkeypatch.setattr(migrate, "migration_scripts", lambda: [*real, broken])
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(modelstore.MigrationError, match="division by zero"):
            migrate.migrate(conn)
        assert conn.execute("SELECT to_regnamespace('modelstore')").fetchone()[0] is None


def _capture_scripts() -> list[str]:
    return [s.name for s in migrate.idempotent_scripts() if s.name.startswith("capture_")]


def test_a_catalog_from_before_the_capture_split_becomes_current_and_capture_stays_exact(dsn):
    """A catalog that one sql/capture.sql kept (its row `capture` in schema_objects, a function of an
    earlier signature still there) migrates to the split scripts: version 6 runs, every capture_* script
    is applied, the old row and function are gone, and capture keeps stored statistics exact."""
    split = next(s for s in migrate.migration_scripts() if s.name == "0006_capture_split")
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate.migrate(conn)
        conn.execute("DELETE FROM modelstore.schema_version WHERE version = %s", [split.version])
        conn.execute("DELETE FROM modelstore.schema_objects WHERE name = ANY (%s)", [_capture_scripts()])
        conn.execute("INSERT INTO modelstore.schema_objects (name, checksum) VALUES ('capture', %s)", ["0" * 64])
        conn.execute("CREATE FUNCTION modelstore._merged_mean(bigint, float8[], float8[]) RETURNS float8[] "
                     "LANGUAGE sql AS 'SELECT $2'")
        assert not migrate.is_current(conn)
        assert migrate.ensure_current(conn) == [split.name, *_capture_scripts()]
        assert migrate.is_current(conn)
        assert migrate.ensure_current(conn) == []
        recorded = [r[0] for r in conn.execute("SELECT name FROM modelstore.schema_objects ORDER BY name")]
        assert recorded == sorted(s.name for s in migrate.idempotent_scripts())
        assert conn.execute("SELECT to_regprocedure('modelstore._merged_mean(bigint, float8[], float8[])')"
                            ).fetchone()[0] is None
    with _store(dsn) as store:
        c = store.conn
        _load(c, n=1200)
        _fit_linear(store, 1, 800)
        store.fit("gaussian_nb", table="t", target="c", features=["x1", "x2"], order_by="id", lo=200, hi=1000)
        store.build_index("t", "id", ["x1", "x2"], "y", kind="linear", chunk_rows=200)
        for path in PATHS:  # both of capture's paths, as the freshness tests run them
            _capture_path(c, path)
            c.execute("UPDATE t SET x1 = x1 + 1, id = id + 300 WHERE id BETWEEN 100 AND 160")
            c.execute("DELETE FROM t WHERE id BETWEEN 500 AND 520")
            c.execute("INSERT INTO t SELECT id + 5, x1, x2, y, c, w FROM t WHERE id BETWEEN 700 AND 720")
            assert assert_catalog_true(c) == 2 + c.execute("SELECT count(*) FROM modelstore.index_nodes").fetchone()[0]
        assert migrate.is_current(c)


def test_a_recorded_script_name_no_longer_shipped_is_ignored(dsn):
    """A schema_objects row whose script this release does not ship (a leftover `capture`) neither makes
    the catalog look out of date nor is touched by migrate."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate.migrate(conn)
        conn.execute("INSERT INTO modelstore.schema_objects (name, checksum) VALUES ('capture', %s)", ["0" * 64])
        assert migrate.is_current(conn)
        assert migrate.ensure_current(conn) == []
        assert migrate.migrate(conn) == []
        assert conn.execute("SELECT checksum FROM modelstore.schema_objects WHERE name = 'capture'"
                            ).fetchone()[0] == "0" * 64
