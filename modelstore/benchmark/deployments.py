"""Living models under an insert stream (issue #16; docs/deployments.md).

Two copies of the benchmark table's first ``deploy_rows`` rows, ids doubled so that odd ids fall inside
the window: ``deploy_plain`` (nothing stored, no trigger) and ``deploy_on``, with a deployed linear and a
deployed Gaussian NB model over the last half of its rows. Then ``deploy_commits`` commits of
``deploy_batch`` rows each — 95% appended past the newest id, 5% late rows (odd ids inside the window) —
the same statements on both tables, and after each commit on ``deploy_on`` both deployments refreshed
(what ``modelstore worker`` does when woken; the worker's wake-up, one notification, is not included).
Reported:

* rows/s of the insert statements on each table (capture and the deployment trigger vs nothing);
* commit → new model served: the refresh's duration from the commit's return (p50, p99);
* cost per refresh against a from-scratch refit of the window (one aggregate scan of its rows, the
  paper's T0), per refresh: the ratio scratch ÷ refresh;
* exactness: the deployed linear model against numpy on the window's rows after the stream.
"""

from __future__ import annotations

import time

import numpy as np
from psycopg import sql

from modelstore.benchmark import data, measure, workloads
from modelstore.benchmark.context import Context
from modelstore.benchmark.measure import summarize

PLAIN, DEPLOYED = "deploy_plain", "deploy_on"
KINDS = ("linear", "gaussian_nb")
LATE_FRACTION = 0.05


def _drop(ctx: Context) -> None:
    for name in [f"bench_deploy_{k}" for k in KINDS]:
        if ctx.store.deployments().name.eq(name).any():
            ctx.store.undeploy(name)
    for table in (PLAIN, DEPLOYED):
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


def deployments(ctx: Context) -> dict:
    cfg = ctx.config
    rows = min(cfg.deploy_rows, cfg.rows)
    batch = max(10, min(cfg.deploy_batch, rows // 50))
    window = rows // 2
    rng = workloads.rng_for(cfg.seed, "deploy-stream")
    try:
        for table in (PLAIN, DEPLOYED):
            data.copy_table(ctx, table, rows)
        table = f"{data.SCHEMA}.{DEPLOYED}"
        handles = {kind: ctx.store.deploy(f"bench_deploy_{kind}", kind, table=table, target=measure.TARGETS[kind],
                                          features=list(data.FEATURES), order_by="id", window=window)
                   for kind in KINDS}
        next_id = 2 * rows + 2
        late_used: set[int] = set()
        plain_rates, deployed_rates, latency, refresh_s, scratch_s, ratios = [], [], {k: [] for k in KINDS}, \
            {k: [] for k in KINDS}, {k: [] for k in KINDS}, {k: [] for k in KINDS}
        from modelstore.execution.executor import scan
        from modelstore.request.source import resolve_table

        tbl = resolve_table(ctx.conn, table)
        rows_read, window_n = {k: [] for k in KINDS}, {k: [] for k in KINDS}
        for _ in ctx.track(range(cfg.deploy_commits), "insert stream"):
            late = int(round(batch * LATE_FRACTION))
            appended = list(range(next_id, next_id + 2 * (batch - late), 2))
            next_id += 2 * (batch - late)
            lo_id = 2 * (rows - window // 2)
            candidates = rng.integers(lo_id // 2, rows, size=late * 4) * 2 + 1  # odd ids inside the window
            late_ids = [int(i) for i in dict.fromkeys(candidates) if int(i) not in late_used][:late]
            late_used.update(late_ids)
            ids = appended + late_ids
            for name, rates in ((PLAIN, plain_rates), (DEPLOYED, deployed_rates)):
                started = time.perf_counter()
                ctx.conn.execute(*_insert(name, ids))  # autocommit: the statement is the commit
                rates.append(len(ids) / (time.perf_counter() - started))
            committed = time.perf_counter()
            for kind, d in handles.items():
                outcome = d.refresh()
                latency[kind].append(time.perf_counter() - committed)
                refresh_s[kind].append(outcome.seconds)
                rows_read[kind].append(outcome.rows_scanned)
                window_n[kind].append(outcome.rows)
            for kind, d in handles.items():
                model = d.model
                started = time.perf_counter()
                scan(ctx.conn, tbl, model.descriptor, model.descriptor.range)
                scratch_s[kind].append(time.perf_counter() - started)
                ratios[kind].append(scratch_s[kind][-1] / refresh_s[kind][-1])
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

    def pct(values, q):
        return float(np.percentile(values, q) * 1000) if values else None

    return {
        "figure": "deployments under an insert stream", "rows": rows, "window_rows": window, "batch": batch,
        "commits": cfg.deploy_commits, "late_fraction": LATE_FRACTION,
        "insert_rows_per_s": {"without_deployment": summarize(plain_rates), "with_deployment": summarize(deployed_rates)},
        "commit_to_model_ms": {k: {"p50": pct(v, 50), "p99": pct(v, 99)} for k, v in latency.items()},
        "refresh_ms": {k: summarize([s * 1000 for s in v]) for k, v in refresh_s.items()},
        "refit_window_ms": {k: summarize([s * 1000 for s in v]) for k, v in scratch_s.items()},
        "refit_over_refresh": {k: summarize(v) for k, v in ratios.items()},
        # rows each refresh's plan read against the rows a refit of the window reads
        "rows_read_per_refresh": {k: summarize([float(x) for x in v]) for k, v in rows_read.items()},
        "rows_read_per_refit": {k: summarize([float(x) for x in v]) for k, v in window_n.items()},
        "exact_max_relative_error": float(exact), "final_versions": versions,
    }
