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

from modelstore import catalog, index
from modelstore.descriptor import Descriptor, Range
from modelstore.errors import InputError, TooManyClassesError
from modelstore.plan import ExecutedPlan, Plan, StepResult
from modelstore.source import Table
from modelstore.stats import FAMILIES, gaussian_nb, linear, multinomial_nb


def range_predicate(order_by: str, r: Range) -> sql.Composed:
    """``order_by >= lo AND order_by <= hi`` (strict where the range is open), values as literals."""
    col = sql.Identifier(order_by)
    return sql.SQL("{} {} {} AND {} {} {}").format(
        col, sql.SQL(">=" if r.lo_closed else ">"), sql.Literal(r.lo),
        col, sql.SQL("<=" if r.hi_closed else "<"), sql.Literal(r.hi),
    )


def _with_filter(descriptor: Descriptor, pred: sql.Composable) -> sql.Composable:
    """Add the normalised residual filter — SQL that sqlglot generated from a validated expression
    tree (:func:`modelstore.descriptor.normalize_filter`), never the user's text verbatim."""
    if descriptor.filter_sql:
        return sql.SQL("({}) AND ({})").format(pred, sql.SQL(descriptor.filter_sql))
    return pred


def row_predicate(descriptor: Descriptor, r: Range) -> sql.Composable:
    """The WHERE clause of a scan: the range plus the residual filter."""
    return _with_filter(descriptor, range_predicate(descriptor.source.order_by, r))


def scan_query(table: Table, descriptor: Descriptor, ranges: list[Range], max_classes: int) -> sql.Composed:
    """The single aggregate statement computing the descriptor's statistics over each of ``ranges``
    (which must not overlap); with several ranges each result row starts with its range's number."""
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    preds = [range_predicate(descriptor.source.order_by, r) for r in ranges]
    if len(ranges) == 1:
        where, part = _with_filter(descriptor, preds[0]), None
    else:
        where = _with_filter(descriptor, sql.SQL(" OR ").join(sql.SQL("({})").format(p) for p in preds))
        part = sql.SQL("CASE {} END").format(sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(p, sql.Literal(i)) for i, p in enumerate(preds)))
    if descriptor.family == "linear":
        return linear.aggregate_query(table.identifier, values, where, part)
    module = gaussian_nb if descriptor.family == "gaussian_nb" else multinomial_nb
    return module.aggregate_query(table.identifier, values, where, sql.Identifier(descriptor.target),
                                  max_classes, part, len(ranges))


def scan_many(conn: psycopg.Connection, table: Table, descriptor: Descriptor, ranges: list[Range],
              max_classes: int = 1000) -> list:
    """Statistics of each of ``ranges`` (non-overlapping) by one aggregate statement."""
    rows = conn.execute(scan_query(table, descriptor, ranges, max_classes)).fetchall()
    if len(ranges) == 1:
        return [from_rows(descriptor, ranges[0], rows, max_classes)]
    by_part: dict[int, list] = {i: [] for i in range(len(ranges))}
    for row in rows:
        by_part[row[0]].append(row[1:])
    return [from_rows(descriptor, r, by_part[i], max_classes) for i, r in enumerate(ranges)]


def scan(conn: psycopg.Connection, table: Table, descriptor: Descriptor, r: Range, max_classes: int = 1000):
    """Statistics of one range by one aggregate statement (the paper's from-scratch baseline)."""
    return scan_many(conn, table, descriptor, [r], max_classes)[0]


def from_rows(descriptor: Descriptor, r: Range, rows, max_classes: int):
    """The statistics of range ``r`` from the rows its aggregate returned (class checks included)."""
    columns = descriptor.stats_columns
    if descriptor.family == "linear":
        return linear.from_aggregate_row(columns, rows[0]) if rows else FAMILIES["linear"](columns)
    if sum(1 for row in rows if row[0] is not None) > max_classes:
        raise TooManyClassesError(
            f"class column {descriptor.target!r} has more than {max_classes} distinct values in {r}; "
            f"is it really a class label? (raise max_classes to allow more)"
        )
    if descriptor.family == "gaussian_nb":
        return gaussian_nb.from_aggregate_rows(columns, rows)
    stats, negative = multinomial_nb.from_aggregate_rows(columns, rows)
    if negative:
        raise InputError(
            f"multinomial Naive Bayes needs non-negative feature counts; {negative} row(s) in {r} have a negative value"
        )
    return stats


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
    values = [table.columns[c].value_expr() for c in descriptor.stats_columns]
    preds = [range_predicate(descriptor.source.order_by, r) for r in ranges]
    part = sql.SQL("CASE {} END").format(sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(p, sql.Literal(i)) for i, p in enumerate(preds)))
    where = _with_filter(descriptor, sql.SQL(" OR ").join(sql.SQL("({})").format(p) for p in preds))
    items = [part, *values]
    if descriptor.family != "linear":
        items.append(sql.Identifier(descriptor.target))
    rows = conn.execute(sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(items), table.identifier, where), binary=True).fetchall()
    k = len(values)
    out = []
    for i, r in enumerate(ranges):
        mine = [row for row in rows if row[0] == i]
        complete = [row for row in mine if all(v is not None for v in row[1:])]
        null_rows = len(mine) - len(complete)
        X = np.array([row[1 : 1 + k] for row in complete], dtype=float).reshape(-1, k)
        columns = descriptor.stats_columns
        if descriptor.family == "linear":
            out.append(FAMILIES["linear"].from_rows(columns, X, null_rows=null_rows))
            continue
        labels = [row[-1] for row in complete]
        if len(set(labels)) > max_classes:
            raise TooManyClassesError(f"class column {descriptor.target!r} has more than {max_classes} distinct "
                                      f"values in {r}; is it really a class label? (raise max_classes to allow more)")
        if descriptor.family == "multinomial_nb" and (X < 0).any():
            raise InputError(f"multinomial Naive Bayes needs non-negative feature counts; "
                             f"{int((X < 0).any(axis=1).sum())} row(s) in {r} have a negative value")
        cls = FAMILIES[descriptor.family]
        out.append(cls.from_rows(columns, X, labels, null_rows=null_rows) if complete else cls(columns, null_rows=null_rows))
    return out


def fetch_is_cheaper(cost_model, descriptor: Descriptor, rows: float) -> bool:
    """Whether fetching ``rows`` rows to Python beats aggregating them in PostgreSQL, by the cost model."""
    if cost_model is None or rows > MAX_FETCHED_ROWS:
        return False
    k = len(descriptor.stats_columns) + (0 if descriptor.family == "linear" else 1)
    fetch = cost_model.statement_ms + cost_model.fetch_ms(rows * k, rows=int(rows))
    aggregate = cost_model.scan_statement_ms(descriptor.family, k) + cost_model.scan_ms(descriptor.family, k, rows)
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

def _magnitudes(stats) -> np.ndarray:
    """The scale of each statistic that subtraction can cancel: row count and second moments."""
    if stats.family == "linear":
        return np.r_[stats.n, np.diag(stats.comoment)]
    if stats.family == "gaussian_nb":
        return np.r_[stats.n, stats.m2.sum(axis=0)]
    return np.r_[stats.n, stats.feature_sums.sum(axis=0)]


def digits_lost(peak: np.ndarray, final: np.ndarray) -> float:
    """Decimal digits lost to cancellation: log10 of the largest ratio of a magnitude reached on the
    way (the running sum or any part) to the result's. Rounding errors scale with the former, the
    answer with the latter; a plan without subtraction has ratio ≤ 1 and loses nothing."""
    ratio = [p / f for p, f in zip(peak, final) if f > 0 and p > f]
    return max((math.log10(x) for x in ratio), default=0.0)


def execute(conn: psycopg.Connection, plan: Plan, table: Table, *, max_classes: int = 1000, cost_model=None):
    """Run ``plan``; returns (the request's statistics, the executed plan with per-step rows and time).

    Scans are aggregated in PostgreSQL, or — when ``cost_model`` says it is cheaper (a few hundred rows)
    — their rows are fetched and summarised in Python (:func:`fetch_many`)."""
    descriptor = plan.descriptor
    columns = descriptor.stats_columns
    started = time.perf_counter()
    parts: dict[int, object] = {}
    shares: dict[int, float] = {}

    stored = [i for i, s in enumerate(plan.steps) if s.op == "stored"]
    if stored:
        t0 = time.perf_counter()
        fetched = catalog.fetch_stats(conn, [plan.steps[i].stats_id for i in stored])
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
            wanted.setdefault(step.stats_id, (descriptor.family, step.stored_columns, set()))[2].update(step.nodes)
        nodes = index.fetch_nodes(conn, wanted)
        elapsed = time.perf_counter() - t0
        for i in spans:
            step = plan.steps[i]
            total_part = FAMILIES[descriptor.family](step.stored_columns)
            for level, pos in step.nodes:
                total_part += nodes[(step.stats_id, level, pos)]
            parts[i] = total_part.select(columns)
            shares[i] = elapsed / len(spans)

    scans = [i for i, s in enumerate(plan.steps) if s.op == "scan"]
    ranges = [plan.steps[i].range for i in scans]
    for group in _statements(ranges):
        t0 = time.perf_counter()
        est_rows = sum(plan.steps[scans[j]].est_rows or MAX_FETCHED_ROWS + 1 for j in group)
        run = fetch_many if fetch_is_cheaper(cost_model, descriptor, est_rows) else scan_many
        results = run(conn, table, descriptor, [ranges[j] for j in group], max_classes)
        elapsed = time.perf_counter() - t0
        total_rows = sum(r.n + r.null_rows for r in results) or 1
        for j, stats in zip(group, results):
            parts[scans[j]] = stats
            shares[scans[j]] = elapsed * ((stats.n + stats.null_rows) / total_rows if total_rows else 1 / len(group))

    # Additions first, then subtractions: a path may subtract before it adds (Figure 1: c → a removes
    # D1 first), but statistics cannot hold "minus some rows". After every addition each row is counted
    # at least as often as it is subtracted, so every intermediate result is a valid summary.
    total = FAMILIES[descriptor.family](columns)
    peak = None
    merge_seconds = {}
    for i in sorted(range(len(plan.steps)), key=lambda i: plan.steps[i].sign < 0):
        t0 = time.perf_counter()
        part = parts[i]
        if plan.steps[i].sign > 0:
            total += part
        else:
            total -= part
        magnitudes = np.maximum(_magnitudes(part), _magnitudes(total))
        peak = magnitudes if peak is None else np.maximum(peak, magnitudes)
        merge_seconds[i] = time.perf_counter() - t0
    step_results = tuple(StepResult(step, parts[i].n + parts[i].null_rows, shares[i] + merge_seconds[i])
                         for i, step in enumerate(plan.steps))
    lost = digits_lost(peak, _magnitudes(total)) if peak is not None else 0.0
    return total, ExecutedPlan(plan, step_results, time.perf_counter() - started, digits_lost=lost)
