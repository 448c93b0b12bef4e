"""Multinomial Naive Bayes statistics: per class c, the row count n_c and per-feature count sums N_cj.

Paper §3.1.2: θ_cj is a smoothed ratio of N_cj; both are plain sums, so merging adds and unmerging
subtracts them (exactly, for the integer counts this model is meant for). Features must be
non-negative; the aggregate also counts offending rows so that the caller can refuse them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from psycopg import sql

from modelstore.stats._classes import normalize_label, sorted_labels
from modelstore.stats._base import Statistics
from modelstore.stats._sql import CLASS_ALIAS, column_alias, complete_rows, grouped_by_class


class MultinomialNBStats(Statistics):
    """Per-class row counts and feature sums over ``features``; ``classes`` sorted ascending."""

    family = "multinomial_nb"

    __slots__ = ("features", "classes", "counts", "feature_sums", "null_rows")

    def __init__(self, features: Sequence[str], classes=(), counts=None, feature_sums=None, null_rows: int = 0):
        self.features = tuple(features)
        d, classes = len(self.features), tuple(classes)
        order = sorted(range(len(classes)), key=lambda i: classes[i])
        self.classes = tuple(classes[i] for i in order)
        c = len(classes)
        self.counts = np.zeros(c, dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64).reshape(c)[order]
        self.feature_sums = np.zeros((c, d)) if feature_sums is None else np.asarray(feature_sums, dtype=float).reshape(c, d)[order]
        self.null_rows = int(null_rows)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def columns(self) -> tuple[str, ...]:
        return self.features

    @classmethod
    def from_rows(cls, features: Sequence[str], X, y, null_rows: int = 0) -> "MultinomialNBStats":
        X = np.asarray(X, dtype=float).reshape(-1, len(features))
        y = [normalize_label(v.item() if hasattr(v, "item") else v) for v in np.asarray(y)]
        labels = sorted_labels(y)
        mask = [np.array([v == label for v in y]) for label in labels]
        return cls(features, labels, [int(m.sum()) for m in mask], [X[m].sum(axis=0) for m in mask], null_rows)

    @classmethod
    def from_state(cls, state: dict) -> "MultinomialNBStats":
        return cls(state["features"], state["classes"], state["counts"], state["feature_sums"], state.get("null_rows", 0))

    def to_state(self) -> dict:
        return {
            "features": list(self.features),
            "classes": list(self.classes),
            "counts": self.counts.tolist(),
            "feature_sums": self.feature_sums.tolist(),
            "null_rows": self.null_rows,
        }

    def copy(self) -> "MultinomialNBStats":
        return MultinomialNBStats(self.features, self.classes, self.counts.copy(), self.feature_sums.copy(), self.null_rows)

    def _check_compatible(self, other) -> None:
        if not isinstance(other, MultinomialNBStats):
            raise TypeError(f"can only combine MultinomialNBStats with MultinomialNBStats, got {type(other).__name__} instead")
        if other.features != self.features:
            raise ValueError(f"statistics over different features: {self.features} vs {other.features}")

    def _combined(self, other, sign: int) -> "MultinomialNBStats":
        labels = sorted_labels(self.classes + other.classes)
        d = len(self.features)
        counts = np.zeros(len(labels), dtype=np.int64)
        sums = np.zeros((len(labels), d))
        for stats, s in ((self, 1), (other, sign)):
            for j, label in enumerate(stats.classes):
                i = labels.index(label)
                counts[i] += s * stats.counts[j]
                sums[i] += s * stats.feature_sums[j]
        if (counts < 0).any():
            bad = [labels[i] for i in np.flatnonzero(counts < 0)]
            raise ValueError(f"cannot remove more rows than the statistics hold (classes {bad})")
        keep = counts > 0
        null_rows = self.null_rows + sign * other.null_rows
        if null_rows < 0:
            raise ValueError(f"cannot remove {other.null_rows} skipped rows from {self.null_rows}")
        return MultinomialNBStats(self.features, [l for l, k in zip(labels, keep) if k], counts[keep], sums[keep], null_rows)

    def __iadd__(self, other):
        self._check_compatible(other)
        r = self._combined(other, +1)
        self.classes, self.counts, self.feature_sums, self.null_rows = r.classes, r.counts, r.feature_sums, r.null_rows
        return self

    def __isub__(self, other):
        self._check_compatible(other)
        r = self._combined(other, -1)
        self.classes, self.counts, self.feature_sums, self.null_rows = r.classes, r.counts, r.feature_sums, r.null_rows
        return self

    def select(self, features: Sequence[str]) -> "MultinomialNBStats":
        features = tuple(features)
        if not self.can_serve(features):
            raise ValueError(f"statistics over {self.features} (null_rows={self.null_rows}) cannot serve {features}")
        idx = [self.features.index(f) for f in features]
        return MultinomialNBStats(features, self.classes, self.counts, self.feature_sums[:, idx], self.null_rows)

    def non_finite_columns(self) -> list[str]:
        bad = ~np.isfinite(self.feature_sums).all(axis=0)
        return [f for f, b in zip(self.features, bad) if b]

    @property
    def nbytes(self) -> int:
        return self.counts.nbytes + self.feature_sums.nbytes + 16

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, MultinomialNBStats)
            and (self.features, self.classes, self.null_rows) == (other.features, other.classes, other.null_rows)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.feature_sums, other.feature_sums)
        )

    def __repr__(self) -> str:
        return f"MultinomialNBStats(features={self.features!r}, classes={self.classes!r}, n={self.n}, null_rows={self.null_rows})"


def aggregate_query(relation, value_exprs, where, class_expr, max_classes: int,
                    part_expr: sql.Composable | None = None, parts: int = 1) -> sql.Composed:
    """One grouped aggregate: per class count, feature sums, and the number of rows with a negative value."""
    c = [column_alias(i) for i in range(len(value_exprs))]
    negative = sql.SQL(" OR ").join(sql.SQL("{} < 0").format(ci) for ci in c)
    items = [CLASS_ALIAS, sql.SQL("count(*)")]
    items += [sql.SQL("sum({})").format(ci) for ci in c]
    items += [sql.SQL("count(*) FILTER (WHERE {})").format(negative)]
    inner = complete_rows(relation, value_exprs, where, class_expr, part_expr)
    return grouped_by_class(items, inner, max_classes, part_expr, parts)


def from_aggregate_rows(features: Sequence[str], rows) -> tuple[MultinomialNBStats, int]:
    """The statistics and the number of rows holding a negative feature value."""
    d = len(features)
    labels, counts, sums, null_rows, negative = [], [], [], 0, 0
    for row in rows:
        if row[0] is None:
            null_rows = int(row[1])
            continue
        labels.append(normalize_label(row[0]))
        counts.append(int(row[1]))
        sums.append([float(v) for v in row[2 : 2 + d]])
        negative += int(row[2 + d])
    c = len(labels)
    return MultinomialNBStats(features, labels, counts, np.array(sums).reshape(c, d), null_rows), negative
