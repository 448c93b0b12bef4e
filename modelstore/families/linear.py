"""Linear regression (OLS and ridge): n, means and the comoment matrix of [features…, target] (paper §3.1)."""

from __future__ import annotations

import functools

import numpy as np

from modelstore.families._base import Family
from modelstore.families.scoring import dot
from modelstore.models._input import check_nonnegative
from modelstore.models import shrinkage
from modelstore.models.linear import LinearRegression
from modelstore.stats import linear as linear_stats
from modelstore.stats.linear import LinearStats


@functools.lru_cache(maxsize=64)
def _upper(k: int) -> tuple[np.ndarray, np.ndarray]:
    """np.triu_indices(k), kept: every index node a request reads is unpacked through it."""
    rows, cols = np.triu_indices(k)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


class LinearFamily(Family):
    kind = "linear"
    model_types = ("linear_reg",)
    model_class = LinearRegression
    statistics = LinearStats
    cost_degree = 2  # k(k+1)/2 comoments per row
    has_inference = True

    def params(self, *, l2=None, var_smoothing=1e-9, alpha=1.0, chunk_rows=None) -> dict:
        return {"l2": check_nonnegative("l2", 0.0 if l2 is None else l2)}

    def aggregate_query(self, relation, values, where, target, max_classes, part=None, parts=1, engine=("sql", "")):
        return linear_stats.aggregate_query(relation, values, where, part, engine[0], engine[1])

    def aggregate_terms(self, k: int) -> int:
        return 2 + k + k * (k + 1) // 2  # n, null rows, k means, k(k+1)/2 comoments

    def from_aggregate(self, columns, rows, *, target, where, max_classes, engine=("sql", "")):
        if not rows:
            return linear_stats.from_dd_array(columns, None) if engine[0] == "c" else LinearStats(columns)
        return linear_stats.from_aggregate_row(columns, rows[0], engine[0])

    def from_values(self, columns, X, labels, *, null_rows, target, where, max_classes):
        return LinearStats.from_rows(columns, X, null_rows=null_rows)

    def pack(self, stats, *, triangle=False):
        def layout(matrix):
            return (matrix[_upper(len(stats.columns))] if triangle else matrix.ravel()).tolist()

        dd = stats.mean_lo is not None
        return {"classes": None, "counts": None, "mean": stats.mean.tolist(), "moments": layout(stats.comoment),
                "mean_lo": stats.mean_lo.tolist() if dd else None,
                "moments_lo": layout(stats.comoment_lo) if dd else None}

    def unpack(self, columns, n, null_rows, classes, counts, mean, moments, mean_lo=None, moments_lo=None, *,
               triangle=False):
        k = len(columns)

        def matrix(values):
            if triangle:
                full = np.empty((k, k))
                upper = _upper(k)
                full[upper] = values
                full.T[upper] = values
                return full
            return np.array(values, dtype=float).reshape(k, k)

        lo = (None, None) if mean_lo is None or moments_lo is None else (np.array(mean_lo, dtype=float), matrix(moments_lo))
        return LinearStats(columns, n, np.array(mean, dtype=float), matrix(moments), null_rows, *lo)

    def stored_values(self, k, classes=1, *, triangle=False):
        return k + (k * (k + 1) // 2 if triangle else k * k)

    def catalog_values(self, k, classes=1):
        return k + k * k  # means, and the full comoment matrix (pack without triangle)

    def magnitudes(self, stats):
        return np.r_[stats.n, np.diag(stats.comoment)]

    def precision(self, stats) -> str:
        return stats.precision

    def sql_scores(self, model, xs):
        return [dot(model.coef_, xs, model.intercept_)]

    def weights(self, model):
        features = list(model.descriptor.features)
        rows = [(f, float(w)) for f, w in zip(features, model.coef_)] + [("__INTERCEPT__", float(model.intercept_))]
        return rows, ["processed_input", "weight"], ["text", "double precision"]

    groupable = True

    def shrink(self, stats, global_model, lam, params):
        return shrinkage.linear(stats, global_model, lam)

    def native_parameters(self, model):
        return [float(w) for w in model.coef_], float(model.intercept_)

    def summary(self, model):
        return {"intercept": model.intercept_, "coef": model.coef_, "rsquared": getattr(model, "rsquared", None)}


LINEAR = LinearFamily()
