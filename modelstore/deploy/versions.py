"""Versions of a deployment: when a new exact model is recorded, and which one is served.

A refresh always re-solves the exact model of the window; a *version* is recorded when that model
changed materially since the last version (continuous deployment, Derakhshan et al. §3.3: a deployed
model is replaced by a new one only as often as it pays; PostgresML's deployments for the strategies):

* every change (the default): any parameter or the row count differs;
* ``record_every``: at most one version per interval (changes in between are served, not recorded);
* ``record_tolerance``: a parameter moved by more than this, relative to the largest parameter.

Which version serves is the *strategy*: ``most_recent`` (the newest exact model), ``best_score`` (the
version with the lowest prequential mean loss, among those scored), ``pinned`` (a rollback). The
validation *gate* (off by default: an exact model of more rows is not a guess to be validated) keeps a
new version out of service until its prequential loss is not worse than the active version's by more
than ``gate_tolerance``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from modelstore.catalog.records import _jsonable  # the catalog's JSON conversion (NaN → null)

STRATEGIES = ("most_recent", "best_score", "pinned")

#: the fitted attributes that make up a model's parameters, whichever family it is
PARAMETER_ATTRIBUTES = ("coef_", "intercept_", "theta_", "var_", "class_prior_", "feature_log_prob_",
                        "class_log_prior_")


def rows_of(model) -> int:
    """The rows a model was fitted on (``rows_used`` for Naive Bayes, ``n_obs`` for linear)."""
    return int(getattr(model, "rows_used", None) or getattr(model, "n_obs", 0) or 0)


def parameters(model) -> np.ndarray:
    """The model's parameters as one flat vector (what "moved" is measured on)."""
    parts = [np.ravel(np.asarray(getattr(model, a), dtype=float)) for a in PARAMETER_ATTRIBUTES if hasattr(model, a)]
    return np.concatenate(parts) if parts else np.zeros(0)


def parameter_move(new, old) -> float:
    """max |Δp| / max |p_old|: how far the parameters moved, relative (inf when the shapes differ)."""
    a, b = parameters(new), parameters(old)
    if a.shape != b.shape or list(getattr(new, "classes_", [])) != list(getattr(old, "classes_", [])):
        return float("inf")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), np.finfo(float).tiny))


def material(new, old, rows_new: int, rows_old: int | None, *, last_at: dt.datetime | None,
             now: dt.datetime, record_every: dt.timedelta | None, record_tolerance: float | None) -> str | None:
    """Why ``new`` should be recorded as a version after ``old`` (the last version), or None."""
    if old is None:
        return "first"
    move = parameter_move(new, old)
    if move == 0.0 and rows_new == rows_old:
        return None
    if record_tolerance is not None and move <= record_tolerance:
        return None
    if record_every is not None and last_at is not None and now - last_at < record_every:
        return None
    return "changed" if record_tolerance is None else f"moved {move:.3g} > {record_tolerance:g}"


def record(conn: psycopg.Connection, deployment_id: int, version: int, model, *, params: dict, stats_id,
           plan: dict | None, lo: str, hi: str, reason: str, metrics: dict | None = None) -> None:
    statement, values = record_statement(deployment_id, version, model, params=params, stats_id=stats_id, plan=plan,
                                         lo=lo, hi=hi, reason=reason, metrics=metrics)
    conn.execute(statement, values)


def record_statement(deployment_id: int, version: int, model, *, params: dict, stats_id, plan: dict | None, lo: str,
                     hi: str, reason: str, metrics: dict | None = None, state=None) -> tuple[sql.Composable, list]:
    """The INSERT of one version row; ``stats_id`` may be an SQL expression (a refresh's new summary,
    stored by the same statement), ``state`` the model's state already converted (``Jsonb``)."""
    stats = stats_id if isinstance(stats_id, sql.Composable) else sql.Placeholder()
    statement = sql.SQL("""
        INSERT INTO modelstore.deployment_versions
            (deployment_id, version, state, params, stats_id, plan, rows_used, rows_skipped, lo, hi, reason, metrics)
        VALUES (%s, %s, %s, %s, {}, %s, %s, %s, %s, %s, %s, %s)
        """).format(stats)
    state = Jsonb(_jsonable(model.to_state())) if state is None else state
    values = [deployment_id, version, state, Jsonb(_jsonable(params))]
    values += [] if isinstance(stats_id, sql.Composable) else [stats_id]
    values += [None if plan is None else Jsonb(_jsonable(plan)), rows_of(model),
               int(getattr(model, "rows_skipped", 0) or 0), lo, hi, reason, Jsonb(_jsonable(metrics or {}))]
    return statement, values


def serve(conn: psycopg.Connection, deployment_id: int, model_id: int, version: int) -> None:
    """Write ``version``'s parameters into the deployment's model row (what modelstore.predict reads)."""
    conn.execute(
        """
        UPDATE modelstore.fitted_models AS m
           SET state = v.state, rows_used = v.rows_used, rows_skipped = v.rows_skipped, lo = v.lo, hi = v.hi
          FROM modelstore.deployment_versions AS v
         WHERE m.model_id = %s AND v.deployment_id = %s AND v.version = %s
        """,
        [model_id, deployment_id, version],
    )


def best_scored(conn: psycopg.Connection, deployment_id: int) -> tuple[int, float] | None:
    """(version, prequential mean loss) of the best-scoring version (newest on ties), or None."""
    return conn.execute(
        """
        SELECT version, sum(loss_sum) / sum(rows) FROM modelstore.deployment_metrics
        WHERE deployment_id = %s GROUP BY version HAVING sum(rows) > 0
        ORDER BY 2, 1 DESC LIMIT 1
        """,
        [deployment_id],
    ).fetchone()


def mean_loss(conn: psycopg.Connection, deployment_id: int, version: int) -> float | None:
    row = conn.execute(
        "SELECT sum(loss_sum) / nullif(sum(rows), 0) FROM modelstore.deployment_metrics "
        "WHERE deployment_id = %s AND version = %s", [deployment_id, version]).fetchone()
    return None if row[0] is None else float(row[0])
