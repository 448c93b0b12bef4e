"""Observations: labelled rows written to a deployment's table, then absorbed (issue #18, "Observe").

Velox (Crankshaw et al., CIDR 2015) pairs ``predict(x)`` with ``observe(x, y)``: an application reports
what actually happened, and the model it is served from is updated online. Here an observation is
simply a committed INSERT into the deployment's table — the rows the model is the exact model of —
so nothing about it is special: change capture keeps the stored statistics exact, the deployment's
trigger marks the write pending (docs/deployments.md), and a refresh re-solves the window over the
stored summaries. ``observe`` then runs that refresh itself (unless ``refresh=False`` leaves it to
``modelstore worker``), so that the caller's next prediction, from any session, uses the exact model of
the window that now holds the rows.

Everything is checked before the rows are final, and the insert is one transaction: a wrong number of
values, a non-numeric, NULL or non-finite value, a label count that does not match, a column the table
does not have, a row without an ordering value, or a row the deployment's filter (``where=``) would
never let into the model is refused with :class:`~modelstore.errors.ObservationError` (or
:class:`~modelstore.errors.NonFiniteValueError` / :class:`~modelstore.errors.UnknownColumnError`) and
nothing is written. Instances map to columns by name: a list of values is in the deployment's feature
order; a mapping (or a DataFrame's rows) names its columns and may also give other columns of the table,
such as the ordering column when it has no default.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from modelstore.deploy.refresh import Spec, load, refresh
from modelstore.errors import NonFiniteValueError, NotDeployedError, ObservationError, UnknownColumnError
from modelstore.families import family
from modelstore.request.descriptor import normalize_filter
from modelstore.request.source import Table, resolve_table

#: how long observe waits for another process's refresh to include its rows before leaving them to it
WAIT_SECONDS = 10.0
_INTEGRAL = ("smallint", "integer", "bigint")


@dataclass(frozen=True)
class Observed:
    """What one ``observe`` did: the rows written and the version serving afterwards."""

    name: str
    rows: int
    refreshed: bool                 # the model now includes the rows (by this call's refresh or another's)
    version: int | None = None      # the active version after the refresh
    seconds: float = 0.0
    detail: str = ""


def observe(store, name: str, X, y, *, groups=None, refresh_now: bool = True,
            wait_seconds: float = WAIT_SECONDS) -> Observed:
    """Write the rows ``X`` with labels ``y`` to deployment ``name``'s table; then (``refresh_now``) bring
    the deployment up to date so that the next prediction uses them. ``groups``: the group of each row,
    for a deployment with ``group_by`` (written to that column)."""
    started = time.perf_counter()
    conn = store.conn
    spec = load(conn, name=name)
    if spec is None:
        raise NotDeployedError(f"no deployment named {name!r} (store.deployments() lists them)")
    tbl = resolve_table(conn, spec.table_name)
    rows = _rows(spec, tbl, X, y, groups)
    if not rows:
        raise ObservationError(f"observe {name!r}: no rows given")
    columns = list(dict.fromkeys(c for row in rows for c in row))
    _check_ordering(conn, spec, tbl, columns)
    with conn.transaction():
        checks = _insert(conn, spec, tbl, columns, rows)
        for i, (passes, ordered) in enumerate(checks):
            if not ordered:
                raise ObservationError(f"observe {name!r}: row {i} has no value of the ordering column "
                                       f"{spec.order_by!r}, so it would be in no window; nothing was written")
            if not passes:
                raise ObservationError(f"observe {name!r}: row {i} is rejected by the deployment's filter "
                                       f"where {spec.filter!r}, so it would never reach the model; nothing was written")
        xid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
    if not refresh_now:
        return Observed(name, len(rows), False, spec.active_version, time.perf_counter() - started,
                        "left to the worker")
    return _absorb(store, spec, xid, len(rows), started, wait_seconds)


def _rows(spec: Spec, tbl: Table, X, y, groups) -> list[dict]:
    """The rows as {column: value}, checked: the features, the target, the group column."""
    features = list(spec.features)
    classifier = family(spec.kind).classifier
    group_column = getattr(spec, "group_by", None)  # per-group deployments (issue #18, group_by)
    if groups is not None and not group_column:
        raise ObservationError(f"observe {spec.name!r}: groups= needs a per-group deployment (group_by); "
                               f"{spec.name!r} has one model")
    instances = _instances(X)
    labels = _sequence(y, "y (the labels)")
    if len(labels) != len(instances):
        raise ObservationError(f"observe {spec.name!r}: {len(instances)} instance(s) but {len(labels)} label(s)")
    group_values = None
    if groups is not None:
        group_values = _sequence(groups, "groups")
        if len(group_values) != len(instances):
            raise ObservationError(f"observe {spec.name!r}: {len(instances)} instance(s) but "
                                   f"{len(group_values)} group(s)")
    out = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            row = dict(instance)
            missing = [f for f in features if f not in row]
            if missing:
                raise ObservationError(f"observe {spec.name!r}: row {i} lacks feature(s) {missing} "
                                       f"(the deployment's features are {features})")
            if spec.target in row:
                raise ObservationError(f"observe {spec.name!r}: row {i} gives the target {spec.target!r} among "
                                       f"its columns; give the labels as y")
            for column in row:
                if not isinstance(column, str) or column not in tbl.columns:
                    raise UnknownColumnError(f"observe {spec.name!r}: row {i} names column {column!r}, which "
                                             f"table {spec.table_name} does not have")
        else:
            values = _sequence(instance, f"row {i}")
            if len(values) != len(features):
                raise ObservationError(f"observe {spec.name!r}: row {i} has {len(values)} value(s), the deployment "
                                       f"has {len(features)} feature(s) {features}")
            row = dict(zip(features, values))
        for f in features:
            row[f] = _number(spec, tbl, i, f, row[f])
        label = labels[i]
        row[spec.target] = _label(spec, i, label) if classifier else _number(spec, tbl, i, spec.target, label)
        if group_values is not None:
            row[group_column] = group_values[i]
        out.append(row)
    return out


def _instances(X) -> list:
    if hasattr(X, "to_dict") and hasattr(X, "columns"):  # a DataFrame: its rows, mapped by column name
        return X.to_dict(orient="records")
    if isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise ObservationError(f"X must be 2-dimensional (one row per observation), got shape {X.shape}")
        return X.tolist()
    return _sequence(X, "X")


def _sequence(values, what: str) -> list:
    if isinstance(values, np.ndarray):
        return values.tolist()
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise ObservationError(f"{what} must be a list, got {type(values).__name__} instead")
    return list(values)


def _number(spec: Spec, tbl: Table, i: int, column: str, value):
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        raise ObservationError(f"observe {spec.name!r}: row {i} has no value (NULL) for {column!r}; a row with a "
                               f"NULL would be skipped by the model")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ObservationError(f"observe {spec.name!r}: row {i}'s {column!r} must be a number, got {value!r}")
    value = float(value) if not isinstance(value, int) else value
    if isinstance(value, float) and not math.isfinite(value):
        raise NonFiniteValueError(f"observe {spec.name!r}: row {i}'s {column!r} is {value}; no model can absorb "
                                  f"NaN or ±Infinity")
    col = tbl.columns.get(column)
    if col is not None and col.type_name in _INTEGRAL and value != int(value):
        raise ObservationError(f"observe {spec.name!r}: row {i}'s {column!r} is {value}, but the column is "
                               f"{col.type_name}: it would be stored rounded")
    return value


def _label(spec: Spec, i: int, value):
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise ObservationError(f"observe {spec.name!r}: row {i} has no class label ({value!r})")
    return value


def _check_ordering(conn, spec: Spec, tbl: Table, columns: list[str]) -> None:
    """A row needs an ordering value to be in any window: given, or the column's default / identity."""
    if spec.order_by in columns:
        return
    has_default = conn.execute(
        "SELECT a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = %s AND a.attname = %s", [tbl.oid, spec.order_by]).fetchone()
    if not (has_default and has_default[0]):
        raise ObservationError(f"observe {spec.name!r}: the ordering column {spec.order_by!r} has no default; "
                               f"give its value in each instance (as a mapping: {{{spec.order_by!r}: …, …}})")


def _insert(conn, spec: Spec, tbl: Table, columns: list[str], rows: list[dict]) -> list[tuple[bool, bool]]:
    """One INSERT of every row; RETURNING, per row, whether the deployment's filter keeps it and whether it
    has an ordering value (evaluated by PostgreSQL on the row as stored, defaults included)."""
    filter_sql = normalize_filter(spec.filter, set(tbl.columns)) if spec.filter else ""
    keeps = sql.SQL("coalesce(({}), false)").format(sql.SQL(filter_sql)) if filter_sql else sql.SQL("true")
    # a column one row gives and another does not: DEFAULT for the other, as a single-row INSERT would
    values = sql.SQL(", ").join(
        sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() if c in row else sql.DEFAULT for c in columns))
        for row in rows)
    statement = sql.SQL("INSERT INTO {} ({}) VALUES {} RETURNING {}, {} IS NOT NULL").format(
        tbl.identifier, sql.SQL(", ").join(sql.Identifier(c) for c in columns), values, keeps,
        sql.Identifier(spec.order_by))
    params = [row[c] for row in rows for c in columns if c in row]
    try:
        return conn.execute(statement, params).fetchall()
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        # a value the column cannot hold, a NOT NULL column without a default, a unique key taken
        raise ObservationError(f"observe {spec.name!r}: table {spec.table_name} refused the rows: "
                               f"{exc.diag.message_primary or exc}") from None


def _absorb(store, spec: Spec, xid: str, n: int, started: float, wait_seconds: float) -> Observed:
    """Refresh the deployment so that it includes transaction ``xid``; when another process holds the
    deployment (a worker refreshing it), wait until a refresh has read a snapshot that includes it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        outcome = refresh(store, spec.deployment_id)
        if outcome is not None:  # this refresh's snapshot was taken after the insert committed
            ok = outcome.refreshed or outcome.detail == "up to date"
            return Observed(spec.name, n, ok, outcome.active_version, time.perf_counter() - started, outcome.detail)
        row = store.conn.execute(
            "SELECT active_version, refreshed_snapshot IS NOT NULL AND pg_visible_in_snapshot(%s::xid8, "
            "refreshed_snapshot) FROM modelstore.deployments WHERE deployment_id = %s",
            [xid, spec.deployment_id]).fetchone()
        if row is None:
            return Observed(spec.name, n, False, None, time.perf_counter() - started, "undeployed meanwhile")
        if row[1]:
            return Observed(spec.name, n, True, row[0], time.perf_counter() - started, "refreshed by another process")
        if time.monotonic() > deadline:
            return Observed(spec.name, n, False, row[0], time.perf_counter() - started,
                            f"another process held the deployment for {wait_seconds:g} s; it will absorb the rows")
        time.sleep(0.02)


__all__ = ["Observed", "observe", "WAIT_SECONDS"]
