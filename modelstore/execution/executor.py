"""Run a plan: fetch its stored statistics in one round trip, aggregate all its scans inside
PostgreSQL in as few statements as possible (one, unless scanned ranges overlap), and combine
everything with the steps' signs (paper §3.3, Fig. 1c).

The executor knows nothing about how a plan was chosen: any signed sum of stored statistics and
range scans whose ranges add up to the request gives the request's exact statistics. It also
measures what the plan's subtractions cost in precision (:func:`digits_lost`), so that the caller
can refuse a plan that cancelled too much (the numerical guard, ``docs/planner.md``).
"""

from __future__ import annotations

import math
import time

import numpy as np
import psycopg
from psycopg import sql

from modelstore.catalog import index, records
from modelstore.execution import partitions, shards
from modelstore.request import bounds
from modelstore.request.cuts import range_cuts, whole_key
from modelstore.request.descriptor import Descriptor, Range
from modelstore.request.predicates import range_predicate, with_filter
from modelstore.planner.plan import ExecutedPlan, Plan, StepResult
from modelstore.request.source import Table
from modelstore.stats import engine as stats_engine


def scan_query(table: Table, descriptor: Descriptor, ranges: list[Range], max_classes: int,
               engine: tuple[str, str] = ("sql", ""), *, by_range: bool = False) -> sql.Composed:
    """The single aggregate statement computing the descriptor's statistics over each of ``ranges``
    (which must not overlap); with several ranges each result row starts with its range's number.

    ``by_range``: one aggregate per range, joined by ``UNION ALL``, instead of one aggregate grouped by a
    ``CASE`` on the ranges — for ranges cut at a range-partitioned table's partition bounds, where each
    arm is pruned to its own partitions and no row pays for the ``CASE`` and the grouping."""
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    preds = [range_predicate(descriptor.source.order_by, r) for r in ranges]
    if by_range and len(ranges) > 1:
        return sql.SQL(" UNION ALL ").join(
            sql.SQL("({})").format(descriptor.family.aggregate_query(
                table.identifier, values, with_filter(descriptor, p), descriptor.target, max_classes,
                sql.Literal(i), len(ranges), engine=engine))
            for i, p in enumerate(preds))
    if len(ranges) == 1:
        where, part = with_filter(descriptor, preds[0]), None
    else:
        where = with_filter(descriptor, sql.SQL(" OR ").join(sql.SQL("({})").format(p) for p in preds))
        part = sql.SQL("CASE {} END").format(sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(p, sql.Literal(i)) for i, p in enumerate(preds)))
    return descriptor.family.aggregate_query(table.identifier, values, where, descriptor.target, max_classes, part,
                                             len(ranges), engine=engine)


def scan_many(conn: psycopg.Connection, table: Table, descriptor: Descriptor, ranges: list[Range],
              max_classes: int = 1000, engine: tuple[str, str] | None = None, *, by_range: bool = False) -> list:
    """Statistics of each of ``ranges`` (non-overlapping) by one aggregate statement, on the connection's
    statistics engine (:mod:`modelstore.stats.engine`) unless ``engine`` is given (``by_range``: see
    :func:`scan_query`)."""
    engine = engine or stats_engine.engine(conn)
    if table.shards:  # one aggregate per partition, pushed down to its shard (docs/scale-out.md)
        return shards.scan_many(conn, table, descriptor, ranges, max_classes, engine, from_rows)[0]
    rows = conn.execute(scan_query(table, descriptor, ranges, max_classes, engine, by_range=by_range)).fetchall()
    if len(ranges) == 1:
        return [from_rows(descriptor, ranges[0], rows, max_classes, engine)]
    by_part: dict[int, list] = {i: [] for i in range(len(ranges))}
    for row in rows:
        by_part[row[0]].append(row[1:])
    return [from_rows(descriptor, r, by_part[i], max_classes, engine) for i, r in enumerate(ranges)]


def scan(conn: psycopg.Connection, table: Table, descriptor: Descriptor, r: Range, max_classes: int = 1000,
         engine: tuple[str, str] | None = None):
    """Statistics of one range by one aggregate statement (the paper's from-scratch baseline)."""
    return scan_many(conn, table, descriptor, [r], max_classes, engine)[0]


def from_rows(descriptor: Descriptor, r: Range, rows, max_classes: int, engine: tuple[str, str] = ("sql", "")):
    """The statistics of range ``r`` from the rows its aggregate returned (class checks included)."""
    return descriptor.family.from_aggregate(descriptor.stats_columns, rows, target=descriptor.target, where=str(r),
                                            max_classes=max_classes, engine=engine)


# -- the partial-chunk pieces, scanned in the request's first round trip (docs/planner.md, "Round trips") ----

#: where modelstore.request_context leaves the pieces' cut keys and their two [lo, hi) key windows
PIECE_CUTS = sql.SQL("(SELECT nullif(pg_catalog.current_setting('modelstore.piece_cuts', true), '')::bigint[])")
PIECE_WINDOWS = sql.SQL("(SELECT nullif(pg_catalog.current_setting('modelstore.piece_windows', true), '')::bigint[])")
_EPOCH = sql.SQL("DATE '1970-01-01'")
#: a timestamp (timestamptz) column's whole key — microseconds since the epoch (UTC) — as a value (sql/request.sql)
_KEY_VALUE = {"timestamp": sql.SQL("modelstore.whole_key_timestamp"),
              "timestamptz": sql.SQL("modelstore.whole_key_timestamptz")}


def piece_scan_query(table: Table, descriptor: Descriptor, max_pieces: int, max_classes: int = 1000,
                     engine: tuple[str, str] = ("sql", "")) -> sql.Composed:
    """One aggregate per piece of the chunks holding a request's ends, as ``modelstore.request_context``
    left them in its transaction's settings (integer, date and timestamp ordering columns, whose cut keys are
    whole keys — the value, its day number, its microseconds since the epoch: request/cuts.py — and lie
    "just before" it). The statement is sent in the same pipeline as that call, before its rows are seen:
    without pieces (no index, no lock) its range is empty and it reads nothing. Each result row starts with
    the piece's number (``width_bucket``: piece i lies between cuts i − 1 and i, counted from 1).

    The windows' bounds are compared with the ordering column itself (an index range scan on it stays usable):
    dates and timestamps are made from the keys once per statement, not a key from every row's value. A
    timestamp column is also bucketed on its values, its cuts made timestamps once."""
    col = sql.Identifier(descriptor.source.order_by)
    kind = descriptor.source.order_kind
    if kind == "date":
        key, cuts = sql.SQL("({} - {})").format(col, _EPOCH), PIECE_CUTS

        def bound(i: int) -> sql.Composable:
            return sql.SQL("{} + {}[{}]::integer").format(_EPOCH, PIECE_WINDOWS, sql.Literal(i))
    elif kind == "integer":
        key, cuts = col, PIECE_CUTS

        def bound(i: int) -> sql.Composable:
            return sql.SQL("{}[{}]").format(PIECE_WINDOWS, sql.Literal(i))
    elif kind in _KEY_VALUE:
        value = _KEY_VALUE[kind]
        key = col
        cuts = sql.SQL("(SELECT pg_catalog.array_agg({}(u.c) ORDER BY u.i) FROM pg_catalog.unnest({}) "
                       "WITH ORDINALITY AS u(c, i))").format(value, PIECE_CUTS)

        def bound(i: int) -> sql.Composable:
            return sql.SQL("{}({}[{}])").format(value, PIECE_WINDOWS, sql.Literal(i))
    else:
        raise ValueError(f"pieces are cut on integer, date and timestamp keys, not {kind}")
    where = sql.SQL("({0} >= {1} AND {0} < {2}) OR ({0} >= {3} AND {0} < {4})").format(
        col, bound(1), bound(2), bound(3), bound(4))
    part = sql.SQL("width_bucket({}, {})").format(key, cuts)
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    return descriptor.family.aggregate_query(table.identifier, values, where, descriptor.target, max_classes,
                                             part, max_pieces, engine=engine)


#: set to 'on' by modelstore.request_context when the from-scratch scan pipelined after it may read the rows
SCRATCH_ON = sql.SQL("pg_catalog.current_setting('modelstore.scratch_scan', true) = 'on'")


def scratch_scan_query(table: Table, descriptor: Descriptor, max_classes: int = 1000,
                       engine: tuple[str, str] = ("sql", "")) -> sql.Composed:
    """The request's from-scratch aggregate, sent in the same pipeline as ``modelstore.request_context``
    (docs/planner.md, "Round trips"): it reads rows only when that call, under the source lock, found nothing
    stored or indexed that can serve the request (the setting is a one-time filter: otherwise no row is read)."""
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    query = descriptor.family.aggregate_query(table.identifier, values, with_filter(descriptor, range_predicate(
        descriptor.source.order_by, descriptor.range)), descriptor.target, max_classes, None, 1, engine=engine)
    # the gate filters the aggregate's result, not its rows: a one-time filter in a Result node above the
    # aggregate (OFFSET 0 keeps it out of the subquery), which runs the scan only when on — in the WHERE clause
    # it sat below the aggregate, and every row of the scan passed through it (about 1 ms per 50K rows)
    return sql.SQL("SELECT * FROM ({} OFFSET 0) AS q WHERE {}").format(query, SCRATCH_ON)


def scratch_parts(plan: Plan, rows, max_classes: int, engine: tuple[str, str]) -> dict[int, object]:
    """{0: the statistics} when ``plan`` is the one scan of the request's whole range that
    :func:`scratch_scan_query` read, else {} (the plan's scans then run as usual)."""
    descriptor = plan.descriptor
    if len(plan.steps) != 1 or plan.steps[0].op != "scan" or plan.steps[0].range != descriptor.range:
        return {}
    return {0: from_rows(descriptor, descriptor.range, rows, max_classes, engine)}


def piece_parts(plan: Plan, pieces, rows, max_classes: int, engine: tuple[str, str]) -> dict[int, object]:
    """The statistics of the plan's scan steps that are runs of scanned pieces, by step index.

    ``pieces``: (cut keys, windows) from the request's context; ``rows``: what :func:`piece_scan_query`
    returned. A scan step is answered when both its ends are cuts and every piece between them lies in a
    window; its statistics are the sum of its pieces' (a piece without rows adds nothing)."""
    if pieces is None:
        return {}
    cuts, windows = pieces
    descriptor = plan.descriptor
    kind = descriptor.source.order_kind
    by_part: dict[int, list] = {}
    for row in rows:
        by_part.setdefault(row[0], []).append(row[1:])
    where = {c: i for i, c in enumerate(cuts)}
    scanned: dict[int, object] = {}
    out = {}
    for i, step in enumerate(plan.steps):
        if step.op != "scan":
            continue
        lo, hi = (whole_key(c, kind) for c in range_cuts(step.range, kind))
        if lo not in where or hi not in where:
            continue
        parts = range(where[lo] + 1, where[hi] + 1)  # piece j: [cuts[j − 1], cuts[j])
        if not all(any(w_lo <= cuts[j - 1] and cuts[j] <= w_hi for w_lo, w_hi in windows) for j in parts):
            continue
        for j in parts:
            if j not in scanned:
                scanned[j] = from_rows(descriptor, step.range, by_part.get(j, []), max_classes, engine)
        out[i] = descriptor.family.sum(descriptor.stats_columns, [scanned[j] for j in parts])
    return out


#: decimal digits double-double statistics carry beyond float64's (106 vs 53 bits: 16; one kept in reserve)
DD_EXTRA_DIGITS = 15.0

#: the most rows the executor brings to Python instead of aggregating them in PostgreSQL
MAX_FETCHED_ROWS = 20_000


def fetch_many(conn: psycopg.Connection, table: Table, descriptor: Descriptor, ranges: list[Range],
               max_classes: int = 1000) -> list:
    """Statistics of each of ``ranges`` computed in Python from their rows, fetched in one statement.

    For a few hundred rows — the partial chunks at a request's ends — PostgreSQL spends more time planning
    and running k(k+1)/2 ``regr_sxy`` aggregates than it takes to send the rows in binary; the
    statistics are the same (two-pass means and centered products in numpy). The executor chooses this
    only when the calibrated cost model says it is cheaper (:func:`fetch_is_cheaper`).
    """
    out = []
    for r, (X, labels, null_rows) in zip(ranges, fetch_rows(conn, table, descriptor, ranges)):
        out.append(descriptor.family.from_values(descriptor.stats_columns, X, labels, null_rows=null_rows,
                                                 target=descriptor.target, where=str(r), max_classes=max_classes))
    return out


def fetch_rows(conn: psycopg.Connection, table: Table, descriptor: Descriptor, ranges: list[Range]) -> list[tuple]:
    """The rows of each of ``ranges`` in one statement (binary): per range (X, labels, null_rows) — the
    statistics columns of its complete rows as float64, their class labels (classifiers), and how many
    rows had a NULL in a used column."""
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    preds = [range_predicate(descriptor.source.order_by, r) for r in ranges]
    part = sql.SQL("CASE {} END").format(sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(p, sql.Literal(i)) for i, p in enumerate(preds)))
    where = with_filter(descriptor, sql.SQL(" OR ").join(sql.SQL("({})").format(p) for p in preds))
    items = [part, *values]
    if descriptor.class_column:
        items.append(sql.Identifier(descriptor.class_column))
    rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(items), table.identifier, where), binary=True).fetchall()
    k = len(values)
    out = []
    for i in range(len(ranges)):
        mine = [row for row in rows if row[0] == i]
        complete = [row for row in mine if all(v is not None for v in row[1:])]
        X = np.array([row[1 : 1 + k] for row in complete], dtype=float).reshape(-1, k)
        labels = [row[-1] for row in complete] if descriptor.class_column else []
        out.append((X, labels, len(mine) - len(complete)))
    return out


def fetch_is_cheaper(cost_model, descriptor: Descriptor, rows: float, engine: str = "sql") -> bool:
    """Whether fetching ``rows`` rows to Python beats aggregating them in PostgreSQL, by the cost model.
    Never with the C engine: its statistics are double-double, numpy's would be float64, and one plan
    does not mix the two (and one call per row leaves little for fetching to win)."""
    if cost_model is None or rows > MAX_FETCHED_ROWS or engine == "c":
        return False
    k = len(descriptor.stats_columns) + (1 if descriptor.class_column else 0)
    fetch = cost_model.statement_ms + cost_model.fetch_ms(rows * k, rows=int(rows))
    aggregate = cost_model.scan_statement_ms(descriptor.kind, k) + cost_model.scan_ms(descriptor.kind, k, rows)
    return fetch < aggregate


def _statements(ranges: list[Range]) -> list[list[int]]:
    """Group range indices into statements so that no statement holds two overlapping ranges."""
    def overlaps(a: Range, b: Range) -> bool:
        lo_ok = a.hi > b.lo or (a.hi == b.lo and a.hi_closed and b.lo_closed)
        hi_ok = b.hi > a.lo or (b.hi == a.lo and b.hi_closed and a.lo_closed)
        return lo_ok and hi_ok

    groups: list[list[int]] = []
    for i in sorted(range(len(ranges)), key=lambda i: (ranges[i].lo, ranges[i].hi)):
        for g in groups:
            if not any(overlaps(ranges[i], ranges[j]) for j in g):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


# -- precision ------------------------------------------------------------------------------------------

def digits_lost(peak: np.ndarray, final: np.ndarray) -> float:
    """Decimal digits lost to cancellation: log10 of the largest ratio of a magnitude reached on the
    way (the running sum or any part) to the result's. Rounding errors scale with the former, the
    answer with the latter; a plan without subtraction has ratio ≤ 1 and loses nothing."""
    ratio = [p / f for p, f in zip(peak, final) if f > 0 and p > f]
    return max((math.log10(x) for x in ratio), default=0.0)


def execute(conn: psycopg.Connection, plan: Plan, table: Table, *, max_classes: int = 1000, cost_model=None,
            known: dict | None = None, keep: tuple[tuple[Range, Range], ...] = (),
            kept: dict | None = None, context=None, known_seconds: dict | None = None):
    """Run ``plan``; returns (the request's statistics, the executed plan with per-step rows and time).

    Scans are aggregated in PostgreSQL, or — when ``cost_model`` says it is cheaper (a few hundred rows)
    — their rows are fetched and summarised in Python (:func:`fetch_many`). ``known``: statistics of
    some steps (by index) that the caller already read in statements of its own (a deployment's refresh
    reads its previous window's summary with its state, and fetches its edges' rows once for two uses);
    they are combined like the rest; ``known_seconds``: what reading them took, by step index.

    ``keep``: (piece, stored range) pairs — whole partitions of a range-partitioned table
    (docs/scale-out.md, "Statistics per partition"). A scan step that contains a piece is cut there, in
    the same statement, and the piece's statistics go into ``kept`` under its stored range.

    ``context``: a :class:`~modelstore.catalog.context.RequestContext` whose statistics and index nodes
    are used instead of fetching them again."""
    descriptor = plan.descriptor
    columns = descriptor.stats_columns
    started = time.perf_counter()
    engine = stats_engine.engine(conn)
    if table.shards:  # the engine every shard can run (docs/scale-out.md)
        engine = shards.shard_engine(list(table.shards), engine)
    parts: dict[int, object] = {i: stats.select(columns) for i, stats in (known or {}).items()}
    shares: dict[int, float] = {i: (known_seconds or {}).get(i, 0.0) for i in parts}

    stored = [i for i, s in enumerate(plan.steps) if s.op == "stored" and i not in parts]
    if stored:
        t0 = time.perf_counter()
        fetched = records.fetch_stats(conn, [plan.steps[i].stats_id for i in stored],
                                      known=context.stats if context is not None else None)
        elapsed = time.perf_counter() - t0
        for i in stored:
            parts[i] = fetched[plan.steps[i].stats_id].select(columns)
            shares[i] = elapsed / len(stored)

    spans = [i for i, s in enumerate(plan.steps) if s.op == "index"]
    if spans:  # every node of every index step, in one round trip, then each step's nodes summed
        t0 = time.perf_counter()
        wanted: dict[int, tuple[str, tuple[str, ...], set]] = {}
        for i in spans:
            step = plan.steps[i]
            wanted.setdefault(step.stats_id, (descriptor.kind, step.stored_columns, set()))[2].update(step.nodes)
        nodes = index.fetch_nodes(conn, wanted, known=context.nodes if context is not None else None)
        elapsed = time.perf_counter() - t0
        for i in spans:
            step = plan.steps[i]
            # the span's nodes in one vectorised merge (docs/statistics.md)
            parts[i] = descriptor.family.sum(
                step.stored_columns, [nodes[(step.stats_id, level, pos)] for level, pos in step.nodes]).select(columns)
            shares[i] = elapsed / len(spans)

    scans = [i for i, s in enumerate(plan.steps) if s.op == "scan" and i not in parts]
    # each scan step as pieces: the whole partitions it contains, and the rest between them
    pieces: list[Range] = []
    owner: list[int] = []  # the scan step each piece belongs to
    stored_as: dict[int, Range] = {}  # piece → the range its statistics are kept under
    for i in scans:
        r = plan.steps[i].range
        inside = [(piece, as_) for piece, as_ in keep if bounds.contains(r, piece)]
        for piece in bounds.split(r, [piece for piece, _ in inside], descriptor.source.order_kind):
            as_ = next((as_ for p, as_ in inside if p == piece), None)
            if as_ is not None:
                stored_as[len(pieces)] = as_
            pieces.append(piece)
            owner.append(i)
    for group in _statements(pieces):
        t0 = time.perf_counter()
        # a step's estimate spread over its pieces by their count (only the fetch-or-aggregate choice uses it)
        est_rows = sum((plan.steps[owner[j]].est_rows or MAX_FETCHED_ROWS + 1) / owner.count(owner[j]) for j in group)
        if not table.shards and fetch_is_cheaper(cost_model, descriptor, est_rows, engine[0]):
            results = fetch_many(conn, table, descriptor, [pieces[j] for j in group], max_classes)
        else:
            results = scan_many(conn, table, descriptor, [pieces[j] for j in group], max_classes, engine,
                                by_range=bool(stored_as))
        elapsed = time.perf_counter() - t0
        total_rows = sum(r.n + r.null_rows for r in results) or 1
        for j, stats in zip(group, results):
            i = owner[j]
            parts[i] = stats if i not in parts else parts[i] + stats
            shares[i] = shares.get(i, 0.0) + elapsed * ((stats.n + stats.null_rows) / total_rows)
            if j in stored_as and kept is not None:
                kept[stored_as[j]] = stats
    for i in scans:  # a step whose range holds no value of the column (nothing to scan)
        parts.setdefault(i, descriptor.family.empty(columns))
        shares.setdefault(i, 0.0)

    # Additions first, then subtractions: a path may subtract before it adds (Figure 1: c → a removes
    # D1 first), but statistics cannot hold "minus some rows". After every addition each row is counted
    # at least as often as it is subtracted, so every intermediate result is a valid summary.
    steps = range(len(plan.steps))
    peak = None
    merge_seconds = {}
    if parts and all(step.sign > 0 for step in plan.steps):
        # additions only (every plan but a subtraction): one vectorised merge; the peak magnitude is the
        # largest of the parts' and the total's (a union's counts and squared deviations only grow)
        t0 = time.perf_counter()
        total = descriptor.family.sum(columns, [parts[i] for i in steps])
        peak = descriptor.family.magnitudes(total)
        for i in steps:
            peak = np.maximum(peak, descriptor.family.magnitudes(parts[i]))
        merge_seconds = dict.fromkeys(steps, (time.perf_counter() - t0) / len(plan.steps))
    else:
        total = descriptor.family.empty(columns)
        for i in sorted(steps, key=lambda i: plan.steps[i].sign < 0):
            t0 = time.perf_counter()
            part = parts[i]
            if plan.steps[i].sign > 0:
                total += part
            else:
                total -= part
            magnitudes = np.maximum(descriptor.family.magnitudes(part), descriptor.family.magnitudes(total))
            peak = magnitudes if peak is None else np.maximum(peak, magnitudes)
            merge_seconds[i] = time.perf_counter() - t0
    step_results = tuple(StepResult(step, parts[i].n + parts[i].null_rows, shares[i] + merge_seconds[i])
                         for i, step in enumerate(plan.steps))
    lost = digits_lost(peak, descriptor.family.magnitudes(total)) if peak is not None else 0.0
    if precision_of(total) == "double-double":
        # double-double carries DD_EXTRA_DIGITS more digits than float64: only cancellation beyond them
        # costs the result digits a float64 plan would have (the numerical guard compares this)
        lost = max(0.0, lost - DD_EXTRA_DIGITS)
    extra = {"Statistics": statistics_note(engine[0], [parts[i] for i in parts], total)}
    ranges = [plan.steps[i].range for i in scans]
    if table.kind == "p" and ranges:
        extra["Partitions"] = partitions.partitions_note(conn, table, descriptor, ranges)
    if table.shards and ranges:
        servers = sorted({p.server or "?" for p in table.shards})
        extra["Shards"] = (f"one aggregate per partition, each foreign partition's pushed down to its shard "
                           f"({', '.join(servers)}), all in one statement whose foreign scans run concurrently on "
                           f"async_capable servers; merged here exactly (paper §3.3)")
    return total, ExecutedPlan(plan, step_results, time.perf_counter() - started, digits_lost=lost, extra=extra)


def precision_of(stats) -> str:
    """'double-double' or 'float64' (families without low parts are float64)."""
    return getattr(stats, "precision", "float64")


def statistics_note(engine: str, parts: list, total) -> str:
    """Which engine computed the scans and in which precision the parts were combined; a plan that
    combined double-double with float64 statistics says so (its result is float64)."""
    used = sorted({precision_of(p) for p in parts if p.n})
    scanned = stats_engine.DESCRIPTIONS[engine]
    if len(used) > 1:
        return (f"scans by {scanned}; mixed precisions ({' and '.join(used)}): combined in float64 "
                f"(the float64 parts are stored statistics from the SQL aggregates or kept by change capture)")
    return f"scans by {scanned}; combined in {precision_of(total)}"
