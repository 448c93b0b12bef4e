"""Migrations: applied once, recorded, idempotent, atomic, and safe when many connect at once."""

from __future__ import annotations

import threading

import psycopg
import pytest

import modelstore
from modelstore.catalog import migrate


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
