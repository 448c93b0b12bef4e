"""Bring the catalog schema up to date: ordered SQL files, applied once, recorded, under a lock.

Two kinds of script, as in pgai:

* ``migrations/NNNN_name.sql`` — applied once each, in order, recorded in ``modelstore.schema_version``
  with a checksum (a recorded script whose text changed afterwards is reported, never re-run);
* ``sql/*.sql`` — idempotent ``CREATE OR REPLACE`` objects (views, functions), re-applied whenever
  their text changes (checksums in ``modelstore.schema_objects``, by file stem), in file-name order.
  Only the scripts this release ships are compared and recorded: a row for a name it no longer ships
  (``capture``, before sql/capture.sql was split; migration 0006 deletes that one) never makes the
  catalog look out of date, and is never touched.

Everything runs in one transaction under a transaction-level advisory lock, so concurrent first
connections serialise and a failure leaves the catalog as it was.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from modelstore.errors import MigrationError


#: the C statistics aggregate (ext/; modelstore.stats.engine)
EXTENSION = "modelstore_stats"
log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key: the first 8 bytes of sha1("modelstore.catalog.migrate"), fixed forever
LOCK_KEY = int.from_bytes(hashlib.sha1(b"modelstore.catalog.migrate").digest()[:8], "big", signed=True)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Script:
    version: int  # 0 for idempotent scripts
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def _sql_root() -> tuple[Path, Path]:
    """The migrations/ and sql/ folders: inside the installed wheel, or at the repository root."""
    packaged = Path(__file__).resolve().parent.parent / "_sql"
    if (packaged / "migrations").is_dir():
        return packaged / "migrations", packaged / "idempotent"
    root = Path(__file__).resolve().parents[2]
    return root / "migrations", root / "sql"


def migration_scripts() -> list[Script]:
    folder, _ = _sql_root()
    scripts = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file names must look like 0001_name.sql, got {path.name!r} instead")
        scripts.append(Script(int(match.group(1)), path.stem, path.read_text()))
    versions = [s.version for s in scripts]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number: {versions}")
    return scripts


def idempotent_scripts() -> list[Script]:
    _, folder = _sql_root()
    return [Script(0, p.stem, p.read_text()) for p in sorted(folder.glob("*.sql"))]


_BOOTSTRAP = sql.SQL("""
CREATE SCHEMA IF NOT EXISTS modelstore;
CREATE TABLE IF NOT EXISTS modelstore.schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS modelstore.schema_objects (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
""")


def _recorded(conn: psycopg.Connection) -> tuple[dict[int, str], dict[str, str]] | None:
    """What the database has applied, or None when the catalog does not exist yet."""
    exists = conn.execute("SELECT to_regclass('modelstore.schema_objects') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    versions = dict(conn.execute("SELECT version, checksum FROM modelstore.schema_version").fetchall())
    objects = dict(conn.execute("SELECT name, checksum FROM modelstore.schema_objects").fetchall())
    return versions, objects


def is_current(conn: psycopg.Connection) -> bool:
    """True when every migration and idempotent script is applied (one cheap read, no lock). Recorded
    names that no shipped script has are ignored (see the module's docstring)."""
    recorded = _recorded(conn)
    if recorded is None:
        return False
    versions, objects = recorded
    return all(s.version in versions for s in migration_scripts()) and all(
        objects.get(s.name) == s.checksum for s in idempotent_scripts()
    )


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply what is missing; return the names of the scripts applied. Commits on success."""
    applied: list[str] = []
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
            conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            conn.execute(_BOOTSTRAP)
            versions, objects = _recorded(conn)
            for script in migration_scripts():
                if script.version in versions:
                    if versions[script.version] != script.checksum:
                        log.warning("migration %s changed after it was applied; not re-run", script.name)
                    continue
                conn.execute(sql.SQL(script.text))
                conn.execute(
                    "INSERT INTO modelstore.schema_version (version, name, checksum) VALUES (%s, %s, %s)",
                    [script.version, script.name, script.checksum],
                )
                applied.append(script.name)
            for script in idempotent_scripts():
                if objects.get(script.name) == script.checksum:
                    continue
                conn.execute(sql.SQL(script.text))
                conn.execute(
                    "INSERT INTO modelstore.schema_objects (name, checksum) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
                    [script.name, script.checksum],
                )
                applied.append(script.name)
            if _create_extension(conn):
                applied.append(EXTENSION)
    except psycopg.Error as exc:
        raise MigrationError(f"could not migrate the modelstore catalog: {exc}") from exc
    if not conn.autocommit:
        conn.commit()
    return applied


def _create_extension(conn: psycopg.Connection) -> bool:
    """``CREATE EXTENSION modelstore_stats`` in schema modelstore when the server has it and the
    database does not, ``ALTER EXTENSION … UPDATE`` when the database has an older version (DESIGN §5: the C statistics aggregate, docs/statistics.md). Best effort, in a
    savepoint: without it (not built for this server, or no privilege) the SQL aggregates serve."""
    row = conn.execute("SELECT installed_version IS NULL, installed_version IS DISTINCT FROM default_version "
                       "FROM pg_catalog.pg_available_extensions WHERE name = %s", [EXTENSION]).fetchone()
    if row is None or not row[1]:
        return False
    try:
        with conn.transaction():
            if row[0]:
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA modelstore").format(sql.Identifier(EXTENSION)))
            else:  # an older version (1.0 had no dd_absorb for change capture): update it
                conn.execute(sql.SQL("ALTER EXTENSION {} UPDATE").format(sql.Identifier(EXTENSION)))
    except psycopg.Error as exc:
        log.info("the %s extension is available but could not be created (%s); using the SQL aggregates",
                 EXTENSION, exc)
        return False
    return True


def ensure_current(conn: psycopg.Connection) -> list[str]:
    """Migrate on first connect: a cheap check first, the locked migration only when needed."""
    current = is_current(conn)
    if not conn.autocommit:
        conn.rollback()  # end the read-only check's transaction before taking the lock
    return [] if current else migrate(conn)
