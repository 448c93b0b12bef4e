"""A client killed mid-request leaves nothing behind (issue #7, part 3).

A subprocess (tests/data/crash_child.py) opens a Store on the test database and runs a request over a
million-row table; the parent waits until pg_stat_activity shows the request's long statement running
(or, in the held variant, until the child reports its writes done inside an open transaction), kills the
child with SIGKILL, and waits for the server to end the child's backend. Then: the catalog's invariants
hold, no catalog row and no change-capture trigger of the child survived, and the same request from the
parent returns the correct model (numpy on the same rows) and stores exactly one statistics row.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import modelstore
from tests.helpers import rel_err
from tests.invariants import catalog_row_counts, check_catalog, descriptor_counts, expected_nodes
from tests.reference import fetch_matrix, ols

ROOT = Path(__file__).resolve().parent.parent
CHILD = ROOT / "tests" / "data" / "crash_child.py"
ROWS = 1_000_000
MID_ROWS = 100_000
FEATURES = ["x1", "x2", "x3", "x4"]
COLUMNS = ["id", *FEATURES, "y"]
TIMEOUT = 60.0  # seconds for any one wait below; the waits normally take well under a second


@pytest.fixture(scope="module")
def big(module_dsn):
    """``public.big``: a million seeded rows generated inside PostgreSQL, a calibrated catalog, and the
    rows as a numpy matrix [id, x1..x4, y]."""
    with modelstore.Store(module_dsn) as store:
        conn = store.conn
        conn.execute("SELECT setseed(0.125)")
        conn.execute(f"""
            CREATE TABLE public.big AS
            SELECT g::bigint AS id, x1, x2, x3, x4,
                   3.0 + 1.5 * x1 - 0.7 * x2 + 2.0 * x3 + 0.05 * x4 + (random() - 0.5) AS y
            FROM (SELECT g, random() AS x1, 3.0 * random() + 5.0 AS x2, 0.5 * random() - 0.2 AS x3,
                         10.0 * random() + 20.0 AS x4
                  FROM generate_series(1, {ROWS}) AS g) AS s""")
        conn.execute("ANALYZE public.big")
        # a smaller copy for the index variant that only needs the build's writes, not a long scan
        conn.execute(f"CREATE TABLE public.mid AS SELECT * FROM public.big WHERE id <= {MID_ROWS}")
        conn.execute("ANALYZE public.mid")
        store.cost_model  # calibrate here: the child must not commit a calibration of its own
        matrix = fetch_matrix(conn, "big", COLUMNS)
    assert matrix.shape == (ROWS, len(COLUMNS))
    return matrix


def snapshot(conn: psycopg.Connection) -> dict:
    """What a killed request must not change: catalog row counts and the table's triggers."""
    out = catalog_row_counts(conn)
    out["triggers"] = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid IN ('public.big'::regclass, 'public.mid'::regclass)"
    ).fetchone()[0]
    return out


def start_child(dsn: str, app: str, table: str = "big", **request) -> subprocess.Popen:
    args = {"dsn": make_conninfo(dsn, application_name=app), "table": table, "order_by": "id",
            "features": FEATURES, "target": "y", **request}
    # the SQL statistics engine: the C aggregate reads the million rows before the kill can land
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MODELSTORE_STATS_ENGINE="sql")
    return subprocess.Popen([sys.executable, str(CHILD), json.dumps(args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def child_failed(child: subprocess.Popen) -> str:
    out, err = child.communicate(timeout=10)
    return f"the child exited with {child.returncode} before it was killed:\n{out.decode()}\n{err.decode()}"


def wait_for_long_statement(observer: psycopg.Connection, child: subprocess.Popen, app: str,
                            min_seconds: float = 0.2) -> tuple[int, str]:
    """(backend pid, query) once the child's backend has run one statement for ``min_seconds`` without
    waiting on a lock: the request's scan is under way and nothing has been written yet."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert child.poll() is None, child_failed(child)
        row = observer.execute(
            """
            SELECT pid, query FROM pg_stat_activity
            WHERE application_name = %s AND state = 'active' AND wait_event_type IS DISTINCT FROM 'Lock'
              AND clock_timestamp() - query_start > make_interval(secs => %s)
            """, [app, min_seconds]).fetchone()
        if row is not None:
            return row
        time.sleep(0.01)
    raise AssertionError(f"the child's request never ran a long statement within {TIMEOUT} s")


def wait_for_line(child: subprocess.Popen, want: str) -> None:
    """Read the child's stdout until the line ``want`` (with a timeout)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([child.stdout], [], [], 0.1)
        if ready:
            line = child.stdout.readline().decode().strip()
            if line == want:
                return
            assert line or child.poll() is None, child_failed(child)
        assert child.poll() is None, child_failed(child)
    raise AssertionError(f"the child never printed {want!r} within {TIMEOUT} s")


def backend_of(observer: psycopg.Connection, app: str) -> tuple[int, str, str]:
    row = observer.execute("SELECT pid, state, query FROM pg_stat_activity WHERE application_name = %s",
                           [app]).fetchone()
    assert row is not None, f"no backend with application_name {app!r}"
    return row


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    child.stdout.close()
    child.stderr.close()


def wait_backend_gone(observer: psycopg.Connection, pid: int) -> None:
    """The server has noticed the dead client and ended its backend (its transaction rolled back)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        observer.execute("SELECT pg_stat_clear_snapshot()")
        if observer.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0] == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} of the killed child still exists after {TIMEOUT} s")


def linear_key(lo: int, hi: int, filter_sql: str) -> tuple:
    return ("linear", Decimal(lo), Decimal(hi), filter_sql, "", "", (*FEATURES, "y"))


def assert_same_request_is_exact(module_dsn: str, big: np.ndarray, before: dict, lo: int, hi: int, where: str,
                                 mask: np.ndarray) -> None:
    """The parent's request for the child's model: exact, and stored as exactly one statistics row."""
    with modelstore.Store(module_dsn) as store:
        m = store.fit("linear", table="big", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi, where=where)
        filter_sql = m.descriptor.filter_sql
        counts = descriptor_counts(store.conn, "big")
        after = snapshot(store.conn)
        check_catalog(store.conn)
    sel = big[mask]
    assert m.n_obs == len(sel)
    assert rel_err(np.r_[m.intercept_, m.coef_], ols(sel[:, 1:5], sel[:, 5])) < 1e-9
    assert counts.get(linear_key(lo, hi, filter_sql)) == 1, counts
    assert after["statistics"] == before["statistics"] + 1
    assert after["fitted_models"] == before["fitted_models"] + 1


def test_fit_killed_during_its_scan_leaves_nothing(module_dsn, big):
    """SIGKILL while the fit's aggregate scan runs: no source, statistics, model or trigger of it remain;
    the same request afterwards is exact and stored once."""
    lo, hi, where = 1, ROWS, "x2 > 0"  # a filter nothing else in this module stores: the fit must scan
    app = f"ms_crash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(module_dsn, autocommit=True) as observer:
        before = snapshot(observer)
        child = start_child(module_dsn, app, action="fit", lo=lo, hi=hi, where=where)
        try:
            pid, query = wait_for_long_statement(observer, child, app)
            kill(child)
        finally:
            if child.poll() is None:
                child.kill()
        wait_backend_gone(observer, pid)
        check_catalog(observer)
        assert snapshot(observer) == before, f"the killed fit (killed in: {query[:120]!r}) left rows behind"
    assert_same_request_is_exact(module_dsn, big, before, lo, hi, where, big[:, 2] > 0)


def test_build_index_killed_midway_leaves_nothing(module_dsn, big):
    """SIGKILL while build_index scans the table: no index, node or source row of it remains; building it
    again gives a complete, consistent index whose answers are exact."""
    app = f"ms_crash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(module_dsn, autocommit=True) as observer:
        before = snapshot(observer)
        child = start_child(module_dsn, app, action="build_index", chunk_rows=10_000)
        try:
            pid, query = wait_for_long_statement(observer, child, app)
            kill(child)
        finally:
            if child.poll() is None:
                child.kill()
        wait_backend_gone(observer, pid)
        check_catalog(observer)
        assert snapshot(observer) == before, f"the killed build (killed in: {query[:120]!r}) left rows behind"
    with modelstore.Store(module_dsn) as store:
        info = store.build_index("big", "id", FEATURES, "y", kind="linear", chunk_rows=10_000)
        assert info["n_chunks"] == ROWS // 10_000 and info["rows_indexed"] == ROWS
        summary = check_catalog(store.conn)
        assert summary["stat_indexes"] == before["stat_indexes"] + 1
        lo, hi = 123_457, 876_543
        m = store.fit("linear", table="big", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)
        assert any(step.op == "index" for step in m.plan.plan.steps), str(m.plan)
        assert descriptor_counts(store.conn, "big").get(linear_key(lo, hi, "")) == 1
        check_catalog(store.conn)
    sel = big[(big[:, 0] >= lo) & (big[:, 0] <= hi)]
    assert rel_err(np.r_[m.intercept_, m.coef_], ols(sel[:, 1:5], sel[:, 5])) < 1e-9


@pytest.mark.parametrize("action", ["fit", "build_index"])
def test_killed_while_holding_its_transaction_open(module_dsn, big, action):
    """The child finishes its writes inside an outer transaction and sleeps; SIGKILL then. Its rows were
    never visible, and are gone for good once the server ends its backend — which also releases the
    source lock, so the parent's same request goes through and is exact."""
    app = f"ms_crash_{uuid.uuid4().hex[:8]}"
    lo, hi, where = 200_001, 700_000, "x3 > -1"  # a descriptor of its own
    request = ({"action": "fit", "lo": lo, "hi": hi, "where": where} if action == "fit"
               else {"action": "build_index", "table": "mid", "chunk_rows": 2_500})
    with psycopg.connect(module_dsn, autocommit=True) as observer:
        before = snapshot(observer)
        child = start_child(module_dsn, app, hold=30, **request)
        try:
            wait_for_line(child, "written")
            pid, state, _ = backend_of(observer, app)
            assert state == "idle in transaction", state
            assert snapshot(observer) == before, "the child's uncommitted rows are visible"
            kill(child)
        finally:
            if child.poll() is None:
                child.kill()
        wait_backend_gone(observer, pid)
        check_catalog(observer)
        assert snapshot(observer) == before, "the killed child's transaction left rows behind"
    if action == "fit":
        assert_same_request_is_exact(module_dsn, big, before, lo, hi, where, (big[:, 0] >= lo) & (big[:, 0] <= hi))
        return
    with modelstore.Store(module_dsn) as store:
        info = store.build_index("mid", "id", FEATURES, "y", kind="linear", chunk_rows=2_500)
        n_chunks = MID_ROWS // 2_500
        assert info["n_chunks"] == n_chunks and info["rows_indexed"] == MID_ROWS
        summary = check_catalog(store.conn)
        assert summary["stat_indexes"] == before["stat_indexes"] + 1
        nodes = store.conn.execute(
            "SELECT count(*) FROM modelstore.index_nodes n JOIN modelstore.stat_indexes i USING (index_id) "
            "JOIN modelstore.sources s USING (source_id) WHERE s.table_name = 'mid'").fetchone()[0]
        assert nodes == len(expected_nodes(n_chunks))
        lo, hi = 4_321, 87_654
        m = store.fit("linear", table="mid", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)
        assert any(step.op == "index" for step in m.plan.plan.steps), str(m.plan)
    sel = big[(big[:, 0] >= lo) & (big[:, 0] <= hi)]
    assert rel_err(np.r_[m.intercept_, m.coef_], ols(sel[:, 1:5], sel[:, 5])) < 1e-9
