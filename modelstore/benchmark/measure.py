"""Timing a request through modelstore, splitting its time the paper's way (§6.4, Fig. 5), and
summarising distributions (medians and spreads).

T is the wall time of ``store.fit`` — validation, planning, fetching stored statistics, scanning or
training base rows, combining, solving and materialising: everything an analyst waits for. Each
timed request runs inside a transaction that is rolled back afterwards, so that the catalog holds
exactly the placed models throughout a figure (the paper materialises M before running S, and the
coverage on the x-axis must not drift while S runs); the write itself is inside T.

The split of T (Fig. 5): *optimizer* is the plan's ``planning_seconds`` (Algorithms 3–4);
*I/O, stored* the steps that fetch stored statistics; *I/O, base rows* the scan steps (for logistic
the train steps, which fetch rows and train chunk models); *combination and the rest* what remains —
merging, solving, validation and the catalog write. A step's time includes its own merge (a few
microseconds for these sizes), as the executor records it.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from modelstore.benchmark import data
from modelstore.benchmark.context import Context
from modelstore.benchmark.workloads import Query
from modelstore.families import family

TARGETS = {"linear": data.TARGET, "gaussian_nb": data.LABEL, "multinomial_nb": data.LABEL, "logistic": data.LABEL}


def request(ctx: Context, kind: str, q: Query, *, chunk_rows: int | None = None) -> dict:
    """``store.fit`` keyword arguments for one query of the benchmark table."""
    args = dict(table=ctx.table, target=TARGETS[kind], features=list(data.FEATURES), order_by="id", lo=q.lo, hi=q.hi)
    if kind == "logistic":
        args["chunk_rows"] = chunk_rows or ctx.config.logistic_chunk_rows
    return args


def fit(ctx: Context, kind: str, q: Query, *, chunk_rows: int | None = None):
    """Materialise a model (placing the catalog for a coverage): fitted and committed."""
    return ctx.store.fit(kind, evaluate=False, **request(ctx, kind, q, chunk_rows=chunk_rows))


def timed_fit(ctx: Context, kind: str, q: Query, *, chunk_rows: int | None = None):
    """(T in seconds, the model) for one request, whose catalog rows are undone afterwards, so that every
    query of a set meets the same catalog (the models placed for its coverage).

    Linear and Naive Bayes requests run as a user's do — on an idle connection, their own two-round-trip
    transaction, committed (docs/planner.md, "Round trips") — and the statistics and model row they stored
    are deleted after the clock stops. (Until 2026-12-07 every request ran inside a transaction the
    benchmark rolled back, which sends a request down the usual path: 10 or more round trips.) Logistic
    requests store chunk models as they train and are still rolled back."""
    clock = {}

    @contextlib.contextmanager
    def timed():
        started = time.perf_counter()
        yield
        clock["seconds"] = time.perf_counter() - started

    model = _undone_fit(ctx, kind, q, timed, chunk_rows=chunk_rows)
    return clock["seconds"], model


def traced_fit(ctx: Context, kind: str, q: Query, *, chunk_rows: int | None = None) -> dict:
    """The round trips of one request, run as :func:`timed_fit` runs it (untimed), with libpq's protocol
    trace of the store's connection on around ``store.fit`` alone (issue #20: "statements per request").
    A round trip is a wait for the server: every Sync (the end of a pipeline, or of one extended-protocol
    statement) or simple Query message the client sends; ``statements`` counts Execute and Query messages
    (a prepared statement sends no Parse).
    ``shape`` names the executed plan: "stored" (stored statistics only), "index" (index nodes, with or
    without partial-chunk scans), "scratch" (one scan of the whole range), "mixed" (stored statistics and
    scans)."""
    fd, path = tempfile.mkstemp(prefix="modelstore-trace-")

    @contextlib.contextmanager
    def traced():
        ctx.conn.pgconn.trace(fd)
        try:
            yield
        finally:
            ctx.conn.pgconn.untrace()

    try:
        model = _undone_fit(ctx, kind, q, traced, chunk_rows=chunk_rows)
        with open(path) as fh:
            sent = [p[3] for p in (line.split("\t") for line in fh.read().splitlines()) if len(p) > 3 and p[1] == "F"]
    finally:
        os.close(fd)
        os.unlink(path)
    executed = model.plan
    ops = [r.step.op for r in executed.results]
    shape = ("index" if executed.index_nodes_used else "stored" if set(ops) <= {"stored"}
             else "scratch" if len(ops) == 1 else "mixed")
    return {"round_trips": sum(1 for m in sent if m in ("Sync", "Query")),
            "statements": sum(1 for m in sent if m in ("Execute", "Query")), "shape": shape}


def _undone_fit(ctx: Context, kind: str, q: Query, around, *, chunk_rows: int | None = None):
    """``store.fit`` of one query inside ``around()`` (a context manager: the clock, or the trace), its
    catalog rows undone afterwards (see :func:`timed_fit`)."""
    conn = ctx.conn
    args = request(ctx, kind, q, chunk_rows=chunk_rows)
    if family(kind).trained:
        conn.execute("BEGIN")
        try:
            with around():
                model = ctx.store.fit(kind, evaluate=False, **args)
        finally:
            conn.execute("ROLLBACK")
        return model
    before = conn.execute("SELECT coalesce(max(stats_id), 0) FROM modelstore.statistics").fetchone()[0]
    conn.commit()
    with around():
        model = ctx.store.fit(kind, evaluate=False, **args)
    with conn.transaction():
        conn.execute("DELETE FROM modelstore.fitted_models WHERE name = %s", [model.name])
        conn.execute("DELETE FROM modelstore.statistics WHERE stats_id > %s", [before])
    return model


def split(executed, seconds: float) -> dict:
    """A request's time in the paper's Fig. 5 components (milliseconds), with its plan's shape."""
    planning = executed.plan.planning_seconds
    stored = sum(r.seconds for r in executed.results if r.step.op == "stored")
    base = sum(r.seconds for r in executed.results if r.step.op in ("scan", "train"))
    ops = [r.step.op for r in executed.results]
    graph = executed.plan.graph or {}
    return {
        "ms": seconds * 1000,
        "optimizer_ms": planning * 1000,
        "io_stored_ms": stored * 1000,
        "io_base_ms": base * 1000,
        "rest_ms": max(0.0, seconds - planning - stored - base) * 1000,
        "rows_scanned": int(executed.rows_scanned),
        "stored_steps": ops.count("stored"),
        "scan_steps": ops.count("scan") + ops.count("train"),
        "subtractions": sum(1 for r in executed.results if r.step.sign < 0),
        "relevant": int(graph.get("relevant", 0)),
        "truncated": bool(graph.get("truncated", False)),
        "strategy": executed.plan.strategy,
        # the cost model's estimate of the executed plan against what running it took (issue #20)
        "est_ms": executed.plan.est_cost_ms,
        "actual_ms": executed.execution_seconds * 1000,
    }


def cost_ratios(est_ms: Sequence[float | None], actual_ms: Sequence[float]) -> dict:
    """The distribution of estimated/actual cost over executed plans, and the share within 2× either way."""
    r = [e / a for e, a in zip(est_ms, actual_ms) if e is not None and a > 0]
    out = summarize(r)
    out["within_2x"] = float(np.mean([0.5 <= x <= 2.0 for x in r])) if r else None
    return out


def round_trip_figures(traced: Sequence[dict]) -> dict:
    """Round trips and statements per request, by plan shape (:func:`traced_fit`'s records): n, median, max."""
    out = {}
    for shape in ("stored", "index", "scratch", "mixed"):
        rows = [t for t in traced if t["shape"] == shape]
        if rows:
            trips = [t["round_trips"] for t in rows]
            out[shape] = {"n": len(rows), "median": float(np.median(trips)), "max": int(max(trips)),
                          "statements_median": float(np.median([t["statements"] for t in rows]))}
    return out


# -- comparing with the from-scratch model ------------------------------------------------------------

def parameters(model, kind: str) -> np.ndarray | None:
    """The fitted parameters that must equal the from-scratch fit's (None for logistic mixtures)."""
    if kind == "linear":
        return np.r_[np.ravel(model.coef_), np.ravel(model.intercept_)].astype(float)
    if kind == "gaussian_nb":
        return np.r_[model.theta_.ravel(), model.var_.ravel(), model.class_prior_.ravel()].astype(float)
    if kind == "multinomial_nb":
        return np.r_[model.feature_log_prob_.ravel(), model.class_log_prior_.ravel()].astype(float)
    return None


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max_i |a_i − b_i| / |b_i| (denominators floored at 10⁻⁶‖b‖∞ so a zero parameter is no trap)."""
    if a.shape != b.shape:
        return math.inf
    scale = max(float(np.max(np.abs(b))), 1e-300)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6 * scale)))


# -- distributions ------------------------------------------------------------------------------------

def summarize(values: Sequence[float]) -> dict:
    """Median and spread of a sample: n, median, p25, p75, p10, p90, min, max, mean."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"n": 0}
    p10, p25, p50, p75, p90 = np.percentile(v, [10, 25, 50, 75, 90])
    return {"n": int(v.size), "median": float(p50), "p25": float(p25), "p75": float(p75), "p10": float(p10),
            "p90": float(p90), "min": float(v.min()), "max": float(v.max()), "mean": float(v.mean())}


def gains(t0_ms: Sequence[float], t_ms: Sequence[float]) -> dict:
    """Per-query gains T0/T summarised, plus the ratio of mean times (the paper's 'expected' gain)."""
    g = [a / b for a, b in zip(t0_ms, t_ms) if b > 0]
    out = summarize(g)
    out["ratio_of_means"] = float(np.mean(t0_ms) / np.mean(t_ms)) if len(t_ms) and np.mean(t_ms) > 0 else None
    return out
