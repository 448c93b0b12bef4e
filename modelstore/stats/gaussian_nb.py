"""Gaussian Naive Bayes statistics: per class c, the count n_c, feature means and second central moments.

Paper §3.1.2 keeps N_c, S_jc = Σ x_j and SS_jc = Σ x_j²; as for the linear family we keep the centered
form (n_c, mean_jc, M2_jc = Σ (x_j − mean_jc)²) so that merging and unmerging are the exact pairwise
updates of :mod:`modelstore.stats.linear`, applied per class and per feature (a diagonal comoment).
A class whose count reaches zero by subtraction disappears.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from psycopg import sql

from modelstore.stats._classes import normalize_label, sorted_labels
from modelstore.stats._base import Statistics
from modelstore.stats._sql import CLASS_ALIAS, PART_ALIAS, column_alias, complete_rows, grouped_by_class


class GaussianNBStats(Statistics):
    """Per-class (n_c, mean, M2) over ``features``; ``classes`` sorted ascending."""

    family = "gaussian_nb"

    __slots__ = ("features", "classes", "counts", "means", "m2", "null_rows")

    def __init__(self, features: Sequence[str], classes=(), counts=None, means=None, m2=None, null_rows: int = 0):
        self.features = tuple(features)
        d, classes = len(self.features), tuple(classes)
        order = sorted(range(len(classes)), key=lambda i: classes[i])
        self.classes = tuple(classes[i] for i in order)
        c = len(classes)
        self.counts = np.zeros(c, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64).reshape(c)[order]
        self.means = np.zeros((c, d)) if means is None else np.asarray(means, dtype=float).reshape(c, d)[order]
        self.m2 = np.zeros((c, d)) if m2 is None else np.asarray(m2, dtype=float).reshape(c, d)[order]
        self.null_rows = int(null_rows)

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
        return cls(state["features"], state["classes"], state["counts"], state["means"], state["m2"], state.get("null_rows", 0))

    def to_state(self) -> dict:
        return {
            "features": list(self.features),
            "classes": list(self.classes),
            "counts": self.counts.tolist(),
            "means": self.means.tolist(),
            "m2": self.m2.tolist(),
            "null_rows": self.null_rows,
        }

    def copy(self) -> "GaussianNBStats":
        return GaussianNBStats(self.features, self.classes, self.counts.copy(), self.means.copy(), self.m2.copy(), self.null_rows)

    # -- algebra ----------------------------------------------------------------------------------

    def _check_compatible(self, other) -> None:
        if not isinstance(other, GaussianNBStats):
            raise TypeError(f"can only combine GaussianNBStats with GaussianNBStats, got {type(other).__name__} instead")
        if other.features != self.features:
            raise ValueError(f"statistics over different features: {self.features} vs {other.features}")

    def _row(self, label):
        return self.classes.index(label) if label in self.classes else None

    def __iadd__(self, other: "GaussianNBStats") -> "GaussianNBStats":
        self._check_compatible(other)
        classes, counts, means, m2 = list(self.classes), list(self.counts), list(self.means), list(self.m2)
        for j, label in enumerate(other.classes):
            nb, mb, m2b = int(other.counts[j]), other.means[j], other.m2[j]
            i = self._row(label)
            if i is None:
                classes.append(label)
                counts.append(nb)
                means.append(mb.copy())
                m2.append(m2b.copy())
                continue
            na = int(counts[i])
            n = na + nb
            delta = mb - means[i]
            m2[i] = m2[i] + m2b + delta**2 * (na * nb / n)
            means[i] = means[i] + delta * (nb / n)
            counts[i] = n
        merged = GaussianNBStats(self.features, classes, counts, np.array(means).reshape(len(classes), -1),
                                 np.array(m2).reshape(len(classes), -1), self.null_rows + other.null_rows)
        self.classes, self.counts, self.means, self.m2, self.null_rows = (
            merged.classes, merged.counts, merged.means, merged.m2, merged.null_rows)
        return self

    def __isub__(self, other: "GaussianNBStats") -> "GaussianNBStats":
        self._check_compatible(other)
        if self.null_rows < other.null_rows:
            raise ValueError(f"cannot remove {other.null_rows} skipped rows from {self.null_rows}")
        counts, means, m2 = self.counts.copy(), self.means.copy(), self.m2.copy()
        for j, label in enumerate(other.classes):
            nb = int(other.counts[j])
            i = self._row(label)
            if i is None or counts[i] < nb:
                have = 0 if i is None else int(counts[i])
                raise ValueError(f"cannot remove {nb} rows of class {label!r} from statistics holding {have}")
            n = int(counts[i])
            rest = n - nb
            if rest == 0:
                means[i], m2[i] = 0.0, 0.0
            else:
                mean_rest = means[i] + (means[i] - other.means[j]) * (nb / rest)
                delta = other.means[j] - mean_rest
                m2[i] = m2[i] - other.m2[j] - delta**2 * (rest * nb / n)
                means[i] = mean_rest
            counts[i] = rest
        keep = counts > 0
        self.classes = tuple(c for c, k in zip(self.classes, keep) if k)
        self.counts, self.means, self.m2 = counts[keep], means[keep], m2[keep]
        self.null_rows -= other.null_rows
        return self

    # -- views ------------------------------------------------------------------------------------

    def select(self, features: Sequence[str]) -> "GaussianNBStats":
        features = tuple(features)
        if not self.can_serve(features):
            raise ValueError(f"statistics over {self.features} (null_rows={self.null_rows}) cannot serve {features}")
        idx = [self.features.index(f) for f in features]
        return GaussianNBStats(features, self.classes, self.counts, self.means[:, idx], self.m2[:, idx], self.null_rows)

    def non_finite_columns(self) -> list[str]:
        bad = ~np.isfinite(self.means).all(axis=0) | ~np.isfinite(self.m2).all(axis=0)
        return [f for f, b in zip(self.features, bad) if b]

    @property
    def nbytes(self) -> int:
        return self.counts.nbytes + self.means.nbytes + self.m2.nbytes + 16

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, GaussianNBStats)
            and (self.features, self.classes, self.null_rows) == (other.features, other.classes, other.null_rows)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.means, other.means)
            and np.array_equal(self.m2, other.m2)
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
    """The statistics from :func:`dd_aggregate_query`'s rows (class, dd_diag state): the double-double
    means and M2 rounded to float64 (hi is the rounded value)."""
    d = len(features)
    labels, counts, means, m2, null_rows = [], [], [], [], 0
    for label, values in rows:
        v = np.asarray(values, dtype=float)
        if label is None:
            null_rows = int(v[0]) + int(v[1])
            continue
        labels.append(normalize_label(label))
        counts.append(int(v[0]))
        means.append(v[2 : 2 + d])
        m2.append(v[2 + 2 * d : 2 + 3 * d])
    c = len(labels)
    return GaussianNBStats(features, labels, counts, np.array(means).reshape(c, d), np.array(m2).reshape(c, d), null_rows)
