"""HTTP serving under load (issue #18; DESIGN.md §7 "serving"; docs/serving.md, "HTTP").

A copy of the benchmark table's first ``serve_rows`` rows (``serve_on``) with a deployed linear model
over every row (10 features). Two services, each a subprocess on 127.0.0.1 and each driven in turn by
the open-loop generator of :mod:`.load` with single-row predict requests (rows of the table, cycled)
at each rate of ``serve_rates`` for ``serve_seconds``:

* ``modelstore``: ``modelstore serve`` (uvicorn, one process, a pool of 4 connections) scoring the
  deployment's active version, its catalog stamp checked on every request;
* ``pickled``: what a user would otherwise build — the same Starlette/uvicorn stack serving a
  scikit-learn ``LinearRegression`` fitted on the same rows and loaded from a pickle
  (:mod:`.baseline_service`): no database on the request path, and no fresh model either.

Reported per service and rate: requests, errors, achieved rate, p50/p90/p99/max latency from each
request's due time, and the CPU time per request of the server process and of its PostgreSQL backends
(read from /proc: figures the machine's load changes far less than the latencies). Then, per service
under the same load generator, the highest rate whose p99 stays < 10 ms with no errors, found by a
bounded search (:func:`.load.find_max_rate`: doubling from ``serve_search_start``, then bisection, each
step ``serve_search_seconds`` of load, at most ``serve_search_steps`` steps); then
``serve_observes`` observe → predict pairs through ``modelstore serve`` (an appended row, then a
prediction that must carry the new version), and the deployed model against numpy on the table's rows
afterwards. The load generator runs in the benchmark's process and shares the cores.
"""

from __future__ import annotations

import json
import pickle
import socket
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from psycopg import sql

from modelstore.benchmark import data, load, workloads
from modelstore.benchmark.context import Context
from modelstore.benchmark.measure import relative_error, summarize

TABLE = "serve_on"
NAME = "bench_serve_linear"
#: the §7 target
P99_TARGET_MS = 10.0


def _drop(ctx: Context) -> None:
    if ctx.store.deployments().name.eq(NAME).any():
        ctx.store.undeploy(NAME)
    ctx.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(TABLE)))
    ctx.conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s",
                     [data.SCHEMA, TABLE])


def _rows(ctx: Context) -> np.ndarray:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in (*data.FEATURES, data.TARGET))
    with ctx.conn.cursor(binary=True) as cur:
        cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(columns, data.ident(TABLE)))
        return np.array(cur.fetchall(), dtype=float)


def _sweep(ctx: Context, service: load.ServiceProcess, bodies: list[bytes], label: str) -> list[dict]:
    cfg = ctx.config
    load.run_load(service.url, f"/v1/models/{NAME}:predict", bodies, rate=min(cfg.serve_rates),
                  seconds=min(1.0, cfg.serve_seconds))  # warm-up: connections, caches, code paths
    points = []
    for rate in ctx.track(list(cfg.serve_rates), f"{label}: predict at fixed rates"):
        backends = _backends(ctx) if label.startswith("modelstore") else []
        before = load.cpu_seconds([service.proc.pid]), load.cpu_seconds(backends) if backends else None
        point = load.run_load(service.url, f"/v1/models/{NAME}:predict", bodies, rate=rate,
                              seconds=cfg.serve_seconds).to_json()
        after = load.cpu_seconds([service.proc.pid]), load.cpu_seconds(backends) if backends else None
        # CPU per request: what the machine's load does not change (the latencies above it does)
        for key, a, b in (("server_cpu_ms_per_request", before[0], after[0]),
                          ("database_cpu_ms_per_request", before[1], after[1])):
            point[key] = None if a is None or b is None or not point["ok"] else (b - a) * 1000 / point["ok"]
        points.append(point)
    return points


def _search(ctx: Context, service: load.ServiceProcess, bodies: list[bytes], label: str) -> dict:
    """The highest rate whose p99 stays < 10 ms with no error, searched (load.find_max_rate): each step
    one open-loop run of ``serve_search_seconds``, at most ``serve_search_steps`` of them."""
    cfg = ctx.config
    progress = iter(ctx.track(range(cfg.serve_search_steps), f"{label}: searching the highest rate, p99 < 10 ms"))

    def measure(rate: float) -> dict:
        next(progress, None)
        return load.run_load(service.url, f"/v1/models/{NAME}:predict", bodies, rate=rate,
                             seconds=cfg.serve_search_seconds).to_json()

    found = load.find_max_rate(measure, p99_ms=P99_TARGET_MS, start=cfg.serve_search_start,
                               ceiling=cfg.serve_search_ceiling, max_steps=cfg.serve_search_steps)
    for _ in progress:  # the search stopped early: close the progress bar
        pass
    return {**found, "seconds_per_step": cfg.serve_search_seconds}


def _backends(ctx: Context) -> list[int]:
    """The PostgreSQL backends of ``modelstore serve`` (its pool), whose CPU counts toward a request;
    none when the server is not on this machine (its process ids would name other processes here)."""
    local = ctx.conn.execute("SELECT inet_server_addr() IS NULL OR inet_server_addr() << '127.0.0.0/8'::inet "
                             "OR inet_server_addr() = '::1'::inet").fetchone()[0]
    if not local:
        return []
    return [r[0] for r in ctx.conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'modelstore serve' AND datname = current_database()")]


def _best_rate(points: list[dict]) -> float | None:
    good = [p["rate"] for p in points if p["errors"] == 0 and p["p99_ms"] is not None and p["p99_ms"] < P99_TARGET_MS]
    return max(good) if good else None


def serving(ctx: Context) -> dict:
    cfg = ctx.config
    rows = min(cfg.serve_rows, cfg.rows)
    rng = workloads.rng_for(cfg.seed, "serve-requests")
    try:
        data.copy_table(ctx, TABLE, rows)
        d = ctx.store.deploy(NAME, "linear", table=f"{data.SCHEMA}.{TABLE}", target=data.TARGET,
                             features=list(data.FEATURES), order_by="id")
        table_rows = _rows(ctx)
        X, y = table_rows[:, :-1], table_rows[:, -1]
        picks = rng.integers(0, len(X), size=min(1000, len(X)))
        bodies = [json.dumps({"instances": [X[i].tolist()]}).encode() for i in picks]
        from sklearn.linear_model import LinearRegression

        baseline = LinearRegression().fit(X, y)
        results, searched = {}, {}
        with tempfile.TemporaryDirectory(prefix="modelstore-bench-") as tmp:
            path = Path(tmp) / "model.pkl"
            path.write_bytes(pickle.dumps(baseline))
            with load.pickled_service(str(path)) as service:
                results["pickled"] = _sweep(ctx, service, bodies, "pickled scikit-learn")
                searched["pickled"] = _search(ctx, service, bodies, "pickled scikit-learn")
            with load.modelstore_serve(ctx.store.dsn) as service:
                results["modelstore"] = _sweep(ctx, service, bodies, "modelstore serve")
                searched["modelstore"] = _search(ctx, service, bodies, "modelstore serve")
                observe = _observe_then_predict(ctx, service, X, rng)
        model = d.model
        after = _rows(ctx)
        want = np.linalg.lstsq(np.c_[np.ones(len(after)), after[:, :-1]], after[:, -1], rcond=None)[0]
        exact = relative_error(np.r_[model.intercept_, model.coef_], want)
    finally:
        _drop(ctx)
    return {
        "figure": "HTTP predict latency at fixed request rates", "rows": rows, "features": len(data.FEATURES),
        "rates": list(cfg.serve_rates), "seconds_per_rate": cfg.serve_seconds, "services": results,
        "max_rate_p99_under_10ms": {k: v["max_rate"] for k, v in searched.items()},
        "max_rate_search": searched,
        "best_fixed_rate_p99_under_10ms": {k: _best_rate(v) for k, v in results.items()},
        "observe": observe, "exact_max_relative_error_after_observes": float(exact),
        "client": "httpx.AsyncClient, open loop, in the benchmark's process (shares the cores)",
    }


def _observe_then_predict(ctx: Context, service: load.ServiceProcess, X: np.ndarray, rng) -> dict:
    """``serve_observes`` times: observe one appended row, then predict; the prediction must carry the
    version the observe reported."""
    cfg = ctx.config
    next_id = int(ctx.conn.execute(sql.SQL("SELECT max(id) FROM {}").format(data.ident(TABLE))).fetchone()[0]) + 2
    observe_ms, pair_ms, consistent = [], [], 0
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(base_url=service.url, timeout=30.0, transport=transport) as client:
        for _ in ctx.track(range(cfg.serve_observes), "observe → predict"):
            x = X[int(rng.integers(0, len(X)))]
            row = {"id": next_id, **{f: float(v) for f, v in zip(data.FEATURES, x)}}
            next_id += 2
            started = time.perf_counter()
            r = client.post(f"/v1/models/{NAME}:observe", json={"instances": [row], "labels": [float(rng.normal(5, 3))]})
            observed_at = time.perf_counter()
            r.raise_for_status()
            p = client.post(f"/v1/models/{NAME}:predict", json={"instances": [x.tolist()]})
            p.raise_for_status()
            done = time.perf_counter()
            observe_ms.append((observed_at - started) * 1000)
            pair_ms.append((done - started) * 1000)
            consistent += int(r.json()["refreshed"] and p.json()["model_version"] == r.json()["model_version"])
    return {"n": cfg.serve_observes, "observe_ms": summarize(observe_ms), "observe_then_predict_ms": summarize(pair_ms),
            "predict_used_the_new_version": consistent}


__all__ = ["serving", "P99_TARGET_MS"]
