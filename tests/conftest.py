"""Shared fixtures: every test runs against a real PostgreSQL, never a mock.

``MODELSTORE_TEST_DSN`` points the tests at an existing server (its role must be allowed to create
databases); otherwise the session starts a throwaway embedded cluster and removes it at the end.
Each test (``dsn``) or test module (``module_dsn``) gets a fresh, empty database of its own; the
``store`` and ``fresh_store`` fixtures (tests/fixtures.py) open a store on one.

The header of the run says which server the tests use and why (``modelstore.server.report``), and what
depends on its build.  ``-m smoke`` selects the representative subset of :data:`SMOKE`, which CI also runs
on the server of the wheel that ships PostgreSQL (``MODELSTORE_PG_BIN=none``, issue #21).
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

import tests.doors
from modelstore.server import EmbeddedServer, report

settings.register_profile("ci", deadline=None, max_examples=50)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


#: the representative subset (``-m smoke``): every door, every model kind, the embedded server, migrations,
#: change capture, the demo.  A module with None is taken whole, else the tests whose names start with one of
#: the prefixes.  About a minute; CI runs it on the wheel's server after the whole suite on the system's.
SMOKE: dict[str, tuple[str, ...] | None] = {
    "test_quickstart.py": None,
    "test_server.py": None,
    "test_migrate.py": None,
    "test_fit.py": None,
    "test_models.py": None,
    "test_longley.py": None,
    "test_stats.py": None,
    "test_logistic.py": None,
    "test_planner.py": None,
    "test_rowcount.py": None,
    "test_index.py": None,
    "test_sql_functions.py": None,
    "test_plpython.py": None,  # on a server without plpython3u these skip, saying so
    "test_r.py": None,
    "test_cli.py": ("test_migrate_and_demo",),
    "test_language.py": ("test_same_model_from_python_language_and_cli",),
    "test_concurrency.py": ("test_overlapping_requests_from_eight_connections",),
    "test_crash.py": ("test_fit_killed_during_its_scan_leaves_nothing",),
    "test_freshness.py": (
        "test_every_kind_of_change_keeps_linear_and_naive_bayes_statistics_exact",
        "test_a_rolled_back_change_leaves_the_statistics_as_they_were",
        "test_truncate_drops_the_tables_statistics_and_indexes",
        "test_writes_in_a_replica_session_are_captured",
        "test_disabling_capture_forgets_the_statistics_and_stores_none_until_it_is_enabled",
    ),
}


def pytest_report_header(config):
    return report("test", command="this test session")[1]


def pytest_collection_modifyitems(config, items):
    matched: dict[tuple[str, str | None], bool] = {}
    for item in items:
        module = item.path.name
        if module not in SMOKE:
            continue
        prefixes = SMOKE[module]
        if prefixes is None:
            item.add_marker(pytest.mark.smoke)
            matched[(module, None)] = True
            continue
        for prefix in prefixes:
            matched.setdefault((module, prefix), False)
            if item.name.startswith(prefix):
                item.add_marker(pytest.mark.smoke)
                matched[(module, prefix)] = True
    # a renamed test must not silently leave the subset (checked for the modules that were collected)
    lost = [f"{module}::{prefix}*" for (module, prefix), found in matched.items() if not found]
    if lost and "smoke" in (config.option.markexpr or ""):
        raise pytest.UsageError("the smoke subset (tests/conftest.py SMOKE) names tests that no longer exist: "
                                + ", ".join(lost))


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
    tests.doors.SERVER_PYTHON_PROBLEM = server.python_problem
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
