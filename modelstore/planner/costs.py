"""The planner's cost model, calibrated against the actual database (paper §5).

Algorithm 4 of the paper prices every edge of its graph — C(M) for using a stored model M, F(n)
for reading n base rows — and asks only that the cost model be *monotone*: "all things being equal,
the cost of retrieving a certain number of data points from disk should be at least as costly as the
cost of retrieving less points" (§5). It leaves the figures open. modelstore measures them, on the
server it runs against, with the very queries the executor runs (:func:`calibrate`), and keeps them
in ``modelstore.cost_model``. Every figure is in milliseconds:

==================  ===============================================================================
``statement_ms``    one statement round trip: parse, plan, execute nothing, return a row (the mean
                    of the medians of ``SELECT 1`` and of a one-column statistics aggregate over no
                    rows)
``term_ms``         planning and starting one more aggregate of a statement (a linear aggregate of
                    k columns has 2 + k + k(k+1)/2 of them; :func:`aggregate_terms`)
``scan_row_ms``     per family, aggregating one *matched* row of k columns:
                    linear ``a + b·k + c·k²`` (k means and k(k+1)/2 ``regr_sxy`` comoments, and the
                    complete-rows ``CASE`` tests k values for each of k columns); Gaussian and
                    multinomial Naive Bayes ``a + b·k`` (per feature an ``avg`` and a ``regr_sxx``,
                    or a ``sum``, grouped by the class column)
``seq_row_ms``      reading and rejecting one table row in a sequential scan: what a range scan
                    pays for *every* row of the table when the ordering column has no index
``index_row_ms``    what a matched row costs on top of ``scan_row_ms`` when the range is read through
                    a btree index on the ordering column (index tuple + heap fetch)
``fetch_row_ms``,   fetching stored statistics from ``modelstore.statistics`` into Python objects:
``fetch_value_ms``  per stored row and per ``float8`` value of its arrays
``merge_op_ms``,    one Python merge (``LinearStats.__iadd__``/``__isub__``): a fixed part and a part
``merge_value_ms``  per value touched (k + k² for k columns)
``train_chunk_ms``, a logistic-regression chunk: fetch its rows to Python (k float columns → numpy)
``train_row_ms``    and train scikit-learn's L2 ``LogisticRegression(solver="lbfgs")`` on them:
                    ``f0 + f1·k`` per chunk (the solver's iterations, whose number grows with k,
                    each cost Python overhead) plus ``a + b·k`` per row
==================  ===============================================================================

The costs the planner composes (``docs/planner.md``):

* C(M) of a stored model of v values = :meth:`CostModel.fetch_ms` (v) + :meth:`CostModel.merge_ms` (v);
  the one round trip that fetches every stored step of a plan is one ``statement_ms``;
* F(n) of a scanned range of n rows = :meth:`CostModel.scan_ms` — additive in rows, so that scans of
  neighbouring pieces add up to the scan of their union; the one statement that runs a plan's scans
  costs :meth:`CostModel.scan_statement_ms`, plus :meth:`CostModel.seq_read_ms` of the whole table
  when the ordering column has no index (or ``index_read_ms`` of the matched rows when it has one;
  :meth:`CostModel.range_scan_ms` is the whole statement);
* a logistic chunk of n rows costs :meth:`CostModel.train_ms`.

**Monotone by construction.** Per-row and per-value figures are fitted by *non-negative* least
squares (relative residuals) on the measured slopes, and the constant term of every per-row
polynomial is clamped to at least :data:`FLOOR_MS`. A polynomial in k with non-negative
coefficients and a positive constant is positive and non-decreasing for every k ≥ 0 — so every
method is non-decreasing in rows, k and values, and no scan is ever free. :class:`CostModel`
refuses figures that break this (``ValueError``), so a hand-edited catalog row cannot either.

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
import hashlib
import logging
import math
import statistics
import time
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from modelstore.request.descriptor import Range
from modelstore.request.predicates import range_predicate
from modelstore.request.source import Column
from modelstore.families import FAMILIES
from modelstore.stats import LinearStats
from modelstore.stats import engine as stats_engine

log = logging.getLogger(__name__)

#: the statistics families a scan can aggregate, with the degree of their per-row cost in k
FAMILY_DEGREE = {f.kind: f.cost_degree for f in FAMILIES.values() if f.statistics is not None}

#: the least cost (ms) of one row or value: keeps every per-row figure strictly positive
FLOOR_MS = 1e-7

#: the column counts over which monotonicity is guaranteed (and tested)
MAX_K = 64

#: pg_advisory_xact_lock key serialising first-use calibrations (sha1 of a fixed name, like migrate's)
LOCK_KEY = int.from_bytes(hashlib.sha1(b"modelstore.planner.costs.calibrate").digest()[:8], "big", signed=True)

_SCALARS = ("statement_ms", "term_ms", "seq_row_ms", "index_row_ms", "fetch_row_ms", "fetch_value_ms",
            "merge_op_ms", "merge_value_ms")
_PER_ROW = ("seq_row_ms", "index_row_ms", "fetch_value_ms", "merge_value_ms")


def aggregate_terms(family: str, k: int) -> int:
    """Output columns of a family's aggregate over k columns (what planning it scales with)."""
    if family not in FAMILY_DEGREE:
        raise ValueError(f"family must be one of {sorted(FAMILY_DEGREE)}, got {family!r} instead")
    return FAMILIES[family].aggregate_terms(k)


@dataclass(frozen=True)
class CostModel:
    """Calibrated costs in milliseconds; see the module docstring for each figure.

    Every method is non-decreasing in each of its arguments (paper §5's monotone cost model).
    """

    statement_ms: float
    #: per family, the coefficients (a, b[, c]) of the per-matched-row cost a + b·k [+ c·k²]
    scan_row_ms: dict = field(hash=False)
    seq_row_ms: float
    index_row_ms: float
    fetch_value_ms: float
    merge_value_ms: float
    #: (a, b): a logistic chunk costs a + b·k per row
    train_row_ms: tuple
    measured_at: dt.datetime
    server_version: str
    method: str = "calibrated"
    term_ms: float = 0.0
    fetch_row_ms: float = 0.0
    merge_op_ms: float = 0.0
    #: (f0, f1): a logistic chunk costs f0 + f1·k once, besides its rows
    train_chunk_ms: tuple = (0.0, 0.0)
    #: how the figures were measured (mode, sizes, raw slopes, seconds); informative only
    details: dict = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self):
        for name in _SCALARS:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r} instead")
        for name in _PER_ROW:
            if getattr(self, name) < FLOOR_MS:
                raise ValueError(f"{name} must be >= {FLOOR_MS} (a row is never free), got {getattr(self, name)!r}")
        scan = {}
        for family, degree in FAMILY_DEGREE.items():
            if family not in self.scan_row_ms:
                raise ValueError(f"scan_row_ms must have coefficients for {family!r}, got {sorted(self.scan_row_ms)}")
            scan[family] = _check_poly(f"scan_row_ms[{family!r}]", self.scan_row_ms[family], degree + 1)
        object.__setattr__(self, "scan_row_ms", scan)
        object.__setattr__(self, "train_row_ms", _check_poly("train_row_ms", self.train_row_ms, 2))
        object.__setattr__(self, "train_chunk_ms", _check_poly("train_chunk_ms", self.train_chunk_ms, 2, floor=0.0))
        if not isinstance(self.measured_at, dt.datetime) or self.measured_at.tzinfo is None:
            raise ValueError(f"measured_at must be a timezone-aware datetime, got {self.measured_at!r} instead")

    # -- the figures the planner composes -------------------------------------------------------------

    def row_ms(self, family: str, k: int) -> float:
        """Aggregating one matched row of ``k`` columns of ``family``'s statistics."""
        coefficients = self._coefficients(family)
        k = _check_k(k)
        return sum(c * k ** i for i, c in enumerate(coefficients))

    def scan_ms(self, family: str, k: int, rows: float) -> float:
        """F(rows): aggregating ``rows`` matched rows — additive in rows (the statement is separate)."""
        return _rows(rows) * self.row_ms(family, k)

    def scan_statement_ms(self, family: str, k: int) -> float:
        """The fixed cost of one scan statement of ``family`` over ``k`` columns (round trip + planning)."""
        return self.statement_ms + self.term_ms * aggregate_terms(family, _check_k(k))

    def seq_read_ms(self, table_rows: float) -> float:
        """Reading (and rejecting) every row of a table of ``table_rows`` rows in a sequential scan."""
        return _rows(table_rows) * self.seq_row_ms

    def index_read_ms(self, rows: float) -> float:
        """What reading ``rows`` matched rows through a btree index adds to :meth:`scan_ms`."""
        return _rows(rows) * self.index_row_ms

    def range_scan_ms(self, family: str, k: int, rows: float, *, table_rows: float, has_index: bool) -> float:
        """One whole scan statement of a range of ``rows`` rows in a table of ``table_rows`` rows.

        Without an index every table row is read; with one, PostgreSQL takes the cheaper of the
        index path and the sequential scan (the minimum of two non-decreasing costs is non-decreasing).
        """
        read = self.seq_read_ms(table_rows)
        if has_index:
            read = min(read, self.index_read_ms(rows))
        return self.scan_statement_ms(family, k) + self.scan_ms(family, k, rows) + read

    def fetch_ms(self, n_values: float, rows: int = 1) -> float:
        """Fetching ``rows`` stored statistics of ``n_values`` floats in all (excluding the round trip)."""
        return _rows(rows) * self.fetch_row_ms + _rows(n_values) * self.fetch_value_ms

    def merge_ms(self, n_values: float) -> float:
        """One merge (``+=`` or ``-=``) of statistics of ``n_values`` floats."""
        return self.merge_op_ms + _rows(n_values) * self.merge_value_ms

    def stored_ms(self, n_values: float) -> float:
        """C(M) of a stored model of ``n_values`` floats: fetch it and merge it."""
        return self.fetch_ms(n_values) + self.merge_ms(n_values)

    def train_ms(self, k: int, rows: float) -> float:
        """Fetching ``rows`` rows of ``k`` features and training one logistic chunk on them."""
        (a, b), (f0, f1) = self.train_row_ms, self.train_chunk_ms
        k = _check_k(k)
        return self.statement_ms + f0 + f1 * k + _rows(rows) * (a + b * k)

    def _coefficients(self, family: str) -> tuple:
        try:
            return self.scan_row_ms[family]
        except KeyError:
            raise ValueError(f"family must be one of {sorted(FAMILY_DEGREE)}, got {family!r} instead") from None

    # -- serialisation ------------------------------------------------------------------------------

    def to_json(self) -> dict:
        data = {name: float(getattr(self, name)) for name in _SCALARS}
        data.update({
            "scan_row_ms": {family: list(c) for family, c in self.scan_row_ms.items()},
            "train_row_ms": list(self.train_row_ms),
            "train_chunk_ms": list(self.train_chunk_ms),
            "measured_at": self.measured_at.isoformat(),
            "server_version": self.server_version,
            "method": self.method,
            "details": self.details,
        })
        return data

    @classmethod
    def from_json(cls, data: dict) -> "CostModel":
        known = {name: float(data[name]) for name in _SCALARS if name in data}
        return cls(
            scan_row_ms={family: tuple(c) for family, c in data["scan_row_ms"].items()},
            train_row_ms=tuple(data["train_row_ms"]),
            train_chunk_ms=tuple(data.get("train_chunk_ms", (0.0, 0.0))),
            measured_at=dt.datetime.fromisoformat(data["measured_at"]),
            server_version=str(data["server_version"]),
            method=str(data.get("method", "calibrated")),
            details=dict(data.get("details") or {}),
            **known,
        )

    @classmethod
    def default(cls) -> "CostModel":
        """Built-in figures (a full calibration of PostgreSQL 15 on a small 2-core machine), for
        planning without a database to measure — tests, ``explain`` on a read-only standby."""
        return cls(
            statement_ms=0.25, term_ms=0.038,
            scan_row_ms={"linear": (2.0e-5, 0.0, 5.5e-5), "gaussian_nb": (1.0e-4, 1.9e-4),
                         "multinomial_nb": (4.0e-5, 1.2e-4)},
            seq_row_ms=6.7e-5, index_row_ms=6.0e-5, fetch_row_ms=3.0e-3, fetch_value_ms=5.0e-4,
            merge_op_ms=4.8e-3, merge_value_ms=1.5e-6, train_chunk_ms=(2.1, 0.0), train_row_ms=(6.3e-4, 4.0e-4),
            measured_at=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), server_version="default",
            method="default",
        )


def _check_poly(name: str, coefficients, length: int, floor: float = FLOOR_MS) -> tuple:
    c = tuple(float(x) for x in coefficients)
    if len(c) != length or not all(math.isfinite(x) and x >= 0 for x in c) or c[0] < floor:
        raise ValueError(
            f"{name} must be {length} finite coefficients >= 0 with a constant term >= {floor} "
            f"(a monotone cost), got {coefficients!r} instead"
        )
    return c


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k (columns) must be a positive integer, got {k!r} instead")
    return int(k)


def _rows(n) -> float:
    n = float(n)
    if math.isnan(n):
        raise ValueError("a row or value count must be a number, got NaN instead")
    return max(0.0, n)


# -- calibration ----------------------------------------------------------------------------------------

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
        fetch_row_ms=fetch_row, fetch_value_ms=fetch_value, merge_op_ms=merge_op, merge_value_ms=merge_value,
        train_chunk_ms=train_chunk, train_row_ms=train_row,
        measured_at=dt.datetime.now(dt.timezone.utc), server_version=server_version, method="calibrated",
        details=details,
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


# -- the catalog --------------------------------------------------------------------------------------

def save(conn: psycopg.Connection, model: CostModel) -> int:
    """Store ``model`` in ``modelstore.cost_model``; returns its id."""
    with conn.transaction():
        row = conn.cursor(row_factory=tuple_row).execute(
            "INSERT INTO modelstore.cost_model (measured_at, server_version, method, params) "
            "VALUES (%s, %s, %s, %s) RETURNING cost_model_id",
            [model.measured_at, model.server_version, model.method, Jsonb(model.to_json())],
        ).fetchone()
    return row[0]


def load(conn: psycopg.Connection, *, any_version: bool = False) -> CostModel | None:
    """The latest stored cost model measured on this server's version (any version with
    ``any_version``); None when there is none, or the catalog has no ``cost_model`` table yet."""
    query = sql.SQL(
        "SELECT params FROM modelstore.cost_model {} ORDER BY measured_at DESC, cost_model_id DESC LIMIT 1"
    ).format(sql.SQL("") if any_version else sql.SQL("WHERE server_version = current_setting('server_version')"))
    try:
        with conn.transaction():
            row = conn.cursor(row_factory=tuple_row).execute(query).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None else CostModel.from_json(row[0])


def load_or_calibrate(conn: psycopg.Connection, *, quick: bool = True) -> CostModel:
    """The stored cost model of this server version, or — on first use — a quick calibration, saved.

    Concurrent first uses serialise on an advisory lock: one measures, the others wait and load it.
    A role that may not write the catalog still gets the measured model (it is just not stored).
    """
    model = load(conn)
    if model is not None:
        return model
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        model = load(conn)
        if model is None:
            model = calibrate(conn, quick=quick)
            try:
                save(conn, model)
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction,
                    psycopg.errors.UndefinedTable) as exc:
                log.warning("cost model measured but not stored: %s", exc)
    return model


__all__ = ["FAMILY_DEGREE", "FLOOR_MS", "MAX_K", "CostModel", "aggregate_terms", "calibrate", "load",
           "load_or_calibrate", "save"]
