"""Refreshing a deployment: the exact model of its window now, in one transaction.

The continuous-deployment paper (Derakhshan et al. §3.1, "online statistics computation") keeps the
statistics a model needs up to date as data arrives so that retraining reads no raw data again; for
linear and Naive Bayes models those statistics *are* the model. Change capture keeps every stored
summary exact under INSERT, UPDATE and DELETE (docs/freshness.md), so a refresh is a request like any
other: the window's range is planned over the stored summaries, the statistics index and gap scans
(the planner's Dijkstra), typically "the previous window's summary + the rows appended − the rows
that slid out", then solved and stored — the cost of the rows that moved, not of the window.

One refresh, all in one transaction (a worker killed anywhere leaves the previous version serving):

1. claim the deployment row (``FOR NO KEY UPDATE SKIP LOCKED``: a second worker skips it; writers,
   whose trigger only takes ``FOR KEY SHARE`` through the pending table's foreign key, never wait);
2. read the snapshot, and the pending writes it does not already include (none, and the window does
   not move with the clock: nothing to do);
3. resolve the window to a range; score the rows appended since the last refresh with the serving
   version, and with the newest version when another serves (prequential, :mod:`.monitor`);
4. ``store.fit`` the range under the deployment's name (the fitted_models row modelstore.predict reads);
5. record a version if the model changed materially, pick the serving version (:mod:`.versions`),
   forget the previous window's summary, delete the pending writes the snapshot includes, log an event.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from modelstore.deploy import monitor, proactive, versions
from modelstore.deploy.windows import Window, resolve
from modelstore.errors import InputError, ModelstoreError, RangeError
from modelstore.families import family
from modelstore.request.descriptor import bound_text, parse_bound

log = logging.getLogger("modelstore.deploy")

_COLUMNS = ("deployment_id", "name", "model_id", "kind", "relid", "table_name", "order_by", "target", "features",
            "filter", "params", "window_kind", "window_rows", "window_interval", "window_anchor", "strategy",
            "pinned_version", "record_every", "record_tolerance", "gate", "gate_tolerance", "latest_version",
            "active_version", "window_stats_id", "window_stats_owned", "lo", "hi", "refreshed_snapshot",
            "refreshed_at", "refreshes", "drift_state")
SELECT_DEPLOYMENT = sql.SQL("SELECT {} FROM modelstore.deployments").format(
    sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) if c in ("window_interval", "refreshed_snapshot")
                       else sql.Identifier(c) for c in _COLUMNS))


@dataclass
class Spec:
    """One row of ``modelstore.deployments``."""

    deployment_id: int
    name: str
    model_id: int
    kind: str
    relid: int
    table_name: str
    order_by: str
    target: str
    features: list
    filter: str | None
    params: dict
    window_kind: str
    window_rows: int | None
    window_interval: str | None
    window_anchor: str
    strategy: str
    pinned_version: int | None
    record_every: dt.timedelta | None
    record_tolerance: float | None
    gate: bool
    gate_tolerance: float
    latest_version: int
    active_version: int | None
    window_stats_id: int | None
    window_stats_owned: bool
    lo: str | None
    hi: str | None
    refreshed_snapshot: str | None
    refreshed_at: dt.datetime | None
    refreshes: int
    drift_state: dict = field(default_factory=dict)

    @property
    def window(self) -> Window:
        return Window(self.window_kind, self.window_rows, self.window_interval, self.window_anchor)

    @property
    def table(self) -> sql.Composable:
        return sql.SQL(self.table_name)  # stored as quoted by the table's own display (checked at deploy)

    def fit_arguments(self, lo, hi) -> dict:
        return dict(table=self.table_name, target=self.target, features=list(self.features), order_by=self.order_by,
                    lo=lo, hi=hi, where=self.filter, **family(self.kind).fit_options(self.params))


def load(conn: psycopg.Connection, *, name: str | None = None, deployment_id: int | None = None,
         lock: bool = False) -> Spec | None:
    cond = sql.SQL("name = %s") if name is not None else sql.SQL("deployment_id = %s")
    query = sql.SQL("{} WHERE {}{}").format(SELECT_DEPLOYMENT, cond,
                                            sql.SQL(" FOR NO KEY UPDATE SKIP LOCKED") if lock else sql.SQL(""))
    row = conn.execute(query, [name if name is not None else deployment_id]).fetchone()
    return None if row is None else Spec(*row)


@dataclass(frozen=True)
class Outcome:
    """What one refresh did."""

    name: str
    refreshed: bool
    version: int | None = None          # the version recorded, if any
    active_version: int | None = None
    rows: int | None = None
    seconds: float = 0.0
    detail: str = ""
    rows_scanned: int | None = None     # table rows the refresh's plan read (prequential scoring aside)


def refresh(store, deployment_id: int, *, force: bool = False) -> Outcome | None:
    """Bring one deployment up to date; None when another process holds it (it is refreshing it)."""
    conn = store.conn
    started = time.perf_counter()
    with conn.transaction():
        spec = load(conn, deployment_id=deployment_id, lock=True)
        if spec is None:
            return None
        snapshot, now = conn.execute("SELECT pg_current_snapshot()::text, now()").fetchone()
        pending = conn.execute(
            "SELECT count(*) FROM modelstore.deployment_pending WHERE deployment_id = %s "
            "AND (%s::pg_snapshot IS NULL OR NOT pg_visible_in_snapshot(xid, %s::pg_snapshot))",
            [deployment_id, spec.refreshed_snapshot, spec.refreshed_snapshot]).fetchone()[0]
        if not (force or pending or spec.window.moves_with_time):
            _forget_pending(conn, deployment_id, snapshot)
            return Outcome(spec.name, False, active_version=spec.active_version, detail="up to date")
        try:
            with conn.transaction():  # a savepoint: an empty window or a failed fit leaves the rest intact
                outcome = _refresh(store, spec, snapshot, now, pending)
        except (InputError, ModelstoreError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            _event(conn, deployment_id, "error", spec.active_version, {"error": detail, "pending": pending})
            _forget_pending(conn, deployment_id, snapshot)
            conn.execute("UPDATE modelstore.deployments SET refreshed_snapshot = %s::pg_snapshot WHERE deployment_id = %s",
                         [snapshot, deployment_id])
            return Outcome(spec.name, False, active_version=spec.active_version, detail=detail,
                           seconds=time.perf_counter() - started)
    return Outcome(outcome.name, outcome.refreshed, outcome.version, outcome.active_version, outcome.rows,
                   time.perf_counter() - started, outcome.detail, outcome.rows_scanned)


def _refresh(store, spec: Spec, snapshot: str, now: dt.datetime, pending: int) -> Outcome:
    conn = store.conn
    t0 = time.perf_counter()
    started_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    info = conn.execute("SELECT order_kind FROM modelstore.sources s JOIN modelstore.fitted_models m USING (source_id) "
                        "WHERE m.model_id = %s", [spec.model_id]).fetchone()
    order_kind = info[0]
    lo, hi = resolve(conn, spec.table, spec.order_by, order_kind, spec.window, _previous(conn, spec, order_kind))
    served = store.model(spec.name)

    # prequential: the rows appended since the last refresh, scored before the model absorbs them
    scores = {}
    scoring_started = time.perf_counter()
    if spec.hi is not None:
        prev_hi = parse_bound(spec.hi, order_kind)
        if hi > prev_hi:
            batch_lo = max(prev_hi, lo) if spec.window.kind != "all" else prev_hi
            scored = [(spec.active_version, served, True)]
            if spec.latest_version and spec.latest_version != spec.active_version:
                scored.append((spec.latest_version, _version_model(conn, spec, spec.latest_version, served), False))
            for version, model, active in scored:
                if version is None:
                    continue
                score = monitor.score_batch(conn, spec.table, spec.order_by, served.descriptor.filter_sql, model,
                                            batch_lo, hi)
                if score.rows:
                    scores[version] = score
                    conn.execute(
                        "INSERT INTO modelstore.deployment_metrics (deployment_id, version, active, batch_lo, batch_hi, "
                        "rows, loss_sum, abs_sum) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        [spec.deployment_id, version, active, bound_text(batch_lo), bound_text(hi), score.rows,
                         score.loss_sum, score.abs_sum])

    scoring_seconds = time.perf_counter() - scoring_started
    proactive_info = None
    if spec.params.get("proactive"):
        # proactive training (docs/continuous.md): a sample of stored chunks and the new rows, one SGD step
        train_started = time.perf_counter()
        model, executed, proactive_info = proactive.train(store, spec, served, lo, hi, order_kind)
        scored = scores.get(spec.active_version)
        proactive_info["next_run_s"] = proactive.schedule_next(
            conn, spec, time.perf_counter() - train_started, scored.rows if scored else 0, scoring_seconds)
    else:
        # an SGD family continues from the serving model (its weights, statistics, optimizer state): warm start
        warm = {"warm_start": spec.name} if family(spec.kind).iterative else {}
        model = store.fit(spec.kind, **spec.fit_arguments(lo, hi), name=spec.name, replace=True, **warm)
        executed = model.plan
    one_read = len(executed.plan.steps) == 1 and executed.plan.steps[0].op == "stored"
    stats_id = executed.stored_stats_id

    # a version when the model changed materially
    last = conn.execute("SELECT state, rows_used, created_at FROM modelstore.deployment_versions "
                        "WHERE deployment_id = %s AND version = %s",
                        [spec.deployment_id, spec.latest_version]).fetchone() if spec.latest_version else None
    last_model = family(spec.kind).from_state(last[0]) if last else None
    reason = versions.material(model, last_model, versions.rows_of(model),
                               last[1] if last else None, last_at=last[2] if last else None, now=now,
                               record_every=spec.record_every, record_tolerance=spec.record_tolerance)
    latest = spec.latest_version
    recorded = None
    if reason is not None:
        latest = recorded = spec.latest_version + 1
        versions.record(conn, spec.deployment_id, recorded, model, params=spec.params, stats_id=stats_id,
                        plan=executed.to_json(), lo=bound_text(lo), hi=bound_text(hi), reason=reason,
                        metrics={"pending_writes": pending})
        _event(conn, spec.deployment_id, "version", recorded, {"reason": reason})

    active = _choose_active(conn, spec, latest, recorded, scores)
    follows = spec.pinned_version is None and spec.strategy == "most_recent" and not spec.gate
    if not follows or active != latest:
        versions.serve(conn, spec.deployment_id, spec.model_id, active)  # the fit wrote the newest exact model

    # drift on the serving version's prequential loss
    drift_state = spec.drift_state
    if spec.active_version in scores:
        drift_state, drift = monitor.page_hinkley(drift_state, scores[spec.active_version].mean_loss)
        if drift:
            _event(conn, spec.deployment_id, "drift", spec.active_version,
                   {"mean_loss": scores[spec.active_version].mean_loss})
            log.warning("deployment %s: drift detected (Page-Hinkley) on version %s", spec.name, spec.active_version)

    conn.execute(
        """
        UPDATE modelstore.deployments
           SET latest_version = %s, active_version = %s, lo = %s, hi = %s, window_stats_id = %s,
               window_stats_owned = %s, refreshed_snapshot = %s::pg_snapshot, refreshed_at = clock_timestamp(),
               refreshes = refreshes + 1, drift_state = %s
         WHERE deployment_id = %s
        """,
        [latest, active, bound_text(lo), bound_text(hi), stats_id, stats_id is not None and not one_read, snapshot,
         Jsonb(drift_state), spec.deployment_id])
    if spec.window_stats_owned and spec.window_stats_id is not None and spec.window_stats_id != stats_id:
        # the previous window's summary, stored by the previous refresh: nobody else asked for that range
        conn.execute("DELETE FROM modelstore.statistics WHERE stats_id = %s AND NOT EXISTS "
                     "(SELECT 1 FROM modelstore.fitted_models WHERE stats_id = %s)",
                     [spec.window_stats_id, spec.window_stats_id])
    _forget_pending(conn, spec.deployment_id, snapshot)
    seconds = time.perf_counter() - t0
    _event(conn, spec.deployment_id, "refresh", active, {
        "lo": bound_text(lo), "hi": bound_text(hi), "rows": versions.rows_of(model), "strategy": executed.plan.strategy,
        "rows_scanned": executed.rows_scanned, "ms": round(seconds * 1000, 3), "pending": pending,
        "recorded": recorded, "scored_rows": {str(v): s.rows for v, s in scores.items()},
        **({"proactive": proactive_info} if proactive_info else {})}, started_at)
    return Outcome(spec.name, True, recorded, active, versions.rows_of(model), seconds,
                   f"{executed.plan.strategy}, {executed.rows_scanned} rows scanned", executed.rows_scanned)


def _previous(conn, spec: Spec, order_kind: str) -> tuple | None:
    """(lo, hi, rows) of the previous window from its stored summary, when it is exact for the window:
    unfiltered (n + null_rows counts every row of the range) and still stored (a TRUNCATE forgets it)."""
    if spec.window_kind != "rows" or spec.filter or spec.window_stats_id is None or spec.lo is None:
        return None
    row = conn.execute("SELECT n + null_rows FROM modelstore.statistics WHERE stats_id = %s AND lo = %s AND hi = %s "
                       "AND filter_sql = ''", [spec.window_stats_id, spec.lo, spec.hi]).fetchone()
    if row is None:
        return None
    return parse_bound(spec.lo, order_kind), parse_bound(spec.hi, order_kind), int(row[0])


def _choose_active(conn, spec: Spec, latest: int, recorded: int | None, scores: dict) -> int:
    """The version to serve after this refresh (docs/deployments.md, "Strategies")."""
    if spec.pinned_version is not None:
        return spec.pinned_version
    if spec.strategy == "best_score":
        best = versions.best_scored(conn, spec.deployment_id)  # the newest version is scored from the next batch
        return latest if best is None else best[0]
    if spec.gate and spec.active_version is not None and latest != spec.active_version:
        candidate = versions.mean_loss(conn, spec.deployment_id, latest)
        current = versions.mean_loss(conn, spec.deployment_id, spec.active_version)
        if candidate is None or current is None or candidate > current * (1.0 + spec.gate_tolerance):
            return spec.active_version
    return latest


def _version_model(conn, spec: Spec, version: int, like):
    state = conn.execute("SELECT state FROM modelstore.deployment_versions WHERE deployment_id = %s AND version = %s",
                         [spec.deployment_id, version]).fetchone()[0]
    model = family(spec.kind).from_state(state)
    model.descriptor = like.descriptor
    model.name = spec.name
    return model


def _forget_pending(conn, deployment_id: int, snapshot: str) -> None:
    conn.execute("DELETE FROM modelstore.deployment_pending WHERE deployment_id = %s "
                 "AND pg_visible_in_snapshot(xid, %s::pg_snapshot)", [deployment_id, snapshot])


def _event(conn, deployment_id: int, kind: str, version, detail: dict, started_at=None) -> None:
    conn.execute("INSERT INTO modelstore.deployment_events (deployment_id, kind, version, detail, started_at) "
                 "VALUES (%s, %s, %s, %s, coalesce(%s, clock_timestamp()))",
                 [deployment_id, kind, version, Jsonb(detail), started_at])


__all__ = ["Spec", "Outcome", "load", "refresh", "RangeError"]
