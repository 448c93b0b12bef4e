"""The cost-model value: calibrated figures and the costs the planner composes from them (paper §5).

Algorithm 4 of the paper prices every edge of its graph — C(M) for using a stored model M, F(n)
for reading n base rows — and asks only that the cost model be *monotone*: "all things being equal,
the cost of retrieving a certain number of data points from disk should be at least as costly as the
cost of retrieving less points" (§5). It leaves the figures open. modelstore measures them, on the
server it runs against, with the very queries the executor runs
(:func:`~modelstore.planner.costs.calibration.calibrate`), and keeps them in ``modelstore.cost_model``
(:mod:`~modelstore.planner.costs.persist`). Every figure is in milliseconds:

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
``seq_range_row_ms`` what each range *beyond the first* in a scan statement's predicate
                    (``(range₁) OR (range₂) …``) adds per table row of a sequential scan: a plan
                    that scans two gaps tests two ranges on every row (0 in models measured before
                    it was calibrated)
``overhead_ms``     the request's own time outside the plan's steps (describing it, solving the
                    model, writing the catalog): 0 when calibrated; learned from executed plans
                    (:mod:`~modelstore.planner.costs.learning`); it shifts every plan of a request
                    alike, so it changes no choice, only the estimate
``fetch_row_ms``,   fetching stored statistics from ``modelstore.statistics`` into Python objects:
``fetch_value_ms``  per stored row and per ``float8`` value of its arrays
``merge_op_ms``,    one Python merge (``LinearStats.__iadd__``/``__isub__``): a fixed part and a part
``merge_value_ms``  per value touched (k + k² for k columns)
``train_chunk_ms``, a logistic-regression chunk: fetch its rows to Python (k float columns → numpy)
``train_row_ms``    and train scikit-learn's L2 ``LogisticRegression(solver="lbfgs")`` on them:
                    ``f0 + f1·k`` per chunk (the solver's iterations, whose number grows with k,
                    each cost Python overhead) plus ``a + b·k`` per row
==================  ===============================================================================

**Per statistics engine.** ``scan_row_ms`` depends on which engine aggregates the rows
(:mod:`modelstore.stats.engine`): the ``modelstore_stats`` C aggregate makes one transition call per
row where the SQL aggregates make k(k+1)/2 + k, so a cost model is measured, stored and loaded per
engine (``engine``: ``'c'`` or ``'sql'``), and the planner prices scans with the figures of the engine
the executor will use (docs/statistics.md, "Engines").

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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np

from modelstore.families import FAMILIES

#: the statistics families a scan can aggregate, with the degree of their per-row cost in k
FAMILY_DEGREE = {f.kind: f.cost_degree for f in FAMILIES.values() if f.statistics is not None}

#: the least cost (ms) of one row or value: keeps every per-row figure strictly positive
FLOOR_MS = 1e-7

#: the column counts over which monotonicity is guaranteed (and tested)
MAX_K = 64

#: the statistics engines (modelstore.stats.engine) a cost model can describe
ENGINES = ("c", "sql")

#: the built-in per-row scan figures of each engine (see CostModel.default)
DEFAULT_SCAN_ROW_MS = {
    "sql": {"linear": (2.0e-5, 0.0, 5.5e-5), "gaussian_nb": (1.0e-4, 1.9e-4), "multinomial_nb": (4.0e-5, 1.2e-4)},
    # the C aggregate: one call per row whose k(k+1)/2 double-double multiply-adds cost little beside the
    # call (a quick calibration on the same machine, loaded); multinomial keeps SQL sum() on both engines
    "c": {"linear": (3.0e-5, 1.1e-5, 0.0), "gaussian_nb": (1.6e-4, 1.8e-5), "multinomial_nb": (4.0e-5, 1.2e-4)},
}

_SCALARS = ("statement_ms", "term_ms", "seq_row_ms", "index_row_ms", "fetch_row_ms", "fetch_value_ms",
            "merge_op_ms", "merge_value_ms", "seq_range_row_ms", "overhead_ms")
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
    #: the statistics engine whose aggregates the scan figures measure ('c' or 'sql')
    engine: str = "sql"
    #: per table row of a sequential scan, each range beyond the first in the scan's predicate
    seq_range_row_ms: float = 0.0
    #: the request's time outside the plan's steps (learned; 0 when calibrated)
    overhead_ms: float = 0.0

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
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r} instead")
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

    def seq_ranges_ms(self, table_rows: float, ranges: int) -> float:
        """What testing ``ranges`` ranges (instead of one) costs a sequential scan of ``table_rows`` rows."""
        return _rows(table_rows) * max(ranges - 1, 0) * self.seq_range_row_ms

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

    def scaled(self, *, agg: float = 1.0, read: float = 1.0, fixed: float = 1.0,
               overhead_ms: float | None = None) -> "CostModel":
        """These figures with every per-matched-row aggregate or training cost times ``agg``, every
        table- or index-read cost times ``read``, every fixed cost (statements, fetches, merges, a
        chunk's own cost) times ``fixed``, and ``overhead_ms`` (kept when None). Positive factors keep
        the model monotone. The learned correction (:mod:`~modelstore.planner.costs.learning`) is one."""
        for name, factor in (("agg", agg), ("read", read), ("fixed", fixed)):
            if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
                raise ValueError(f"{name} must be a finite factor > 0, got {factor!r} instead")

        def poly(c, factor):
            return (max(c[0] * factor, FLOOR_MS),) + tuple(x * factor for x in c[1:])

        return dataclasses.replace(
            self,
            scan_row_ms={family: poly(c, agg) for family, c in self.scan_row_ms.items()},
            train_row_ms=poly(self.train_row_ms, agg),
            seq_row_ms=max(self.seq_row_ms * read, FLOOR_MS), index_row_ms=max(self.index_row_ms * read, FLOOR_MS),
            seq_range_row_ms=self.seq_range_row_ms * read,
            statement_ms=self.statement_ms * fixed, term_ms=self.term_ms * fixed,
            fetch_row_ms=self.fetch_row_ms * fixed, fetch_value_ms=max(self.fetch_value_ms * fixed, FLOOR_MS),
            merge_op_ms=self.merge_op_ms * fixed, merge_value_ms=max(self.merge_value_ms * fixed, FLOOR_MS),
            train_chunk_ms=tuple(x * fixed for x in self.train_chunk_ms),
            overhead_ms=self.overhead_ms if overhead_ms is None else float(overhead_ms),
        )

    # -- serialisation ------------------------------------------------------------------------------

    def to_json(self) -> dict:
        data = {name: float(getattr(self, name)) for name in _SCALARS}
        data.update({
            "scan_row_ms": {family: list(c) for family, c in self.scan_row_ms.items()},
            "train_row_ms": list(self.train_row_ms),
            "train_chunk_ms": list(self.train_chunk_ms),
            "measured_at": self.measured_at.isoformat(),
            "server_version": self.server_version,
            "engine": self.engine,
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
            engine=str(data.get("engine", "sql")),  # stored before engines had figures of their own: SQL's
            method=str(data.get("method", "calibrated")),
            details=dict(data.get("details") or {}),
            **known,
        )

    @classmethod
    def default(cls, engine: str = "sql") -> "CostModel":
        """Built-in figures (a full calibration of PostgreSQL 15 on a small 2-core machine), for
        planning without a database to measure — tests, ``explain`` on a read-only standby — for the
        statistics engine ``engine``."""
        return cls(
            # the C engine's statement is one aggregate whatever k: planning it hardly grows with k
            statement_ms=0.25, term_ms=0.001 if engine == "c" else 0.038,
            scan_row_ms=DEFAULT_SCAN_ROW_MS[engine] if engine in DEFAULT_SCAN_ROW_MS else {},
            engine=engine,
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


__all__ = ["DEFAULT_SCAN_ROW_MS", "ENGINES", "FAMILY_DEGREE", "FLOOR_MS", "MAX_K", "CostModel", "aggregate_terms"]
