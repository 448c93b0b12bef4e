"""The embedded PostgreSQL server and DSN resolution, against real servers (no mocks)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import psycopg
import pytest

from modelstore import server as server_mod
from modelstore.connection import open_connection, resolve_dsn, to_libpq_dsn
from modelstore.errors import ServerError
from modelstore.server import EmbeddedServer, default_datadir, find_pg_bin


@pytest.fixture
def no_dsn_env(monkeypatch):
    for var in ("MODELSTORE_DSN", "DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _select_one(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return conn.execute("SELECT 1").fetchone()[0]


# ------------------------------------------------------------------------------------ binaries


def test_find_pg_bin_finds_the_server_binaries():
    bin_dir = find_pg_bin()
    for name in ("pg_ctl", "initdb", "postgres"):
        assert os.access(bin_dir / name, os.X_OK), name


def test_find_pg_bin_honours_env(monkeypatch):
    real = find_pg_bin()
    monkeypatch.setenv("MODELSTORE_PG_BIN", str(real))
    assert find_pg_bin() == real.resolve()
    monkeypatch.setenv("MODELSTORE_PG_BIN", "/nonexistent/pg/bin")
    with pytest.raises(ServerError, match="MODELSTORE_PG_BIN"):
        find_pg_bin()


def test_find_pg_bin_explains_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("MODELSTORE_PG_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(server_mod, "SYSTEM_BIN_GLOBS", (str(tmp_path / "*" / "bin"),))
    monkeypatch.setattr(server_mod, "_pgserver_bin", lambda: None)
    with pytest.raises(ServerError, match="apt-get install postgresql"):
        find_pg_bin()


def test_default_datadir(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELSTORE_HOME", str(tmp_path))
    assert default_datadir() == tmp_path / "pg"
    monkeypatch.delenv("MODELSTORE_HOME")
    if os.geteuid() == 0:
        assert default_datadir() == Path("/var/lib/modelstore/pg")
    else:
        assert default_datadir().name == "pg"


# ------------------------------------------------------------------------------------ persistent server


def test_persistent_server_lifecycle(pg_home):
    datadir = pg_home / "pg"

    # several starts at once on a fresh directory: one initialises and starts, the others reuse it
    servers = [EmbeddedServer(datadir) for _ in range(3)]
    errors: list[BaseException] = []

    def start(s):
        try:
            s.start()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(s.started_by_us for s in servers) == [False, False, True]
    assert len({s.port for s in servers}) == 1
    first = next(s for s in servers if s.started_by_us)

    assert first.is_running()
    password = first.password_path.read_text().strip()
    assert first.dsn == f"postgresql://modelstore:{password}@127.0.0.1:{first.port}/modelstore"
    assert _select_one(first.dsn) == 1
    assert first.log_path.exists() and first.log_path.parent == datadir.parent
    with psycopg.connect(first.dsn) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")

    again = EmbeddedServer(datadir).start()
    assert again.started_by_us is False
    assert again.port == first.port
    assert again.start() is again  # idempotent

    port = first.port
    first.stop()
    assert not first.is_running()
    assert not again.is_running()
    first.stop()  # stopping a stopped server is a no-op

    restarted = EmbeddedServer(datadir).start()
    try:
        assert restarted.started_by_us is True
        assert restarted.port == port  # the port chosen at first init is kept
        with psycopg.connect(restarted.dsn) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    finally:
        restarted.stop()
    assert not restarted.is_running()


def test_context_manager_stops_only_what_it_started(pg_home):
    with EmbeddedServer(pg_home / "pg") as outer:
        assert outer.started_by_us
        with EmbeddedServer(pg_home / "pg") as inner:
            assert not inner.started_by_us
        assert outer.is_running(), "the inner block must not stop a server it did not start"
        assert _select_one(outer.dsn) == 1
    assert not outer.is_running()


def test_start_failure_reports_the_server_log(pg_home):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        server = EmbeddedServer(pg_home / "pg", port=busy)
        with pytest.raises(ServerError) as info:
            server.start()
    message = str(info.value)
    assert "could not start PostgreSQL" in message
    assert str(server.log_path) in message
    assert "could not bind" in message or "already in use" in message
    assert not server.is_running()


def test_nonempty_foreign_datadir_is_refused(pg_home):
    datadir = pg_home / "pg"
    datadir.mkdir(mode=0o755)
    (datadir / "something.txt").write_text("not a cluster")
    with pytest.raises(ServerError, match="not empty"):
        EmbeddedServer(datadir).start()


# ------------------------------------------------------------------------------------ ephemeral server


def test_ephemeral_server_is_removed_on_stop():
    server = EmbeddedServer(ephemeral=True).start()
    try:
        directory = server.datadir
        assert directory is not None and directory.exists()
        assert server.started_by_us
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("SHOW fsync").fetchone()[0] == "off"
            assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
    finally:
        server.stop()
    assert not directory.exists()
    assert not directory.parent.exists()


def test_ephemeral_server_rejects_a_datadir(tmp_path):
    with pytest.raises(ValueError):
        EmbeddedServer(tmp_path, ephemeral=True)


# ------------------------------------------------------------------------------------ DSN resolution


def test_resolve_dsn_order(monkeypatch, no_dsn_env):
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-database-url/db")
    assert resolve_dsn() == ("postgresql://from-database-url/db", None)
    monkeypatch.setenv("MODELSTORE_DSN", "postgresql://from-modelstore-dsn/db")
    assert resolve_dsn() == ("postgresql://from-modelstore-dsn/db", None)
    assert resolve_dsn("host=explicit dbname=x") == ("host=explicit dbname=x", None)


def test_resolve_dsn_ignores_empty_env(monkeypatch, no_dsn_env):
    monkeypatch.setenv("MODELSTORE_DSN", "")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/d")
    assert resolve_dsn() == ("postgresql://u@h/d", None)


def test_resolve_dsn_starts_the_embedded_server(monkeypatch, no_dsn_env, pg_home):
    monkeypatch.setenv("MODELSTORE_HOME", str(pg_home))
    dsn, server = resolve_dsn()
    try:
        assert server is not None and server.started_by_us
        assert server.datadir == pg_home / "pg"
        assert dsn == server.dsn
        with open_connection(dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "modelstore"
        dsn2, server2 = resolve_dsn()
        assert dsn2 == dsn and server2 is not None and not server2.started_by_us
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql+psycopg://u:p@h:5433/db", "postgresql://u:p@h:5433/db"),
        ("postgresql+psycopg2://u:p@h/db?sslmode=disable", "postgresql://u:p@h/db?sslmode=disable"),
        ("postgres+asyncpg://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgres://u@h/db", "postgresql://u@h/db"),
        ("host=h port=5 dbname=db", "host=h port=5 dbname=db"),
    ],
)
def test_dsn_strings(given, expected):
    assert to_libpq_dsn(given) == expected
    assert resolve_dsn(given) == (expected, None)


def test_sqlalchemy_url_and_engine():
    sqlalchemy = pytest.importorskip("sqlalchemy")
    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg",
        username="u",
        password="p@ss w/o:rd?#%",
        host="h",
        port=5433,
        database="my db",
        query={"options": "-c search_path=a,b", "sslmode": "disable"},
    )
    dsn, server = resolve_dsn(url)
    assert server is None
    assert dsn.startswith("postgresql://u:")
    assert psycopg.conninfo.conninfo_to_dict(dsn) == {
        "user": "u",
        "password": "p@ss w/o:rd?#%",
        "host": "h",
        "port": "5433",
        "dbname": "my db",
        "options": "-c search_path=a,b",
        "sslmode": "disable",
    }
    socket_url = sqlalchemy.engine.make_url("postgresql+psycopg2://u@/db?host=/run/postgresql")
    assert psycopg.conninfo.conninfo_to_dict(to_libpq_dsn(socket_url)) == {
        "user": "u",
        "dbname": "db",
        "host": "/run/postgresql",
    }
    engine = sqlalchemy.create_engine("postgresql+psycopg://u:secret@h:5433/db")
    try:
        assert resolve_dsn(engine) == ("postgresql://u:secret@h:5433/db", None)
    finally:
        engine.dispose()


def test_sqlalchemy_engine_connects_for_real(dsn):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        resolved, _ = resolve_dsn(engine)
        with open_connection(resolved) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
    finally:
        engine.dispose()


def test_sqlalchemy_url_of_another_database_is_refused():
    sqlalchemy = pytest.importorskip("sqlalchemy")
    with pytest.raises(ValueError, match="sqlite"):
        resolve_dsn(sqlalchemy.engine.make_url("sqlite:///x.db"))
    with pytest.raises(ValueError, match="mysql"):
        resolve_dsn("mysql+pymysql://u@h/db")


@pytest.mark.parametrize("bad", [42, b"postgresql://u@h/db", ["postgresql://u@h/db"], object()])
def test_bad_dsn_type(bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        resolve_dsn(bad)


# ------------------------------------------------------------------------------------ connections


def test_open_connection_defaults(dsn):
    with open_connection(dsn) as conn:
        assert conn.autocommit is False
        assert conn.execute("SHOW application_name").fetchone()[0] == "modelstore"
        assert conn.execute("SELECT current_database()").fetchone()[0].startswith("mstest_")


def test_open_connection_keeps_explicit_settings(dsn):
    named = psycopg.conninfo.make_conninfo(dsn, application_name="mine")
    with open_connection(named, autocommit=True) as conn:
        assert conn.autocommit is True
        assert conn.execute("SHOW application_name").fetchone()[0] == "mine"


def test_dsn_fixture_gives_an_empty_database(dsn, module_dsn):
    assert dsn != module_dsn
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
        assert tables == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to an unprivileged server user")
def test_unreachable_datadir_as_root_is_explained(pg_home):
    private = pg_home / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ServerError, match="cannot reach"):
        EmbeddedServer(private / "sub" / "pg").start()
    assert not (private / "sub").exists(), "nothing is created when the server could not use it"
