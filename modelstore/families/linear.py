"""Linear regression (OLS and ridge): n, means and the comoment matrix of [features…, target] (paper §3.1)."""

from __future__ import annotations

import numpy as np

from modelstore.families._base import Family
from modelstore.families.scoring import dot
from modelstore.models._input import check_nonnegative
from modelstore.models.linear import LinearRegression
from modelstore.stats import linear as linear_stats
from modelstore.stats.linear import LinearStats


class LinearFamily(Family):
    kind = "linear"
    model_types = ("linear_reg",)
    model_class = LinearRegression
    statistics = LinearStats
    cost_degree = 2  # k(k+1)/2 comoments per row
    has_inference = True

    def params(self, *, l2=None, var_smoothing=1e-9, alpha=1.0, chunk_rows=None) -> dict:
        return {"l2": check_nonnegative("l2", 0.0 if l2 is None else l2)}

    def aggregate_query(self, relation, values, where, target, max_classes, part=None, parts=1):
        return linear_stats.aggregate_query(relation, values, where, part)

    def aggregate_terms(self, k: int) -> int:
        return 2 + k + k * (k + 1) // 2  # n, null rows, k means, k(k+1)/2 comoments

    def from_aggregate(self, columns, rows, *, target, where, max_classes):
        return linear_stats.from_aggregate_row(columns, rows[0]) if rows else LinearStats(columns)

    def from_values(self, columns, X, labels, *, null_rows, target, where, max_classes):
        return LinearStats.from_rows(columns, X, null_rows=null_rows)

    def pack(self, stats, *, triangle=False):
        moments = stats.comoment[np.triu_indices(len(stats.columns))] if triangle else stats.comoment.ravel()
        return {"classes": None, "counts": None, "mean": stats.mean.tolist(), "moments": moments.tolist()}

    def unpack(self, columns, n, null_rows, classes, counts, mean, moments, *, triangle=False):
        k = len(columns)
        if triangle:
            comoment = np.empty((k, k))
            upper = np.triu_indices(k)
            comoment[upper] = moments
            comoment.T[upper] = moments
        else:
            comoment = np.array(moments, dtype=float).reshape(k, k)
        return LinearStats(columns, n, np.array(mean, dtype=float), comoment, null_rows)

    def stored_values(self, k, classes=1, *, triangle=False):
        return k + (k * (k + 1) // 2 if triangle else k * k)

    def magnitudes(self, stats):
        return np.r_[stats.n, np.diag(stats.comoment)]

    def sql_scores(self, model, xs):
        return [dot(model.coef_, xs, model.intercept_)]

    def weights(self, model):
        features = list(model.descriptor.features)
        rows = [(f, float(w)) for f, w in zip(features, model.coef_)] + [("__INTERCEPT__", float(model.intercept_))]
        return rows, ["processed_input", "weight"], ["text", "double precision"]

    def summary(self, model):
        return {"intercept": model.intercept_, "coef": model.coef_, "rsquared": getattr(model, "rsquared", None)}


LINEAR = LinearFamily()
