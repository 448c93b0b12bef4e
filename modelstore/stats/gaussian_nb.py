"""Gaussian Naive Bayes statistics: per class c, the count n_c, feature means and second central moments.

Paper §3.1.2 keeps N_c, S_jc = Σ x_j and SS_jc = Σ x_j²; as for the linear family we keep the centered
form (n_c, mean_jc, M2_jc = Σ (x_j − mean_jc)²) so that merging and unmerging are the exact pairwise
updates of :mod:`modelstore.stats.linear`, applied per class and per feature (a diagonal comoment).
A class whose count reaches zero by subtraction disappears.

Statistics from the ``modelstore_stats`` C aggregate (``dd_diag``) keep the low parts of their
double-double means and M2 (``means_lo``, ``m2_lo``), and merging and unmerging then run Chan's
formulas in double-double, exactly as for the linear family (:mod:`modelstore.stats._dd`;
docs/statistics.md, "Storing, merging and solving double-double statistics"). Combining a
double-double summary with a float64 one gives float64 (the executor says so in the plan).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from psycopg import sql

from modelstore.stats import _dd as dd
from modelstore.stats._classes import normalize_label, sorted_labels
from modelstore.stats._base import Statistics
from modelstore.stats._sql import CLASS_ALIAS, PART_ALIAS, column_alias, complete_rows, grouped_by_class


class GaussianNBStats(Statistics):
    """Per-class (n_c, mean, M2) over ``features``; ``classes`` sorted ascending."""

    family = "gaussian_nb"

    __slots__ = ("features", "classes", "counts", "means", "m2", "null_rows", "means_lo", "m2_lo")

    def __init__(self, features: Sequence[str], classes=(), counts=None, means=None, m2=None, null_rows: int = 0,
                 means_lo=None, m2_lo=None):
        self.features = tuple(features)
        d, classes = len(self.features), tuple(classes)
        order = sorted(range(len(classes)), key=lambda i: classes[i])
        self.classes = tuple(classes[i] for i in order)
        c = len(classes)
        self.counts = np.zeros(c, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64).reshape(c)[order]
        self.means = np.zeros((c, d)) if means is None else np.asarray(means, dtype=float).reshape(c, d)[order]
        self.m2 = np.zeros((c, d)) if m2 is None else np.asarray(m2, dtype=float).reshape(c, d)[order]
        self.null_rows = int(null_rows)
        if (means_lo is None) != (m2_lo is None):
            raise ValueError("double-double statistics need the low parts of both the means and the M2")
        #: the low parts of double-double statistics (value = hi + lo), None for float64 statistics
        self.means_lo = None if means_lo is None else np.asarray(means_lo, dtype=float).reshape(c, d)[order]
        self.m2_lo = None if m2_lo is None else np.asarray(m2_lo, dtype=float).reshape(c, d)[order]

    @property
    def precision(self) -> str:
        """'double-double' (the C aggregate's statistics) or 'float64' (the SQL aggregates')."""
        return "float64" if self.means_lo is None else "double-double"

    def to_float64(self) -> "GaussianNBStats":
        return GaussianNBStats(self.features, self.classes, self.counts.copy(), self.means.copy(), self.m2.copy(),
                               self.null_rows)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def columns(self) -> tuple[str, ...]:
        return self.features

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_rows(cls, features: Sequence[str], X, y, null_rows: int = 0) -> "GaussianNBStats":
        X = np.asarray(X, dtype=float).reshape(-1, len(features))
        y = np.asarray(y)
        labels = sorted_labels(normalize_label(v.item() if hasattr(v, "item") else v) for v in y)
        counts, means, m2 = [], [], []
        for label in labels:
            rows = X[np.array([normalize_label(v.item() if hasattr(v, "item") else v) == label for v in y])]
            counts.append(len(rows))
            means.append(rows.mean(axis=0))
            m2.append(((rows - rows.mean(axis=0)) ** 2).sum(axis=0))
        return cls(features, labels, counts, means, m2, null_rows)

    @classmethod
    def from_state(cls, state: dict) -> "GaussianNBStats":
        return cls(state["features"], state["classes"], state["counts"], state["means"], state["m2"], state.get("null_rows", 0),
                   state.get("means_lo"), state.get("m2_lo"))

    def to_state(self) -> dict:
        return {
            "features": list(self.features),
            "classes": list(self.classes),
            "counts": self.counts.tolist(),
            "means": self.means.tolist(),
            "m2": self.m2.tolist(),
            "null_rows": self.null_rows,
            **({} if self.means_lo is None else {"means_lo": self.means_lo.tolist(), "m2_lo": self.m2_lo.tolist()}),
        }

    def copy(self) -> "GaussianNBStats":
        return GaussianNBStats(self.features, self.classes, self.counts.copy(), self.means.copy(), self.m2.copy(), self.null_rows,
                               None if self.means_lo is None else self.means_lo.copy(),
                               None if self.m2_lo is None else self.m2_lo.copy())

    # -- algebra ----------------------------------------------------------------------------------

    def _check_compatible(self, other) -> None:
        if not isinstance(other, GaussianNBStats):
            raise TypeError(f"can only combine GaussianNBStats with GaussianNBStats, got {type(other).__name__} instead")
        if other.features != self.features:
            raise ValueError(f"statistics over different features: {self.features} vs {other.features}")

    def _row(self, label):
        return self.classes.index(label) if label in self.classes else None

    def _align_precision(self, other: "GaussianNBStats") -> "GaussianNBStats":
        """Both double-double or both float64: an empty side takes the other's precision, otherwise a
        double-double side is rounded to float64 (as :meth:`LinearStats._align_precision`)."""
        if self.precision == other.precision:
            return other
        if not self.classes:
            if other.means_lo is None:
                self.means_lo = self.m2_lo = None
            else:
                self.means_lo, self.m2_lo = np.zeros_like(self.means), np.zeros_like(self.m2)
            return other
        if not other.classes:
            return other.to_float64() if other.means_lo is not None else other
        if self.means_lo is not None:
            self.means_lo = self.m2_lo = None
            return other
        return other.to_float64()

    def _parts(self, i=None):
        """(means, means_lo, m2, m2_lo) of class row i (all rows when None); zeros for float64 low parts."""
        sl = slice(None) if i is None else i
        lo = (self.means_lo[sl], self.m2_lo[sl]) if self.means_lo is not None else (
            np.zeros_like(self.means[sl]), np.zeros_like(self.m2[sl]))
        return self.means[sl], lo[0], self.m2[sl], lo[1]

    def __iadd__(self, other: "GaussianNBStats") -> "GaussianNBStats":
        """Chan's merge per class and feature: δ = μ_b − μ_a, μ += δ·n_b/n, M2 += M2_b + δ²·n_a·n_b/n
        (in double-double when both sides are; every class at once in :meth:`_pooled` then)."""
        self._check_compatible(other)
        other = self._align_precision(other)
        exact = self.means_lo is not None
        if exact and self.classes and other.classes and _all_positive([self, other]):
            merged = GaussianNBStats._pooled(self.features, [self, other], self.null_rows + other.null_rows)
            for name in self.__slots__:
                setattr(self, name, getattr(merged, name))
            return self
        classes, counts = list(self.classes), list(self.counts)
        rows = [list(self._parts(i)) for i in range(len(classes))]
        for j, label in enumerate(other.classes):
            nb = int(other.counts[j])
            mb, mbl, m2b, m2bl = (x.copy() for x in other._parts(j))
            i = self._row(label)
            if i is None:
                classes.append(label)
                counts.append(nb)
                rows.append([mb, mbl, m2b, m2bl])
                continue
            na = int(counts[i])
            n = na + nb
            ma, mal, m2a, m2al = rows[i]
            if exact:
                dh, dl = dd.sub(mb, mbl, ma, mal)
                ma, mal = dd.add(ma, mal, *dd.div_d(*dd.mul_d(dh, dl, float(nb)), float(n)))
                sh, sl = dd.mul(dh, dl, dh, dl)
                sh, sl = dd.div_d(*dd.mul_d(*dd.mul_d(sh, sl, float(na)), float(nb)), float(n))
                m2a, m2al = dd.add(*dd.add(m2a, m2al, m2b, m2bl), sh, sl)
            else:
                delta = mb - ma
                m2a = m2a + m2b + delta**2 * (na * nb / n)
                ma = ma + delta * (nb / n)
            rows[i] = [ma, mal, m2a, m2al]
            counts[i] = n
        self._set_rows(classes, counts, rows, exact, self.null_rows + other.null_rows)
        return self

    @classmethod
    def merge_many(cls, features: Sequence[str], items) -> "GaussianNBStats":
        """The sum of ``items`` (as adding each to empty statistics gives it) in one vectorised step over
        every summary, class and feature: per class, n = Σ n_i, μ = Σ n_i μ_i / n,
        M2 = Σ M2_i + Σ n_i (μ_i − μ)² (the pooled form of Chan's update, as
        :meth:`LinearStats.merge_many <modelstore.stats.linear.LinearStats.merge_many>`)."""
        features = tuple(features)
        items = list(items)
        total = cls(features)
        for item in items:
            total._check_compatible(item)
        live = [item for item in items if item.classes]
        if len(live) < 2 or len({item.precision for item in live}) > 1 or not _all_positive(live):
            for item in items:
                total += item
            return total
        return cls._pooled(features, live, sum(item.null_rows for item in items))

    @classmethod
    def _pooled(cls, features: tuple[str, ...], live: list, null_rows: int) -> "GaussianNBStats":
        """The pooled merge of summaries of one precision, each class with a positive count."""
        labels = sorted_labels(label for item in live for label in item.classes)
        where = {label: i for i, label in enumerate(labels)}
        k, c, d = len(live), len(labels), len(features)
        counts = np.zeros((k, c), dtype=np.int64)
        present = np.zeros((k, c, 1), dtype=bool)
        M, S = np.zeros((k, c, d)), np.zeros((k, c, d))
        exact = live[0].means_lo is not None
        Ml, Sl = (np.zeros((k, c, d)), np.zeros((k, c, d))) if exact else (None, None)
        for a, item in enumerate(live):
            rows = [where[label] for label in item.classes]
            counts[a, rows] = item.counts
            present[a, rows] = True
            M[a, rows], S[a, rows] = item.means, item.m2
            if exact:
                Ml[a, rows], Sl[a, rows] = item.means_lo, item.m2_lo
        n = counts.sum(axis=0)
        weights = counts.astype(float)[:, :, None]
        if not exact:
            mean = (weights * M).sum(axis=0) / n[:, None]
            delta = np.where(present, M - mean, 0.0)  # a class a summary lacks adds nothing (not 0·∞)
            return cls(features, labels, n, mean, S.sum(axis=0) + (weights * delta**2).sum(axis=0), null_rows)
        mh, ml = dd.div_d(*dd.sum0(*dd.mul_d(M, Ml, weights)), n.astype(float)[:, None])
        # a class a summary lacks: its mean taken as the pooled one, so that its term is exactly 0
        M, Ml = np.where(present, M, mh), np.where(present, Ml, ml)
        dh, dl = dd.sub(M, Ml, mh, ml)
        sh, sl = dd.mul_d(*dd.mul(dh, dl, dh, dl), weights)
        m2h, m2l = dd.sum0(*dd.add(S, Sl, sh, sl))
        return cls(features, labels, n, mh, m2h, null_rows, ml, m2l)

    def _set_rows(self, classes, counts, rows, exact, null_rows) -> None:
        c, d = len(classes), len(self.features)

        def stack(t):
            return np.array([r[t] for r in rows], dtype=float).reshape(c, d)

        merged = GaussianNBStats(self.features, classes, counts, stack(0), stack(2), null_rows,
                                 stack(1) if exact else None, stack(3) if exact else None)
        for name in self.__slots__:
            setattr(self, name, getattr(merged, name))

    def __isub__(self, other: "GaussianNBStats") -> "GaussianNBStats":
        """The inverse of ``+=`` per class: μ_r = μ + (μ − μ_b)·n_b/n_r, δ = μ_b − μ_r,
        M2_r = M2 − M2_b − δ²·n_r·n_b/n."""
        self._check_compatible(other)
        if self.null_rows < other.null_rows:
            raise ValueError(f"cannot remove {other.null_rows} skipped rows from {self.null_rows}")
        for j, label in enumerate(other.classes):
            i = self._row(label)
            if i is None or self.counts[i] < int(other.counts[j]):
                have = 0 if i is None else int(self.counts[i])
                raise ValueError(f"cannot remove {int(other.counts[j])} rows of class {label!r} from statistics holding {have}")
        other = self._align_precision(other)
        exact = self.means_lo is not None
        counts = list(self.counts)
        rows = [list(self._parts(i)) for i in range(len(self.classes))]
        for j, label in enumerate(other.classes):
            nb = int(other.counts[j])
            i = self._row(label)
            n = int(counts[i])
            rest = n - nb
            mb, mbl, m2b, m2bl = other._parts(j)
            ma, mal, m2a, m2al = rows[i]
            if rest == 0:
                z = np.zeros_like(ma)
                rows[i] = [z, z.copy(), z.copy(), z.copy()]
            elif exact:
                dh, dl = dd.sub(ma, mal, mb, mbl)
                rh, rl = dd.add(ma, mal, *dd.div_d(*dd.mul_d(dh, dl, float(nb)), float(rest)))
                dh, dl = dd.sub(mb, mbl, rh, rl)
                sh, sl = dd.mul(dh, dl, dh, dl)
                sh, sl = dd.div_d(*dd.mul_d(*dd.mul_d(sh, sl, float(rest)), float(nb)), float(n))
                m2a, m2al = dd.sub(*dd.sub(m2a, m2al, m2b, m2bl), sh, sl)
                rows[i] = [rh, rl, m2a, m2al]
            elif nb:
                mean_rest = ma + (ma - mb) * (nb / rest)
                delta = mb - mean_rest
                rows[i] = [mean_rest, mal, m2a - m2b - delta**2 * (rest * nb / n), m2al]
            counts[i] = rest
        keep = [i for i, cnt in enumerate(counts) if cnt > 0]
        self._set_rows([self.classes[i] for i in keep], [counts[i] for i in keep], [rows[i] for i in keep], exact,
                       self.null_rows - other.null_rows)
        return self

    # -- views ------------------------------------------------------------------------------------

    def select(self, features: Sequence[str]) -> "GaussianNBStats":
        features = tuple(features)
        if not self.can_serve(features):
            raise ValueError(f"statistics over {self.features} (null_rows={self.null_rows}) cannot serve {features}")
        idx = [self.features.index(f) for f in features]
        lo = (None, None) if self.means_lo is None else (self.means_lo[:, idx], self.m2_lo[:, idx])
        return GaussianNBStats(features, self.classes, self.counts, self.means[:, idx], self.m2[:, idx], self.null_rows,
                               *lo)

    def non_finite_columns(self) -> list[str]:
        bad = ~np.isfinite(self.means).all(axis=0) | ~np.isfinite(self.m2).all(axis=0)
        if self.means_lo is not None:
            bad |= ~np.isfinite(self.means_lo).all(axis=0) | ~np.isfinite(self.m2_lo).all(axis=0)
        return [f for f, b in zip(self.features, bad) if b]

    @property
    def nbytes(self) -> int:
        lo = 0 if self.means_lo is None else self.means_lo.nbytes + self.m2_lo.nbytes
        return self.counts.nbytes + self.means.nbytes + self.m2.nbytes + lo + 16

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, GaussianNBStats)
            and (self.features, self.classes, self.null_rows) == (other.features, other.classes, other.null_rows)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.means, other.means)
            and np.array_equal(self.m2, other.m2)
            and self.precision == other.precision
            and (self.means_lo is None or (np.array_equal(self.means_lo, other.means_lo)
                                           and np.array_equal(self.m2_lo, other.m2_lo)))
        )

    def __repr__(self) -> str:
        return f"GaussianNBStats(features={self.features!r}, classes={self.classes!r}, n={self.n}, null_rows={self.null_rows})"


def aggregate_query(relation, value_exprs, where, class_expr, max_classes: int,
                    part_expr: sql.Composable | None = None, parts: int = 1) -> sql.Composed:
    """One grouped aggregate: per class count, means and M2 (``regr_sxx`` is Youngs–Cramer).

    Incomplete rows form the NULL group, whose count is the number of rows skipped. ``LIMIT``
    bounds the result when the class column has far too many values (checked by the caller).
    """
    c = [column_alias(i) for i in range(len(value_exprs))]
    items = [CLASS_ALIAS, sql.SQL("count(*)")]
    items += [sql.SQL("avg({})").format(ci) for ci in c]
    items += [sql.SQL("regr_sxx({0}, {0})").format(ci) for ci in c]
    inner = complete_rows(relation, value_exprs, where, class_expr, part_expr)
    return grouped_by_class(items, inner, max_classes, part_expr, parts)


def from_aggregate_rows(features: Sequence[str], rows) -> GaussianNBStats:
    d = len(features)
    labels, counts, means, m2, null_rows = [], [], [], [], 0
    for row in rows:
        if row[0] is None:
            null_rows = int(row[1])
            continue
        labels.append(normalize_label(row[0]))
        counts.append(int(row[1]))
        means.append([float(v) for v in row[2 : 2 + d]])
        m2.append([float(v) for v in row[2 + d : 2 + 2 * d]])
    c = len(labels)
    return GaussianNBStats(features, labels, counts, np.array(means).reshape(c, d), np.array(m2).reshape(c, d), null_rows)


def dd_aggregate_query(relation, value_exprs, where, class_expr, max_classes: int,
                       part_expr: sql.Composable | None = None, parts: int = 1,
                       schema: str = "modelstore") -> sql.Composed:
    """The C engine's grouped aggregate: ``dd_diag(v_1, …, v_d)`` per class, one call per row.

    A row with a NULL (a value or the class) goes to the NULL class group, whose row count (n and
    null_rows of its state together) is the number of rows skipped, as on the SQL path.
    """
    present = [sql.SQL("({}) IS NOT NULL").format(e) for e in value_exprs] + [
        sql.SQL("({}) IS NOT NULL").format(class_expr)]
    cls = sql.SQL("CASE WHEN {} THEN {} END AS {}").format(sql.SQL(" AND ").join(present), class_expr, CLASS_ALIAS)
    agg = sql.SQL("{}.dd_diag({})").format(sql.Identifier(schema), sql.SQL(", ").join(value_exprs))
    if part_expr is None:
        return sql.SQL("SELECT {0}, {1} FROM {2} WHERE {3} GROUP BY 1 ORDER BY 1 NULLS FIRST LIMIT {4}").format(
            cls, agg, relation, where, sql.Literal(max_classes + 2))
    return sql.SQL("SELECT {0} AS {1}, {2}, {3} FROM {4} WHERE {5} GROUP BY 1, 2 ORDER BY 1, 2 NULLS FIRST "
                   "LIMIT {6}").format(part_expr, PART_ALIAS, cls, agg, relation, where,
                                       sql.Literal((max_classes + 2) * parts))


def from_dd_rows(features: Sequence[str], rows) -> GaussianNBStats:
    """The statistics from :func:`dd_aggregate_query`'s rows (class, dd_diag result): the double-double
    means and M2 with their low parts (hi is the correctly rounded value)."""
    d = len(features)
    labels, counts, means, m2, null_rows, means_lo, m2_lo = [], [], [], [], 0, [], []
    for label, values in rows:
        v = np.asarray(values, dtype=float)
        if label is None:
            null_rows = int(v[0]) + int(v[1])
            continue
        labels.append(normalize_label(label))
        counts.append(int(v[0]))
        means.append(v[2 : 2 + d])
        means_lo.append(v[2 + d : 2 + 2 * d])
        m2.append(v[2 + 2 * d : 2 + 3 * d])
        m2_lo.append(v[2 + 3 * d : 2 + 4 * d])
    c = len(labels)

    def grid(x):
        return np.array(x, dtype=float).reshape(c, d)

    return GaussianNBStats(features, labels, counts, grid(means), grid(m2), null_rows, grid(means_lo), grid(m2_lo))


def _all_positive(items) -> bool:
    """Every class of every summary has rows (a class at 0, left by subtraction, takes the per-class path)."""
    return all(bool((item.counts > 0).all()) for item in items)
