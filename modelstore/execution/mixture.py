"""Executing a logistic plan: mixture weights over chunk models (paper §4, Algorithm 2).

A logistic plan has ``stored`` steps (chunk models materialised by earlier requests, contained in
this one) and ``train`` steps (the rest). The executor fetches the stored chunks in one round trip
and the rows of every train step in one statement, cuts each train step's rows into chunks of about
``chunk_rows`` rows along the ordering column, trains one L2-regularised logistic model per chunk
(:func:`modelstore.models.logistic.train_chunk`), and returns the size-weighted average of all
chunk models (:class:`~modelstore.models.logistic.LogisticMixture`) together with the new chunks, which
the store always materialises. The chunks of a train step tile its range, so that later requests
meet them without gaps on discrete ordering columns.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import psycopg
from psycopg import sql

from modelstore.catalog import records
from modelstore.request.descriptor import Descriptor, Range, parse_bound
from modelstore.errors import InputError, NonFiniteValueError, TooManyClassesError
from modelstore.request.predicates import range_predicate, row_predicate
from modelstore.models.logistic import ChunkModel, LogisticMixture, train_chunk, train_chunks
from modelstore.planner.plan import ExecutedPlan, Plan, StepResult
from modelstore.request.cuts import cuts_range, make_cut, range_cuts
from modelstore.request.source import Table
from modelstore.stats._classes import normalize_label, sorted_labels


def params_key(l2: float) -> str:
    """Chunk models are reusable only by requests with the same objective."""
    return f"l2={float(l2)!r}"


def fetch_chunks(conn: psycopg.Connection, stats_ids: list[int], features: tuple[str, ...],
                 order_kind: str) -> dict[int, ChunkModel]:
    """Stored chunk models in one round trip, their coefficients in the request's feature order."""
    if not stats_ids:
        return {}
    rows = conn.execute(
        """
        SELECT stats_id, lo, hi, columns, n, classes, counts, mean, moments, extra
        FROM modelstore.statistics WHERE stats_id = ANY (%s) AND family = 'logistic'
        """,
        [list(stats_ids)],
        binary=True,
    ).fetchall()
    chunks = {}
    for sid, lo, hi, columns, n, classes, counts, intercept, coef, extra in rows:
        coef = np.array(coef, dtype=float).reshape(len(intercept), len(columns))
        order = [list(columns).index(f) for f in features]
        chunks[sid] = ChunkModel(parse_bound(lo, order_kind), parse_bound(hi, order_kind), n, tuple(classes),
                                 tuple(counts), coef[:, order], np.array(intercept, dtype=float), extra["r_max"],
                                 extra["l2"], extra["accuracy"])
    missing = set(stats_ids) - set(chunks)
    if missing:
        raise LookupError(f"stored chunk models {sorted(missing)} disappeared while the request ran")
    return chunks


def _rows_query(table: Table, descriptor: Descriptor, ranges: list[Range]) -> sql.Composed:
    """Every row of the train steps' ranges, in one statement, each tagged with its step's number."""
    order = sql.Identifier(descriptor.source.order_by)
    values = [table.columns[c].value_expr() for c in descriptor.features]
    preds = [range_predicate(descriptor.source.order_by, r) for r in ranges]
    part = sql.SQL("CASE {} END").format(sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(p, sql.Literal(i)) for i, p in enumerate(preds)))
    where = sql.SQL(" OR ").join(sql.SQL("({})").format(p) for p in preds)
    if descriptor.filter_sql:
        where = sql.SQL("({}) AND ({})").format(where, sql.SQL(descriptor.filter_sql))
    return sql.SQL("SELECT {}, {}, {}, {} FROM {} WHERE {} ORDER BY {}").format(
        part, order, sql.SQL(", ").join(values), sql.Identifier(descriptor.target), table.identifier, where, order)


def _tile(chunks: list[ChunkModel], gap: Range, order_kind: str) -> list[ChunkModel]:
    """Widen the chunks of one gap so that they tile it: the first starts at the gap's start, the last
    ends at its end, and on discrete domains each ends just before the next begins."""
    if not chunks:
        return chunks
    lo_cut, hi_cut = range_cuts(gap, order_kind)
    tiled = []
    for i, c in enumerate(chunks):
        start = lo_cut if i == 0 else make_cut(c.lo, 0, order_kind)
        end = hi_cut if i == len(chunks) - 1 else make_cut(chunks[i + 1].lo, 0, order_kind)
        r = cuts_range(start, end, order_kind)
        if not (r.lo_closed and r.hi_closed):  # dense domains: keep the rows' own closed range
            r = Range(c.lo if i else (gap.lo if gap.lo_closed else c.lo),
                      c.hi if i < len(chunks) - 1 else (gap.hi if gap.hi_closed else c.hi))
        tiled.append(dataclasses.replace(c, lo=r.lo, hi=r.hi))
    return tiled


def execute_logistic(conn: psycopg.Connection, plan: Plan, table: Table, *, l2: float, chunk_rows: int,
                     max_classes: int = 1000):
    """Run a logistic plan: returns (the mixture, the executed plan, the newly trained chunks, rows skipped).

    More than ``max_classes`` distinct labels is refused before any chunk is trained, as for Naive Bayes."""
    descriptor = plan.descriptor
    kind = descriptor.source.order_kind
    started = time.perf_counter()
    stored_steps = [i for i, s in enumerate(plan.steps) if s.op == "stored"]
    train_steps = [i for i, s in enumerate(plan.steps) if s.op == "train"]
    shares: dict[int, float] = {}
    rows_of: dict[int, int] = {}

    t0 = time.perf_counter()
    stored = fetch_chunks(conn, [plan.steps[i].stats_id for i in stored_steps], descriptor.features, kind)
    for i in stored_steps:
        shares[i] = (time.perf_counter() - t0) / len(stored_steps)
        rows_of[i] = stored[plan.steps[i].stats_id].n

    gaps = [plan.steps[i].range for i in train_steps]
    parts: dict[int, tuple] = {}
    skipped = 0
    if gaps:
        t0 = time.perf_counter()
        rows = conn.execute(_rows_query(table, descriptor, gaps)).fetchall()
        fetch_seconds = time.perf_counter() - t0
        d = len(descriptor.features)
        complete = [r for r in rows if r[-1] is not None and all(v is not None for v in r[2 : 2 + d])]
        skipped = len(rows) - len(complete)
        part = np.array([r[0] for r in complete], dtype=int)
        order = np.array([r[1] for r in complete], dtype=object)
        X = np.array([r[2 : 2 + d] for r in complete], dtype=float).reshape(-1, d)
        y = np.array([normalize_label(r[-1]) for r in complete], dtype=object)
        if not np.isfinite(X).all():
            bad = [f for f, ok in zip(descriptor.features, np.isfinite(X).all(axis=0)) if not ok]
            raise NonFiniteValueError(f"column(s) {bad} hold NaN or ±Infinity in the rows to train on")
        for j, i in enumerate(train_steps):
            mask = part == j
            parts[i] = (order[mask], X[mask], y[mask])
            rows_of[i] = int(mask.sum())
            shares[i] = fetch_seconds * (rows_of[i] / max(1, len(complete)))

    labels = set()
    for c in stored.values():
        labels.update(c.classes)
    for _, _, y in parts.values():
        labels.update(y.tolist())
    if len(labels) > max_classes:
        raise TooManyClassesError(f"class column {descriptor.target!r} has more than {max_classes} distinct values in "
                                  f"{descriptor.range}; is it really a class label? (raise max_classes to allow more)")
    classes = sorted_labels(labels)
    if len(classes) < 2:
        raise InputError(f"logistic regression needs at least two classes in {descriptor.range}, got {list(classes)}")
    for sid, c in stored.items():
        if c.classes != classes:
            raise InputError(f"stored chunk model #{sid} [{c.lo}, {c.hi}] knows classes {list(c.classes)} but the "
                             f"request has {list(classes)}; use another l2 or range, or drop the chunk")

    new_chunks: list[ChunkModel] = []
    chunks_by_step: dict[int, list[ChunkModel]] = {i: [stored[plan.steps[i].stats_id]] for i in stored_steps}
    train_ranges = {i: plan.steps[i].range for i in train_steps}
    merged = _absorb_untrainable_gaps(conn, table, descriptor, plan, stored, parts, classes, train_ranges,
                                      chunks_by_step, rows_of)
    for i in train_steps:
        t0 = time.perf_counter()
        order_values, X, y = parts[i]
        trained = []
        if len(y):
            trained = train_chunks(order_values, X, y, chunk_rows=chunk_rows, l2=l2, classes=classes)
            trained = _tile(trained, train_ranges[i], kind)
        chunks_by_step[i] = trained
        new_chunks += trained
        shares[i] += time.perf_counter() - t0

    all_chunks = [c for i in range(len(plan.steps)) for c in chunks_by_step.get(i, [])]
    if not all_chunks:
        raise InputError(f"no complete rows to train on in {descriptor.range}")
    mixture = LogisticMixture.from_chunks(all_chunks, descriptor.features)
    mixture.rows_skipped = skipped  # the model is built here, where the rows were read
    results = tuple(StepResult(step, rows_of.get(i, 0), shares.get(i, 0.0)) for i, step in enumerate(plan.steps))
    executed = ExecutedPlan(plan, results, time.perf_counter() - started,
                            extra={"Chunks": f"{len(stored) - len(merged)} reused, {len(new_chunks)} trained "
                                             f"(l2={l2:g}, chunk_rows={chunk_rows})",
                                   **({"Merged": "; ".join(merged)} if merged else {})})
    return mixture, executed, new_chunks, skipped


def _untrainable(y: np.ndarray, classes: tuple) -> bool:
    """A gap's rows cannot make a chunk model: fewer than 2 rows, or a class of the request missing."""
    return 0 < len(y) and (len(y) < 2 or set(y.tolist()) != set(classes))


def _absorb_untrainable_gaps(conn, table, descriptor, plan, stored, parts, classes, train_ranges,
                             chunks_by_step, rows_of) -> list[str]:
    """Merge each gap too small to train (a row or two, or one class only) with a neighbouring stored
    chunk: the stored chunk is set aside and its rows are trained again together with the gap's.

    Every stored chunk holds every class, so the merged rows always make a valid chunk; the rows of all
    absorbed chunks come in one extra statement, paid only in this rare case. Updates ``parts``,
    ``train_ranges``, ``chunks_by_step`` and ``rows_of`` in place; returns a line per merge for EXPLAIN."""
    kind = descriptor.source.order_kind
    steps = plan.steps
    absorb: dict[int, int] = {}  # train step -> the stored step it absorbs
    for i in sorted(train_ranges):
        if not _untrainable(parts[i][2], classes):
            continue
        neighbours = [j for j in (i - 1, i + 1)
                      if 0 <= j < len(steps) and steps[j].op == "stored" and j not in absorb.values()]
        if neighbours:  # the smaller neighbour costs less to train again
            absorb[i] = min(neighbours, key=lambda j: stored[steps[j].stats_id].n)
    if not absorb:
        return []
    ranges = [steps[j].range for j in absorb.values()]
    rows = conn.execute(_rows_query(table, descriptor, ranges)).fetchall()
    d = len(descriptor.features)
    rows = [r for r in rows if r[-1] is not None and all(v is not None for v in r[2 : 2 + d])]
    lines = []
    for k, (i, j) in enumerate(absorb.items()):
        mine = [r for r in rows if r[0] == k]
        order_values, X, y = parts[i]
        order_values = np.concatenate([order_values, np.array([r[1] for r in mine], dtype=object)])
        X = np.vstack([X, np.array([r[2 : 2 + d] for r in mine], dtype=float).reshape(-1, d)])
        y = np.concatenate([y, np.array([normalize_label(r[-1]) for r in mine], dtype=object)])
        by_order = np.argsort(order_values, kind="stable")
        parts[i] = (order_values[by_order], X[by_order], y[by_order])
        gap_rows = rows_of[i]
        lo_a, hi_a = range_cuts(train_ranges[i], kind)
        lo_b, hi_b = range_cuts(steps[j].range, kind)
        train_ranges[i] = cuts_range(min(lo_a, lo_b), max(hi_a, hi_b), kind)
        chunks_by_step[j] = []
        rows_of[i] += len(mine)
        rows_of[j] = 0
        lines.append(f"gap {steps[i].range} ({gap_rows} row{'s' if gap_rows != 1 else ''}) is too small to train "
                     f"alone; trained with the rows of stored #{steps[j].stats_id} {steps[j].range} instead")
    return lines


def training_accuracy(conn: psycopg.Connection, table: Table, descriptor: Descriptor, model: LogisticMixture):
    """The mixture's accuracy on the request's rows (one aggregate next to the data), recorded on the
    model as ``training_accuracy_`` and returned (None when no row is complete)."""
    accuracy = conn.execute(training_accuracy_query(table, descriptor, model)).fetchone()[0]
    model.training_accuracy_ = None if accuracy is None else float(accuracy)
    return model.training_accuracy_


def training_accuracy_query(table: Table, descriptor: Descriptor, model: LogisticMixture) -> sql.Composed:
    """The mixture's accuracy on the request's rows, computed next to the data in one aggregate."""
    xs = [table.columns[c].value_expr() for c in descriptor.features]

    def score(coef_row, intercept):
        terms = [sql.SQL("{} * {}").format(sql.Literal(float(w)), x) for w, x in zip(coef_row, xs)]
        return sql.SQL("({} + {})").format(sql.Literal(float(intercept)), sql.SQL(" + ").join(terms))

    classes = [sql.Literal(c) for c in model.classes_.tolist()]
    if len(classes) == 2:
        predicted = sql.SQL("CASE WHEN {} > 0 THEN {} ELSE {} END").format(
            score(model.coef_[0], model.intercept_[0]), classes[1], classes[0])
    else:
        scores = [score(model.coef_[k], model.intercept_[k]) for k in range(len(classes))]
        best = sql.SQL("greatest({})").format(sql.SQL(", ").join(scores))
        predicted = sql.SQL("CASE {} END").format(sql.SQL(" ").join(
            sql.SQL("WHEN {} >= {} THEN {}").format(s, best, c) for s, c in zip(scores, classes)))
    target = sql.Identifier(descriptor.target)
    present = sql.SQL(" AND ").join(sql.SQL("({}) IS NOT NULL").format(e) for e in [*xs, target])
    return sql.SQL("SELECT avg(({} = {})::int) FROM {} WHERE {} AND {}").format(
        predicted, target, table.identifier, row_predicate(descriptor, descriptor.range), present)


def build_chunks(conn: psycopg.Connection, table: Table, descriptor: Descriptor, source_id: int, *, l2: float,
                 chunk_rows: int, progress=None) -> tuple[int, int]:
    """Train and store chunk models over the whole table (the logistic part of the statistics index):
    rows stream from a server-side cursor in ordering-column order, a chunk is cut every ``chunk_rows``
    complete rows (never inside a run of equal ordering values), and the chunks tile the table so that
    any range aligned to them needs no training. Returns (chunks trained and stored, chunks already stored)."""
    kind = descriptor.source.order_kind
    order = sql.Identifier(descriptor.source.order_by)
    target = sql.Identifier(descriptor.target)
    labels = conn.execute(sql.SQL("SELECT DISTINCT {} FROM {} WHERE {} IS NOT NULL AND {} IS NOT NULL").format(
        target, table.identifier, target, order)).fetchall()
    classes = sorted_labels(normalize_label(v) for (v,) in labels)
    if len(classes) < 2:
        raise InputError(f"logistic regression needs at least two classes in {descriptor.target!r}, got {list(classes)}")
    total = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT NULL").format(
        table.identifier, order)).fetchone()[0]
    if progress:
        progress(total=max(1, round(total / chunk_rows)))
    values = [table.columns[c].value_expr() for c in descriptor.features]
    d = len(values)
    key = params_key(l2)
    trained = reused = 0
    pending: list[tuple] = []  # rows of the chunk being filled: (order value, x…, y)

    def emit(rows, hi_value, hi_closed: bool):
        nonlocal trained, reused
        complete = [r for r in rows if r[-1] is not None and all(v is not None for v in r[1 : 1 + d])]
        if not complete:
            return
        X = np.array([r[1 : 1 + d] for r in complete], dtype=float)
        y = np.array([normalize_label(r[-1]) for r in complete], dtype=object)
        if not np.isfinite(X).all():
            raise NonFiniteValueError(f"NaN or ±Infinity in the rows of [{rows[0][0]}, {rows[-1][0]}]")
        lo = rows[0][0]
        r = cuts_range(make_cut(lo, 0, kind), make_cut(hi_value, 1 if hi_closed else 0, kind), kind)
        if not (r.lo_closed and r.hi_closed):  # dense domains: the rows' own closed range
            r = Range(lo, rows[-1][0])
        chunk = train_chunk(X, y, l2=l2, classes=classes, lo=r.lo, hi=r.hi)
        if records.store_chunk(conn, source_id, descriptor, chunk, key) is None:
            reused += 1
        else:
            trained += 1
        if progress:
            progress(advance=1)

    with conn.cursor(name="modelstore_logistic_chunks") as cur:
        cur.itersize = 20_000
        cur.execute(sql.SQL("SELECT {}, {}, {} FROM {} WHERE {} IS NOT NULL ORDER BY {}").format(
            order, sql.SQL(", ").join(values), target, table.identifier, order, order))
        for row in cur:
            if len(pending) >= chunk_rows and row[0] != pending[-1][0]:
                emit(pending, row[0], False)  # this chunk ends just before the next chunk's first value
                pending = []
            pending.append(row)
    if pending:
        emit(pending, pending[-1][0], True)
    return trained, reused
