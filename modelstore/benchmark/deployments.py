"""Living models under an insert stream (issue #16; docs/deployments.md).

Three copies of the benchmark table's first ``deploy_rows`` rows, ids doubled so that odd ids fall inside
the window: ``deploy_plain`` (nothing stored, no trigger), ``deploy_captured`` (the same two window
summaries stored, so change capture maintains them, but no deployment) and ``deploy_on``, with a deployed
linear and a deployed Gaussian NB model over the last half of its rows. Then ``deploy_commits`` commits of
``deploy_batch`` rows each — 95% appended past the newest id, 5% late rows (odd ids inside the window) —
the same statements on the three tables, and after each commit on ``deploy_on`` both deployments
refreshed in turn (what one ``modelstore worker`` does when woken), the first one alternating. Then
``deploy_worker_commits`` more commits with a real ``modelstore worker`` process refreshing them, and
the time until each model row (what ``modelstore.predict`` reads) is the new one, seen from another session.
Reported:

* rows/s of the insert statements on each table (what change capture costs, what the deployment's own
  trigger adds);
* commit → new model served: p50/p99 per kind, (a) refreshed first after the commit, (b) in turn (half
  the time after the other deployment's refresh), (c) end to end through the worker;
* cost per refresh against a from-scratch refit of the window (one aggregate scan of its rows, the
  paper's T0), per refresh: the ratio scratch ÷ refresh; statements per refresh;
* exactness: the deployed linear model against numpy on the window's rows after the stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psycopg
from psycopg import sql

from modelstore.benchmark import data, measure, workloads
from modelstore.benchmark.context import Context
from modelstore.benchmark.measure import summarize

PLAIN, CAPTURED, DEPLOYED = "deploy_plain", "deploy_captured", "deploy_on"
KINDS = ("linear", "gaussian_nb")
LATE_FRACTION = 0.05


def _drop(ctx: Context) -> None:
    for name in [f"bench_deploy_{k}" for k in KINDS]:
        if ctx.store.deployments().name.eq(name).any():
            ctx.store.undeploy(name)
    for table in (PLAIN, CAPTURED, DEPLOYED):
        ctx.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(table)))
        ctx.conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s",
                         [data.SCHEMA, table])


def _insert(table: str, ids: list[int]):
    """Rows with the given ids and values drawn in SQL (features uniform, the target linear in them)."""
    features = sql.SQL(", ").join(sql.SQL("random()") for _ in data.FEATURES)
    statement = sql.SQL("INSERT INTO {} ({}) SELECT i, {}, 10 * random(), (random() * 3)::int "
                        "FROM unnest(%s::bigint[]) AS i").format(
        data.ident(table), sql.SQL(", ").join(sql.Identifier(c) for c in data.COPY_COLUMNS), features)
    return statement, [ids]


class _Stream:
    """The ids of each commit: 95% appended past the newest id, 5% late rows (odd ids inside the window)."""

    def __init__(self, rng, rows: int, window: int, batch: int):
        self.rng, self.rows, self.window, self.batch = rng, rows, window, batch
        self.next_id = 2 * rows + 2
        self.late_used: set[int] = set()

    def ids(self) -> list[int]:
        late = int(round(self.batch * LATE_FRACTION))
        appended = list(range(self.next_id, self.next_id + 2 * (self.batch - late), 2))
        self.next_id += 2 * (self.batch - late)
        lo_id = 2 * (self.rows - self.window // 2)
        candidates = self.rng.integers(lo_id // 2, self.rows, size=late * 4) * 2 + 1  # odd ids inside the window
        late_ids = [int(i) for i in dict.fromkeys(candidates) if int(i) not in self.late_used][:late]
        self.late_used.update(late_ids)
        return appended + late_ids


class _Statements:
    """Counts the statements a refresh sends (``Cursor.execute``; BEGIN and COMMIT aside) while active."""

    def __init__(self):
        self.count = 0
        self.active = False
        self._execute = psycopg.Cursor.execute

    def __enter__(self):
        counter = self

        def counting(cursor, *args, **kwargs):
            if counter.active:
                counter.count += 1
            return counter._execute(cursor, *args, **kwargs)

        psycopg.Cursor.execute = counting
        return self

    def __exit__(self, *exc):
        psycopg.Cursor.execute = self._execute


def deployments(ctx: Context) -> dict:
    cfg = ctx.config
    rows = min(cfg.deploy_rows, cfg.rows)
    batch = max(10, min(cfg.deploy_batch, rows // 50))
    window = rows // 2
    stream = _Stream(workloads.rng_for(cfg.seed, "deploy-stream"), rows, window, batch)
    try:
        for table in (PLAIN, CAPTURED, DEPLOYED):
            data.copy_table(ctx, table, rows)
        table = f"{data.SCHEMA}.{DEPLOYED}"
        handles = {kind: ctx.store.deploy(f"bench_deploy_{kind}", kind, table=table, target=measure.TARGETS[kind],
                                          features=list(data.FEATURES), order_by="id", window=window)
                   for kind in KINDS}
        for kind, d in handles.items():  # the same summaries on the captured copy, kept by capture, no deployment
            lo, hi = d.model.descriptor.range.lo, d.model.descriptor.range.hi
            ctx.store.fit(kind, table=f"{data.SCHEMA}.{CAPTURED}", target=measure.TARGETS[kind],
                          features=list(data.FEATURES), order_by="id", lo=lo, hi=hi)
        rates = {PLAIN: [], CAPTURED: [], DEPLOYED: []}
        per_kind = {k: [] for k in KINDS}
        latency, first, refresh_s, scratch_s, ratios = ({k: [] for k in KINDS} for _ in range(5))
        both, statements = [], []
        from modelstore.execution.executor import scan
        from modelstore.request.source import resolve_table

        tbl = resolve_table(ctx.conn, table)
        rows_read, window_n = {k: [] for k in KINDS}, {k: [] for k in KINDS}
        with _Statements() as counter:
            for i in ctx.track(range(cfg.deploy_commits), "insert stream"):
                ids = stream.ids()
                for name, got in rates.items():
                    started = time.perf_counter()
                    ctx.conn.execute(*_insert(name, ids))  # autocommit: the statement is the commit
                    got.append(len(ids) / (time.perf_counter() - started))
                committed = time.perf_counter()
                order = KINDS if i % 2 == 0 else KINDS[::-1]  # one worker refreshes them in turn
                for position, kind in enumerate(order):
                    counter.active, counter.count = True, 0
                    outcome = handles[kind].refresh()
                    counter.active = False
                    statements.append(counter.count)
                    latency[kind].append(time.perf_counter() - committed)
                    if position == 0:
                        first[kind].append(time.perf_counter() - committed)
                    refresh_s[kind].append(outcome.seconds)
                    rows_read[kind].append(outcome.rows_scanned)
                    window_n[kind].append(outcome.rows)
                both.append(time.perf_counter() - committed)
                for kind, d in handles.items():
                    model = d.model
                    started = time.perf_counter()
                    scan(ctx.conn, tbl, model.descriptor, model.descriptor.range)
                    scratch_s[kind].append(time.perf_counter() - started)
                    ratios[kind].append(scratch_s[kind][-1] / refresh_s[kind][-1])
        # the same stream, the table's two deployments refreshed together (one transaction: what the worker does)
        from modelstore.deploy.refresh import refresh_together

        ids = [d._spec().deployment_id for d in handles.values()]
        together, together_s = [], []
        for _ in ctx.track(range(cfg.deploy_commits), "refreshed together"):
            ctx.conn.execute(*_insert(DEPLOYED, stream.ids()))
            committed = time.perf_counter()
            outcomes = refresh_together(ctx.store, ids)
            together.append(time.perf_counter() - committed)
            together_s.append(max(o.seconds for o in outcomes))
        worker = _through_the_worker(ctx, stream, [d.name for d in handles.values()], cfg.deploy_worker_commits)
        for kind, d in handles.items():
            per_kind[kind] = worker.get(d.name, [])
        # exactness after the stream
        lin = handles["linear"].model
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in (*data.FEATURES, data.TARGET))
        with ctx.conn.cursor(binary=True) as cur:
            cur.execute(sql.SQL("SELECT {} FROM {} WHERE id BETWEEN %s AND %s").format(columns, data.ident(DEPLOYED)),
                        [lin.descriptor.range.lo, lin.descriptor.range.hi])
            window_rows = np.array(cur.fetchall(), dtype=float)
        want = np.linalg.lstsq(np.c_[window_rows[:, :-1], np.ones(len(window_rows))], window_rows[:, -1], rcond=None)[0]
        exact = measure.relative_error(measure.parameters(lin, "linear"), want)
        versions = {kind: int(d.version) for kind, d in handles.items()}
    finally:
        _drop(ctx)

    def pct(values):
        return {"p50": float(np.percentile(values, 50) * 1000), "p99": float(np.percentile(values, 99) * 1000),
                "n": len(values)} if values else None

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "figure": "deployments under an insert stream", "rows": rows, "window_rows": window, "batch": batch,
        "commits": cfg.deploy_commits, "late_fraction": LATE_FRACTION,
        "load_average": None if load is None else [round(x, 2) for x in load],
        "insert_rows_per_s": {"without_deployment": summarize(rates[PLAIN]),
                              "captured_without_deployment": summarize(rates[CAPTURED]),
                              "with_deployment": summarize(rates[DEPLOYED])},
        # commit → the deployment's model row is the new one: refreshed first, in turn, through a worker
        "commit_to_model_first_ms": {k: pct(v) for k, v in first.items()},
        "commit_to_model_ms": {k: pct(v) for k, v in latency.items()},
        "commit_to_both_ms": pct(both),
        "commit_to_model_worker_ms": {k: pct(v) for k, v in per_kind.items()},
        # both deployments refreshed by one refresh_together after each commit: both change at its COMMIT
        "commit_to_both_together_ms": pct(together),
        "refresh_together_ms": summarize([s * 1000 for s in together_s]),
        "statements_per_refresh": summarize([float(x) for x in statements]),
        "refresh_ms": {k: summarize([s * 1000 for s in v]) for k, v in refresh_s.items()},
        "refit_window_ms": {k: summarize([s * 1000 for s in v]) for k, v in scratch_s.items()},
        "refit_over_refresh": {k: summarize(v) for k, v in ratios.items()},
        # rows each refresh's plan read against the rows a refit of the window reads
        "rows_read_per_refresh": {k: summarize([float(x) for x in v]) for k, v in rows_read.items()},
        "rows_read_per_refit": {k: summarize([float(x) for x in v]) for k, v in window_n.items()},
        "exact_max_relative_error": float(exact), "final_versions": versions,
    }


def _through_the_worker(ctx: Context, stream: _Stream, names: list[str], commits: int,
                        timeout: float = 30.0) -> dict[str, list[float]]:
    """Seconds from each commit until each deployment's model row (what ``modelstore.predict`` reads) is
    a new one, seen from another session, with a real ``modelstore worker`` process refreshing them
    (woken by the commit's notification). The worker is stopped by its PID (SIGTERM)."""
    if commits <= 0 or ctx.store.dsn is None:
        return {}
    proc = subprocess.Popen([sys.executable, "-m", "modelstore", "--dsn", ctx.store.dsn, "worker", "--interval", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stdout), daemon=True)
    reader.start()
    out: dict[str, list[float]] = {n: [] for n in names}
    try:
        deadline = time.monotonic() + timeout
        while not any("listening" in line for line in lines):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("modelstore worker did not start:\n" + "\n".join(lines))
            time.sleep(0.02)
        served = sql.SQL("SELECT name, created_at FROM modelstore.fitted_models WHERE name = ANY (%s)")
        with psycopg.connect(ctx.store.dsn, autocommit=True) as watcher:
            for _ in ctx.track(range(commits), "through the worker"):
                before = dict(watcher.execute(served, [names]).fetchall())
                ctx.conn.execute(*_insert(DEPLOYED, stream.ids()))
                committed = time.perf_counter()
                waiting = set(names)
                while waiting and time.perf_counter() - committed < timeout:
                    for name, at in watcher.execute(served, [names]).fetchall():
                        if name in waiting and at != before[name]:
                            out[name].append(time.perf_counter() - committed)
                            waiting.discard(name)
                    time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return out
