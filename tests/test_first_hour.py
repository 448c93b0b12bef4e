"""Issue #14, "The first hour": what a new user trips over, each kept fixed by a test here.

Every test names the item of the issue it covers. All of them run against a real PostgreSQL (the
session's throwaway cluster, or a server of their own where the server itself is under test).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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


# ---------------------------------------------------------------------------------------------------
# item 5: a statement script is one transaction


def test_item5_a_failing_script_writes_nothing_and_names_the_statement(store, dsn, tmp_path):
    """Item 5: `modelstore query -f` with two CREATE MODEL statements where the second fails: the first is
    rolled back too, and the error names statement 2. The same for store.query."""
    script = tmp_path / "session.sql"
    script.write_text(
        "CREATE MODEL first_one OPTIONS (model_type = 'linear_reg', input_label_cols = ['revenue']) "
        "AS SELECT price, revenue FROM public.sales WHERE id <= 500;\n"
        "CREATE MODEL second_one OPTIONS (model_type = 'linear_reg', input_label_cols = ['revenue']) "
        "AS SELECT no_such_column, revenue FROM public.sales;\n")
    status, out, err = _cli(dsn, "query", "-f", str(script))
    assert status == 2 and out == ""
    assert "statement 2 of 2 (CREATE MODEL second_one)" in err and "nothing was written" in err
    assert store.models().empty
    with pytest.raises(ModelstoreError) as info:
        store.query(script.read_text())
    assert "statement 2 of 2" in "".join(info.value.__notes__)
    assert store.models().empty
    assert store.conn.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0] == 0
    language = (ROOT / "docs" / "language.md").read_text()
    assert "one transaction" in language


# ---------------------------------------------------------------------------------------------------
# item 6: silent surprises get a Note: in the plan and a warning


def test_item6_chunk_rows_mismatch_is_said(store):
    """Item 6: chunk_rows=500 after 1000-row chunks were stored: a Note: in the plan and a warning."""
    args = dict(table="public.sales", target="came_back", features=["price", "promo"], order_by="id")
    store.fit("logistic", lo=1, hi=2000, chunk_rows=1000, **args)
    with pytest.warns(modelstore.PlanNoteWarning, match="chunk_rows=500"):
        m = store.fit("logistic", lo=1, hi=2000, chunk_rows=500, **args)
    assert any("chunk_rows=500" in n for n in m.plan.plan.notes)
    assert "Note: 2 stored chunk model(s) of about 1,000 rows" in str(m.plan)
    with pytest.warns(modelstore.PlanNoteWarning):
        assert "chunk_rows=500" in str(store.explain("logistic", lo=1, hi=2000, chunk_rows=500, **args))


def test_item6_python_where_on_the_ordering_column_is_a_range(store):
    """Item 6: a Python where on the ordering column becomes the range, as in the language: the second
    request reuses the first one's statistics instead of scanning, and the plan says so."""
    args = dict(table="public.sales", target="revenue", features=["price", "promo"], order_by="id")
    first = store.fit("linear", lo=1, hi=1000, **args)
    m = store.fit("linear", where="id <= 1000 AND id >= 1", **args)
    assert (m.descriptor.range.lo, m.descriptor.range.hi, m.descriptor.filter_sql) == (1, 1000, "")
    assert m.plan.rows_scanned == 0
    assert m.coef_ == pytest.approx(first.coef_, rel=1e-12)
    assert any("is the range [1, 1000]" in n for n in m.plan.plan.notes)
    m3 = store.fit("linear", where="id <= 700", **args)
    assert any("is the range [1, 700]" in n for n in m3.plan.plan.notes)
    m2 = store.fit("linear", where="id > 1500 AND price > 3", **args)
    assert (m2.descriptor.range.lo, m2.descriptor.range.hi) == (1501, 2000)
    assert m2.descriptor.filter_sql and "id" not in m2.descriptor.filter_sql


def test_item6_create_model_without_order_by_says_the_timestamp_is_a_filter(store):
    """Item 6: CREATE MODEL without order_by ranges over the primary key; a condition on ts is a filter,
    and the plan says so (Note:) with a warning naming OPTIONS (order_by = 'ts')."""
    statement = ("CREATE MODEL by_ts OPTIONS (model_type = 'linear_reg', input_label_cols = ['revenue']) "
                 "AS SELECT price, revenue FROM public.sales WHERE ts > '2025-01-01 10:00:00'")
    with pytest.warns(modelstore.PlanNoteWarning, match="order_by = 'ts'"):
        m = store.query(statement)
    assert "Note: order_by was not given" in str(m.plan)
    with pytest.warns(modelstore.PlanNoteWarning):
        plan = store.query("EXPLAIN " + statement)
    assert any("order_by was not given" in line for line in plan["QUERY PLAN"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.query(statement.replace("input_label_cols = ['revenue']",
                                      "input_label_cols = ['revenue'], order_by = 'ts'").replace("by_ts", "by_ts2"))


# ---------------------------------------------------------------------------------------------------
# item 7: the smaller ones


def test_item7_a_z_timestamp_is_refused_saying_how(store):
    """Item 7: a '…Z' bound on a timestamp column is refused with the bound to write instead."""
    with pytest.raises(modelstore.RangeError, match=r"write the bound without one, e\.g\. '2025-01-01 00:00:00'"):
        store.fit("linear", table="public.sales", target="revenue", features=["price"], order_by="ts",
                  lo="2025-01-01T00:00:00Z")


def test_item7_demo_measures_the_cost_model_before_the_timed_rows(dsn):
    """Item 7: the demo's first row no longer includes the cost model's calibration; it says so."""
    from modelstore.doors import demo

    out = StringIO()
    with modelstore.connect(dsn) as s:
        report = demo.run(s, rows=2000, seed=1, console=Console(file=out, width=160))
    text = out.getvalue()
    assert "cost model measured in" in text
    assert text.index("cost model measured in") < text.index("linear, first half")
    assert report[0]["request"] == "linear, first half"


def test_item7_theorem1_bound_in_explain_with_its_meaning(store):
    """Item 7: EXPLAIN of a logistic request says where the Theorem 1 bound is and what it means;
    EXPLAIN ANALYZE has the bound and one line of meaning."""
    args = dict(table="public.sales", target="came_back", features=["price", "promo"], order_by="id",
                chunk_rows=1000)
    assert "Theorem 1" in str(store.explain("logistic", **args))
    text = str(store.fit("logistic", **args).plan)
    assert "Theorem 1 bound (δ=0.05)" in text and "Theorem 1 means: with probability ≥ 95%" in text


def test_item7_create_model_without_plpython_points_to_plpython_status(dsn):
    """Item 7: where PL/Python is absent, modelstore.create_model says so and names plpython_status()."""
    with modelstore.connect(dsn) as s:
        if s.conn.execute("SELECT modelstore.plpython_status() LIKE 'installed%'").fetchone()[0]:
            s.conn.execute("DROP EXTENSION plpython3u CASCADE")  # as on a server without it
            # what sql/plpython.sql does there: the stubs in place of the PL/Python functions
            text = (ROOT / "sql" / "plpython.sql").read_text()
            s.conn.execute(text[text.index("-- Where PL/Python is absent"):])
        _table(dsn)
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=r"plpython_status\(\)"):
            s.conn.execute("SELECT modelstore.create_model(name => 'q1', kind => 'linear', \"table\" => "
                           "'public.sales', target => 'revenue', features => ARRAY['price'], order_by => 'id')")


def test_item7_ctrl_c_prints_one_line_exits_130_and_writes_nothing(dsn):
    """Item 7: SIGINT to a real `modelstore fit` subprocess mid-query: one line on stderr (no traceback),
    exit status 130, and nothing half-written in the catalog."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        # a view that reads slowly, so that the interrupt lands while the request runs
        conn.execute("CREATE TABLE base AS SELECT g AS id, g::float8 AS x, 2.0 * g AS y FROM generate_series(1, 4000) g")
        # the sleep in a volatile per-row condition: a LATERAL (SELECT pg_sleep(…)) is uncorrelated, and some
        # join orders run it once for the whole scan
        conn.execute("CREATE FUNCTION slow_row() RETURNS boolean LANGUAGE plpgsql VOLATILE "
                     "AS $$ BEGIN PERFORM pg_sleep(0.002); RETURN true; END $$")
        conn.execute("CREATE VIEW slow AS SELECT id, x, y FROM base WHERE slow_row()")
    with modelstore.connect(dsn):
        pass  # migrated, so that the child's time goes to the request
    # the SQL statistics engine: the C aggregate's plan does not run the view's per-row sleep
    env = dict(os.environ, MODELSTORE_DSN=dsn, PYTHONUNBUFFERED="1", MODELSTORE_STATS_ENGINE="sql")
    proc = subprocess.Popen([sys.executable, "-m", "modelstore", "fit", "linear", "--table", "public.slow",
                             "--target", "y", "--features", "x", "--order-by", "id", "--name", "interrupted"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # SIGINT's default action in the child: a suite started in the background by a
                            # non-interactive shell (`make test &`) ignores SIGINT, and the child inherits that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < deadline:  # wait until the child's query is running
                busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'modelstore' "
                                    "AND state = 'active' AND query ILIKE '%slow%'").fetchone()[0]
                if busy or proc.poll() is not None:
                    break
                time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines() == ["interrupted: the request in progress was rolled back"], err
    assert "Traceback" not in err + out
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM modelstore.fitted_models").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE '%FROM%slow%' "
                            "AND state = 'active' AND pid <> pg_backend_pid()").fetchone()[0] == 0


def test_item7_embedded_server_password_and_binary_change(pg_home):
    """Item 7: (a) the embedded server's login needs its generated password (no trust on 127.0.0.1), kept
    in pg.password (0600), and the README says how to connect; (b) when the postgres binary a running
    embedded server started from has changed (a package upgrade), the next start() says so and restarts
    it, instead of failing later with 'undefined symbol'."""
    first = EmbeddedServer(pg_home / "pg").start()
    try:
        assert first.password_path == pg_home / "pg.password"
        assert (first.password_path.stat().st_mode & 0o077) == 0
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://modelstore@127.0.0.1:{first.port}/postgres", connect_timeout=10)
        with psycopg.connect(first.dsn, connect_timeout=10) as conn:
            assert conn.execute("SELECT current_setting('search_path')").fetchone()[0] == "public"
        readme = (ROOT / "README.md").read_text()
        assert "## Connect with psql and R" in readme and "pg.password" in readme and "trust" in readme

        pid = int((first.datadir / "postmaster.pid").read_text().split()[0])
        (first.datadir / "modelstore.binary").write_text("/usr/lib/postgresql/15.0/bin/postgres 1 2 3\n")
        with pytest.warns(RuntimeWarning, match="binaries .* changed"):
            again = EmbeddedServer(pg_home / "pg").start()
        assert int((first.datadir / "postmaster.pid").read_text().split()[0]) != pid
        with psycopg.connect(again.dsn, connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            EmbeddedServer(pg_home / "pg").start()  # unchanged now: no warning, no restart
    finally:
        first.stop()


def test_item6_cli_prints_notes_as_one_warning_line(store, dsn):
    """Item 6: in the CLI the warning is one line on stderr ('warning: …'), and the plan has the Note:."""
    status, out, err = _cli(dsn, "explain", "CREATE MODEL t OPTIONS (model_type = 'linear_reg', input_label_cols = "
                            "['revenue']) AS SELECT price, revenue FROM public.sales WHERE ts > '2025-01-01 10:00:00'")
    assert status == 0
    assert err.startswith("warning: order_by was not given") and "cli.py" not in err
    assert "Note: order_by was not given" in out
