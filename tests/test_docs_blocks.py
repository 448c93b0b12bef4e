"""Every code block of README.md and docs/*.md runs against the demo database (issue #14, item 4).

A fenced block whose language is ``python``, ``sql``, ``sh``/``bash`` or ``r`` runs verbatim, in the order
of the file, in one database holding what ``modelstore demo`` loads (``modelstore_demo.sales``, 200,000
seeded rows) and shared by all files (README.md first, then docs/ in name order):

- python: ``exec`` in one namespace per file, with ``MODELSTORE_DSN`` pointing at the database;
- sql: ``psql -v ON_ERROR_STOP=1 -f`` (so psql's ``\\copy`` works), with the libpq variables set;
- sh: ``bash -e``, with the virtualenv's ``modelstore`` and psql on PATH and ``MODELSTORE_DSN`` set;
- r: ``Rscript``, with the libpq variables set (skipped where R, DBI or RPostgreSQL is missing).

Each file's blocks run in a working directory of their own, so that files one block writes
(``shop.csv``) are there for the next. A block preceded by ``<!-- not run: REASON -->`` is skipped with
that reason, and ``<!-- run: model language -->`` before a ``sql`` block runs it with ``modelstore query -f``
instead of psql. Blocks without a language (output, transcripts) are not code and are not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import modelstore

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "py": "python", "sql": "sql", "sh": "sh", "bash": "sh", "shell": "sh", "r": "r"}
FENCE = re.compile(r"^```([A-Za-z]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->\s*$", re.DOTALL)
MODEL_LANGUAGE = re.compile(r"<!--\s*run:\s*model language\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    code: str
    skip: str | None  # the reason it is not run
    model_language: bool = False

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(paths=DOCS) -> list[Block]:
    found = []
    for path in paths:
        text = path.read_text()
        for match in FENCE.finditer(text):
            language = LANGUAGES.get(match.group(1).lower())
            if language is None:
                continue
            before = text[: match.start()].rstrip()
            last = before.splitlines()[-1] if before else ""
            reason = NOT_RUN.search(last)
            found.append(Block(path, text.count("\n", 0, match.start()) + 1, language, match.group(2),
                               reason.group(1) if reason else None, bool(MODEL_LANGUAGE.search(last))))
    return found


ALL = blocks()


def test_the_collector_sees_the_readme_and_docs():
    """Item 4: the README's Python, SQL, shell and R blocks are collected, and a not-run marker needs a reason."""
    readme = [b for b in ALL if b.path.name == "README.md"]
    assert {b.language for b in readme} >= {"python", "sql", "sh", "r"}
    assert sum(b.skip is None for b in readme) >= 8
    for b in ALL:
        assert b.skip is None or len(b.skip) > 10, f"{b.id}: say why the block is not run"
    assert "../shared/DESIGN.md" not in (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def demo_db(pg_cluster):
    """A database with what `modelstore demo` loads: the catalog and modelstore_demo.sales."""
    from modelstore.doors import demo

    name = f"msdocs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'").format(
            sql.Identifier(name)))
    dsn = pg_cluster.dsn_for(name)
    try:
        with modelstore.connect(dsn) as store:
            demo.load_sales(store.conn, 200_000, 7)
        yield dsn
    finally:
        with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


_namespaces: dict[Path, dict] = {}
_workdirs: dict[Path, Path] = {}


@pytest.fixture(scope="module")
def workdirs():
    yield _workdirs
    for path in _workdirs.values():
        shutil.rmtree(path, ignore_errors=True)


def _environment(dsn: str) -> dict[str, str]:
    env = dict(os.environ, MODELSTORE_DSN=dsn)
    env.pop("DATABASE_URL", None)
    params = conninfo_to_dict(dsn)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("dbname", "PGDATABASE"), ("user", "PGUSER"),
                     ("password", "PGPASSWORD")):
        if params.get(key):
            env[var] = str(params[key])
    psql = shutil.which("psql") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None)
    extra = [str(Path(sys.executable).parent)] + ([str(Path(psql).parent)] if psql else [])
    env["PATH"] = os.pathsep.join(extra + [env.get("PATH", "")])
    return env


def _run(args, env, cwd, what: str, stdin: str | None = None) -> None:
    proc = subprocess.run(args, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("block", [b for b in ALL], ids=[b.id for b in ALL])
def test_block_runs(block: Block, demo_db, workdirs, monkeypatch):
    """Item 4: the block runs verbatim against the demo database (or says why it does not)."""
    if block.skip:
        pytest.skip(f"not run: {block.skip}")
    cwd = workdirs.setdefault(block.path, Path(tempfile.mkdtemp(prefix="modelstore-docs-")))
    env = _environment(demo_db)
    if block.language == "python":
        for key in ("MODELSTORE_DSN", "PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"):
            if key in env:
                monkeypatch.setenv(key, env[key])
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.chdir(cwd)
        namespace = _namespaces.setdefault(block.path, {"__name__": "__docs__"})
        exec(compile(block.code, block.id, "exec"), namespace)  # noqa: S102 - our own documentation
    elif block.language == "sql" and block.model_language:
        _run([sys.executable, "-m", "modelstore", "query", "-f", "-"], env, cwd, block.id, stdin=block.code)
    elif block.language == "sql":
        if not shutil.which("psql", path=env["PATH"]):
            pytest.skip("psql is not installed")
        _run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], env, cwd, block.id, stdin=block.code)
    elif block.language == "sh":
        _run(["bash", "-e", "-o", "pipefail", "-c", block.code], env, cwd, block.id)
    else:
        rscript = shutil.which("Rscript")
        if rscript is None or subprocess.run([rscript, "-e", "library(DBI); library(RPostgreSQL)"],
                                             capture_output=True).returncode != 0:
            pytest.skip("R with DBI and RPostgreSQL is not installed")
        _run([rscript, "-e", block.code], env, cwd, block.id)
