"""The Quickstart on any machine (issue #21): which server `make demo` / `make test` use and why, the server of
a wheel that ships PostgreSQL (``MODELSTORE_PG_BIN=none`` hides the system's), and PL/Python from a checkout
the server's unprivileged user cannot read.  Every server here is a real PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import psycopg
import pytest

import modelstore
from modelstore import server as server_mod
from modelstore.errors import ServerError
from modelstore.server import EmbeddedServer, NoServerBinaries, locate_pg_bin, plpython_capability

ROOT = Path(__file__).resolve().parent.parent


def chooser(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m modelstore.server``, as the Makefile runs it."""
    environ = {k: v for k, v in os.environ.items() if k not in ("MODELSTORE_DSN", "DATABASE_URL")}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "modelstore.server", *args], capture_output=True, text=True,
                          env=environ, timeout=120, cwd=ROOT)


# ------------------------------------------------------------------------------------ the choice, said


def test_the_report_names_the_server_and_what_its_build_lacks(dsn):
    proc = chooser("--for", "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    binaries = locate_pg_bin()
    assert lines[0].startswith("modelstore: `make test` uses throwaway PostgreSQL clusters: PostgreSQL ")
    assert str(binaries.bin_dir) in lines[0]
    # what depends on the server's build agrees with the server itself
    with psycopg.connect(dsn) as conn:
        has_plpython = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'plpython3u')").fetchone()[0]
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    if os.environ.get("MODELSTORE_TEST_DSN") is None:
        assert f"PostgreSQL {version} from" in lines[0]
        plpython = next(line for line in lines if "PL/Python (plpython3u):" in line)
        assert ("PL/Python (plpython3u): yes" in plpython) == has_plpython
    assert any("C statistics aggregate: no — not built yet" in line for line in lines)
    assert any("R session (DBI + RPostgreSQL):" in line for line in lines)


def test_a_dsn_needs_no_binaries_and_a_bad_pg_bin_is_named():
    proc = chooser("--for", "demo", MODELSTORE_DSN="postgresql://somewhere/db", MODELSTORE_PG_BIN="/nonexistent")
    assert proc.returncode == 0 and "uses the PostgreSQL server at $MODELSTORE_DSN" in proc.stdout
    proc = chooser("--for", "demo", MODELSTORE_PG_BIN="/nonexistent/bin")
    assert proc.returncode == 1
    assert "MODELSTORE_PG_BIN='/nonexistent/bin' does not hold the PostgreSQL server binaries" in proc.stdout


def test_pg_bin_none_hides_the_system_binaries(monkeypatch):
    monkeypatch.setenv("MODELSTORE_PG_BIN", "none")
    wheel = server_mod._pgserver_bin()
    proc = chooser("--for", "demo", MODELSTORE_PG_BIN="none")
    if wheel is None:  # the Makefile installs the embedded extra on exit status 3
        with pytest.raises(NoServerBinaries, match=r"pip install 'modelstore\[embedded\]'"):
            locate_pg_bin()
        assert proc.returncode == 3 and "MODELSTORE_PG_BIN=none hides the system PostgreSQL binaries" in proc.stdout
    else:
        chosen = locate_pg_bin()
        assert chosen.kind == "wheel" and chosen.bin_dir == wheel.bin_dir
        assert chosen.reason == "MODELSTORE_PG_BIN=none hides the system binaries"
        assert proc.returncode == 0 and f"from {wheel.origin} ({wheel.bin_dir})" in proc.stdout


# ------------------------------------------------------------------------------------ the wheel's server


@pytest.fixture
def wheel_server(monkeypatch):
    """An ephemeral server on the wheel's binaries, the system's hidden."""
    monkeypatch.setenv("MODELSTORE_PG_BIN", "none")
    if server_mod._pgserver_bin() is None:
        pytest.skip("no wheel that ships PostgreSQL is installed (the embedded extra): `make test` installs it "
                    "where there are no system binaries, and CI with MODELSTORE_PG_BIN=none")
    server = EmbeddedServer(ephemeral=True).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_wheels_server_runs_modelstore_end_to_end(wheel_server):
    binaries = wheel_server.binaries
    assert binaries.kind == "wheel"
    if os.geteuid() == 0 and server_mod._untraversable(binaries.bin_dir / "postgres", server_mod._server_user()):
        # as root with the virtualenv under a 0700 directory, the server runs from a staged copy
        assert wheel_server.bin_dir.is_relative_to(wheel_server.staging_dir)
    with modelstore.connect(wheel_server.dsn) as store:
        conn = store.conn
        assert conn.execute("SHOW server_version").fetchone()[0].split()[0] == binaries.version
        conn.execute("CREATE TABLE obs AS SELECT g AS id, (g % 7)::float8 AS x, sin(g)::float8 AS z, "
                     "1.5 + 2.0 * (g % 7) - 0.5 * sin(g) + 0.01 * cos(3 * g) AS y, "
                     "CASE WHEN g % 3 = 0 THEN 'a' ELSE 'b' END AS label FROM generate_series(1, 2000) g")
        conn.commit()
        m = store.fit("linear", table="obs", target="y", features=["x", "z"], order_by="id", lo=1, hi=1500)
        rows = np.array(conn.execute("SELECT x, z, y FROM obs WHERE id <= 1500").fetchall())
        beta = np.linalg.lstsq(np.c_[np.ones(len(rows)), rows[:, :2]], rows[:, 2], rcond=None)[0]
        np.testing.assert_allclose([m.intercept_, *m.coef_], beta, rtol=1e-9)
        again = store.fit("linear", table="obs", target="y", features=["x"], order_by="id", lo=1, hi=1500)
        assert again.plan.stats_used and again.plan.rows_scanned == 0  # the stored statistics, no rescan
        nb = store.fit("gaussian_nb", table="obs", target="label", features=["x", "z"], order_by="id")
        assert list(nb.classes_) == ["a", "b"]
        # what the wheel's build lacks is said, and the rest works
        status = conn.execute("SELECT modelstore.plpython_status()").fetchone()[0]
        assert status.startswith("absent: this server has no plpython3u")
        # create_model is a stub there that says why and where to look (issue #14, item 7)
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=r"plpython_status\(\)"):
            with conn.transaction():
                conn.execute("SELECT modelstore.create_model(name => 'q1', kind => 'linear', \"table\" => "
                             "'public.obs', target => 'y', features => ARRAY['x'], order_by => 'id')")
        assert not plpython_capability(binaries).available


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user, who may not reach the wheel")
def test_a_wheels_binaries_the_server_user_cannot_reach_are_staged(monkeypatch):
    monkeypatch.setenv("MODELSTORE_PG_BIN", "none")
    wheel = server_mod._pgserver_bin()
    if wheel is None:
        pytest.skip("no wheel that ships PostgreSQL is installed (the embedded extra)")
    # the wheel's package and its vendored libraries, as a virtualenv under a 0700 directory holds them
    package = wheel.prefix.parent
    private = Path(tempfile.mkdtemp(prefix="modelstore-private-"))
    try:
        site = private / "site-packages"
        shutil.copytree(wheel.prefix, site / package.name / wheel.prefix.name, symlinks=True, copy_function=os.link)
        libs = package.with_name(package.name + ".libs")
        if libs.is_dir():
            shutil.copytree(libs, site / libs.name, symlinks=True, copy_function=os.link)
        monkeypatch.setenv("MODELSTORE_PG_BIN", str(site / package.name / wheel.prefix.name / "bin"))
        server = EmbeddedServer(ephemeral=True).start()
        try:
            assert not server.bin_dir.is_relative_to(private)
            assert server.bin_dir.is_relative_to(server.staging_dir)
            with psycopg.connect(server.dsn) as conn:
                assert conn.execute("SHOW server_version").fetchone()[0].split()[0] == wheel.version
        finally:
            server.stop()
    finally:
        shutil.rmtree(private, ignore_errors=True)


# ------------------------------------------------------------------------------------ versions


def test_a_data_directory_of_another_version_is_refused_clearly(pg_home):
    datadir = pg_home / "pg"
    datadir.mkdir(mode=0o700)
    (datadir / "PG_VERSION").write_text("9.6\n")
    if os.geteuid() == 0:
        who = server_mod._server_user()
        for path in (datadir, datadir / "PG_VERSION"):
            os.chown(path, who.uid, who.gid)
    with pytest.raises(ServerError, match=r"initialised by PostgreSQL 9, but the server binaries found are "
                                          r"PostgreSQL \d+"):
        EmbeddedServer(datadir).start()


# ------------------------------------------------------------------------------------ a checkout nobody else reads

STAGED_SCRIPT = r"""
import json, sys
import numpy as np, psycopg
import modelstore
from modelstore.server import EmbeddedServer

server = EmbeddedServer(ephemeral=True).start()
try:
    with modelstore.connect(server.dsn) as store:
        store.conn.execute("CREATE TABLE t AS SELECT g AS id, g::float8 AS x, 3.0 * g - 1 AS y "
                           "FROM generate_series(1, 40) g")
        store.conn.commit()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        out = conn.execute("SELECT modelstore.create_model(NULL, 'linear', 't', 'y', ARRAY['x'], 'id')").fetchone()[0]
        path = conn.execute("SELECT modelstore._python_path()").fetchone()[0]
    print(json.dumps({"module": modelstore.__file__, "path": path, "staging": str(server.staging_dir),
                      "problem": server.python_problem, "coef": out["coef"], "intercept": out["intercept"]}))
finally:
    server.stop()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user, who may not read the checkout")
def test_plpython_imports_modelstore_from_a_checkout_the_server_user_cannot_read():
    if not plpython_capability(locate_pg_bin()).available:
        pytest.skip("this server build has no plpython3u: there is nothing for its Python to import")
    private = Path(tempfile.mkdtemp(prefix="modelstore-private-"))  # mode 0700, like any `mktemp -d` or /root
    try:
        # a checkout: the package with the migrations and SQL beside it
        shutil.copytree(ROOT, private / "checkout", ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "bench", "tests", "docs"))
        env = dict(os.environ, PYTHONPATH=str(private / "checkout"))
        proc = subprocess.run([sys.executable, "-c", STAGED_SCRIPT], capture_output=True, text=True, env=env,
                              cwd=private, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["module"].startswith(str(private))  # the copy in the private directory was the one used
        assert result["problem"] is None
        entries = result["path"].split(os.pathsep)
        assert entries[0].startswith(result["staging"] + os.sep)  # the server's Python imports a staged copy
        assert not any(e.startswith(str(private)) for e in entries)
        assert result["coef"] == pytest.approx([3.0], rel=1e-12) and result["intercept"] == pytest.approx(-1.0)
    finally:
        shutil.rmtree(private, ignore_errors=True)
