"""Calibrating the cost model against the database it plans for (paper §5 leaves the figures open).

:func:`calibrate` measures every figure of :class:`~modelstore.planner.costs.model.CostModel` on
``conn``'s server, with the very statements the executor runs, and returns the model; storing it is
:mod:`~modelstore.planner.costs.persist`'s.

**How it is measured** (:func:`calibrate`): a TEMP table of synthetic rows (an ``int`` ordering
column in insertion order, 12 ``float8`` columns, a 5-valued class column, a 0/1 label), every
statistics aggregate at several k over two range sizes of the *same* table, so that the difference
of the two timings is the per-matched-row cost alone (each query reads the whole table either way).
Repetitions are interleaved across configurations, so that a burst of load on the machine spreads
over all of them, and a per-row slope is the difference of the two *minimum* times (other work on
the machine only ever adds time; the least disturbed run is the cost), while fixed costs — a
round trip, a fetch — are medians (what a statement typically waits). Statements run unprepared
(``prepare=False``), as the executor's literal-bound scans do, and their time includes composing
the SQL, as the executor's does. The fits weigh each sample by its relative error, except below
the timing noise, where a slope cannot be resolved. ``quick=True`` (used automatically on first
use) measures a smaller table, fewer k and fewer repetitions, in about a second; the full
calibration takes 10–20 s.

**What it does not model.** TEMP tables live in backend-local buffers and are never scanned in
parallel, and calibration runs with ``jit = off``: a large base table that PostgreSQL scans with
parallel workers (at most ~2× faster on two cores) or compiles with JIT (``jit_above_cost``) will
run faster per row than predicted, and a table much larger than ``shared_buffers`` slower, by the
cost of reading its pages from the OS. Those are second-order for choosing among plans of one
request, whose steps all read the same table.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import statistics
import time
import uuid
import warnings
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from modelstore.families import FAMILIES
from modelstore.planner.costs.model import FAMILY_DEGREE, FLOOR_MS, CostModel, aggregate_terms
from modelstore.request.descriptor import Range
from modelstore.request.predicates import range_predicate
from modelstore.request.source import Column
from modelstore.stats import LinearStats
from modelstore.stats import engine as stats_engine


@dataclass(frozen=True)
class _Sizes:
    """How much to measure: the quick (first use) and the full (``modelstore calibrate``) modes."""

    mode: str
    table_rows: int
    ranges: tuple[int, int]  # two range sizes [1, n] of the same table: their difference is per-row
    linear_ks: tuple[int, ...]
    nb_ks: tuple[int, ...]
    reps: int
    statement_reps: int
    fetch_ks: tuple[int, ...]
    fetch_rows_per_k: int
    fetch_reps: int
    merge_ks: tuple[int, ...]
    merge_batch: int
    train_ranges: tuple[int, int]
    train_ks: tuple[int, ...]
    train_reps: int


QUICK = _Sizes("quick", 8000, (1000, 8000), (1, 3, 6, 10), (1, 6, 12), 3, 15,
               (2, 8, 16), 12, 3, (2, 8, 32), 100, (500, 2000), (2, 8), 2)
# 40,000 rows of 15 columns (~5.5 MB, plus its index) stay inside the default 8 MB temp_buffers
FULL = _Sizes("full", 40000, (10000, 40000), (1, 2, 4, 6, 8, 10, 12), (1, 4, 8, 12), 5, 40,
              (2, 4, 8, 12, 16, 24), 40, 7, (2, 4, 8, 16, 32, 64), 400, (4000, 16000), (2, 6, 12), 3)

_FEATURES = 12
_ORDER = "ord"
_CLASS = "cls"
_LABEL = "lbl"


def calibrate(conn: psycopg.Connection, *, quick: bool = False) -> CostModel:
    """Measure the cost model on ``conn``'s server (TEMP tables only; nothing is left behind).

    Runs in transactions of its own (savepoints when the connection is already in one), with
    ``jit`` off and parallel workers disabled by ``SET LOCAL`` only, and drops its tables at the end,
    so the connection is as it was. ``quick`` takes about a second; the full mode 10–20 s.
    """
    sizes = QUICK if quick else FULL
    started = time.perf_counter()
    cur = conn.cursor(row_factory=tuple_row)
    _ENGINE.set(stats_engine.engine(conn))
    name = f"modelstore_calibration_{uuid.uuid4().hex[:12]}"
    table = sql.Identifier("pg_temp", name)
    stats_table = sql.Identifier("pg_temp", name + "_stats")
    details: dict = {"mode": sizes.mode, "table_rows": sizes.table_rows, "ranges": list(sizes.ranges)}
    stage = _Stages(details)
    try:
        with conn.transaction():
            server_version = cur.execute("SELECT current_setting('server_version')").fetchone()[0]
            _create_table(cur, table, sizes.table_rows)
        stage("setup")
        with conn.transaction():
            _set_local(cur, jit="off", max_parallel_workers_per_gather="0")
            statement, term = _measure_statement(cur, table, sizes, details)
            seq_row = _measure_seq(cur, table, sizes, statement, details)
            seq_range_row = _measure_seq_ranges(cur, table, sizes, details)
            stage("statement")
            scan = _measure_scans(cur, table, sizes, details)
            stage("scan")
        with conn.transaction():
            _set_local(cur, jit="off", max_parallel_workers_per_gather="0",
                       enable_seqscan="off", enable_bitmapscan="off")
            index_row = _measure_index(cur, table, sizes, details)
        stage("index")
        with conn.transaction():
            fetch_row, fetch_value = _measure_fetch(cur, stats_table, sizes, details)
        stage("fetch")
        with conn.transaction():
            _set_local(cur, jit="off", max_parallel_workers_per_gather="0")
            train_chunk, train_row = _measure_train(cur, table, sizes, statement, details)
        stage("train")
    finally:  # (a broken connection took its TEMP tables with it)
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            with conn.transaction():
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}").format(table, stats_table))
    merge_op, merge_value = _measure_merge(sizes, details)
    stage("merge")
    details["seconds"] = round(time.perf_counter() - started, 3)
    return CostModel(
        statement_ms=statement, term_ms=term, scan_row_ms=scan, seq_row_ms=seq_row, index_row_ms=index_row,
        seq_range_row_ms=seq_range_row,
        fetch_row_ms=fetch_row, fetch_value_ms=fetch_value, merge_op_ms=merge_op, merge_value_ms=merge_value,
        train_chunk_ms=train_chunk, train_row_ms=train_row,
        measured_at=dt.datetime.now(dt.timezone.utc), server_version=server_version, method="calibrated",
        details=details, engine=_ENGINE.get()[0],
    )


class _Stages:
    """Records the seconds each stage of a calibration took (``details["stages"]``)."""

    def __init__(self, details: dict):
        self.details, self.last = details.setdefault("stages", {}), time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.details[name] = round(now - self.last, 3)
        self.last = now


def _set_local(cur, **settings: str) -> None:
    """``SET LOCAL`` each setting: undone when the surrounding transaction (or savepoint) ends."""
    for name, value in settings.items():
        cur.execute("SELECT pg_catalog.set_config(%s, %s, true)", [name, value])


def _create_table(cur, table: sql.Identifier, rows: int) -> None:
    """Synthetic rows: ``ord`` 1..rows in insertion order, x0…x11 uniform on (−1, 1), a class with
    5 values, and a 0/1 label that depends on the features (so that logistic training converges)."""
    xs = [sql.Identifier(f"x{i}") for i in range(_FEATURES)]
    half = _FEATURES // 2
    score = sql.SQL(" + ").join(xs[:half]) + sql.SQL(" - ") + sql.SQL(" - ").join(xs[half:])
    floats = sql.SQL(", ").join(sql.SQL("{} float8 NOT NULL").format(x) for x in xs)
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ({} integer NOT NULL, {} integer NOT NULL, {}, {} integer NOT NULL)")
                .format(table, sql.Identifier(_ORDER), sql.Identifier(_CLASS), floats, sql.Identifier(_LABEL)))
    cur.execute(sql.SQL(
        "INSERT INTO {table} SELECT i, i % 5, {xs}, ({score} + 2 * random() - 1 > 0)::int "
        "FROM (SELECT i, {randoms} FROM pg_catalog.generate_series(1, {rows}) AS i) AS g"
    ).format(
        table=table, xs=sql.SQL(", ").join(xs), score=score, rows=sql.Literal(rows),
        randoms=sql.SQL(", ").join(sql.SQL("2 * random() - 1 AS {}").format(x) for x in xs),
    ))
    cur.execute(sql.SQL("ANALYZE {}").format(table))


def _values(k: int) -> list[sql.Composable]:
    """The float8 value expressions the executor builds for k feature columns."""
    return [Column(f"x{i}", "double precision", "N").value_expr() for i in range(k)]


#: the statistics engine calibrate() measures: the one the executor will use on that connection
_ENGINE: contextvars.ContextVar = contextvars.ContextVar("modelstore_calibration_engine", default=("sql", ""))


def _aggregate(family: str, table: sql.Identifier, k: int, where: sql.Composable) -> sql.Composed:
    """The executor's aggregate statement of ``family`` over x0…x{k−1} (see executor.scan_query)."""
    return FAMILIES[family].aggregate_query(table, _values(k), where, _CLASS, 1000, engine=_ENGINE.get())


def _range(lo: int, hi: int) -> sql.Composed:
    """The executor's range predicate on the ordering column, ``ord >= lo AND ord <= hi``."""
    return range_predicate(_ORDER, Range(lo, hi))


def _timed_ms(cur, query, params=None) -> float:
    t0 = time.perf_counter()
    cur.execute(query, params, prepare=False)
    cur.fetchall()
    return (time.perf_counter() - t0) * 1000.0


def _timings(cur, queries: dict, reps: int, summary=statistics.median) -> dict:
    """Median (or another ``summary``) time of each query; repetitions interleaved across queries."""
    samples: dict = {key: [] for key in queries}
    for _ in range(reps):
        for key, query in queries.items():
            samples[key].append(_timed_ms(cur, query))
    return {key: summary(v) for key, v in samples.items()}


#: the timing jitter (ms) of a statement on a busy two-core machine (what a difference of two
#: timings cannot resolve)
NOISE_MS = 0.25


def _nonneg_fit(design, y, noise: float) -> np.ndarray:
    """Non-negative least squares on relative residuals: each sample weighs by 1/(y + noise), so
    cheap configurations count as much as expensive ones, but none whose value is within the timing
    noise (a slope measured as 0.01 µs ± 0.02 µs) can pull the fit away from the rest."""
    from scipy.optimize import nnls

    design, y = np.asarray(design, dtype=float), np.asarray(y, dtype=float)
    scale = np.maximum(y, 0.0) + noise
    coefficients, _ = nnls(design / scale[:, None], y / scale)
    return coefficients


def _poly_fit(ks, per_row, degree: int, noise: float) -> tuple:
    """a + b·k [+ c·k²] through the per-row costs, non-negative, with a >= FLOOR_MS."""
    design = [[k ** i for i in range(degree + 1)] for k in ks]
    c = _nonneg_fit(design, per_row, noise)
    c[0] = max(c[0], FLOOR_MS)
    return tuple(float(x) for x in c)


def _measure_statement(cur, table, sizes: _Sizes, details: dict) -> tuple[float, float]:
    # warm the table and the catalog caches of every aggregate used below
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table), prepare=False)
    k_max = _FEATURES
    queries = {
        "select1": sql.SQL("SELECT 1"),
        "agg1": _aggregate("linear", table, 1, sql.SQL("false")),
        "agg_max": _aggregate("linear", table, k_max, sql.SQL("false")),
    }
    _timings(cur, queries, 1)
    med = _timings(cur, queries, sizes.statement_reps)
    statement = max((med["select1"] + med["agg1"]) / 2, FLOOR_MS)
    terms = aggregate_terms("linear", k_max) - aggregate_terms("linear", 1)
    term = max(0.0, (med["agg_max"] - med["agg1"]) / terms)
    details["statement"] = {key: round(v, 5) for key, v in med.items()}
    return statement, term


def _measure_seq(cur, table, sizes: _Sizes, statement: float, details: dict) -> float:
    # the range predicate of a scan, rejecting every row: what a range scan without an index
    # pays for each table row outside its range
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, _range(-2, -1))
    med = _timings(cur, {"seq": query}, max(sizes.reps, 5))["seq"]
    details["seq_ms"] = round(med, 5)
    return max((med - statement) / sizes.table_rows, FLOOR_MS)


#: ranges in the predicate of the second query of _measure_seq_ranges (the first has one)
_SEQ_RANGES = 4


def _measure_seq_ranges(cur, table, sizes: _Sizes, details: dict) -> float:
    """Per table row, what each range beyond the first adds to a sequential scan whose predicate is
    ``(range₁) OR (range₂) …`` (the executor's statement for a plan with several scans), every row
    rejected: the difference of the minimum times of one and of :data:`_SEQ_RANGES` ranges."""
    def rejecting(n: int) -> sql.Composed:
        ranges = sql.SQL(" OR ").join(sql.SQL("({})").format(_range(-2 * i - 2, -2 * i - 1)) for i in range(n))
        return sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, ranges)

    low = _timings(cur, {"one": rejecting(1), "many": rejecting(_SEQ_RANGES)}, max(sizes.reps, 5), min)
    details["seq_ranges_ms"] = {key: round(v, 5) for key, v in low.items()}
    return max((low["many"] - low["one"]) / ((_SEQ_RANGES - 1) * sizes.table_rows), 0.0)


def _measure_scans(cur, table, sizes: _Sizes, details: dict) -> dict:
    n1, n2 = sizes.ranges
    # a quadratic per-row cost needs more column counts to fit than a linear one
    plan = [(family, k) for family, degree in FAMILY_DEGREE.items()
            for k in (sizes.linear_ks if degree >= 2 else sizes.nb_ks)]
    queries = {(family, k, n): _aggregate(family, table, k, _range(1, n)) for family, k in plan for n in (n1, n2)}
    med = _timings(cur, queries, sizes.reps, min)
    slopes = {(family, k): (med[family, k, n2] - med[family, k, n1]) / (n2 - n1) for family, k in plan}
    details["scan_row_ms"] = {f"{family}:{k}": slope for (family, k), slope in slopes.items()}
    result = {}
    for family, degree in FAMILY_DEGREE.items():
        ks = [k for f, k in plan if f == family]
        result[family] = _poly_fit(ks, [slopes[family, k] for k in ks], degree, NOISE_MS / (n2 - n1))
    return result


def _measure_index(cur, table, sizes: _Sizes, details: dict) -> float:
    """Per matched row, a range read through a btree index (forced) minus the same range's
    aggregate read sequentially: the index tuple and heap fetch a matched row adds."""
    n1, n2 = sizes.ranges
    index_queries = {n: _aggregate("linear", table, 1, _range(1, n)) for n in (n1, n2)}
    seq_slope = details["scan_row_ms"]["linear:1"]
    cur.execute(sql.SQL("CREATE INDEX ON {} ({})").format(table, sql.Identifier(_ORDER)))
    med = _timings(cur, index_queries, sizes.reps, min)
    slope = (med[n2] - med[n1]) / (n2 - n1)
    details["index_scan_row_ms"] = slope
    return max(slope - seq_slope, FLOOR_MS)


def _measure_fetch(cur, stats_table, sizes: _Sizes, details: dict) -> tuple[float, float]:
    """Stored linear statistics of several sizes in a TEMP copy of ``modelstore.statistics``'s
    layout; each query fetches a set of them and rebuilds the objects as ``catalog.fetch_stats`` does."""
    cur.execute(sql.SQL(
        "CREATE TEMP TABLE {} (stats_id integer PRIMARY KEY, family text NOT NULL, columns text[] NOT NULL, "
        "n bigint NOT NULL, null_rows bigint NOT NULL, classes jsonb, counts bigint[], mean float8[], "
        "moments float8[] NOT NULL)").format(stats_table))
    rng = np.random.default_rng(20240501)
    ids: dict[int, list[int]] = {}
    rows = []
    for k in sizes.fetch_ks:
        for _ in range(sizes.fetch_rows_per_k):
            stats_id = len(rows) + 1
            ids.setdefault(k, []).append(stats_id)
            rows.append([stats_id, "linear", [f"c{i}" for i in range(k)], 1000, 0,
                         (rng.normal(size=k) * 1e3).tolist(), (rng.normal(size=k * k) * 1e6).tolist()])
    cur.executemany(sql.SQL("INSERT INTO {} (stats_id, family, columns, n, null_rows, mean, moments) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(stats_table), rows)
    cur.execute(sql.SQL("ANALYZE {}").format(stats_table))
    query = sql.SQL("SELECT stats_id, family, columns, n, null_rows, classes, counts, mean, moments "
                    "FROM {} WHERE stats_id = ANY (%s)").format(stats_table)
    sets = []
    for k in sizes.fetch_ks:
        sets += [ids[k][:1], ids[k]]
    sets.append([i for k in sizes.fetch_ks for i in ids[k]])

    def fetch(wanted: list[int]) -> float:
        t0 = time.perf_counter()
        cur.execute(query, [wanted], prepare=False, binary=True)  # as catalog.fetch_stats
        for _, _, columns, n, null_rows, _, _, mean, moments in cur.fetchall():
            k = len(columns)
            LinearStats(columns, n, np.array(mean, dtype=float), np.array(moments, dtype=float).reshape(k, k),
                        null_rows)
        return (time.perf_counter() - t0) * 1000.0

    for wanted in sets:  # warm-up
        fetch(wanted)
    samples = [[] for _ in sets]
    for _ in range(sizes.fetch_reps):
        for i, wanted in enumerate(sets):
            samples[i].append(fetch(wanted))
    y = [statistics.median(s) for s in samples]
    values_of = {row[0]: len(row[2]) + len(row[2]) ** 2 for row in rows}
    design = [[1.0, len(wanted), sum(values_of[i] for i in wanted)] for wanted in sets]
    fixed, per_row, per_value = _nonneg_fit(design, y, NOISE_MS)
    details["fetch"] = {"fixed_ms": float(fixed), "samples": [[d[1], d[2], round(t, 5)] for d, t in zip(design, y)]}
    return float(per_row), max(float(per_value), FLOOR_MS)


def _measure_merge(sizes: _Sizes, details: dict) -> tuple[float, float]:
    """``a += b; a -= b`` on LinearStats of k columns, in batches; per merge = batch time / (2·batch)."""
    rng = np.random.default_rng(7)
    per_op = {}
    for k in sizes.merge_ks:
        columns = [f"c{i}" for i in range(k)]

        def stats(n):
            z = rng.normal(size=(k, k))
            return LinearStats(columns, n, rng.normal(size=k), z @ z.T + k * np.eye(k))

        a, b = stats(10_000), stats(100)
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(sizes.merge_batch):
                a += b
                a -= b
            samples.append((time.perf_counter() - t0) * 1000.0 / (2 * sizes.merge_batch))
        per_op[k] = statistics.median(samples[1:])  # the first batch warms up
    design = [[1.0, k + k * k] for k in sizes.merge_ks]
    fixed, per_value = _nonneg_fit(design, [per_op[k] for k in sizes.merge_ks], NOISE_MS / (2 * sizes.merge_batch))
    details["merge_ms"] = {str(k): v for k, v in per_op.items()}
    return float(fixed), max(float(per_value), FLOOR_MS)


def _measure_train(cur, table, sizes: _Sizes, statement: float, details: dict) -> tuple[tuple, tuple]:
    """Fetch [1, n] of k features and the label to numpy and fit an L2 logistic regression."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    n1, n2 = sizes.train_ranges
    label = sql.Identifier(_LABEL)

    def train(k: int, n: int) -> float:
        query = sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(sql.Identifier(f"x{i}") for i in range(k)), label, table, _range(1, n))
        t0 = time.perf_counter()
        cur.execute(query, prepare=False)
        data = np.asarray(cur.fetchall(), dtype=float)
        LogisticRegression(C=1.0, solver="lbfgs", max_iter=100).fit(data[:, :k], data[:, k])
        return (time.perf_counter() - t0) * 1000.0

    configs = [(k, n) for k in sizes.train_ks for n in (n1, n2)]
    samples: dict = {c: [] for c in configs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        train(sizes.train_ks[0], n1)  # warm-up (first fit imports and allocates)
        for _ in range(sizes.train_reps):
            for k, n in configs:
                samples[k, n].append(train(k, n))
    med = {c: min(s) for c, s in samples.items()}
    # t(k, n) = f0 + f1·k + n·(a + b·k), jointly
    design = [[1.0, k, n, n * k] for k, n in configs]
    f0, f1, a, b = _nonneg_fit(design, [med[c] for c in configs], 5 * NOISE_MS)
    details["train"] = {f"{k}:{n}": round(v, 5) for (k, n), v in med.items()}
    return (max(0.0, float(f0) - statement), float(f1)), (max(float(a), FLOOR_MS), float(b))



__all__ = ["NOISE_MS", "calibrate"]
