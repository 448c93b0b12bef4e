"""Issue #14, "The first hour": what a new user trips over, each kept fixed by a test here.

Every test names the item of the issue it covers. All of them run against a real PostgreSQL (the
session's throwaway cluster, or a server of their own where the server itself is under test).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from rich.console import Console

import modelstore
from modelstore.doors import cli
from modelstore.errors import ModelstoreError
from modelstore.server import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent


def _table(dsn: str, name: str = "public.sales", rows: int = 2000) -> None:
    """A small sales table: id (primary key), ts, price, promo, revenue, came_back."""
    schema, table = name.split(".")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(
            "CREATE TABLE {} AS SELECT g AS id, timestamp '2025-01-01' + g * interval '1 minute' AS ts, "
            "(g %% 37)::float8 AS price, (g %% 3 = 0)::int::float8 AS promo, "
            "(100 + 2 * (g %% 37) + 5 * (g %% 3) + (g * 7919 %% 13))::float8 AS revenue, "
            "((g * 31 %% 7) > 3)::int AS came_back FROM generate_series(1, %s) AS g").format(
            sql.Identifier(schema, table)), [rows])
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(sql.Identifier(schema, table)))


def _cli(dsn: str, *args: str, columns: int = 80) -> tuple[int, str, str]:
    """Run the CLI in this process with an ``columns``-wide terminal; (exit status, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    saved = cli.console, cli.err_console, sys.stdout
    cli.console = Console(file=out, width=columns, force_terminal=False)
    cli.err_console = Console(file=err, width=columns, highlight=False)
    sys.stdout = out
    try:
        status = cli.main(["--dsn", dsn, *args])
    finally:
        cli.console, cli.err_console, sys.stdout = saved
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def store(dsn):
    _table(dsn)
    with modelstore.connect(dsn) as s:
        yield s


# ---------------------------------------------------------------------------------------------------
# item 1: user tables never land in the catalog schema


def test_item1_unqualified_tables_go_to_public_not_the_catalog(pg_cluster, dsn):
    """Item 1: on the embedded server, an unqualified CREATE TABLE sources/statistics lands in public, and
    an unqualified DROP TABLE cannot reach the catalog (the search path does not start with it)."""
    if pg_cluster.server is None:
        pytest.skip("MODELSTORE_TEST_DSN: the search path of an external server is its owner's to set")
    with modelstore.connect(dsn):
        pass  # the catalog exists
    with psycopg.connect(dsn, autocommit=True) as conn:
        path = conn.execute("SELECT current_schemas(false)").fetchone()[0]
        assert path[:1] != ["modelstore"], path
        conn.execute("CREATE TABLE sources (id int)")
        conn.execute("CREATE TABLE sales (id int)")
        assert conn.execute("SELECT 'sources'::regclass::text, 'sales'::regclass::text").fetchone() == (
            "sources", "sales")
        assert conn.execute("SELECT to_regclass('public.sources') IS NOT NULL").fetchone()[0]
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("DROP TABLE statistics")
        assert conn.execute("SELECT to_regclass('modelstore.statistics') IS NOT NULL").fetchone()[0]


def test_item1_docs_say_where_user_tables_go():
    """Item 1: the README says where user tables go (not the catalog schema)."""
    readme = (ROOT / "README.md").read_text()
    assert "never in the `modelstore` schema" in readme


# ---------------------------------------------------------------------------------------------------
# item 2: catalog rows of dropped or re-created tables never crash a listing


def test_item2_dropped_table_is_listed_as_such(store, dsn):
    """Item 2: after DROP TABLE, store.indexes() and `modelstore index list` list the index as 'table
    dropped' (no UndefinedTable), and build_index on another table still works."""
    store.build_index("public.sales", "id", ["price", "promo"], "revenue", chunk_rows=500)
    _table(dsn, "public.other")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE public.sales")
    frame = store.indexes()
    assert list(frame.status) == ["table dropped"]
    status, out, err = _cli(dsn, "index", "list")
    assert status == 0, err
    assert "table dropped" in out
    info = store.build_index("public.other", "id", ["price"], "revenue", chunk_rows=500)
    assert info["status"] == "ok"
    _table(dsn, "public.sales")  # created again: another table under the old name
    assert sorted(store.indexes().status) == ["ok", "table re-created"]
    status, out, _ = _cli(dsn, "--format", "json", "index", "list")
    assert status == 0 and {r["status"] for r in json.loads(out)} == {"ok", "table re-created"}


# ---------------------------------------------------------------------------------------------------
# item 3: CLI output


def test_item3_tables_fit_the_terminal_without_cutting_names(store, dsn):
    """Item 3: `modelstore models` in an 80-column terminal shows every model name whole, on one line,
    and a missing filter as nothing (not 'nan')."""
    long_name = "revenue_by_price_and_promo_first_two_weeks_v2"
    store.fit("linear", table="public.sales", target="revenue", features=["price", "promo"], order_by="id",
              lo=1, hi=1000, name=long_name)
    store.fit("linear", table="public.sales", target="revenue", features=["price"], order_by="id",
              where="promo = 1", name="m2")
    status, out, err = _cli(dsn, "models", columns=80)
    assert status == 0, err
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert any(long_name in line for line in out.splitlines()), out
    assert "nan" not in out and "None" not in out
    status, out, err = _cli(dsn, "index", "list", columns=80)
    assert status == 0, err


def test_item3_json_and_csv_for_scripts(store, dsn):
    """Item 3: --format json|csv print the listing for scripts, with nulls for missing values."""
    store.fit("linear", table="public.sales", target="revenue", features=["price"], order_by="id", name="m1")
    status, out, _ = _cli(dsn, "--format", "json", "models")
    assert status == 0
    [row] = json.loads(out)
    assert row["name"] == "m1" and row["filter"] is None and row["features"] == ["price"]
    status, out, _ = _cli(dsn, "--format", "csv", "models")
    lines = out.splitlines()
    assert status == 0 and lines[0].startswith("name,kind,source") and lines[1].startswith("m1,linear,public.sales")
    status, out, _ = _cli(dsn, "--format", "json", "query",
                          "SELECT * FROM ML.WEIGHTS(MODEL m1)")
    assert status == 0 and {r["processed_input"] for r in json.loads(out)} >= {"price"}


def test_item3_errors_go_to_stderr_without_markup(store, dsn):
    """Item 3: errors are one line on stderr, no literal rich markup, with the documented exit status."""
    status, out, err = _cli(dsn, "show", "no_such_model")
    assert status == 2 and out == ""
    assert err.startswith("error: ") and "[bold" not in err and "no_such_model" in err
    status, out, err = _cli(dsn, "query", "SELECT 1 / 0 AS x")
    assert status in (2, 3) and out == "" and "[bold" not in err and "division by zero" in err
    help_text = cli.build_parser().format_help()
    assert "exit status" in help_text and "130" in help_text
    assert "| 130 |" in (ROOT / "README.md").read_text()  # documented exit codes
