"""Linear-regression statistics: n, the mean vector and the comoment matrix of [features…, target].

Paper §3.1.1 stores A = XᵀX and B = Xᵀy as raw power sums. Subtracting raw power sums loses every
digit that the means share with the data (catastrophic cancellation; NIST's Longley data loses all
of them), so we keep the *centered* form instead:

    n,   mean_i = Σ z_i / n,   C_ij = Σ (z_i − mean_i)(z_j − mean_j)

over z = [x_1 … x_d, y]. XᵀX and Xᵀy of any model (with intercept) follow from it, and merging and
unmerging are exact pairwise updates (Chan, Golub & LeVeque 1979):

    a + b:  n = n_a + n_b,  δ = mean_b − mean_a,
            mean = mean_a + δ · n_b / n,
            C = C_a + C_b + δ δᵀ · n_a n_b / n
    (a + b) − b  inverts the same identity (see :meth:`LinearStats.__isub__`).

Inside PostgreSQL the state is computed by one aggregate query (:func:`aggregate_query`), on one of
two *engines* (:mod:`modelstore.stats.engine`): the ``modelstore_stats`` C extension's ``dd_moments``
(one call per row, sums in double-double: the statistics come with low parts ``mean_lo`` and
``comoment_lo``, and merging and unmerging then run in double-double, :mod:`modelstore.stats._dd`),
or, where it is not installed, ``avg`` and ``regr_sxy`` (Youngs–Cramer updates since PostgreSQL 12,
float64: the low parts are None). Statistics of the two precisions are never combined silently: the
result of combining them is float64, and the executor says so in the plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from psycopg import sql

from modelstore.stats import _dd as dd
from modelstore.stats._base import Statistics
from modelstore.stats._sql import PART_ALIAS, column_alias, complete_rows


#: fewer non-empty summaries than this are merged pairwise by merge_many (as cheap for two)
_MERGE_MANY_MIN = 3


class LinearStats(Statistics):
    """Mergeable sufficient statistics of a linear model over ``columns`` (features…, target).

    ``null_rows`` counts rows of the range that were skipped because some column was NULL; it adds
    and subtracts like ``n``.
    """

    family = "linear"

    __slots__ = ("columns", "n", "mean", "comoment", "null_rows", "mean_lo", "comoment_lo")

    def __init__(self, columns: Sequence[str], n: int = 0, mean=None, comoment=None, null_rows: int = 0,
                 mean_lo=None, comoment_lo=None):
        self.columns = tuple(columns)
        k = len(self.columns)
        self.n = int(n)
        self.mean = np.zeros(k) if mean is None else np.asarray(mean, dtype=float).reshape(k)
        self.comoment = np.zeros((k, k)) if comoment is None else np.asarray(comoment, dtype=float).reshape(k, k)
        self.null_rows = int(null_rows)
        if self.n < 0 or self.null_rows < 0:
            raise ValueError(f"row counts must be >= 0, got n={self.n}, null_rows={self.null_rows}")
        if (mean_lo is None) != (comoment_lo is None):
            raise ValueError("double-double statistics need the low parts of both the means and the comoments")
        #: the low parts of double-double statistics (value = hi + lo), None for float64 statistics
        self.mean_lo = None if mean_lo is None else np.asarray(mean_lo, dtype=float).reshape(k)
        self.comoment_lo = None if comoment_lo is None else np.asarray(comoment_lo, dtype=float).reshape(k, k)

    @property
    def precision(self) -> str:
        """'double-double' (the C aggregate's statistics) or 'float64' (the SQL aggregates')."""
        return "float64" if self.mean_lo is None else "double-double"

    def to_float64(self) -> "LinearStats":
        """The same statistics rounded to float64 (hi + lo rounded: hi already is)."""
        return LinearStats(self.columns, self.n, self.mean.copy(), self.comoment.copy(), self.null_rows)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_rows(cls, columns: Sequence[str], rows, null_rows: int = 0) -> "LinearStats":
        """Statistics of a numpy array of complete rows (one column per entry of ``columns``)."""
        z = np.asarray(rows, dtype=float).reshape(-1, len(columns))
        n = z.shape[0]
        if n == 0:
            return cls(columns, null_rows=null_rows)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/±inf rows: non_finite_columns reports them
            mean = z.mean(axis=0)
            centered = z - mean
            comoment = centered.T @ centered
        return cls(columns, n, mean, comoment, null_rows)

    @classmethod
    def from_state(cls, state: dict) -> "LinearStats":
        """Rebuild from :meth:`to_state` (the catalog's representation)."""
        return cls(state["columns"], state["n"], state["mean"], state["comoment"], state.get("null_rows", 0),
                   state.get("mean_lo"), state.get("comoment_lo"))

    def to_state(self) -> dict:
        return {
            "columns": list(self.columns),
            "n": self.n,
            "null_rows": self.null_rows,
            "mean": self.mean.tolist(),
            "comoment": self.comoment.tolist(),
            **({} if self.mean_lo is None else {"mean_lo": self.mean_lo.tolist(),
                                                  "comoment_lo": self.comoment_lo.tolist()}),
        }

    def copy(self) -> "LinearStats":
        return LinearStats(self.columns, self.n, self.mean.copy(), self.comoment.copy(), self.null_rows,
                           None if self.mean_lo is None else self.mean_lo.copy(),
                           None if self.comoment_lo is None else self.comoment_lo.copy())

    # -- algebra (Chan et al.) -------------------------------------------------------------------

    def _check_compatible(self, other: "LinearStats") -> None:
        if not isinstance(other, LinearStats):
            raise TypeError(f"can only combine LinearStats with LinearStats, got {type(other).__name__} instead")
        if other.columns != self.columns:
            raise ValueError(f"statistics over different columns: {self.columns} vs {other.columns}")

    def _align_precision(self, other: "LinearStats") -> "LinearStats":
        """Both double-double, or both float64: an empty side takes the other's precision, and a
        double-double side is rounded when the other is float64 (the executor reports the mix)."""
        if self.precision == other.precision:
            return other
        if self.n == 0 and self.mean_lo is not None:
            self.mean_lo = self.comoment_lo = None
            return other
        if self.n == 0:
            return other
        if other.n == 0:
            return other.to_float64() if other.mean_lo is not None else other
        if self.mean_lo is not None:
            self.mean_lo = self.comoment_lo = None
            return other
        return other.to_float64()

    def __iadd__(self, other: "LinearStats") -> "LinearStats":
        self._check_compatible(other)
        other = self._align_precision(other)
        if other.n and self.n and self.mean_lo is not None:
            self._iadd_dd(other)
            self.n += other.n
        elif other.n:
            if self.n == 0:
                self.mean, self.comoment = other.mean.copy(), other.comoment.copy()
                if other.mean_lo is not None:
                    self.mean_lo, self.comoment_lo = other.mean_lo.copy(), other.comoment_lo.copy()
            else:
                n = self.n + other.n
                delta = other.mean - self.mean
                self.comoment = self.comoment + other.comoment + np.outer(delta, delta) * (self.n * other.n / n)
                self.mean = self.mean + delta * (other.n / n)
            self.n += other.n
        self.null_rows += other.null_rows
        return self

    def _iadd_dd(self, other: "LinearStats") -> None:
        """Chan's merge in double-double: δ = μ_b − μ_a, μ += δ·(n_b/n), C += C_b + δδᵀ·(n_a·n_b/n), each
        count ratio rounded once to a double-double scalar (:func:`~modelstore.stats._dd.ratio`)."""
        n = self.n + other.n
        fh, fl = dd.ratio(other.n, n)
        gh, gl = dd.ratio(self.n * other.n, n)
        dh, dl = dd.sub(other.mean, other.mean_lo, self.mean, self.mean_lo)
        self.mean, self.mean_lo = dd.add(self.mean, self.mean_lo, *dd.mul(dh, dl, fh, fl))
        oh, ol = dd.mul(*dd.mul(dh[:, None], dl[:, None], dh[None, :], dl[None, :]), gh, gl)
        ch, cl = dd.add(self.comoment, self.comoment_lo, other.comoment, other.comoment_lo)
        self.comoment, self.comoment_lo = dd.add(ch, cl, oh, ol)

    def _isub_dd(self, other: "LinearStats", n_rest: int) -> None:
        """The inverse of :meth:`_iadd_dd`: μ_r = μ + (μ − μ_b)·(n_b/n_r), δ = μ_b − μ_r,
        C_r = C − C_b − δδᵀ·(n_r·n_b/n)."""
        fh, fl = dd.ratio(other.n, n_rest)
        gh, gl = dd.ratio(n_rest * other.n, self.n)
        dh, dl = dd.sub(self.mean, self.mean_lo, other.mean, other.mean_lo)
        rh, rl = dd.add(self.mean, self.mean_lo, *dd.mul(dh, dl, fh, fl))
        dh, dl = dd.sub(other.mean, other.mean_lo, rh, rl)
        oh, ol = dd.mul(*dd.mul(dh[:, None], dl[:, None], dh[None, :], dl[None, :]), gh, gl)
        ch, cl = dd.sub(self.comoment, self.comoment_lo, other.comoment, other.comoment_lo)
        self.comoment, self.comoment_lo = dd.sub(ch, cl, oh, ol)
        self.mean, self.mean_lo = rh, rl

    @classmethod
    def merge_many(cls, columns: Sequence[str], items) -> "LinearStats":
        """The sum of ``items`` (statistics over ``columns``): what ``total = LinearStats(columns)`` then
        ``total += s`` for each gives, in one vectorised step over the stacked summaries instead of k − 1
        pairwise merges (an index span's nodes, a scan's pieces). With n = Σ n_i, the pooled form

            μ = Σ n_i μ_i / n,   C = Σ C_i + Σ n_i (μ_i − μ)(μ_i − μ)ᵀ

        in double-double, each Σ a balanced tree of :func:`~modelstore.stats._dd.add`; the error of μ
        enters C only to second order (Σ n_i (μ_i − μ) = 0). Items of mixed precision are merged one by
        one (the float64 rounding rules of ``+=``)."""
        columns = tuple(columns)
        items = list(items)
        total = cls(columns)
        for item in items:
            total._check_compatible(item)
        live = [item for item in items if item.n]
        if len(live) < _MERGE_MANY_MIN or len({item.precision for item in live}) > 1:
            for item in items:
                total += item
            return total
        n = sum(item.n for item in live)
        null_rows = sum(item.null_rows for item in items)
        counts = np.array([item.n for item in live], dtype=float)
        M = np.stack([item.mean for item in live])
        C = np.stack([item.comoment for item in live])
        if live[0].mean_lo is None:
            mean = counts @ M / n
            D = M - mean
            return cls(columns, n, mean, C.sum(axis=0) + np.einsum("i,ij,ik->jk", counts, D, D), null_rows)
        Ml = np.stack([item.mean_lo for item in live])
        Cl = np.stack([item.comoment_lo for item in live])
        mh, ml = dd.div_d(*dd.sum0(*dd.mul_d(M, Ml, counts[:, None])), float(n))
        dh, dl = dd.sub(M, Ml, mh, ml)
        oh, ol = dd.mul_d(*dd.mul(dh[:, :, None], dl[:, :, None], dh[:, None, :], dl[:, None, :]),
                          counts[:, None, None])
        ch, cl = dd.sum0(*dd.add(C, Cl, oh, ol))
        return cls(columns, n, mh, ch, null_rows, ml, cl)

    def __isub__(self, other: "LinearStats") -> "LinearStats":
        """Remove ``other``'s rows: the inverse of ``+=`` for rows that ``self`` contains."""
        self._check_compatible(other)
        n_rest = self.n - other.n
        if n_rest < 0 or self.null_rows < other.null_rows:
            raise ValueError(f"cannot remove {other.n} rows from statistics over {self.n} rows")
        other = self._align_precision(other)
        if other.n and n_rest and self.mean_lo is not None:
            self._isub_dd(other, n_rest)
            self.n = n_rest
        elif other.n:
            if n_rest == 0:
                self.mean = np.zeros_like(self.mean)
                self.comoment = np.zeros_like(self.comoment)
                if self.mean_lo is not None:
                    self.mean_lo, self.comoment_lo = np.zeros_like(self.mean), np.zeros_like(self.comoment)
            else:
                mean_rest = self.mean + (self.mean - other.mean) * (other.n / n_rest)
                delta = other.mean - mean_rest
                self.comoment = self.comoment - other.comoment - np.outer(delta, delta) * (n_rest * other.n / self.n)
                self.mean = mean_rest
            self.n = n_rest
        self.null_rows -= other.null_rows
        return self

    # -- views ------------------------------------------------------------------------------------

    def select(self, columns: Sequence[str]) -> "LinearStats":
        """The statistics of a sub-model over ``columns`` ⊆ ``self.columns`` (any order).

        Exact only when no row was skipped for a NULL: a row skipped because a *dropped* column was
        NULL would belong to the sub-model. Callers check :meth:`can_serve` first.
        """
        columns = tuple(columns)
        if not self.can_serve(columns):
            raise ValueError(f"statistics over {self.columns} (null_rows={self.null_rows}) cannot serve {columns}")
        idx = [self.columns.index(c) for c in columns]
        lo = (None, None) if self.mean_lo is None else (self.mean_lo[idx], self.comoment_lo[np.ix_(idx, idx)])
        return LinearStats(columns, self.n, self.mean[idx], self.comoment[np.ix_(idx, idx)], self.null_rows, *lo)

    def non_finite_columns(self) -> list[str]:
        """Columns whose statistics are NaN/inf — the rows held NaN or ±Infinity (or squares overflowed).
        A column's own mean and variance say it: the cross moments of a clean column with a bad one are
        bad too, and would name every column."""
        bad = ~np.isfinite(self.mean) | ~np.isfinite(np.diag(self.comoment))
        if self.mean_lo is not None:
            bad |= ~np.isfinite(self.mean_lo) | ~np.isfinite(np.diag(self.comoment_lo))
        return [c for c, b in zip(self.columns, bad) if b]

    @property
    def nbytes(self) -> int:
        lo = 0 if self.mean_lo is None else self.mean_lo.nbytes + self.comoment_lo.nbytes
        return self.mean.nbytes + self.comoment.nbytes + lo + 16

    def __eq__(self, other) -> bool:  # exact equality, used by tests of the catalog round trip
        return (
            isinstance(other, LinearStats)
            and self.columns == other.columns
            and self.n == other.n
            and self.null_rows == other.null_rows
            and np.array_equal(self.mean, other.mean)
            and np.array_equal(self.comoment, other.comoment)
            and self.precision == other.precision
            and (self.mean_lo is None or (np.array_equal(self.mean_lo, other.mean_lo)
                                          and np.array_equal(self.comoment_lo, other.comoment_lo)))
        )

    def __repr__(self) -> str:
        return f"LinearStats(columns={self.columns!r}, n={self.n}, null_rows={self.null_rows}, precision={self.precision!r})"


# -- the aggregate query ---------------------------------------------------------------------------

def aggregate_query(relation: sql.Composable, value_exprs: list[sql.Composable], where: sql.Composable,
                    part_expr: sql.Composable | None = None, engine: str = "sql",
                    schema: str = "modelstore") -> sql.Composed:
    """One aggregate over the rows ``where`` selects: n, null_rows, the k means, the k(k+1)/2 comoments.

    ``engine='c'``: ``dd_moments(v_1, …, v_k)`` of the modelstore_stats extension (in ``schema``), one
    call per row, no subquery: it skips and counts rows with a NULL itself; its one result column is
    ``[n, null_rows, mean_hi[k], mean_lo[k], C_hi[m], C_lo[m]]``.

    ``engine='sql'``: ``regr_sxy(Y, X)`` is Σ(X − X̄)(Y − Ȳ) computed with Youngs–Cramer updates
    (PostgreSQL ≥ 12), over :func:`complete_rows`.

    With ``part_expr`` the rows are grouped by it and each result row starts with the part number.
    """
    if engine == "c":
        agg = sql.SQL("{}.dd_moments({})").format(sql.Identifier(schema), sql.SQL(", ").join(value_exprs))
        if part_expr is None:
            return sql.SQL("SELECT {} FROM {} WHERE {}").format(agg, relation, where)
        return sql.SQL("SELECT {0} AS {1}, {2} FROM {3} WHERE {4} GROUP BY 1").format(
            part_expr, PART_ALIAS, agg, relation, where)
    k = len(value_exprs)
    c = [column_alias(i) for i in range(k)]
    # the means and the comoments as two arrays: a wide column set (60 columns: 1,830 comoments) stays
    # under PostgreSQL's 1,664 entries per SELECT list
    means = sql.SQL(", ").join(sql.SQL("avg({})").format(ci) for ci in c)
    comoments = sql.SQL(", ").join(sql.SQL("regr_sxy({}, {})").format(c[j], c[i]) for i in range(k) for j in range(i, k))
    items = [sql.SQL("count({})").format(c[0]), sql.SQL("count(*) - count({})").format(c[0]),
             sql.SQL("ARRAY[{}]::float8[]").format(means), sql.SQL("ARRAY[{}]::float8[]").format(comoments)]
    inner = complete_rows(relation, value_exprs, where, part_expr=part_expr)
    if part_expr is None:
        return sql.SQL("SELECT {} FROM ({}) AS s").format(sql.SQL(", ").join(items), inner)
    return sql.SQL("SELECT {0}, {1} FROM ({2}) AS s GROUP BY {0}").format(PART_ALIAS, sql.SQL(", ").join(items), inner)


def from_aggregate_row(columns: Sequence[str], row: Sequence, engine: str = "sql") -> LinearStats:
    """Rebuild the statistics from the single row :func:`aggregate_query` returns."""
    k = len(columns)
    if engine == "c":
        return from_dd_array(columns, row[0])
    n, null_rows = int(row[0]), int(row[1])
    if n == 0:
        return LinearStats(columns, 0, null_rows=null_rows)
    mean = np.array([_float(v) for v in row[2]])
    comoment = np.empty((k, k))
    upper = np.triu_indices(k)
    comoment[upper] = [_float(v) for v in row[3]]  # row-major upper triangle, as the query lists them
    comoment.T[upper] = comoment[upper]
    return LinearStats(columns, n, mean, comoment, null_rows)


def _float(v) -> float:
    return math.nan if v is None else float(v)


def from_dd_array(columns: Sequence[str], values) -> LinearStats:
    """The statistics from ``dd_moments``'s result (None: no row at all)."""
    k = len(columns)
    if values is None:
        return LinearStats(columns)
    v = np.asarray(values, dtype=float)
    m = k * (k + 1) // 2
    if v.shape != (2 + 2 * k + 2 * m,):
        raise ValueError(f"dd_moments returned {v.shape[0]} values for {k} columns, expected {2 + 2 * k + 2 * m}")
    n, null_rows = int(v[0]), int(v[1])
    if n == 0:
        return LinearStats(columns, 0, null_rows=null_rows, mean_lo=np.zeros(k), comoment_lo=np.zeros((k, k)))
    upper = np.triu_indices(k)
    parts = []
    for tri in (v[2 + 2 * k : 2 + 2 * k + m], v[2 + 2 * k + m :]):
        full = np.empty((k, k))
        full[upper] = tri
        full.T[upper] = tri
        parts.append(full)
    return LinearStats(columns, n, v[2 : 2 + k], parts[0], null_rows, v[2 + k : 2 + 2 * k], parts[1])
