"""The analyst's entry point: a :class:`Store` plans, executes and materialises model requests.

``store.fit(kind, table=…, …)`` validates the request (nothing is written if it is bad), plans it
over the stored statistics (:mod:`modelstore.planner`), runs the plan (:mod:`modelstore.execution.executor`),
solves the model, and — in the same transaction — materialises its statistics and the named model.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd
import psycopg
from psycopg import sql

from modelstore import deploy
from modelstore.deploy import served
from modelstore.stats import engine as stats_engine
from modelstore.catalog import freshness, group_index, index, records, shards
from modelstore.execution import group_index as group_index_exec
from modelstore.execution import index_build, mixture, partitions
from modelstore.execution import sgd as sgd_execution
from modelstore.planner import costs
from modelstore.planner.costs import CostModel
from modelstore.connection import open_connection, resolve_dsn
from modelstore.request.descriptor import (
    Descriptor, Range, Source, check_range, coerce_bound, normalize_filter, parse_bound,
)
from modelstore.errors import FilterError, InputError, NonFiniteValueError, PlanNoteWarning, PrivilegeError, RangeError
from modelstore.execution import executor
from modelstore.execution.executor import execute
from modelstore.language import run as run_statements
from modelstore.catalog.migrate import ensure_current
from modelstore.execution.mixture import execute_logistic, training_accuracy
from modelstore.families import FAMILIES, family
from modelstore.families.logistic import LOGISTIC
from modelstore.models.logistic import DEFAULT_CHUNK_ROWS
from modelstore.planner.plan import ExecutedPlan, Plan, Step
from modelstore.planner import SCAN_MARGIN, cost_path, plan_request
from modelstore.planner.costs.learning import CostLearner, table_key
from modelstore.planner.rowcount import RowEstimator
from modelstore.request.source import (
    Table, check_class_column, check_encodable, check_numeric, parse_table_name, resolve_table,
)
from modelstore.catalog import context as request_context
from modelstore.request.cuts import range_cuts, whole_keys
from modelstore.models.grouped import GroupedModel
from modelstore.store import groups as grouped
from modelstore.store.cache import ModelCache
from modelstore.store.request import FitRequest, check_features, check_name

#: a plan may cancel at most this many decimal digits by subtraction (double precision has ~16)
DEFAULT_MAX_DIGITS_LOST = 3.0
#: how long row estimates from pg_stats are trusted before being read again
ESTIMATOR_TTL_SECONDS = 60.0




class _Outcome(NamedTuple):
    """What running a request produced, before it is materialised."""

    source_id: int | None
    stats_id: int | None
    model: object
    executed: ExecutedPlan
    rows_used: int
    rows_skipped: int


class Store:
    """A connection to PostgreSQL with the modelstore catalog.

    ``dsn``: a libpq DSN/URL, a SQLAlchemy URL or Engine; None means ``MODELSTORE_DSN``, then
    ``DATABASE_URL``, then the embedded server (started on demand and stopped by :meth:`close`
    — or at interpreter exit — when this store started it).
    ``materialize``: store every fitted model's statistics for reuse (the default).
    ``max_digits_lost``: the numerical guard on subtraction plans (decimal digits).
    """

    def __init__(self, dsn=None, *, materialize: bool = True, migrate: bool = True,
                 max_digits_lost: float = DEFAULT_MAX_DIGITS_LOST):
        self.dsn, self._server = resolve_dsn(dsn)
        if self._server is not None and self._server.started_by_us:
            atexit.register(self._stop_server)
        self.conn: psycopg.Connection = open_connection(self.dsn, autocommit=True)
        self._owns_conn = True
        self._setup(materialize, max_digits_lost)
        if migrate:
            ensure_current(self.conn)

    @classmethod
    def on_connection(cls, conn, *, materialize: bool = True,
                      max_digits_lost: float = DEFAULT_MAX_DIGITS_LOST) -> "Store":
        """A store over a connection someone else owns and closes (PL/Python's SPI connection, a
        caller's psycopg connection): no migration is run and :meth:`close` leaves ``conn`` open."""
        store = cls.__new__(cls)
        store.dsn, store._server, store.conn, store._owns_conn = None, None, conn, False
        store._setup(materialize, max_digits_lost)
        return store

    def _setup(self, materialize: bool, max_digits_lost: float) -> None:
        self.materialize = materialize
        #: the numerical guard: a plan whose subtractions cancel more digits than this is replaced by
        #: the best plan without subtraction (docs/planner.md)
        self.max_digits_lost = float(max_digits_lost)
        self._cost_model: CostModel | None = None
        self._loaded_cost_model: CostModel | None = None  # the one the property loaded (learning corrects it)
        #: the planner keeps the single scan unless another plan is estimated cheaper by this fraction
        self.scan_margin = SCAN_MARGIN
        #: corrections of the cost model learned from this store's executed plans (docs/planner.md)
        self.cost_learner: CostLearner | None = CostLearner()
        #: the statistics engine the cost model was loaded for (None: pinned by the caller)
        self._cost_model_engine: str | None = None
        self._estimators: dict[tuple, tuple[RowEstimator, float]] = {}
        self._cache: ModelCache | None = None  # store.predict's models (store/cache.py)
        #: tables as described by the last request naming them: the fast path builds the descriptor from
        #: one and modelstore.request_context checks it against the catalog in the same call
        self._tables: dict[str, Table] = {}
        #: (table, ordering column, kind) whose last request found a statistics index: the fast path sends the
        #: partial-chunk pieces' aggregate with the request's context (docs/planner.md, "Round trips")
        self._indexed: set[tuple[str, str, str]] = set()
        # the pieces' aggregate per table description and column set (it does not depend on the range): its
        # composition cost ~0.4 ms a request
        self._piece_queries: dict[tuple, tuple[Table, sql.Composed]] = {}

    # -- lifecycle ----------------------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_conn and not self.conn.closed:
            # the cost corrections learned since their last write (written at most every few seconds per table);
            # only on an idle connection: a caller's open or failed transaction is not ours to write into
            if (self._learning and isinstance(self.conn, psycopg.Connection)
                    and self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE):
                self.cost_learner.flush(self.conn)
            self.conn.close()
        self._stop_server()

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None and server.started_by_us:
            server.stop()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------------------

    def fit(self, kind: str, **arguments):
        """Fit a model over ``table`` rows with ``order_by`` in [lo, hi] (closed; None = the table's
        first/last value) satisfying ``where``; materialise it; return it with ``.plan`` and ``.name``.

        Arguments (:meth:`FitRequest.make`): ``table``, ``target``, ``features``, ``order_by``, ``lo``,
        ``hi``, ``where``; the family's options ``l2`` (ridge penalty for linear, default 0; the logistic
        chunks' λ, default :data:`~modelstore.models.logistic.DEFAULT_L2`), ``var_smoothing``, ``alpha``,
        ``chunk_rows`` (logistic chunk size l); ``evaluate`` (a logistic model's training accuracy, one
        more scan); ``name``, ``replace``, ``max_classes``.
        Rows with a NULL in any used column are skipped and counted (``rows_skipped``).

        ``group_by``: also one model per value of that column, from one grouped aggregate, each shrunk
        toward the global model with penalty ``group_l2`` (default 1); returns a
        :class:`~modelstore.models.grouped.GroupedModel` (docs/serving.md, "Per-group models").
        """
        group_by, group_l2 = arguments.pop("group_by", None), arguments.pop("group_l2", None)
        only_groups = arguments.pop("only_groups", None)
        group_statistics = arguments.pop("group_statistics", True)  # False: a deployment's (docs/serving.md)
        request = FitRequest.make(kind, **arguments)
        if group_by is None:
            if group_l2 is not None or only_groups is not None:
                raise InputError("group_l2 and only_groups apply to per-group models: give group_by too")
            return self.run(request)
        return grouped.fit_grouped(self, request, group_by, group_l2, only_groups=only_groups,
                                   group_statistics=group_statistics)

    def run(self, request: FitRequest):
        """Plan, execute, solve and materialise one request, in one transaction (the paper's §5 loop)."""
        answered = self._run_from_context(request)
        if answered is not None:
            return answered
        started = time.perf_counter()
        # the store's own transaction only (a caller's transaction keeps its own durability)
        owned = (isinstance(self.conn, psycopg.Connection)
                 and self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE)
        with self.conn.transaction():
            if owned and records.commits_asynchronously(request.name, self.materialize):
                self.conn.execute(records.ASYNC_COMMIT)
            descriptor, table_info, notes = self._describe_request(request)
            fam = descriptor.family
            run = self._run_iterative if fam.iterative else self._run_trained if fam.trained else self._run_statistics
            out = run(request, descriptor, table_info)
            out = out._replace(executed=_with_notes(out.executed, notes + _chunk_notes(out.executed.plan)))
            executed = dataclasses.replace(
                out.executed, execution_seconds=time.perf_counter() - started - out.executed.plan.planning_seconds)
            name = request.name
            if self.materialize:
                # the name's number comes from the models' sequence inside the INSERT: no round trip of its own
                _, name = records.store_model(
                    self.conn, name=name, kind=descriptor.kind, source_id=out.source_id, stats_id=out.stats_id,
                    descriptor=descriptor, params=descriptor.params, rows_used=out.rows_used,
                    rows_skipped=out.rows_skipped, state=out.model.to_state(), plan=executed.to_json(),
                    replace=request.replace, name_prefix=f"{descriptor.source.table}_{descriptor.kind}_",
                )
        self._observe(descriptor, executed)
        return out.model.materialized(name=name, descriptor=descriptor, plan=executed)

    def _observe(self, descriptor: Descriptor, executed: ExecutedPlan) -> None:
        """Record an executed plan for the learned cost correction (docs/planner.md, "How it learns")."""
        if self._learning:  # an append; a refit (and one write) every few plans
            self.cost_learner.observe(self.conn, self.cost_model, table_key(descriptor.source),
                                      executed.plan.graph, executed.execution_seconds * 1000)

    def _run_from_context(self, request: FitRequest):
        """A request answered from stored statistics, with or without the statistics index, in two round trips
        (docs/planner.md, "Round trips"):

        1. ``BEGIN``, ``modelstore.request_context`` (validation, source, index, relevant set and their
           statistics — and, when an index serves the request, the source lock taken first and the ends'
           chunks cut into pieces) and the aggregate of those pieces, pipelined;
        2. the statistics' and the model's ``INSERT`` and ``COMMIT``, pipelined.

        None when this path does not apply — a table not described before or not an ordinary one, an open
        range, an ordering column other than integer, date, timestamp or timestamptz (a ``number`` column's cuts
        have no whole keys: docs/planner.md) — and nothing has been written then. A ``where``
        filter rides along: PostgreSQL checks it in the first round trip (a bad one sends the request to the
        usual path, which names the problem). A
        plan that reads rows the first round trip did not read runs them under the lock (one more round
        trip); without the lock it takes the usual path in the same transaction."""
        conn = self.conn
        # its own transaction, BEGIN and COMMIT sent in pipelines: only on a psycopg connection that is idle
        # (inside a caller's transaction, or over SPI, the usual path runs in that transaction)
        if not isinstance(conn, psycopg.Connection) or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return None
        fam = family(request.kind)
        tbl = self._tables.get(request.table) if isinstance(request.table, str) else None
        if (tbl is None or tbl.kind != "r" or fam.trained or fam.iterative
                or request.lo is None or request.hi is None):
            return None
        started = time.perf_counter()
        notes: list[str] = list(request.notes)
        # a filter is checked by PostgreSQL in the first round trip (a bad one rolls back to the usual path,
        # which names the problem)
        descriptor, _ = self._describe(request.kind, tbl, request.target, request.features, request.order_by,
                                       request.lo, request.hi, request.where, request.params, notes=notes,
                                       check_filter=False)
        kind = descriptor.source.order_kind
        s, t = range_cuts(descriptor.range, kind)
        if not whole_keys(s, t, kind):  # integer, date, timestamp and timestamptz (request/cuts.py)
            return None
        schema, relname = parse_table_name(request.table)
        # the source lock is taken in the call whenever the plan may scan; after it rides the partial-chunk
        # pieces' aggregate where an index was seen, else the from-scratch scan (each reads nothing unless the
        # call turned it on)
        indexed = (request.table, descriptor.source.order_by, descriptor.kind)
        speculate = self.materialize
        engine = stats_engine.engine(conn)
        try:
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    if descriptor.filter_sql:
                        conn.execute(_filter_probe(tbl, descriptor.filter_sql))
                    cur = request_context.send(conn, schema, relname, descriptor, s, t, array_keys=True,
                                               speculate=speculate)
                    pieces_cur = scratch_cur = None
                    # (statistics indexes hold unfiltered rows only)
                    if speculate and fam.indexable and indexed in self._indexed and not descriptor.filter_sql:
                        pieces_cur = conn.execute(self._piece_query(tbl, descriptor, request.max_classes, engine),
                                                  binary=True)
                    elif speculate:
                        scratch_cur = conn.execute(executor.scratch_scan_query(
                            tbl, descriptor, request.max_classes, engine), binary=True)
                ctx = request_context.parse(cur, descriptor)
                piece_rows = pieces_cur.fetchall() if pieces_cur is not None else []
                scratch_rows = scratch_cur.fetchall() if scratch_cur is not None else None
                if pieces_cur is None:
                    ctx.pieces = None  # cut by the call, but not scanned: the plan's scans run under the lock
                if scratch_rows is None:
                    ctx.scratch = False
            except psycopg.Error:
                # the cached description no longer fits (a column gone, a privilege revoked): the usual path
                # describes the table again and raises the named error, if any
                if conn.closed:
                    raise
                conn.execute("ROLLBACK")
                self._tables.pop(request.table, None)
                return None
            first_trip = time.perf_counter() - started
            if ctx.index_rows:
                self._indexed.add(indexed)
            else:
                self._indexed.discard(indexed)
            if not ctx.complete or ctx.table.oid != tbl.oid or ctx.table.columns != tbl.columns:
                self._tables.pop(request.table, None)  # described afresh by the usual path
                conn.execute("ROLLBACK")
                return None
            access = freshness.check_access(conn, tbl, descriptor, row=ctx.access)
            if not freshness.source_is_current(tbl, access, ctx.source) or (ctx.locked and not access.store):
                conn.execute("ROLLBACK")  # stored statistics to drop first: the usual path does it
                return None
            source_id = freshness.usable_source(conn, descriptor, tbl, access, context=ctx)
            plan = self._plan(source_id, descriptor, context=ctx)
            stats_key = None
            if len(plan.steps) == 1 and plan.steps[0].op == "stored":
                plan = dataclasses.replace(plan, notes=access.notes)
                stats, executed = execute(conn, plan, tbl, max_classes=request.max_classes,
                                          cost_model=self.cost_model, context=ctx)
                _check_stats(descriptor, stats)
                model = fam.solve(stats, descriptor.params)
                executed = ExecutedPlan(plan, executed.results, 0.0, plan.steps[0].stats_id, executed.digits_lost,
                                        (), dict(executed.extra))
                out = _Outcome(source_id, plan.steps[0].stats_id, model, executed, stats.n, stats.null_rows)
            elif ctx.locked:
                # the source lock was taken before anything was read: execute on what the first round trip
                # read (scans it did not read run now, under the same lock), store in the second
                out, stats = self._run_locked(request, descriptor, tbl, source_id,
                                              dataclasses.replace(plan, notes=access.notes), ctx, piece_rows,
                                              first_trip, engine, scratch_rows)
                insert, values, key_sql, key = records.stats_insert(source_id, descriptor, stats, binary=True)
                stats_key = (key_sql, key)
            else:
                # a plan that reads rows: the source lock first, then planning again (today's path)
                out = self._run_statistics(request, descriptor, tbl)
            out = out._replace(executed=_with_notes(out.executed, tuple(notes) + _chunk_notes(out.executed.plan)))
            executed = dataclasses.replace(
                out.executed, execution_seconds=time.perf_counter() - started - out.executed.plan.planning_seconds)
            name = request.name
            if self.materialize:
                # the statistics (when new), the model row and COMMIT in one pipelined write; the name (and the
                # statistics' id) are read once they are done
                query, model_values = records.model_insert(
                    name=name, kind=descriptor.kind, source_id=out.source_id, stats_id=out.stats_id,
                    descriptor=descriptor, params=descriptor.params, rows_used=out.rows_used,
                    rows_skipped=out.rows_skipped, state=out.model.to_state(), plan=executed.to_json(),
                    replace=request.replace, name_prefix=f"{descriptor.source.table}_{descriptor.kind}_",
                    stats_key=stats_key)
                try:
                    with conn.pipeline():
                        if records.commits_asynchronously(name, self.materialize):
                            conn.execute(records.ASYNC_COMMIT)
                        if stats_key is not None:
                            conn.execute(insert, values)
                        cur = conn.execute(query, model_values)
                        conn.execute("COMMIT")
                except psycopg.errors.UniqueViolation as exc:
                    if stats_key is None or exc.diag.constraint_name != records.NAME_TAKEN:
                        raise
                    raise records.name_taken(name) from None  # rolled back below: nothing was written
                # DO NOTHING on a taken name inserted nothing: the transaction wrote no model row
                row = cur.fetchone()
                _, name = records.inserted_model(row, name)
                if stats_key is not None:
                    executed = dataclasses.replace(executed, stored_stats_id=row[2])
            else:
                conn.execute("COMMIT")
        except BaseException:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
        self._observe(descriptor, executed)
        return out.model.materialized(name=name, descriptor=descriptor, plan=executed)

    def _piece_query(self, tbl: Table, descriptor: Descriptor, max_classes: int, engine: tuple[str, str]):
        """:func:`executor.piece_scan_query` for this description of the table, kept for the session."""
        key = (tbl.oid, descriptor.kind, descriptor.source.order_by, descriptor.source.order_kind, descriptor.target,
               tuple(descriptor.stats_columns), max_classes, engine)
        kept = self._piece_queries.get(key)
        if kept is None or kept[0] is not tbl:  # a table described again gets its query composed again
            kept = (tbl, sql.SQL(executor.piece_scan_query(tbl, descriptor, request_context.MAX_PIECES, max_classes,
                                                           engine).as_string(self.conn)))
            self._piece_queries[key] = kept
        return kept[1]

    def _run_locked(self, request: FitRequest, descriptor: Descriptor, tbl: Table, source_id: int, plan: Plan,
                    ctx, piece_rows: list, first_trip: float, engine: tuple[str, str], scratch_rows=None):
        """Execute ``plan`` on a request's context read under the source lock: its scan steps that are runs
        of the pieces the first round trip aggregated take their statistics from them, as does the
        from-scratch scan that round trip read (``scratch_rows``), and the others are scanned now. Returns
        (the outcome without a stored statistics id, the request's statistics)."""
        def run(plan: Plan):
            known = executor.piece_parts(plan, ctx.pieces, piece_rows, request.max_classes, engine)
            if ctx.scratch and not known:
                known = executor.scratch_parts(plan, scratch_rows, request.max_classes, engine)
            rows = {i: part.n + part.null_rows for i, part in known.items()}
            # the pieces were scanned in the first round trip: its time is spread over them by rows
            seconds = {i: first_trip * r / (sum(rows.values()) or 1) for i, r in rows.items()}
            with _filter_errors(descriptor):
                return execute(self.conn, plan, tbl, max_classes=request.max_classes, cost_model=self.cost_model,
                               known=known, known_seconds=seconds, context=ctx)

        stats, executed = run(plan)
        rejected = ()
        if executed.digits_lost > self.max_digits_lost:  # the numerical guard, as in _run_statistics
            rejected = ({"strategy": plan.strategy, "digits_lost": executed.digits_lost,
                         "est_cost_ms": plan.est_cost_ms},)
            plan = dataclasses.replace(self._plan(source_id, descriptor, allow_subtract=False, context=ctx),
                                       notes=plan.notes)
            stats, executed = run(plan)
        _check_stats(descriptor, stats)
        model = descriptor.family.solve(stats, descriptor.params)
        executed = ExecutedPlan(plan, executed.results, 0.0, None, executed.digits_lost, rejected,
                                dict(executed.extra))
        return _Outcome(source_id, None, model, executed, stats.n, stats.null_rows), stats

    def _run_statistics(self, request: FitRequest, descriptor: Descriptor, table_info: Table):
        """Families with mergeable statistics: the planned sum of stored statistics and scans (paper §3),
        solved exactly; the request's statistics are stored for reuse."""
        source_id, plan, store_stats = self._prepare(descriptor, table_info, writes=self.materialize)
        # whole partitions of a table range-partitioned on the ordering column: kept one by one
        # (docs/scale-out.md, "Statistics per partition")
        whole = []
        if table_info.kind == "p" and store_stats:
            whole = partitions.whole_partitions(self.conn, table_info, descriptor, open_lo=request.lo is None,
                                                open_hi=request.hi is None)
        keep = tuple((piece, c) for piece, c, _ in whole)
        kept: dict = {}
        with _filter_errors(descriptor):
            stats, executed = execute(self.conn, plan, table_info, max_classes=request.max_classes,
                                      cost_model=self.cost_model, keep=keep, kept=kept)
        rejected = ()
        if executed.digits_lost > self.max_digits_lost:
            # the numerical guard: this path cancelled too many digits; take the best one without subtraction
            rejected = ({"strategy": plan.strategy, "digits_lost": executed.digits_lost,
                         "est_cost_ms": plan.est_cost_ms},)
            plan = dataclasses.replace(self._plan(source_id, descriptor, allow_subtract=False), notes=plan.notes)
            kept = {}
            stats, executed = execute(self.conn, plan, table_info, max_classes=request.max_classes,
                                      cost_model=self.cost_model, keep=keep, kept=kept)
        _check_stats(descriptor, stats)
        model = descriptor.family.solve(stats, descriptor.params)
        stats_id = None
        if self.materialize:
            if source_id is None:
                source_id = records.ensure_source(self.conn, descriptor.source, table_info.oid)
            if len(plan.steps) == 1 and plan.steps[0].op == "stored":
                stats_id = plan.steps[0].stats_id
            elif store_stats:
                stats_id = records.store_stats(self.conn, source_id, descriptor, stats)
                for r, part in kept.items():
                    records.store_stats(self.conn, source_id, descriptor, part, r=r)
        extra = dict(executed.extra)
        names = {c: name for _, c, name in whole}
        reused = partitions.reused_partitions(self.conn, table_info, plan)
        if reused:
            extra["Per-partition statistics"] = (f"reused the stored statistics of whole partition(s) "
                                                 f"{', '.join(reused)}")
        if kept and self.materialize and store_stats:
            stored = ", ".join(names[r] for r in sorted(kept, key=lambda r: r.lo))
            extra["Per-partition statistics"] = "; ".join(filter(None, (
                extra.get("Per-partition statistics"),
                f"stored statistics of whole partition(s) {stored}, for later requests over them")))
        executed = ExecutedPlan(plan, executed.results, 0.0, stats_id, executed.digits_lost, rejected, extra)
        return _Outcome(source_id, stats_id, model, executed, stats.n, stats.null_rows)

    def _run_trained(self, request: FitRequest, descriptor: Descriptor, table_info: Table):
        """Families of trained chunk models (mixture-weight logistic, paper §4): stored chunks plus newly
        trained ones, averaged; new chunks are stored whenever they may be (even with materialize=False)."""
        family = descriptor.family
        source_id, plan, store_chunks = self._prepare(descriptor, table_info, writes=True)
        with _filter_errors(descriptor):
            model, executed, new_chunks, _ = execute_logistic(
                self.conn, plan, table_info, l2=descriptor.params["l2"], chunk_rows=descriptor.params["chunk_rows"],
                max_classes=request.max_classes)
        if source_id is None and self.materialize:
            source_id = records.ensure_source(self.conn, descriptor.source, table_info.oid)
        key = family.params_key(descriptor.params)
        for chunk in new_chunks if store_chunks else ():
            records.store_chunk(self.conn, source_id, descriptor, chunk, key)
        extra = dict(executed.extra)
        extra["Theorem 1 bound (δ=0.05)"] = (f"‖w_μ − w‖ ≤ {model.theorem1_bound(0.05):.4g} "
                                             f"(R={model.bound_inputs['R']:.4g}, λ={model.l2:g}, "
                                             f"p={model.bound_inputs['p']}, l={model.bound_inputs['l']:.0f})")
        extra["Theorem 1 means"] = (f"with probability ≥ 95% (rows i.i.d.), the averaged chunk weights w_μ are within "
                                    f"that distance of w, one model trained on all {model.rows_used:,} rows with the "
                                    f"same λ; a worst case, usually far above the real distance (docs/logistic.md)")
        if request.evaluate:
            extra["Training accuracy"] = f"{training_accuracy(self.conn, table_info, descriptor, model):.4f}"
        executed = ExecutedPlan(plan, executed.results, 0.0, None, 0.0, (), extra)
        return _Outcome(source_id, None, model, executed, model.rows_used, model.rows_skipped)

    def _run_iterative(self, request: FitRequest, descriptor: Descriptor, table_info: Table):
        """SGD-trained families (docs/continuous.md): one read of the rows, the pipeline's statistics and
        the SGD epochs, from zero weights or from the stored model ``request.warm_start``."""
        access = freshness.check_access(self.conn, table_info, descriptor)
        warm = None
        if request.warm_start is not None:
            warm = self.model(request.warm_start)
            if warm.kind != descriptor.kind or tuple(warm.pipeline.raw_order) != descriptor.features:
                raise InputError(f"warm_start {request.warm_start!r} is a {warm.kind} model of "
                                 f"{list(warm.pipeline.raw_order)}; this request is {descriptor.kind} of "
                                 f"{list(descriptor.features)}")
        with _filter_errors(descriptor):
            model, executed = sgd_execution.train(self.conn, table_info, descriptor, warm_start=warm,
                                                  max_classes=request.max_classes)
        executed = dataclasses.replace(executed, plan=dataclasses.replace(executed.plan, notes=access.notes))
        source_id = None
        if self.materialize:
            source_id = records.ensure_source(self.conn, descriptor.source, table_info.oid)
        return _Outcome(source_id, None, model, executed, model.rows_used, model.rows_skipped)

    def query(self, text: str):
        """Run model-language statements (BigQuery ML syntax, docs/language.md) and return the last
        one's result: the fitted model for CREATE MODEL, otherwise a pandas DataFrame."""
        return run_statements(self, text)[-1]

    def explain(self, kind: str, **arguments) -> Plan:
        """The plan :meth:`fit` would run for the same arguments, without running it."""
        arguments = {k: v for k, v in arguments.items() if k not in ("evaluate", "name", "replace", "max_classes")}
        group_by, group_l2 = arguments.pop("group_by", None), arguments.pop("group_l2", None)
        request = FitRequest.make(kind, **arguments)
        with self.conn.transaction():
            descriptor, table_info, notes = self._describe_request(request)
            if group_by is not None:  # the global model's plan, then one grouped aggregate (docs/serving.md)
                grouped.check_group_by(self.conn, request, group_by)
                notes += (f"group_by {group_by!r}: this plan builds the global model; then one aggregate over its "
                          f"rows grouped by {group_by!r} gives every group's statistics, each group's model shrunk "
                          f"toward the global one with group_l2 = {grouped.check_group_l2(group_l2):g}",)
            access = freshness.check_access(self.conn, table_info, descriptor)
            if descriptor.family.iterative:  # no statistics to plan over: the rows are read once and trained on
                plan = Plan(descriptor, (Step(1, "scan", descriptor.range),), "SGD: one read of the rows, then "
                            f"{descriptor.params['epochs']} epoch(s) in Python")
                return dataclasses.replace(plan, notes=access.notes + notes)
            source_id = freshness.usable_source(self.conn, descriptor, table_info, access)
            plan = self._plan(source_id, descriptor)
            if group_by is not None:
                line = group_index_exec.describe(self.conn, descriptor, group_by, source_id)
                notes += (line,) if line else ()
            reused = partitions.reused_partitions(self.conn, table_info, plan)
            if reused:
                notes += (f"the stored statistics of whole partition(s) {', '.join(reused)} are reused "
                          f"(docs/scale-out.md, \"Statistics per partition\")",)
            if descriptor.family.trained:
                notes += ("Theorem 1: EXPLAIN ANALYZE (model.plan) bounds ‖w_μ − w‖, the distance between the "
                          "averaged chunk weights and one model trained on all rows, once the rows are read (the "
                          "bound needs R, their largest feature-vector norm); docs/logistic.md",)
            return dataclasses.replace(plan, notes=access.notes + notes + _chunk_notes(plan, warn=True))

    # -- sharded tables (docs/scale-out.md) ------------------------------------------------------------

    def prepare_shards(self, table: str, dsns: dict[str, str] | None = None) -> list[str]:
        """Put the foreign partitions of the partitioned ``table`` under change counting, so that its
        stored statistics can be reused (each shard gets a counter and a trigger; the coordinator a foreign
        table over the counters). Connects to each shard as its user mapping says, or with ``dsns[server]``.
        Returns the servers prepared."""
        with self.conn.transaction():
            return shards.prepare_shards(self.conn, resolve_table(self.conn, table), dsns)

    # -- the statistics index (docs/index.md) --------------------------------------------------------

    def build_index(self, table: str, order_by: str, columns: Sequence[str], target: str | None = None, *,
                    kind: str = "linear", chunk_rows: int | None = None,
                    storage_budget: float | None = None, l2: float | None = None,
                    progress: bool = False, group_by: str | None = None):
        """Build (or rebuild) the statistics index of ``table`` along ``order_by``.

        ``kind='linear'``: ``columns`` are the features and ``target`` the target (the index serves any
        linear model over a subset of them); Naive Bayes kinds: ``target`` is the class column.
        ``kind='logistic'`` trains and stores mixture-weight chunk models over the whole table instead, so
        that any chunk-aligned range needs no training. ``chunk_rows`` defaults to the cost model's choice
        within ``storage_budget`` (a fraction of the table's size, default 3%); an explicit ``chunk_rows``
        is checked against the budget only when one is given. ``group_by``: also keep every node's
        statistics per value of that column, for grouped fits over ranges (docs/index.md, "Per-group
        nodes"). Returns the index's description.
        """
        if kind not in FAMILIES:
            kinds = [repr(k) for k in FAMILIES]
            raise InputError(f"kind must be {', '.join(kinds[:-1])} or {kinds[-1]}, got {kind!r}")
        if group_by is not None and not (family(kind).indexable and family(kind).groupable):
            kinds = sorted(k for k, f in FAMILIES.items() if f.indexable and f.groupable)
            raise InputError(f"group_by: an index keeps per-group nodes for {kinds}, not {kind!r}")
        if family(kind).trained:
            return self._build_logistic_chunks(table, order_by, columns, target, chunk_rows, l2, progress)
        if not family(kind).indexable:
            raise InputError(f"a statistics index cannot hold {kind} statistics; kinds it can hold: "
                             f"{[k for k, f in FAMILIES.items() if f.indexable or f.trained]}")
        if target is None:
            raise InputError(f"an index of kind {kind!r} needs a target column")
        budget = _check_budget(index_build.DEFAULT_STORAGE_BUDGET if storage_budget is None else storage_budget)
        with self.conn.transaction():
            descriptor, table_info = self._describe(kind, table, target, columns, order_by, None, None, None, {})
            # the source lock keeps writers out: both passes over the table see the same rows
            source_id = self._writable_source(descriptor, table_info, "build a statistics index")
            k = len(descriptor.stats_columns)
            table_bytes = self.conn.execute("SELECT pg_total_relation_size(%s::oid)", [table_info.oid]).fetchone()[0]
            estimator = self._estimator(descriptor.source)
            # the C aggregate's statistics are double-double: twice the floats per node
            double_double = stats_engine.engine(self.conn)[0] == "c"
            if chunk_rows is None:
                chunk_rows = index_build.choose_chunk_rows(self.cost_model, descriptor.kind, k, estimator.total_rows,
                                                           table_bytes, budget, double_double=double_double)
            elif isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
                raise InputError(f"chunk_rows must be a positive integer, got {chunk_rows!r} instead")
            expected = index.estimated_bytes(descriptor.kind, k, math.ceil(estimator.total_rows / chunk_rows),
                                             double_double=double_double)
            if storage_budget is not None and expected > budget * table_bytes:
                raise InputError(
                    f"an index of {chunk_rows}-row chunks would take about {expected:,} bytes, over the storage budget "
                    f"of {budget:.1%} of the table ({int(budget * table_bytes):,} bytes); use larger chunks or a "
                    f"larger storage_budget"
                )
            descriptor = dataclasses.replace(descriptor, params={"chunk_rows": chunk_rows})
            if group_by is not None:
                group_index_exec.check_group_column(table_info, descriptor, group_by)
            with _progress(progress, "building the statistics index") as advance:
                info = index_build.build(self.conn, table_info, source_id, descriptor, chunk_rows, progress=advance)
            self._build_group_nodes(info, descriptor, table_info, group_by)
        self._indexed.add((table, order_by, kind))  # the fast path scans the pieces at the ends at once
        return self._index_row(info.index_id)

    def _build_group_nodes(self, info, descriptor, table_info, group_by: str | None) -> None:
        """The index's per-group nodes after its chunks were (re)built: for ``group_by``, or none."""
        if group_by is None:
            group_index.forget(self.conn, info.index_id)
        else:
            group_index_exec.build(self.conn, table_info, info, descriptor, group_by)

    def refresh_index(self, index_id: int, *, progress: bool = False) -> dict:
        """Extend an index over rows appended past its end (new chunks, updated ancestors)."""
        with self.conn.transaction():
            info, descriptor, table_info = self._index_descriptor(index_id)
            self._writable_source(descriptor, table_info, "refresh a statistics index")
            info = index.load(self.conn, index_id, descriptor.source.order_kind)  # as validated
            with _progress(progress, "extending the statistics index") as advance:
                info, added = index_build.refresh(self.conn, table_info, info, descriptor, progress=advance)
            group_by = group_index.group_by_of(self.conn, index_id)
            if added and group_by is not None:  # per-group nodes are built again over the grown index
                self._build_group_nodes(info, descriptor, table_info, group_by)
        out = self._index_row(index_id)
        out["rows_added"] = added
        return out

    def drop_index(self, index_id: int) -> bool:
        with self.conn.transaction():
            return index.drop(self.conn, index_id)

    def indexes(self) -> pd.DataFrame:
        """Every statistics index, with its size next to its table's; ``status`` is ``ok``, ``table dropped``
        or ``table re-created`` (an index of a table that is gone: drop it with :meth:`drop_index`)."""
        rows = index.list_indexes(self.conn)
        frame = pd.DataFrame(rows, columns=["index_id", "source", "order_by", "family", "target", "columns",
                                            "chunk_rows", "n_chunks", "levels", "rows_indexed", "end_value",
                                            "refreshed_at", "index_bytes", "table_bytes", "status"])
        table_bytes = pd.to_numeric(frame.table_bytes, errors="coerce")
        frame["size_ratio"] = frame.index_bytes / table_bytes.where(table_bytes > 0)
        return frame

    def _index_row(self, index_id: int) -> dict:
        frame = self.indexes()
        return frame[frame.index_id == index_id].iloc[0].to_dict()

    def _index_descriptor(self, index_id: int):
        row = self.conn.execute(
            "SELECT s.schema_name, s.table_name, s.order_by, i.family, i.target, i.columns "
            "FROM modelstore.stat_indexes i JOIN modelstore.sources s USING (source_id) WHERE i.index_id = %s",
            [index_id],
        ).fetchone()
        if row is None:
            raise InputError(f"no statistics index #{index_id}")
        schema, table, order_by, kind, target, columns = row
        if not family(kind).classifier:  # a regression's target is the last statistics column
            columns, target = columns[:-1], columns[-1]
        descriptor, table_info = self._describe(kind, sql.Identifier(schema, table).as_string(self.conn), target,
                                                columns, order_by, None, None, None, {})
        info = index.load(self.conn, index_id, descriptor.source.order_kind)
        descriptor = dataclasses.replace(descriptor, params={"chunk_rows": info.chunk_rows})
        return info, descriptor, table_info

    def _build_logistic_chunks(self, table, order_by, features, target, chunk_rows, l2, progress) -> dict:
        """Mixture-weight chunk models over the whole table, trained chunk by chunk from a server-side cursor."""
        params = LOGISTIC.params(l2=l2, chunk_rows=chunk_rows)
        with self.conn.transaction():
            descriptor, table_info = self._describe(LOGISTIC.kind, table, target, features, order_by, None, None,
                                                    None, params)
            source_id = self._writable_source(descriptor, table_info, "store logistic chunk models")
            with _progress(progress, "training logistic chunk models") as advance:
                trained, reused = mixture.build_chunks(self.conn, table_info, descriptor, source_id,
                                                       l2=params["l2"], chunk_rows=params["chunk_rows"],
                                                       progress=advance)
        return {"kind": LOGISTIC.kind, "source": descriptor.source.qualified, "chunks_trained": trained,
                "chunks_reused": reused, "chunk_rows": params["chunk_rows"], "l2": params["l2"]}

    # -- planning inputs ----------------------------------------------------------------------------

    @property
    def cost_model(self) -> CostModel:
        """The calibrated cost model of this database and statistics engine (measured on first use, then
        read from the catalog)."""
        engine = stats_engine.engine(self.conn)[0]
        # a model this property loaded is the engine's it was loaded for; one pinned by assignment stays
        if self._cost_model is None or self._cost_model_engine not in (None, engine):
            self._cost_model = costs.load_or_calibrate(self.conn)
            self._cost_model_engine = engine
            self._loaded_cost_model = self._cost_model
            if self.cost_learner is not None:  # what earlier sessions learned for this calibration
                self.cost_learner.load(self.conn, self._cost_model)
        return self._cost_model

    @property
    def _learning(self) -> bool:
        """Whether executed plans correct the cost model: with a learner, and a model this store loaded
        or measured (figures pinned by assignment stay as given)."""
        return (self.cost_learner is not None and self._cost_model is not None
                and self._cost_model is self._loaded_cost_model)

    def calibrate(self, *, quick: bool = False) -> CostModel:
        """Measure the cost model again and store it (``modelstore calibrate``)."""
        model = costs.calibrate(self.conn, quick=quick)
        costs.save(self.conn, model)
        self._cost_model, self._cost_model_engine = model, model.engine
        self._loaded_cost_model = model
        return model

    def _estimator(self, source: Source) -> RowEstimator:
        """Row estimates for the source's ordering column, from pg_stats; re-read after a while."""
        key = (source.schema, source.table, source.order_by)
        cached = self._estimators.get(key)
        if cached is None or time.monotonic() - cached[1] > ESTIMATOR_TTL_SECONDS:
            cached = (RowEstimator.load(self.conn, *key), time.monotonic())
            self._estimators[key] = cached
        return cached[0]

    def _prepare(self, descriptor: Descriptor, table_info: Table, *, writes: bool) -> tuple[int | None, Plan, bool]:
        """Access checks, validation, the plan, and — when the plan reads more than one stored summary
        or scans rows — the source lock (modelstore.catalog.freshness). Returns (source id, plan, whether new
        statistics may be stored)."""
        access = freshness.check_access(self.conn, table_info, descriptor)
        source_id = freshness.usable_source(self.conn, descriptor, table_info, access)
        plan = self._plan(source_id, descriptor)
        store = writes and access.store
        one_read = len(plan.steps) == 1 and plan.steps[0].op == "stored"
        if not one_read and store:
            source_id = freshness.prepare_write(self.conn, descriptor, table_info, access, source_id)
            plan = self._plan(source_id, descriptor)
        elif not one_read and source_id is not None and access.read_committed:
            freshness.lock_source(self.conn, source_id)  # one view of the table across the plan's statements
            plan = self._plan(source_id, descriptor)
        return source_id, dataclasses.replace(plan, notes=access.notes), store

    def _writable_source(self, descriptor: Descriptor, table_info: Table, what: str) -> int:
        """For requests that must store statistics (indexes, chunk models): validated, captured, locked."""
        access = freshness.check_access(self.conn, table_info, descriptor)
        if not access.store:
            raise InputError(f"cannot {what} on {table_info.display}: " + "; ".join(access.notes))
        source_id = freshness.usable_source(self.conn, descriptor, table_info, access)
        return freshness.prepare_write(self.conn, descriptor, table_info, access, source_id)

    def _plan(self, source_id, descriptor: Descriptor, *, allow_subtract: bool = True, context=None) -> Plan:
        trained = descriptor.family.trained
        estimator = self._estimator(descriptor.source)
        model = self.cost_model
        if self._learning:
            model = self.cost_learner.model_for(model, table_key(descriptor.source), cost_path(descriptor, estimator))
        plan = plan_request(self.conn, source_id, descriptor, cost_model=model,
                            estimator=estimator, allow_subtract=allow_subtract,
                            params_key=descriptor.family.params_key(descriptor.params) if trained else "",
                            chunk_rows=descriptor.params.get("chunk_rows", DEFAULT_CHUNK_ROWS), context=context,
                            scan_margin=self.scan_margin)
        # EXPLAIN says which engine computes the scans (DESIGN §5)
        return plan if trained else dataclasses.replace(plan, engine=stats_engine.engine(self.conn)[0])

    def model(self, name: str):
        """A stored model by name, rebuilt from the catalog (no statistics or rows are read)."""
        check_name(name)
        row = records.load_model_row(self.conn, name)
        model = family(row["kind"]).from_state(row["state"])
        source = Source(row["schema_name"], row["table_name"], row["order_by"], row["order_kind"])
        rng = Range(parse_bound(row["lo"], source.order_kind), parse_bound(row["hi"], source.order_kind))
        descriptor = Descriptor(source, rng, row["filter_sql"], row["kind"], row["target"],
                                      tuple(row["features"]), row["params"])
        model = model.materialized(name=row["name"], descriptor=descriptor,
                                   plan=ExecutedPlan.from_json(row["plan"], descriptor))
        if row["group_by"] is not None:
            return grouped.load_grouped(self, model, row["model_id"], row["group_by"], row["group_l2"])
        return model

    def predict(self, name: str, X, groups=None):
        """Predictions of the named model (a deployment's active version; ``groups`` for a per-group
        model), from this store's model cache: the catalog is read again only after the model changed
        (docs/serving.md, "A session's model cache")."""
        started = time.perf_counter()
        model = self.cached_model(name)
        if groups is not None:
            if not isinstance(model, GroupedModel):
                raise InputError(f"groups= needs a per-group model (group_by); {name!r} has none")
            predictions = model.predict(X, groups=groups)
        else:
            predictions = model.predict(X)
        # the dynamic scheduler's measured prediction rate and latency (docs/continuous.md)
        served.record(self.conn, name, len(predictions), time.perf_counter() - started)
        return predictions

    def cached_model(self, name: str):
        """The named model from this store's model cache (read from the catalog only after it changed)."""
        check_name(name)
        if self._cache is None:
            self._cache = ModelCache(self)
        return self._cache.get(name)

    def models(self) -> pd.DataFrame:
        """The ``modelstore.models`` view: one row per named model."""
        rows = records.list_models(self.conn)
        columns = ["name", "kind", "source", "order_by", "lo", "hi", "filter", "target", "features", "params",
                   "rows_used", "rows_skipped", "stats_id", "created_at", "created_by"]
        return pd.DataFrame(rows, columns=columns)

    def drop(self, name: str, *, missing_ok: bool = False) -> bool:
        """Drop a named model (its statistics stay stored for reuse)."""
        check_name(name)
        with self.conn.transaction():
            return records.drop_model(self.conn, name, missing_ok=missing_ok)

    # -- validation ---------------------------------------------------------------------------------

    def _describe_request(self, request: FitRequest) -> tuple[Descriptor, Table, tuple[str, ...]]:
        """The request's descriptor and table, and the notes its plan carries (what was decided for it)."""
        notes = list(request.notes)
        descriptor, tbl = self._describe(request.kind, request.table, request.target, request.features,
                                         request.order_by, request.lo, request.hi, request.where, request.params,
                                         notes=notes)
        return descriptor, tbl, tuple(notes)

    def _describe(self, kind, table, target, features, order_by, lo, hi, where, params, *,
                  notes: list | None = None, check_filter: bool = True) -> tuple[Descriptor, Table]:
        """Validate a request against the database and turn it into a :class:`Descriptor`.

        With ``notes``, conditions of ``where`` on the ordering column become the range (as in the model
        language), so that stored statistics can serve them, and a note says so. ``check_filter=False``: the
        caller sends PostgreSQL's check of the filter (:meth:`_filter_probe`) itself, in its own pipeline."""
        if isinstance(table, Table):  # described already (the fast path: no query)
            tbl = table
        else:
            tbl = resolve_table(self.conn, table)
            if isinstance(table, str):
                self._tables[table] = tbl
        order_kind = tbl.order_kind(order_by)
        features = check_features(features, target)
        if family(kind).takes_text:
            check_encodable(tbl, features)
        else:
            check_numeric(tbl, features, "feature")
        if family(kind).classifier:
            check_class_column(tbl, target)
        else:
            check_numeric(tbl, [target], "target")
        filter_sql = normalize_filter(where, set(tbl.columns))
        if filter_sql and check_filter:
            self._check_filter(tbl, where, filter_sql)
        lo = None if lo is None else coerce_bound(lo, order_kind, "lo")
        hi = None if hi is None else coerce_bound(hi, order_kind, "hi")
        moved = False
        if notes is not None and filter_sql:
            filter_sql, lo, hi, moved = _range_from_where(tbl, order_by, order_kind, where, filter_sql, lo, hi)
        if lo is None or hi is None:
            first, last = self._extent(tbl, order_by)
            lo = first if lo is None else lo
            hi = last if hi is None else hi
        if moved:
            notes.append(f"where's condition on the ordering column {order_by!r} is the range [{lo}, {hi}], "
                         f"not a filter, so that stored statistics can serve it")
        source = Source(tbl.schema, tbl.name, order_by, order_kind)
        return Descriptor(source, check_range(lo, hi), filter_sql, kind, target, features, params), tbl

    def _check_filter(self, tbl: Table, where: str, filter_sql: str) -> None:
        """PostgreSQL's own check of a filter (types, functions, operators), before anything runs:
        the filter is planned against the table with no row read, in a savepoint."""
        try:
            with self.conn.transaction():
                self.conn.execute(_filter_probe(tbl, filter_sql))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PrivilegeError(f"where {where!r}: {exc.diag.message_primary or exc}") from None
        except psycopg.Error as exc:
            raise FilterError(f"where {where!r} is not a valid condition on {tbl.display}: "
                              f"{exc.diag.message_primary or exc}") from None

    def _extent(self, tbl: Table, order_by: str):
        """The table's first and last ordering values, as bounds (when the request omits lo or hi)."""
        query = sql.SQL("SELECT min({0}), max({0}) FROM {1}").format(sql.Identifier(order_by), tbl.identifier)
        try:
            row = self.conn.execute(query).fetchone()
        except psycopg.DataError as exc:  # ±infinity dates and timestamps: Python has no such value
            raise RangeError(f"the first or last {order_by!r} of {tbl.display} cannot bound a range "
                             f"({exc}); give lo and hi") from None
        if row[0] is None:
            raise RangeError(f"table {tbl.display} has no rows with a non-NULL {order_by!r}; give lo and hi")
        order_kind = tbl.order_kind(order_by)
        try:  # the same checks as given bounds: NaN, the last timestamp Python holds
            return coerce_bound(row[0], order_kind, "lo"), coerce_bound(row[1], order_kind, "hi")
        except RangeError as exc:
            raise RangeError(f"the first or last {order_by!r} of {tbl.display} cannot bound a range ({exc}); "
                             f"give lo and hi") from None

    # -- living models (docs/deployments.md): thin doors onto modelstore.deploy ------------------------

    def deploy(self, name: str, kind: str, **options):
        """Deploy the exact model of a moving window of ``table`` (``window`` None/'all', a row count, or
        an interval such as '30 days'); returns a :class:`~modelstore.deploy.Deployment`."""
        check_name(name)
        return deploy.deploy(self, name, kind, **options)

    def deployment(self, name: str):
        """The handle of a deployment made earlier (by any session)."""
        check_name(name)
        return deploy.deployment(self, name)

    def deployments(self) -> pd.DataFrame:
        """One row per deployment: window, strategy, versions, pending writes."""
        return deploy.deployments(self)

    def undeploy(self, name: str, *, drop_model: bool = True) -> None:
        """End a deployment (its model row too, unless ``drop_model=False``)."""
        check_name(name)
        deploy.undeploy(self, name, drop_model=drop_model)

    def observe(self, name: str, X, y, *, groups=None, refresh: bool = True):
        """Write labelled rows (``X`` in the deployment's feature order, or mappings by column name; ``y`` the
        labels) to deployment ``name``'s table in one transaction, then refresh it so that the next
        prediction uses them (``refresh=False``: leave that to ``modelstore worker``). Returns a
        :class:`~modelstore.deploy.Observed`; bad rows raise ObservationError and nothing is written."""
        check_name(name)
        return deploy.observe(self, name, X, y, groups=groups, refresh_now=refresh)

    def rollback(self, name: str, version: int | None) -> int | None:
        """Pin deployment ``name`` to ``version`` (None: unpin, back to its strategy)."""
        check_name(name)
        return deploy.rollback(self, name, version)

    def __repr__(self) -> str:
        return f"<Store {self.conn.info.host}:{self.conn.info.port}/{self.conn.info.dbname}>"


def connect(dsn=None, **kwargs) -> Store:
    """Open a :class:`Store` (DESIGN.md §4): ``modelstore.connect()`` uses the environment or the embedded server."""
    return Store(dsn, **kwargs)


# -- argument checks (before any query runs) ----------------------------------------------------------

def _check_budget(budget) -> float:
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget <= 1:
        raise InputError(f"storage_budget must be a fraction in (0, 1], got {budget!r} instead")
    return float(budget)


@contextlib.contextmanager
def _progress(show: bool, what: str):
    """A rich progress bar driven by ``advance(total=…)`` / ``advance(advance=n)``; silent when not shown."""
    if not show:
        yield None
        return
    from rich.progress import Progress

    with Progress() as bar:
        task = bar.add_task(what, total=None)

        def advance(total=None, advance=None):
            if total is not None:
                bar.update(task, total=total)
            if advance is not None:
                bar.advance(task, advance)

        yield advance


@contextlib.contextmanager
def _filter_errors(descriptor: Descriptor):
    """A filter PostgreSQL accepts but that fails on a row (``x / 0 > 1``, a bad cast): FilterError."""
    try:
        yield
    except psycopg.DataError as exc:  # SQLSTATE class 22: data exceptions
        if not descriptor.filter_sql:
            raise
        raise FilterError(f"where {descriptor.filter_sql!r} failed on a row of {descriptor.source.qualified}: "
                          f"{exc.diag.message_primary or exc}") from None


def _with_notes(executed: ExecutedPlan, notes: tuple[str, ...]) -> ExecutedPlan:
    if not notes:
        return executed
    plan = dataclasses.replace(executed.plan, notes=tuple(dict.fromkeys(executed.plan.notes + notes)))
    return dataclasses.replace(executed, plan=plan)


def _chunk_notes(plan: Plan, *, warn: bool = True) -> tuple[str, ...]:
    """A trained family's plan that reuses stored chunk models of another size than ``chunk_rows``
    (they were trained by an earlier request): say so, in the plan and as a warning."""
    descriptor = plan.descriptor
    chunk_rows = descriptor.params.get("chunk_rows") if descriptor.family.trained else None
    sizes = sorted(s.est_rows for s in plan.steps if s.op == "stored" and s.est_rows)
    if not chunk_rows or not sizes:
        return ()
    typical = sizes[len(sizes) // 2]
    if max(sizes) <= chunk_rows * 1.1 and (len(sizes) < 2 or typical >= chunk_rows * 0.9):
        return ()
    note = (f"{len(sizes)} stored chunk model(s) of about {typical:,} rows are reused although chunk_rows="
            f"{chunk_rows:,}: chunk_rows applies only to the chunks trained now (use another l2, or drop the "
            f"stored chunks, for chunks of {chunk_rows:,} rows throughout)")
    if warn:
        warnings.warn(note, PlanNoteWarning, stacklevel=4)
    return (note,)


def _filter_probe(tbl: Table, filter_sql: str) -> sql.Composed:
    """PostgreSQL's check of a filter: the table planned with it, no row read."""
    # filter_sql is sqlglot's rendering of the parsed filter, identifiers checked (language/filters)
    return sql.SQL("SELECT FROM {} WHERE {} LIMIT 0").format(tbl.identifier, sql.SQL(filter_sql))


def _range_from_where(tbl: Table, order_by: str, order_kind: str, where: str, filter_sql: str, lo, hi
                      ) -> tuple[str, object, object, bool]:
    """Conditions of a Python ``where`` on the ordering column become the range, as the model language
    does (docs/language.md): a filter over the whole table would scan it and share nothing."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    from modelstore.language.where import split_where

    try:
        # the text as written: a conjunct under NOT or OR is not a range, as in the language
        tree = normalize_identifiers(sqlglot.parse_one(where, read="postgres"), dialect="postgres")
    except sqlglot.errors.ParseError:
        return filter_sql, lo, hi, False
    bounds = split_where(tree, order_by, order_kind, tbl.columns[order_by].type_name)
    if bounds.lo is None and bounds.hi is None:
        return filter_sql, lo, hi, False
    new_lo = bounds.lo if lo is None else lo if bounds.lo is None else max(lo, bounds.lo)
    new_hi = bounds.hi if hi is None else hi if bounds.hi is None else min(hi, bounds.hi)
    residual = None
    if bounds.residual is not None:
        residual = bounds.residual.copy()
        for column in residual.find_all(exp.Column):
            column.this.set("quoted", True)
        residual = normalize_filter(residual.sql(dialect="postgres"), set(tbl.columns))
    return residual or "", new_lo, new_hi, True


def _check_stats(descriptor: Descriptor, stats) -> None:
    """Refuse statistics no model can be fitted on: no rows, or NaN/±inf values."""
    if stats.n == 0:
        where = f" WHERE {descriptor.filter_sql}" if descriptor.filter_sql else ""
        if stats.null_rows:
            raise RangeError(
                f"all {stats.null_rows} row(s) of {descriptor.source.qualified} in {descriptor.range}{where} have a "
                f"NULL in one of {list(dict.fromkeys(descriptor.stats_columns + (descriptor.target,)))}"
            )
        raise RangeError(f"no rows of {descriptor.source.qualified} in {descriptor.range}{where}")
    bad = stats.non_finite_columns()
    if bad:
        raise NonFiniteValueError(
            f"column(s) {bad} hold NaN or ±Infinity in {descriptor.range}; filter them out with where=… to fit"
        )
