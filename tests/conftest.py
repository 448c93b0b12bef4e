"""Shared fixtures: every test runs against a real PostgreSQL, never a mock.

``MODELSTORE_TEST_DSN`` points the tests at an existing server (its role must be allowed to create
databases); otherwise the session starts a throwaway embedded cluster and removes it at the end.
Each test (``dsn``) or test module (``module_dsn``) gets a fresh, empty database of its own; the
``store`` and ``fresh_store`` fixtures (tests/fixtures.py) open a store on one.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql
from psycopg.conninfo import make_conninfo

from modelstore.server import EmbeddedServer

settings.register_profile("ci", deadline=None, max_examples=50)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class PgCluster:
    """A PostgreSQL server the tests may create databases in."""

    dsn: str  #: a database of that server to connect to for CREATE/DROP DATABASE
    server: EmbeddedServer | None = None  #: the embedded server, when the session started one

    def dsn_for(self, dbname: str) -> str:
        return with_dbname(self.dsn, dbname)


def with_dbname(dsn: str, dbname: str) -> str:
    """``dsn`` with its database replaced by ``dbname`` (keeps URL form for URLs)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))
    return make_conninfo(dsn, dbname=dbname)


#: why the modelstore_stats extension is not available to the session's server (None: it is)
EXTENSION_MISSING: str | None = "not built yet"


@pytest.fixture(scope="session")
def pg_cluster():
    # the C statistics aggregate (ext/): built and installed for the local server when pg_config, a
    # compiler and write access exist; the migrations then create it in every test database. Without it
    # the SQL aggregates serve (MODELSTORE_STATS_ENGINE=sql forces that path even when it is built).
    global EXTENSION_MISSING
    from modelstore import extension

    EXTENSION_MISSING = extension.try_build_and_install()
    external = os.environ.get("MODELSTORE_TEST_DSN")
    if external:
        yield PgCluster(dsn=external)
        return
    server = EmbeddedServer(ephemeral=True).start()
    try:
        yield PgCluster(dsn=server.dsn, server=server)
    finally:
        server.stop()


def _create_database(cluster: PgCluster, prefix: str):
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'").format(sql.Identifier(name))
        )
    return name


def _drop_database(cluster: PgCluster, name: str) -> None:
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def dsn(pg_cluster):
    """The DSN of a fresh, empty database, dropped after the test."""
    name = _create_database(pg_cluster, "mstest")
    try:
        yield pg_cluster.dsn_for(name)
    finally:
        _drop_database(pg_cluster, name)


@pytest.fixture(scope="module")
def module_dsn(pg_cluster):
    """The DSN of a fresh, empty database shared by the tests of one module, dropped afterwards."""
    name = _create_database(pg_cluster, "mstestmod")
    try:
        yield pg_cluster.dsn_for(name)
    finally:
        _drop_database(pg_cluster, name)
