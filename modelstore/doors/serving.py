"""What the HTTP door asks of the store: score, observe, describe (issue #18; docs/serving.md, "HTTP").

The one place ``modelstore serve`` calls the store, each function over a
:class:`~modelstore.store.Store` on one pooled connection. They take and return plain JSON-able values
and raise modelstore's own errors (the HTTP layer, :mod:`modelstore.doors.http`, maps them to status
codes), so the same calls serve any other door.

Groups (per-group models, ``group_by``): ``predict`` passes ``groups`` on to the model's ``predict``
only when that call accepts a ``groups`` argument; a model without per-group parameters refuses them
with an :class:`~modelstore.errors.InputError`, which the HTTP door answers with 422.
"""

from __future__ import annotations

import inspect
import math
import time

import numpy as np
import pandas as pd
import psycopg

from modelstore.deploy import served
from modelstore.errors import InputError, ModelNotFoundError
from modelstore.families import family
from modelstore.store.request import check_name

#: the parameters of a model's stored state that describe the model (the rest is bookkeeping or large)
_NOT_PARAMETERS = ("kind", "version", "name", "features", "target", "cov_params", "figures")


#: name → (model_id, row version, model): the models this process has rebuilt from the catalog
_MODELS: dict[str, tuple[int, str, object]] = {}
#: one statement, one snapshot: the model row's identity and version (its xmin changes with every write
#: of the row: a refresh, a rollback, a replace) and the deployment's active version
_STAMP = """
SELECT m.model_id, m.xmin::text, d.active_version
  FROM modelstore.fitted_models AS m LEFT JOIN modelstore.deployments AS d ON d.model_id = m.model_id
 WHERE m.name = %s
"""


def predict(store, name: str, instances: list, groups: list | None = None) -> dict:
    """``{"predictions": […], "model_version": n}``: the named model's predictions for ``instances``
    (rows in the model's feature order), and the deployment's active version (None for a plain model).

    One round trip when the model is unchanged: the row's stamp is read and compared with the model this
    process rebuilt last time; any write of the row (a refresh after a commit or an observe, a rollback,
    a replace) changes the stamp, and the model is rebuilt — together with its stamp and version, in one
    snapshot — so a prediction never comes from a model the catalog no longer serves."""
    started = time.perf_counter()
    conn = store.conn
    check_name(name)
    row = conn.execute(_STAMP, [name]).fetchone()
    if row is None:
        raise ModelNotFoundError(f"no model named {name!r}")
    cached = _MODELS.get(name)
    if cached is not None and cached[:2] == tuple(row[:2]):
        model, version = cached[2], row[2]
    else:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            with conn.transaction():
                row = conn.execute(_STAMP, [name]).fetchone()
                if row is None:
                    raise ModelNotFoundError(f"no model named {name!r}")
                model, version = store.model(name), row[2]
        finally:
            conn.isolation_level = None
        _MODELS[name] = (row[0], row[1], model)
    # a model with its own pipeline (the SGD kinds) reads text columns too: its rows stay as sent
    X = np.asarray(instances, dtype=object if family(model.kind).takes_text else float)
    width = len(model.feature_names_in_)
    if X.ndim != 2 or X.shape[1] != width:
        raise InputError(f"instances: model {name!r} has {width} feature(s) {list(model.feature_names_in_)}; "
                         f"got rows of {X.shape[1] if X.ndim == 2 else '?'} value(s)")
    if groups is None:
        predictions = model.predict(X)
    elif "groups" in inspect.signature(model.predict).parameters:
        predictions = model.predict(X, groups=groups)
    else:
        raise InputError(f"groups: model {name!r} has no per-group models (group_by); send no groups")
    # the dynamic scheduler's measured prediction rate and latency (docs/continuous.md)
    served.record(conn, name, len(predictions), time.perf_counter() - started)
    return {"predictions": _plain(predictions), "model_version": version}


def observe(store, name: str, instances: list, labels: list, groups: list | None = None, *,
            refresh: bool = True) -> dict:
    """Write the labelled rows to deployment ``name``'s table and absorb them (:meth:`Store.observe`)."""
    done = store.observe(name, instances, labels, groups=groups, refresh=refresh)
    return {"observed": done.rows, "refreshed": done.refreshed, "model_version": done.version,
            "seconds": round(done.seconds, 6), "detail": done.detail}


def describe(store, name: str) -> dict:
    """Kind, features, target, parameters and freshness of a named model; for a deployment also its
    active version, window, strategy, pending writes and prequential metrics of the active version."""
    conn = store.conn
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            model = store.model(name)
            row = conn.execute("SELECT m.created_at, m.rows_used, m.rows_skipped, m.lo, m.hi FROM "
                               "modelstore.fitted_models m WHERE m.name = %s", [name]).fetchone()
            deployment = _deployment(store, name)
    finally:
        conn.isolation_level = None
    state = model.to_state()
    d = model.descriptor
    return {
        "name": name, "kind": state["kind"], "features": list(model.feature_names_in_), "target": d.target,
        "table": d.source.qualified, "order_by": d.source.order_by, "filter": d.filter_sql or None,
        "lo": row[3], "hi": row[4], "rows_used": row[1], "rows_skipped": row[2],
        "fitted_at": row[0].isoformat() if row[0] else None,
        "parameters": {k: v for k, v in state.items() if k not in _NOT_PARAMETERS},
        "model_version": deployment["active_version"] if deployment else None,
        "deployment": deployment,
    }


def healthy(store) -> bool:
    return store.conn.execute("SELECT true").fetchone()[0]


def _deployment(store, name: str) -> dict | None:
    from modelstore.deploy.refresh import load

    spec = load(store.conn, name=name)
    if spec is None:
        return None
    d = store.deployment(name)
    versions = d.versions()
    active = versions[versions.active]
    metrics = None
    if len(active):
        a = active.iloc[0]
        metrics = {"scored_rows": _plain(a.scored_rows), "prequential_loss": _plain(a.prequential_loss)}
    window = {"kind": spec.window_kind, "rows": spec.window_rows, "interval": spec.window_interval,
              "anchor": spec.window_anchor}
    return {
        "active_version": spec.active_version, "latest_version": spec.latest_version,
        "pinned_version": spec.pinned_version, "strategy": spec.strategy, "window": window,
        "refreshed_at": spec.refreshed_at.isoformat() if spec.refreshed_at else None,
        "refreshes": spec.refreshes, "pending_writes": d.pending(), "metrics": metrics,
    }


def _plain(value):
    """JSON-safe: numpy to Python, NaN/±inf to None (JSON has neither)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if pd.isna(value):  # pandas NA / NaT
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


__all__ = ["predict", "observe", "describe", "healthy"]
