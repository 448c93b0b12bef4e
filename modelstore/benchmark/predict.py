"""Predicting in the database (issue #18; docs/serving.md "Predicting in the database").

A linear and a Gaussian NB model over every row of the benchmark table (10 features), and a per-group
linear model over a copy of its first ``predict_group_rows`` rows with a group column of
``predict_groups`` values. Reported:

* ``modelstore.predict`` one row at a time, as an application calls it: the round trip of
  ``predict_calls`` prepared calls from one connection (p50, p99, in ms; DESIGN §7: p99 < 1 ms), and
  the server's time per call when one statement makes the calls (µs, no round trip);
* the same for ``modelstore.predict(name, group, ARRAY[…])`` of the per-group model;
* batch ``ML.PREDICT`` over the whole table, compiled to one SQL expression per row (the model's
  parameters as constants; per group: one join of the catalog's parameter arrays): rows/s of the
  compiled statement (DESIGN §7: ≥ 1M rows/s), with the table's plain read rate
  (``SELECT count(x10)``) and ``modelstore.predict`` per row over the same rows beside it.
"""

from __future__ import annotations

import time

import numpy as np
from psycopg import sql

from modelstore.benchmark import data, workloads
from modelstore.benchmark.context import Context
from modelstore.benchmark.measure import summarize

GROUPED = "predict_grouped"
MODELS = {"linear": ("bench_predict_linear", data.TARGET), "gaussian_nb": ("bench_predict_nb", data.LABEL)}
GROUP_MODEL = "bench_predict_groups"
REPEATS = 3


def _drop(ctx: Context) -> None:
    for name in (*[m for m, _ in MODELS.values()], GROUP_MODEL):
        ctx.store.drop(name, missing_ok=True)
    ctx.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(GROUPED)))
    ctx.conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s",
                     [data.SCHEMA, GROUPED])


def _latency(ctx: Context, query: sql.Composable, args_of, calls: int) -> dict:
    """Round trips of ``calls`` prepared calls (ms), after a warm-up."""
    for i in range(min(50, calls)):
        ctx.conn.execute(query, args_of(i), prepare=True).fetchone()
    times = []
    for i in ctx.track(range(calls), "single-row predict"):
        started = time.perf_counter()
        ctx.conn.execute(query, args_of(i), prepare=True).fetchone()
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)),
            "mean": float(np.mean(times)), "calls": calls}


def _timed(ctx: Context, statement: sql.Composable | str) -> float:
    """The median seconds of ``REPEATS`` runs of one statement."""
    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        ctx.conn.execute(statement).fetchall()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def predict(ctx: Context) -> dict:
    cfg = ctx.config
    rng = workloads.rng_for(cfg.seed, "predict")
    features = list(data.FEATURES)
    array = sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(sql.Identifier(f) for f in features))
    try:
        _drop(ctx)
        for kind, (name, target) in MODELS.items():
            ctx.store.fit(kind, table=ctx.table, target=target, features=features, order_by="id", name=name)
        group_rows = min(cfg.predict_group_rows, cfg.rows)
        data.copy_table(ctx, GROUPED, group_rows)
        ctx.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN grp text").format(data.ident(GROUPED)))
        ctx.conn.execute(sql.SQL("UPDATE {} SET grp = ((id / 2) %% %s)::text").format(data.ident(GROUPED)),
                         [cfg.predict_groups])
        ctx.conn.execute(sql.SQL("ANALYZE {}").format(data.ident(GROUPED)))
        started = time.perf_counter()
        grouped = ctx.store.fit("linear", table=f"{data.SCHEMA}.{GROUPED}", target=data.TARGET, features=features,
                                order_by="id", group_by="grp", name=GROUP_MODEL)
        group_fit_s = time.perf_counter() - started

        X = rng.random((cfg.predict_calls, len(features)))
        groups = [str(g) for g in rng.integers(0, cfg.predict_groups + cfg.predict_groups // 10 + 1,
                                               size=cfg.predict_calls)]  # ~10% unseen groups
        single = {}
        for kind, (name, _) in MODELS.items():
            single[kind] = _latency(ctx, sql.SQL("SELECT modelstore.predict({}, %s::float8[])").format(
                sql.Literal(name)), lambda i: [X[i].tolist()], cfg.predict_calls)
        single["per_group"] = _latency(ctx, sql.SQL("SELECT modelstore.predict({}, %s, %s::float8[])").format(
            sql.Literal(GROUP_MODEL)), lambda i: [groups[i], X[i].tolist()], cfg.predict_calls)

        # the server's time per call: one statement, predict_server_calls calls, no round trips
        n_server = min(cfg.predict_server_calls, cfg.rows)
        server_us = {}
        for label, call in (("linear", sql.SQL("modelstore.predict({}, {})").format(
                                 sql.Literal(MODELS["linear"][0]), array)),
                            ("gaussian_nb", sql.SQL("modelstore.predict({}, {})").format(
                                 sql.Literal(MODELS["gaussian_nb"][0]), array)),
                            ("per_group", sql.SQL("modelstore.predict({}, ((id / 2) % {})::text, {})").format(
                                 sql.Literal(GROUP_MODEL), sql.Literal(cfg.predict_groups), array))):
            statement = sql.SQL("SELECT sum({}) FROM (SELECT * FROM {} WHERE id <= {}) AS t").format(
                call, data.ident(data.TABLE), sql.Literal(2 * n_server))
            server_us[label] = _timed(ctx, statement) / n_server * 1e6

        # batch ML.PREDICT, compiled: time the statement the language generates
        batch = {}
        read_s = _timed(ctx, sql.SQL("SELECT count({}) FROM {}").format(sql.Identifier(features[-1]),
                                                                        data.ident(data.TABLE)))
        columns = ", ".join(features)
        for label, model, table, extra in (
                ("linear", MODELS["linear"][0], ctx.table, ""),
                ("gaussian_nb", MODELS["gaussian_nb"][0], ctx.table, ""),
                ("per_group", GROUP_MODEL, f"{data.SCHEMA}.{GROUPED}", "grp, ")):
            # the model language's text, from this module's constants; sum() of the prediction, so that no
            # row's expression can be skipped. Timed: the SQL statement the language compiled it to.
            predicted = "predicted_" + (data.LABEL if label == "gaussian_nb" else data.TARGET)
            text = " ".join(["SELECT count(*), sum(" + predicted + "::float8) FROM ML.PREDICT(MODEL", model + ",",
                             "(SELECT", extra + columns, "FROM", table + "))"])
            compiled = ctx.store.query(text).attrs["sql"]
            rows = cfg.rows if table == ctx.table else group_rows
            seconds = _timed(ctx, sql.SQL(compiled))
            batch[label] = {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}
        per_row_s = _timed(ctx, sql.SQL("SELECT sum(modelstore.predict({}, {})) FROM {}").format(
            sql.Literal(MODELS["linear"][0]), array, data.ident(data.TABLE)))
        result = {
            "figure": "predicting in the database", "rows": cfg.rows, "features": len(features),
            "single_row_ms": single, "server_us_per_call": server_us, "server_calls": n_server,
            "batch_ml_predict": batch, "read_rows_per_s": cfg.rows / read_s,
            "predict_per_row_rows_per_s": cfg.rows / per_row_s,
            "groups": {"rows": group_rows, "groups": len(grouped.models), "fit_seconds": group_fit_s},
            "latency_summary_ms": summarize([single["linear"]["p99"], single["gaussian_nb"]["p99"],
                                             single["per_group"]["p99"]]),
        }
    finally:
        _drop(ctx)
    return result


__all__ = ["predict"]
