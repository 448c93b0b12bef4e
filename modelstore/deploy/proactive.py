"""Proactive training of an SGD deployment (continuous-deployment paper §3, §4; docs/continuous.md).

A deployment made with ``proactive={…}`` refreshes differently from the exact families' refit:

1. **Chunks** (§3 step 1): the rows appended since the last refresh, in ``order_by`` order, become
   chunks of about ``chunk_rows`` rows (a chunk ends where the ordering value changes, so that its
   range [lo, hi] selects exactly its rows again). The rows of the deployed window become the first
   historical chunks the first time.
2. **Online statistics** (§3.1): each new chunk is folded into the pipeline's statistics, then
   transformed into a feature chunk.
3. **Dynamic materialization** (§3.2): feature chunks are stored in ``modelstore.feature_chunks``; when
   more than ``budget_chunks`` are materialized the oldest are evicted (their features dropped, their
   range kept).
4. **Sampling** (§4.2): ``sample_chunks`` historical chunks by the sampler — ``uniform`` over all,
   ``window`` uniform over the last ``window_chunks``, ``time`` with probability proportional to the
   chunk's rank in time (the newest most likely) — without replacement; an evicted chunk in the sample
   is re-materialized from its base rows with the current pipeline. The refresh records the
   materialization utilization MU = materialized sampled chunks / sampled chunks (compare
   :mod:`.materialization`'s formulas).
5. **Proactive training** (§3.3): ``iterations`` SGD iterations (default one) from the serving model
   over the sample plus the new chunks, as one mini-batch.

The scheduler (§4.1) is the worker's: a proactive deployment is due when it has pending rows and its
``next_run_at`` has passed. ``schedule='static'`` sets it ``interval`` seconds after a run, and with
``every_chunks=N`` the worker also waits until N chunks' worth of rows (N·``chunk_rows``) are pending
(:func:`chunks_pending`); ``'dynamic'`` sets it T′ = S·T·p_r·p_l after a run
(:func:`.materialization.dynamic_interval`), with T the run's measured duration and p_r, p_l the
prediction rate and latency measured on the predictions the model served since the previous run
(:mod:`.served`).
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

import numpy as np
import pandas as pd
from psycopg import sql
from psycopg.types.json import Jsonb

from modelstore.catalog import records
from modelstore.deploy import materialization, served
from modelstore.errors import DeploymentError, SamplingError
from modelstore.execution.sgd import column_expr
from modelstore.families import family
from modelstore.planner.plan import ExecutedPlan, Plan, Step, StepResult
from modelstore.request.descriptor import Range, bound_text, parse_bound
from modelstore.request.predicates import with_filter
from modelstore.request.source import resolve_table

SAMPLERS = ("uniform", "window", "time")
SCHEDULES = ("static", "dynamic")
DEFAULTS = {"chunk_rows": 100, "sample_chunks": 8, "sampler": "uniform", "window_chunks": None,
            "budget_chunks": 64, "iterations": 1, "schedule": "static", "interval": 0.0, "every_chunks": None,
            "slack": 2.0}


def check_config(config, kind: str) -> dict:
    """The proactive configuration, validated, with defaults (stored in the deployment's params)."""
    if not family(kind).iterative:
        raise DeploymentError(f"proactive training is for the SGD-trained kinds; {kind} models are fitted exactly")
    if not isinstance(config, dict):
        raise DeploymentError(f"proactive must be a dict of options, got {config!r} instead")
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise DeploymentError(f"proactive takes no option(s) {unknown}; its options: {list(DEFAULTS)}")
    out = {**DEFAULTS, **config}
    for name in ("chunk_rows", "sample_chunks", "budget_chunks", "iterations"):
        v = out[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "sample_chunks" else 1):
            if name == "budget_chunks":
                raise SamplingError(f"budget_chunks must hold at least one chunk (an integer >= 1), got {v!r}")
            raise DeploymentError(f"proactive {name} must be a positive integer, got {v!r} instead")
    if out["sampler"] not in SAMPLERS:
        raise SamplingError(f"sampler must be one of {SAMPLERS}, got {out['sampler']!r} instead")
    if out["sampler"] == "window":
        w = out["window_chunks"]
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise SamplingError(f"the window sampler needs window_chunks, a positive integer, got {w!r}")
    if out["schedule"] not in SCHEDULES:
        raise DeploymentError(f"schedule must be one of {SCHEDULES}, got {out['schedule']!r} instead")
    every = out["every_chunks"]
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise DeploymentError(f"proactive every_chunks must be a positive integer (or None), got {every!r} instead")
    if every is not None and out["schedule"] != "static":
        raise DeploymentError("every_chunks is a static schedule: use it with schedule='static'")
    materialization.dynamic_interval(out["slack"], 0.0, 0.0, 0.0)  # checks the numbers
    materialization.dynamic_interval(out["interval"], 0.0, 0.0, 0.0)
    return out


def sample(seqs: list[int], k: int, sampler: str, rng: np.random.Generator, window: int | None = None) -> list[int]:
    """``k`` distinct chunks of ``seqs`` (oldest first) by the sampler (§4.2)."""
    if sampler == "window":
        seqs = seqs[-window:]
    if k > len(seqs):
        raise SamplingError(f"cannot sample {k} chunks out of {len(seqs)}")
    if sampler == "time":
        ranks = np.arange(1, len(seqs) + 1, dtype=float)
        picked = rng.choice(len(seqs), size=k, replace=False, p=ranks / ranks.sum())
    elif sampler in ("uniform", "window"):
        picked = rng.choice(len(seqs), size=k, replace=False)
    else:
        raise SamplingError(f"sampler must be one of {SAMPLERS}, got {sampler!r} instead")
    return sorted(seqs[i] for i in picked)


def _chunks_of(frame: pd.DataFrame, order: list, chunk_rows: int) -> list[tuple[int, int]]:
    """[start, end) row positions of the chunks: about chunk_rows rows, ending where the order value changes."""
    bounds, start = [], 0
    n = len(frame)
    while start < n:
        end = min(start + chunk_rows, n)
        while end < n and order[end] == order[end - 1]:
            end += 1
        bounds.append((start, end))
        start = end
    return bounds


def _read(conn, table, descriptor, r: Range):
    """(order values, raw feature frame, targets) of the rows of ``r`` with a non-NULL target."""
    query = sql.SQL("SELECT {}, {}, {} FROM {} WHERE ({}) AND {} IS NOT NULL ORDER BY {}").format(
        sql.Identifier(descriptor.source.order_by),
        sql.SQL(", ").join(column_expr(table, f) for f in descriptor.features), sql.Identifier(descriptor.target),
        table.identifier, with_filter(descriptor, _range_sql(descriptor.source.order_by, r)),
        sql.Identifier(descriptor.target), sql.Identifier(descriptor.source.order_by))
    rows = conn.execute(query).fetchall()
    k = len(descriptor.features)
    frame = pd.DataFrame([row[1:k + 1] for row in rows], columns=list(descriptor.features), dtype=object)
    return [row[0] for row in rows], frame, [row[k + 1] for row in rows]


def _range_sql(order_by: str, r: Range) -> sql.Composed:
    col = sql.Identifier(order_by)
    parts = []
    if r.lo is not None:
        parts.append(sql.SQL("{} {} {}").format(col, sql.SQL(">=" if r.lo_closed else ">"), sql.Literal(r.lo)))
    if r.hi is not None:
        parts.append(sql.SQL("{} {} {}").format(col, sql.SQL("<=" if r.hi_closed else "<"), sql.Literal(r.hi)))
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")


def _store_chunks(conn, deployment_id: int, model, order, frame, labels, chunk_rows: int, *, update: bool) -> list:
    """Chunk, (update the statistics and) transform and store the rows; returns the new chunks' features."""
    seq = conn.execute("SELECT coalesce(max(seq), 0) FROM modelstore.feature_chunks WHERE deployment_id = %s",
                       [deployment_id]).fetchone()[0]
    new = []
    for start, end in _chunks_of(frame, order, chunk_rows):
        part = frame.iloc[start:end]
        if update:
            model.pipeline.update(part)
            model.sync_features()
        X = model.pipeline.transform(part)
        ys = [_plain(v) for v in labels[start:end]]
        seq += 1
        conn.execute(
            "INSERT INTO modelstore.feature_chunks (deployment_id, seq, lo, hi, rows, feature_names, features, targets) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [deployment_id, seq, bound_text(order[start]), bound_text(order[end - 1]), end - start,
             list(model.feature_names_), X.ravel().tolist(), Jsonb(ys)])
        new.append((seq, X, ys, list(model.feature_names_)))
    return new


def _plain(v):
    """A label or target as JSON holds it (numeric → float)."""
    if isinstance(v, np.generic):
        return v.item()
    return float(v) if isinstance(v, Decimal) else v


def _evict(conn, deployment_id: int, budget: int) -> int:
    """Drop the features of the oldest materialized chunks beyond the budget; returns how many."""
    return conn.execute(
        """
        UPDATE modelstore.feature_chunks SET features = NULL, targets = NULL, materialized = false
         WHERE deployment_id = %s AND seq IN (
               SELECT seq FROM modelstore.feature_chunks WHERE deployment_id = %s AND materialized
                ORDER BY seq DESC OFFSET %s)
        """, [deployment_id, deployment_id, budget]).rowcount


def align_features(X: np.ndarray, names: list[str], model) -> np.ndarray:
    """A stored feature chunk in the model's current feature layout (new features 0)."""
    if list(names) == model.feature_names_:
        return X
    where = {f: i for i, f in enumerate(names)}
    out = np.zeros((len(X), len(model.feature_names_)))
    for j, f in enumerate(model.feature_names_):
        if f in where:
            out[:, j] = X[:, where[f]]
    return out


def train(store, spec, served, lo, hi, order_kind: str) -> tuple[object, ExecutedPlan, dict]:
    """One proactive refresh of ``spec``; writes the model row, returns (model, executed plan, figures)."""
    conn = store.conn
    started = time.perf_counter()
    config = spec.params["proactive"]
    descriptor = dataclasses.replace(served.descriptor, range=Range(lo, hi))
    table = resolve_table(conn, spec.table_name)
    model = served.warm_copy()
    model.params = {**model.params, **{k: v for k, v in spec.params.items() if k != "proactive"}}
    info = {"sampler": config["sampler"]}

    have = conn.execute("SELECT count(*) FROM modelstore.feature_chunks WHERE deployment_id = %s",
                        [spec.deployment_id]).fetchone()[0]
    prev_hi = parse_bound(spec.hi, order_kind) if spec.hi is not None else None
    if not have and prev_hi is not None:  # the deployed window's rows are the first historical chunks
        order, frame, labels = _read(conn, table, descriptor, Range(lo, prev_hi))
        _store_chunks(conn, spec.deployment_id, model, order, frame, labels, config["chunk_rows"], update=False)
    new_range = Range(prev_hi, hi, lo_closed=False) if prev_hi is not None else Range(lo, hi)
    order, frame, labels = _read(conn, table, descriptor, new_range)
    history = [r[0] for r in conn.execute("SELECT seq FROM modelstore.feature_chunks WHERE deployment_id = %s "
                                          "ORDER BY seq", [spec.deployment_id]).fetchall()]
    new = _store_chunks(conn, spec.deployment_id, model, order, frame, labels, config["chunk_rows"], update=True)
    info["new_chunks"] = len(new)
    info["new_rows"] = len(frame)
    info["evicted"] = _evict(conn, spec.deployment_id, config["budget_chunks"])

    # the sample of historical chunks (§4.2), re-materialized where evicted (§3.2)
    rng = np.random.default_rng([spec.deployment_id, spec.refreshes])
    available = history[-config["window_chunks"]:] if config["sampler"] == "window" else history
    k = min(config["sample_chunks"], len(available))  # early on fewer chunks exist than a sample asks for
    picked = sample(history, k, config["sampler"], rng, config["window_chunks"]) if k else []
    info["sampled"] = len(picked)
    info["picked"] = picked
    info["sample_asked"] = config["sample_chunks"]
    Xs, ys, materialized = [], [], 0
    rows = conn.execute(
        "SELECT seq, lo, hi, feature_names, features, targets FROM modelstore.feature_chunks "
        "WHERE deployment_id = %s AND seq = ANY(%s) ORDER BY seq", [spec.deployment_id, picked]).fetchall()
    for seq, clo, chi, names, features, targets in rows:
        if features is not None:
            materialized += 1
            X = np.array(features, dtype=float).reshape(len(targets), len(names))
            Xs.append(align_features(X, names, model))
            ys += targets
        else:  # dynamic materialization: the base rows through the current pipeline
            _, part, labels_ = _read(conn, table, descriptor, Range(parse_bound(clo, order_kind),
                                                                     parse_bound(chi, order_kind)))
            if len(part):
                Xs.append(model.pipeline.transform(part))
                ys += [_plain(v) for v in labels_]
    info["materialized"] = materialized
    info["mu"] = materialized / len(rows) if rows else None
    for _, X, y, names in new:
        Xs.append(align_features(X, names, model))
        ys += y
    info["training_rows"] = len(ys)

    skip = None
    if not ys:
        skip = "no rows to train on"
    elif model.classifier and len({str(v) for v in ys}) < 2:
        skip = f"the sample has one class only ({ys[0]!r})"
    if skip is None:
        X = np.vstack([align_features(x, model.feature_names_, model) if x.shape[1] != len(model.feature_names_) else x
                       for x in Xs])
        targets = model._targets(ys)
        for _ in range(config["iterations"]):
            model.step(X, targets)
        model.training_loss_ = model.objective(X, targets)
    else:
        info["skipped"] = skip
    model.rows_used = len(ys)
    seconds = time.perf_counter() - started
    info["ms"] = round(seconds * 1000, 3)

    step = Step(1, "scan", new_range, est_rows=len(frame))
    plan = Plan(descriptor, (step,), f"proactive training: {len(picked)} sampled chunk(s) ({materialized} "
                                     f"materialized) + {len(new)} new, {config['iterations']} SGD iteration(s)")
    executed = ExecutedPlan(plan, (StepResult(step, len(frame), seconds),), seconds, None, 0.0, (),
                            {"proactive": info})
    source_id = conn.execute("SELECT source_id FROM modelstore.fitted_models WHERE model_id = %s",
                             [spec.model_id]).fetchone()[0]
    records.store_model(conn, name=spec.name, kind=spec.kind, source_id=source_id, stats_id=None,
                        descriptor=descriptor, params=spec.params, rows_used=model.rows_used,
                        rows_skipped=0, state=model.to_state(), plan=executed.to_json(), replace=True)
    model.materialized(name=spec.name, descriptor=descriptor, plan=executed)
    return model, executed, info


def schedule_next(conn, spec, seconds: float, info: dict | None = None) -> float:
    """Set the deployment's next_run_at (§4.1) and return the interval in seconds.

    Dynamic: T′ = S·T·p_r·p_l with T = ``seconds`` (this run's training) and p_r, p_l measured on the
    predictions the model served since the previous run (:func:`.served.measured_rate_and_latency`);
    the served counts read now are kept on the deployment for the next run."""
    config = spec.params["proactive"]
    current = served.read(conn, spec.name)
    previous, elapsed = None, 0.0
    if config["schedule"] == "static":
        interval = float(config["interval"])
    else:
        row = conn.execute("SELECT served_predictions, served_seconds, "
                           "extract(epoch FROM clock_timestamp() - served_read_at)::float8 "
                           "FROM modelstore.deployments WHERE deployment_id = %s", [spec.deployment_id]).fetchone()
        if row is not None and row[0] is not None:
            previous, elapsed = (int(row[0]), float(row[1])), float(row[2])
        rate, latency = served.measured_rate_and_latency(previous, current, elapsed)
        interval = materialization.dynamic_interval(config["slack"], seconds, rate, latency)
        if info is not None:
            info["schedule"] = {"T_s": seconds, "prediction_rate": rate, "prediction_latency_s": latency,
                                "served": current[0] - (previous[0] if previous else current[0]),
                                "over_s": elapsed, "slack": config["slack"]}
    conn.execute("UPDATE modelstore.deployments SET next_run_at = clock_timestamp() + make_interval(secs => %s), "
                 "served_predictions = %s, served_seconds = %s, served_read_at = clock_timestamp() "
                 "WHERE deployment_id = %s", [interval, current[0], current[1], spec.deployment_id])
    return interval


def chunks_pending(conn, spec, order_kind: str, filter_sql: str, chunks: int) -> bool:
    """Whether ``chunks`` chunks' worth of rows (``chunks`` × ``chunk_rows``, with a target, through the
    model's filter — ``filter_sql``, the normalized SQL the catalog stores) are past the deployment's
    window: the static "every N chunks" schedule (§4.1). Counts at most that many rows."""
    need = chunks * spec.params["proactive"]["chunk_rows"]
    table = resolve_table(conn, spec.table_name)
    past = (Range(parse_bound(spec.hi, order_kind), None, lo_closed=False) if spec.hi is not None
            else Range(None, None))
    cond = _range_sql(spec.order_by, past)
    if filter_sql:
        cond = sql.SQL("({}) AND ({})").format(cond, sql.SQL(filter_sql))
    query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE ({}) AND {} IS NOT NULL LIMIT %s) AS pending").format(
        table.identifier, cond, sql.Identifier(spec.target))
    return conn.execute(query, [need]).fetchone()[0] >= need


__all__ = ["DEFAULTS", "SAMPLERS", "check_config", "chunks_pending", "sample", "schedule_next", "train"]
