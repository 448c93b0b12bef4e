"""Refreshing a deployment: the exact model of its window now, in one transaction.

The continuous-deployment paper (Derakhshan et al. §3.1, "online statistics computation") keeps the
statistics a model needs up to date as data arrives so that retraining reads no raw data again; for
linear and Naive Bayes models those statistics *are* the model. Change capture keeps every stored
summary exact under INSERT, UPDATE and DELETE (docs/freshness.md), so the new window's statistics are
"the previous window's summary + the rows appended − the rows that slid out" (DESIGN §3: statistics add
and subtract) — the plan the planner would choose, written down without planning — then solved and
stored: the cost of the rows that moved, not of the window. What that does not cover is a request like
any other (the planner over stored summaries, the statistics index and gap scans).

One refresh, all in one transaction (a worker killed anywhere leaves the previous version serving),
in five statements when window arithmetic applies (plus BEGIN and COMMIT; docs/deployments.md, "What a
refresh costs"):

1. claim the deployment row (``FOR NO KEY UPDATE SKIP LOCKED``: a second worker skips it; writers,
   whose trigger only takes ``FOR KEY SHARE`` through the pending table's foreign key, never wait) and,
   in the same statement, take the source lock (:mod:`modelstore.catalog.freshness`): writers in flight
   finish first, later ones wait at their capture trigger until this refresh commits. From here on the
   table and its stored summaries do not change under the refresh, so every statement it runs reads
   one state of them — the snapshot it records (a refresh never mixes two snapshots);
2. one statement reads that snapshot, the pending writes it does not already include (none, and the
   window does not move with the clock: nothing to do), the window's ends (:func:`.windows.window_query`),
   the previous window's stored summary, the served model, the last version and the table's columns;
3. the window's statistics by window arithmetic: the previous window's summary (kept exact by change
   capture) ± the rows that entered or left it, whose rows are fetched in one statement — summarised in
   numpy and, for the appended ones, scored by the serving version before they are absorbed
   (prequential, :mod:`.monitor`) — or, when they are many or the C engine computes the statistics,
   aggregated in one statement and the batch scored by another; solved in numpy. When window arithmetic
   does not apply (a filtered deployment, no previous summary, capture off, a window that jumped past
   the previous one, too many digits cancelled), ``store.fit`` plans the range like any request;
4. one statement writes everything (data-modifying WITH queries): the new window's summary, the model
   row modelstore.predict reads, a version if the model changed materially (:mod:`.versions`), the
   prequential figures, the deployment's row, the previous window's summary forgotten, the pending
   writes the snapshot includes deleted, the events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from modelstore.catalog import freshness, records
from modelstore.catalog.records import _jsonable  # the catalog's JSON conversion (NaN → null)
from modelstore.deploy import monitor, proactive, versions
from modelstore.deploy.windows import Window, check_bounds, resolve, window_query
from modelstore.errors import InputError, ModelstoreError, RangeError
from modelstore.execution.executor import MAX_FETCHED_ROWS, execute, fetch_rows
from modelstore.families import FAMILIES, family
from modelstore.planner.plan import ExecutedPlan, Plan, Step
from modelstore.request.descriptor import Descriptor, Range, Source, bound_text, parse_bound
from modelstore.request.source import Column, Table, resolve_table
from modelstore.stats import engine as stats_engine

log = logging.getLogger("modelstore.deploy")

_COLUMNS = ("deployment_id", "name", "model_id", "kind", "relid", "table_name", "order_by", "target", "features",
            "filter", "params", "window_kind", "window_rows", "window_interval", "window_anchor", "strategy",
            "pinned_version", "record_every", "record_tolerance", "gate", "gate_tolerance", "latest_version",
            "active_version", "window_stats_id", "window_stats_owned", "lo", "hi", "refreshed_snapshot",
            "refreshed_at", "refreshes", "drift_state", "group_by")
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
    group_by: str | None = None  # a grouped deployment's group column (docs/serving.md)

    @property
    def window(self) -> Window:
        return Window(self.window_kind, self.window_rows, self.window_interval, self.window_anchor)

    @property
    def table(self) -> sql.Composable:
        return sql.SQL(self.table_name)  # stored as quoted by the table's own display (checked at deploy)

    def fit_arguments(self, lo, hi) -> dict:
        # the groups' own statistics are not stored: a window's range moves at every refresh (docs/serving.md)
        grouped = {} if self.group_by is None else {"group_by": self.group_by, "group_statistics": False}
        return dict(table=self.table_name, target=self.target, features=list(self.features), order_by=self.order_by,
                    lo=lo, hi=hi, where=self.filter, **family(self.kind).fit_options(self.params), **grouped)


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


#: step 1: claim the deployment, then take its source's lock (writers wait at their capture trigger)
_CLAIM = """
WITH d AS (SELECT {columns}, m.source_id FROM modelstore.deployments AS d
           JOIN modelstore.fitted_models AS m ON m.model_id = d.model_id
           WHERE {where} FOR NO KEY UPDATE OF d SKIP LOCKED),
     locked AS (UPDATE modelstore.sources AS s SET stats_version = s.stats_version + 1 FROM d
                WHERE s.source_id = d.source_id
                RETURNING s.source_id, s.schema_name, s.table_name, s.order_kind, s.column_types)
SELECT d.*, locked.schema_name, locked.table_name, locked.order_kind, locked.column_types
FROM d LEFT JOIN locked ON locked.source_id = d.source_id
"""
_CLAIM_COLUMNS = sql.SQL(", ").join(
    sql.SQL("d.{}::text").format(sql.Identifier(c)) if c in ("window_interval", "refreshed_snapshot")
    else sql.SQL("d.{}").format(sql.Identifier(c)) for c in _COLUMNS)

#: step 2: everything else a refresh reads, in the one state the source lock holds still — the window's
#: ends (:func:`.windows.window_query`) and the previous window's summary (binary) included
_STATE = """
SELECT pg_current_snapshot()::text, now(), clock_timestamp(),
       (SELECT count(*) FROM modelstore.deployment_pending
         WHERE deployment_id = %(d)s
           AND (%(snap)s::pg_snapshot IS NULL OR NOT pg_visible_in_snapshot(xid, %(snap)s::pg_snapshot))),
       (SELECT state FROM modelstore.fitted_models WHERE model_id = %(m)s),
       v.state, v.rows_used, v.created_at,
       -- what decides whether stored statistics may be used (modelstore.catalog.freshness.check_access)
       (SELECT count(*) FROM pg_catalog.pg_trigger
         WHERE tgrelid = %(rel)s::oid AND tgname = ANY (%(triggers)s) AND tgenabled IN ('O', 'A')),
       pg_catalog.row_security_active(%(rel)s::oid),
       (SELECT relhassubclass FROM pg_catalog.pg_class WHERE oid = %(rel)s::oid),
       pg_catalog.current_setting('transaction_isolation'),
       ARRAY(SELECT ARRAY[a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory::text,
                          a.attnum || ':' || a.atttypid || ':' || a.atttypmod]
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = %(rel)s::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       w.lo, w.hi,
       -- the previous window's summary, kept exact by change capture, when it still describes the window
       st.family, st.columns, st.n, st.null_rows, st.classes, st.counts, st.mean, st.moments, st.mean_lo,
       st.moments_lo
FROM (SELECT 1) AS one
LEFT JOIN modelstore.deployment_versions AS v ON v.deployment_id = %(d)s AND v.version = %(latest)s
LEFT JOIN modelstore.statistics AS st
       ON st.stats_id = %(sid)s AND st.lo = %(lo)s AND st.hi = %(hi)s AND st.filter_sql = ''
LEFT JOIN LATERAL ({window}) AS w ON true
"""
#: the previous window's row count, for a row window's incremental ends
_PREVIOUS_ROWS = sql.SQL("(SELECT n + null_rows FROM modelstore.statistics WHERE stats_id = %(sid)s AND lo = %(lo)s "
                         "AND hi = %(hi)s AND filter_sql = '')")


@dataclass
class _Read:
    """What step 2 read (one statement, one state of the table and the catalog)."""

    snapshot: str
    now: dt.datetime
    started_at: dt.datetime
    pending: int
    previous: object | None           # the previous window's stored summary (None: not stored any more)
    lo: object                        # the window's ends now (None: resolve them again)
    hi: object
    served_state: dict | None
    last_state: dict | None           # the latest version's state, rows and time
    last_rows: int | None
    last_at: dt.datetime | None
    reusable: bool                    # captured, no row-level security, no children, READ COMMITTED
    columns: dict                     # the table's columns now


def refresh(store, deployment_id: int | None = None, *, name: str | None = None, force: bool = False
            ) -> Outcome | None:
    """Bring one deployment (by id or ``name``) up to date; None when another process holds it (it is
    refreshing it) or it does not exist."""
    conn = store.conn
    started = time.perf_counter()
    with conn.transaction():
        claimed = conn.execute(_claim_query(name is not None), [name if name is not None else deployment_id]).fetchone()
        if claimed is None:
            return None
        work = _claimed(claimed)
        (read,) = _read_all(conn, [work])
        return _refresh_claimed(store, work, read, force, started, None)


def refresh_together(store, deployment_ids: list[int], *, force: bool = False) -> list[Outcome]:
    """Refresh several deployments (a table's, as the worker does when a change wakes it) in one
    transaction: one claim for all of them (the source lock taken once), their state read in one round
    trip (pipelined), each refreshed by window arithmetic, then one COMMIT — so the second no longer waits
    for the first's BEGIN, claim, read and COMMIT, and both models change at the same commit. The ones
    another worker holds are skipped (``SKIP LOCKED``: no double refresh). Every deployment stays exact
    on its own window. An unexpected error rolls the whole transaction back (the caller then refreshes
    them one by one); a named error (an empty window, …) is recorded for its deployment as in
    :func:`refresh` and the others go on."""
    if not deployment_ids:
        return []
    conn = store.conn
    started = time.perf_counter()
    outcomes = []
    with conn.transaction(), contextlib.ExitStack() as pipeline:
        claimed = conn.execute(_claim_many_query(), [list(deployment_ids)]).fetchall()
        works = [_claimed(row) for row in claimed]
        for work, read in zip(works, _read_all(conn, works)):
            outcomes.append(_refresh_claimed(store, work, read, force, started, pipeline))
        # leaving pipeline mode waits for the last write before the COMMIT is sent: a worker killed while a
        # write waits (a lock) has sent no COMMIT, and PostgreSQL rolls everything back
    return outcomes


@dataclass
class _Claimed:
    """A claimed deployment, its source (None: not a captured source) and what the claim returned."""

    spec: Spec
    source_id: int | None
    schema: str | None
    table_name: str | None
    order_kind: str | None
    recorded_types: dict | None

    @property
    def table(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.table_name) if self.schema is not None else self.spec.table


def _claimed(row) -> _Claimed:
    source_id, schema, table_name, order_kind, recorded_types = row[len(_COLUMNS):]
    return _Claimed(Spec(*row[:len(_COLUMNS)]), source_id, schema, table_name, order_kind, recorded_types)


def _refresh_claimed(store, work: _Claimed, read: _Read, force: bool, started: float,
                     pipeline: contextlib.ExitStack | None) -> Outcome:
    """Steps 3 and 4 for one claimed deployment, inside the caller's transaction. ``pipeline`` (several
    deployments refreshed together): it holds the connection's pipeline mode once a refresh by window
    arithmetic sent its write, so that write is not waited for on its own: it travels with the next
    deployment's first statement, and the caller leaves pipeline mode (waiting for the last write)
    before its COMMIT."""
    conn = store.conn
    spec, schema, source_id, order_kind = work.spec, work.schema, work.source_id, work.order_kind
    if not (force or read.pending or spec.window.moves_with_time):
        _forget_pending(conn, spec.deployment_id, read.snapshot)
        return Outcome(spec.name, False, active_version=spec.active_version, detail="up to date")
    try:
        outcome = None
        # a grouped deployment re-aggregates its touched groups through store.fit (docs/serving.md)
        if (read.reusable and spec.filter is None and spec.group_by is None and read.previous is not None
                and not family(spec.kind).iterative):
            # nothing is written before its last statement: no savepoint needed
            outcome = _refresh_by_window_arithmetic(store, spec, read, source_id,
                                                    Table(schema, work.table_name, spec.relid, read.columns),
                                                    order_kind, work.recorded_types or {}, pipeline)
        if outcome is None:
            if pipeline is not None:
                pipeline.close()  # store.fit runs outside pipeline mode (it may COPY); the writes sent wait here
            with conn.transaction():  # a savepoint: an empty window or a failed fit leaves the rest intact
                outcome = _refresh_by_fit(store, spec, read, order_kind or _order_kind(conn, spec))
    except (InputError, ModelstoreError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        _event(conn, spec.deployment_id, "error", spec.active_version, {"error": detail, "pending": read.pending})
        _forget_pending(conn, spec.deployment_id, read.snapshot)
        conn.execute("UPDATE modelstore.deployments SET refreshed_snapshot = %s::pg_snapshot WHERE deployment_id = %s",
                     [read.snapshot, spec.deployment_id])
        return Outcome(spec.name, False, active_version=spec.active_version, detail=detail,
                       seconds=time.perf_counter() - started)
    return Outcome(outcome.name, outcome.refreshed, outcome.version, outcome.active_version, outcome.rows,
                   time.perf_counter() - started, outcome.detail, outcome.rows_scanned)


@functools.lru_cache(maxsize=1)
def _claim_many_query() -> str:
    """The claim of several deployments at once (``= ANY``), in a fixed order (two workers claiming
    overlapping sets take the rows in one order), composed once."""
    return sql.SQL(_CLAIM + "ORDER BY d.deployment_id").format(
        columns=_CLAIM_COLUMNS, where=sql.SQL("d.deployment_id = ANY (%s)")).as_string(None)


@functools.lru_cache(maxsize=8)
def _claim_query(by_name: bool) -> str:
    """The claim, composed once (its 31 columns cost more to compose than to run)."""
    where = sql.SQL("d.name = %s") if by_name else sql.SQL("d.deployment_id = %s")
    return sql.SQL(_CLAIM).format(columns=_CLAIM_COLUMNS, where=where).as_string(None)


@functools.lru_cache(maxsize=256)
def _state_query(table: str, order_by: str, order_kind: str | None, window: Window, incremental: bool) -> str:
    """Step 2's statement for one deployment's shape, composed once; the window's values are parameters.
    ``table``: the table's name as composed SQL text (quoted identifiers)."""
    query = sql.SQL("SELECT NULL AS lo, NULL AS hi")
    if order_kind is not None:
        placeholder = (None, None) if incremental else None  # window_query only needs to know there is one
        query, _ = window_query(sql.SQL(table), order_by, order_kind, window, placeholder,
                                _PREVIOUS_ROWS if incremental else None)
    return sql.SQL(_STATE).format(window=query).as_string(None)


def _read_statement(work: _Claimed) -> tuple[str, dict]:
    spec, order_kind, table = work.spec, work.order_kind, work.table
    params = {"d": spec.deployment_id, "snap": spec.refreshed_snapshot, "sid": spec.window_stats_id, "lo": spec.lo,
              "hi": spec.hi, "m": spec.model_id, "latest": spec.latest_version, "rel": spec.relid,
              "triggers": list(freshness.TRIGGERS)}
    incremental = (order_kind is not None and spec.window_kind == "rows" and not spec.filter
                   and spec.window_stats_id is not None and spec.lo is not None)
    if order_kind is not None:
        previous = (parse_bound(spec.lo, order_kind), parse_bound(spec.hi, order_kind)) if incremental else None
        params.update(window_query(table, spec.order_by, order_kind, spec.window, previous,
                                   _PREVIOUS_ROWS if incremental else None)[1])
    return _state_query(table.as_string(None), spec.order_by, order_kind, spec.window, incremental), params


def _read_all(conn, works: list[_Claimed]) -> list[_Read]:
    """Step 2 for each claimed deployment; several are sent together (pipeline mode: one round trip)."""
    statements = [_read_statement(work) for work in works]
    if len(statements) == 1:
        rows = [conn.execute(*statements[0], binary=True).fetchone()]
    else:
        with conn.pipeline():
            cursors = [conn.execute(query, params, binary=True) for query, params in statements]
            rows = [cursor.fetchone() for cursor in cursors]
    return [_parse_read(work, row) for work, row in zip(works, rows)]


def _parse_read(work: _Claimed, row) -> _Read:
    (snapshot, now, started_at, pending, served_state, last_state, last_rows, last_at, captured, rls, inherited,
     isolation, columns, lo, hi, stats_family, *arrays) = row
    reusable = (work.schema is not None and captured == len(freshness.TRIGGERS) and not rls and not inherited
                and isolation == "read committed")
    previous = None if stats_family is None else FAMILIES[stats_family].unpack(*arrays)
    return _Read(snapshot, now, started_at, pending, previous, lo, hi, served_state, last_state,
                 last_rows, last_at, reusable, {n: Column(n, t, c, sig) for n, t, c, sig in columns})


def _order_kind(conn, spec: Spec) -> str:
    return conn.execute("SELECT order_kind FROM modelstore.sources s JOIN modelstore.fitted_models m USING (source_id) "
                        "WHERE m.model_id = %s", [spec.model_id]).fetchone()[0]


def _bounds(conn, spec: Spec, read: _Read, table: sql.Composable, order_kind: str) -> tuple:
    """The window's ends, as step 2 read them (or, when the incremental walk found nothing, from scratch)."""
    if read.lo is not None:
        return check_bounds(spec.window, spec.order_by, read.lo, read.hi)
    return resolve(conn, table, spec.order_by, order_kind, spec.window)


def _refresh_by_window_arithmetic(store, spec: Spec, read: _Read, source_id: int, tbl: Table, order_kind: str,
                                  recorded_types: dict, pipeline: contextlib.ExitStack | None = None
                                  ) -> Outcome | None:
    """The new window's statistics = the previous window's stored summary ± the rows that entered or
    left it (DESIGN §3: statistics add and subtract), with no planning; None when that does not apply
    here (the caller then fits the range through the planner). Nothing is written before the last step."""
    conn = store.conn
    t0 = time.perf_counter()
    read_columns = (*spec.features, spec.target, spec.order_by)
    if any(c not in tbl.columns or recorded_types.get(c, tbl.columns[c].signature) != tbl.columns[c].signature
           for c in read_columns):
        return None  # a column changed type or went: store.fit drops what it invalidated
    lo, hi = _bounds(conn, spec, read, tbl.identifier, order_kind)
    lo0, hi0 = parse_bound(spec.lo, order_kind), parse_bound(spec.hi, order_kind)
    if lo > hi0 or hi < lo0:
        return None  # the window jumped past the previous one: nothing to reuse
    source = Source(tbl.schema, tbl.name, spec.order_by, order_kind)
    descriptor = Descriptor(source, Range(lo, hi), "", spec.kind, spec.target, tuple(spec.features), spec.params)
    estimator = store._estimator(source)
    edges = []
    if hi > hi0:  # rows appended past the previous end (hi is the newest row: nothing lies above it)
        edges.append((1, Range(hi0, hi, lo_closed=False)))
    if lo > lo0:  # rows that slid out
        edges.append((-1, Range(lo0, lo, hi_closed=False)))
    elif lo < lo0:  # the window grew downwards (rows deleted at its top end, a row window refilled)
        edges.append((1, Range(lo, lo0, hi_closed=False)))
    edge_rows = [max(0, round(estimator.rows(r))) for _, r in edges]
    if sum(edge_rows) > estimator.rows(descriptor.range):
        return None  # the edges outweigh the window: a plain scan (the planner's choice) is cheaper
    previous = read.previous
    steps = [Step(1, "stored", Range(lo0, hi0), spec.window_stats_id, tuple(previous.columns),
                  int(previous.n + previous.null_rows))]
    steps += [Step(sign, "scan", r, None, (), n) for (sign, r), n in zip(edges, edge_rows)]
    engine = stats_engine.engine(conn)[0]
    plan = Plan(descriptor, tuple(steps), "previous window ± its edges" if edges else "previous window (capture kept it)",
                time.perf_counter() - t0, engine=engine)
    served = _model(spec, read.served_state, descriptor)
    known = {0: previous}
    # the edges' rows in one statement, summarised in numpy, and the appended ones scored before they are
    # absorbed (prequential) — unless they are many, or the C engine's double-double statistics are in
    # use (one plan does not mix precisions): then one aggregate statement, and the batch scored apart
    fetched = engine == "sql" and sum(edge_rows) <= MAX_FETCHED_ROWS
    scores = {}
    if fetched and edges:
        for i, ((sign, r), (X, labels, null_rows)) in enumerate(zip(edges, fetch_rows(conn, tbl, descriptor,
                                                                                       [r for _, r in edges]))):
            known[i + 1] = descriptor.family.from_values(descriptor.stats_columns, X, labels, null_rows=null_rows,
                                                         target=descriptor.target, where=str(r), max_classes=1000)
            if sign > 0 and r.lo == hi0 and not r.lo_closed:  # the batch: appended past the previous window
                scores = _prequential(conn, spec, read, tbl, order_kind, lo, hi, served, descriptor, estimator,
                                      rows=(X, labels))
    elif edges:
        scores = _prequential(conn, spec, read, tbl, order_kind, lo, hi, served, descriptor, estimator)

    stats, executed = execute(conn, plan, tbl, cost_model=store.cost_model, known=known)
    if executed.digits_lost > store.max_digits_lost or stats.n == 0 or stats.non_finite_columns():
        return None  # the numerical guard, or an error store.fit reports by name
    model = descriptor.family.solve(stats, descriptor.params)
    one_read = not edges
    stored = None if one_read else records.stats_insert(source_id, descriptor, stats)
    executed = ExecutedPlan(plan, executed.results, time.perf_counter() - t0,
                            spec.window_stats_id if one_read else None, executed.digits_lost, (), executed.extra)
    model = model.materialized(name=spec.name, descriptor=descriptor, plan=executed)
    return _finish(store, spec, read, lo, hi, model, executed, one_read, scores, t0, stored=stored,
                   rows=(stats.n, stats.null_rows), pipeline=pipeline)


def _refresh_by_fit(store, spec: Spec, read: _Read, order_kind: str) -> Outcome:
    """The general refresh: the window's range fitted by ``store.fit`` (planned over every stored summary,
    the statistics index and scans), for what window arithmetic does not cover."""
    conn = store.conn
    t0 = time.perf_counter()
    lo, hi = _bounds(conn, spec, read, spec.table, order_kind)
    served = store.model(spec.name)
    scores = _prequential(conn, spec, read, resolve_table(conn, spec.table_name), order_kind, lo, hi, served,
                          served.descriptor, None)
    proactive_info = None
    if spec.params.get("proactive"):
        # proactive training (docs/continuous.md): a sample of stored chunks and the new rows, one SGD step
        train_started = time.perf_counter()
        model, executed, proactive_info = proactive.train(store, spec, served, lo, hi, order_kind)
        proactive_info["next_run_s"] = proactive.schedule_next(conn, spec, time.perf_counter() - train_started,
                                                               proactive_info)
    else:
        # an SGD family continues from the serving model (its weights, statistics, optimizer state): warm start
        warm = {"warm_start": spec.name} if family(spec.kind).iterative else {}
        model = store.fit(spec.kind, **spec.fit_arguments(lo, hi), **_touched(conn, spec, read.snapshot),
                          name=spec.name, replace=True, **warm)
        executed = model.plan
    one_read = len(executed.plan.steps) == 1 and executed.plan.steps[0].op == "stored"
    return _finish(store, spec, read, lo, hi, model, executed, one_read, scores, t0, proactive_info=proactive_info)


def _model(spec: Spec, state: dict, descriptor: Descriptor):
    model = family(spec.kind).from_state(state)
    model.descriptor = descriptor
    model.name = spec.name
    return model


def _prequential(conn, spec: Spec, read: _Read, tbl: Table, order_kind: str, lo, hi, served, descriptor,
                 estimator, rows: tuple | None = None) -> dict:
    """The rows appended since the last refresh, scored before the model absorbs them, by the serving
    version (and the newest one when another serves); their figures are written with the refresh."""
    scores = {}
    if spec.hi is None:
        return scores
    prev_hi = parse_bound(spec.hi, order_kind)
    if not hi > prev_hi:
        return scores
    batch_lo = max(prev_hi, lo) if spec.window.kind != "all" else prev_hi
    scored = [(spec.active_version, served, True)]
    if spec.latest_version and spec.latest_version != spec.active_version:
        latest = (_model(spec, read.last_state, descriptor) if read.last_state is not None
                  else _version_model(conn, spec, spec.latest_version, served))
        scored.append((spec.latest_version, latest, False))
    batch = Range(batch_lo, hi, lo_closed=False)
    fetch = (not family(spec.kind).takes_text  # an SGD pipeline reads the columns as they are (score_batch)
             and (estimator is None or estimator.rows(batch) <= monitor.MAX_FETCHED_BATCH))
    for version, model, active in scored:
        if version is None:
            continue
        if rows is not None:  # the batch's rows in hand: its statistics columns (X) and class labels
            X, labels = rows
            columns = list(descriptor.stats_columns)
            y = labels if descriptor.class_column else X[:, columns.index(descriptor.target)]
            score = monitor.score_values(model, X[:, [columns.index(f) for f in descriptor.features]], y)
        elif fetch:
            score = monitor.score_fetched(conn, tbl, spec.order_by, descriptor.filter_sql, model, batch_lo, hi)
        else:
            score = monitor.score_batch(conn, tbl.identifier, spec.order_by, descriptor.filter_sql, model, batch_lo, hi)
        if score.rows:
            scores[version] = dataclasses.replace(score, batch_lo=bound_text(batch_lo), batch_hi=bound_text(hi))
            if _reads_metrics(spec):  # the strategy compares them in this refresh: written now, not with the rest
                conn.execute(
                    "INSERT INTO modelstore.deployment_metrics (deployment_id, version, active, batch_lo, batch_hi, "
                    "rows, loss_sum, abs_sum) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [spec.deployment_id, version, active, bound_text(batch_lo), bound_text(hi), score.rows,
                     score.loss_sum, score.abs_sum])
    return scores


def _reads_metrics(spec: Spec) -> bool:
    return spec.pinned_version is None and (spec.strategy == "best_score" or spec.gate)


def _finish(store, spec: Spec, read: _Read, lo, hi, model, executed, one_read: bool, scores: dict, t0: float, *,
            stored: tuple | None = None, rows: tuple[int, int] | None = None,
            proactive_info: dict | None = None, pipeline: contextlib.ExitStack | None = None) -> Outcome:
    """Versions, the serving version, drift, the deployment's row, the previous summary, the pending
    writes and the events, written by one statement (data-modifying WITH queries); with ``stored``
    (:func:`modelstore.catalog.records.stats_insert`), also the new window's summary and the model row
    that serves it, which store.fit has not written."""
    conn = store.conn
    last_model = family(spec.kind).from_state(read.last_state) if read.last_state is not None else None
    reason = versions.material(model, last_model, versions.rows_of(model), read.last_rows, last_at=read.last_at,
                               now=read.now, record_every=spec.record_every, record_tolerance=spec.record_tolerance)
    latest = spec.latest_version
    recorded = None
    if reason is not None:
        latest = recorded = spec.latest_version + 1
    ctes: list[tuple[str, sql.Composable]] = []
    values: list = []

    def cte(name: str, statement: sql.Composable, params: list) -> None:
        ctes.append((name, statement))
        values.extend(params)

    if stored is not None:
        insert, insert_values, key_sql, key = stored
        cte("new_stats", insert, insert_values)
        cte("sid", sql.SQL("SELECT (SELECT stats_id FROM new_stats UNION ALL "
                           "SELECT stats_id FROM modelstore.statistics WHERE {} LIMIT 1) AS stats_id").format(key_sql), key)
    else:
        cte("sid", sql.SQL("SELECT %s::bigint AS stats_id"), [executed.stored_stats_id])
    stats_id = sql.SQL("(SELECT stats_id FROM sid)")
    plan_json = executed.to_json()
    state = Jsonb(_jsonable(model.to_state())) if rows is not None or recorded is not None else None
    if rows is not None:
        # the served row, as store.fit(…, replace=True) writes it
        cte("model_row", sql.SQL(
            "UPDATE modelstore.fitted_models SET stats_id = {}, lo = %s, hi = %s, rows_used = %s, rows_skipped = %s, "
            "state = %s, plan = jsonb_set(%s::jsonb, '{{stored_stats_id}}', coalesce(to_jsonb({}), 'null')), "
            "created_at = now(), created_by = current_user WHERE model_id = %s").format(stats_id, stats_id),
            [bound_text(lo), bound_text(hi), *rows, state, Jsonb(_jsonable(plan_json)), spec.model_id])
    events = []
    if recorded is not None:
        statement, params = versions.record_statement(
            spec.deployment_id, recorded, model, params=spec.params, stats_id=stats_id, plan=plan_json,
            lo=bound_text(lo), hi=bound_text(hi), reason=reason, metrics={"pending_writes": read.pending},
            state=state)
        cte("version", statement, params)
        events.append(("version", recorded, {"reason": reason}, None))

    active = _choose_active(conn, spec, latest, recorded, scores)
    follows = spec.pinned_version is None and spec.strategy == "most_recent" and not spec.gate

    # drift on the serving version's prequential loss
    drift_state = spec.drift_state
    if spec.active_version in scores:
        drift_state, drift = monitor.page_hinkley(drift_state, scores[spec.active_version].mean_loss)
        if drift:
            events.append(("drift", spec.active_version, {"mean_loss": scores[spec.active_version].mean_loss}, None))
            log.warning("deployment %s: drift detected (Page-Hinkley) on version %s", spec.name, spec.active_version)
    if scores and not _reads_metrics(spec):
        cte("metrics", sql.SQL(
            "INSERT INTO modelstore.deployment_metrics (deployment_id, version, active, batch_lo, batch_hi, rows, "
            "loss_sum, abs_sum) VALUES {}").format(sql.SQL(", ").join(
                sql.SQL("(%s, %s, %s, %s, %s, %s, %s, %s)") for _ in scores)),
            [v for version, score in scores.items() for v in (
                spec.deployment_id, version, version == spec.active_version, score.batch_lo, score.batch_hi,
                score.rows, score.loss_sum, score.abs_sum)])
    owned = (not one_read) or (executed.stored_stats_id == spec.window_stats_id and spec.window_stats_owned)
    cte("deployment", sql.SQL(
        "UPDATE modelstore.deployments SET latest_version = %s, active_version = %s, lo = %s, hi = %s, "
        "window_stats_id = {s}, window_stats_owned = {s} IS NOT NULL AND %s, refreshed_snapshot = %s::pg_snapshot, "
        "refreshed_at = clock_timestamp(), refreshes = refreshes + 1, drift_state = %s "
        "WHERE deployment_id = %s").format(s=stats_id),
        [latest, active, bound_text(lo), bound_text(hi), owned, read.snapshot, Jsonb(drift_state), spec.deployment_id])
    if spec.window_stats_owned and spec.window_stats_id is not None:
        # the previous window's summary, stored by the previous refresh: nobody else asked for that range
        cte("forget_stats", sql.SQL(
            "DELETE FROM modelstore.statistics WHERE stats_id = %s AND stats_id IS DISTINCT FROM {} AND NOT EXISTS "
            "(SELECT 1 FROM modelstore.fitted_models WHERE stats_id = %s AND model_id <> %s)").format(stats_id),
            [spec.window_stats_id, spec.window_stats_id, spec.model_id])
    cte("forget_pending", _FORGET_PENDING["deployment_pending"], [spec.deployment_id, read.snapshot])
    if spec.group_by is not None:
        cte("forget_group_pending", _FORGET_PENDING["group_pending"], [spec.deployment_id, read.snapshot])
    seconds = time.perf_counter() - t0
    events.append(("refresh", active, {
        "lo": bound_text(lo), "hi": bound_text(hi), "rows": versions.rows_of(model), "strategy": executed.plan.strategy,
        "rows_scanned": executed.rows_scanned, "ms": round(seconds * 1000, 3), "pending": read.pending,
        "recorded": recorded, "scored_rows": {str(v): sc.rows for v, sc in scores.items()},
        **({"proactive": proactive_info} if proactive_info else {})}, read.started_at))
    cte("events", sql.SQL(
        "INSERT INTO modelstore.deployment_events (deployment_id, kind, version, detail, started_at) VALUES {}").format(
            sql.SQL(", ").join(sql.SQL("(%s, %s, %s, %s, coalesce(%s, clock_timestamp()))") for _ in events)),
        [v for kind, version, detail, at in events for v in (spec.deployment_id, kind, version, Jsonb(detail), at)])
    statement = sql.SQL("WITH {} SELECT stats_id FROM sid").format(
        sql.SQL(", ").join(sql.SQL("{} AS ({})").format(sql.Identifier(n), q) for n, q in ctes))
    if pipeline is not None:
        if conn._pipeline is None:  # psycopg's own flag: pipeline mode is on
            pipeline.enter_context(conn.pipeline())
        conn.execute(statement, values)  # not waited for: sent with the next statement or the COMMIT
        summary = "new summary" if stored is not None else f"summary #{executed.stored_stats_id}"
    else:
        summary = f"summary #{conn.execute(statement, values).fetchone()[0]}"
    if not follows or active != latest:
        versions.serve(conn, spec.deployment_id, spec.model_id, active)  # the fit wrote the newest exact model
    return Outcome(spec.name, True, recorded, active, versions.rows_of(model), seconds,
                   f"{executed.plan.strategy}, {executed.rows_scanned} rows scanned, {summary}",
                   executed.rows_scanned)


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


def _touched(conn, spec: Spec, snapshot: str) -> dict:
    """A grouped deployment over every row: re-aggregate only the groups the writes in ``snapshot``
    touched (``only_groups``); a moving window, or a TRUNCATE (a NULL group), re-aggregates them all."""
    if spec.group_by is None or spec.window_kind != "all":
        return {}
    keys = [k for (k,) in conn.execute(
        "SELECT DISTINCT group_key FROM modelstore.group_pending WHERE deployment_id = %s "
        "AND pg_visible_in_snapshot(xid, %s::pg_snapshot)", [spec.deployment_id, snapshot]).fetchall()]
    return {} if None in keys else {"only_groups": keys}


#: what a refresh has absorbed: the pending writes its snapshot saw (a grouped deployment's touched groups too)
_FORGET_PENDING = {
    table: sql.SQL("DELETE FROM modelstore.{} WHERE deployment_id = %s "
                   "AND pg_visible_in_snapshot(xid, %s::pg_snapshot)").format(sql.Identifier(table))
    for table in ("deployment_pending", "group_pending")}


def _forget_pending(conn, deployment_id: int, snapshot: str) -> None:
    # both tables in one statement (one round trip)
    conn.execute(sql.SQL("WITH forget AS ({}) {}").format(_FORGET_PENDING["deployment_pending"],
                                                          _FORGET_PENDING["group_pending"]),
                 [deployment_id, snapshot, deployment_id, snapshot])


def _event(conn, deployment_id: int, kind: str, version, detail: dict, started_at=None) -> None:
    conn.execute("INSERT INTO modelstore.deployment_events (deployment_id, kind, version, detail, started_at) "
                 "VALUES (%s, %s, %s, %s, coalesce(%s, clock_timestamp()))",
                 [deployment_id, kind, version, Jsonb(detail), started_at])


__all__ = ["Spec", "Outcome", "load", "refresh", "refresh_together", "RangeError"]
