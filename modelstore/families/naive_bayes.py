"""Naive Bayes: per-class counts, means and second moments (Gaussian) or feature count sums
(multinomial), grouped by the class column in one aggregate (paper §3.1)."""

from __future__ import annotations

import math

import numpy as np
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlglot import exp

from modelstore.families._base import Family, check_class_count, check_nonnegative_counts
from modelstore.families.scoring import add, dot, number, plain
from modelstore.models._input import check_nonnegative
from modelstore.models import shrinkage
from modelstore.models.naive_bayes import GaussianNB, MultinomialNB
from modelstore.stats import gaussian_nb as gaussian_stats
from modelstore.stats import multinomial_nb as multinomial_stats
from modelstore.stats.gaussian_nb import GaussianNBStats
from modelstore.stats.multinomial_nb import MultinomialNBStats


class _NaiveBayesFamily(Family):
    classifier = True
    #: whether the C extension computes this family's statistics (multinomial: plain sums, which the SQL
    #: path already gets exactly for the integer counts the model is for)
    _c_aggregate = False
    #: the module with the family's aggregate_query / from_aggregate_rows
    _stats_module = None

    def aggregate_query(self, relation, values, where, target, max_classes, part=None, parts=1, engine=("sql", "")):
        if engine[0] == "c" and self._c_aggregate:
            return gaussian_stats.dd_aggregate_query(relation, values, where, sql.Identifier(target), max_classes,
                                                     part, parts, engine[1])
        return self._stats_module.aggregate_query(relation, values, where, sql.Identifier(target), max_classes,
                                                  part, parts)

    def _check_rows(self, rows, *, target, where, max_classes) -> None:
        check_class_count(sum(1 for row in rows if row[0] is not None), max_classes, target, where)

    def _check_values(self, X: np.ndarray, where: str) -> None:
        """What the family refuses in fetched rows beyond the class count (nothing by default)."""

    def from_values(self, columns, X, labels, *, null_rows, target, where, max_classes):
        check_class_count(len(set(labels)), max_classes, target, where)
        self._check_values(X, where)
        if not len(labels):
            return self.statistics(columns, null_rows=null_rows)
        return self.statistics.from_rows(columns, X, labels, null_rows=null_rows)


class GaussianNBFamily(_NaiveBayesFamily):
    kind = "gaussian_nb"
    model_types = ("naive_bayes", "gaussian_nb")
    model_class = GaussianNB
    statistics = GaussianNBStats
    _stats_module = gaussian_stats
    #: per class count, means and M2 by the C extension's dd_diag under GROUP BY class
    _c_aggregate = True
    groupable = True

    def params(self, *, l2=None, var_smoothing=1e-9, alpha=1.0, chunk_rows=None) -> dict:
        return {"var_smoothing": check_nonnegative("var_smoothing", var_smoothing)}

    def shrink(self, stats, global_model, lam, params):
        return shrinkage.gaussian_nb(stats, global_model, lam, var_smoothing=params.get("var_smoothing", 1e-9))

    def aggregate_terms(self, k: int) -> int:
        return 2 + 2 * k  # class, count, k means, k second moments

    def from_aggregate(self, columns, rows, *, target, where, max_classes, engine=("sql", "")):
        self._check_rows(rows, target=target, where=where, max_classes=max_classes)
        if engine[0] == "c":
            return gaussian_stats.from_dd_rows(columns, rows)
        return gaussian_stats.from_aggregate_rows(columns, rows)

    def pack(self, stats, *, triangle=False):
        dd = stats.means_lo is not None
        return {"classes": Jsonb(list(stats.classes)), "counts": stats.counts.tolist(),
                "mean": stats.means.ravel().tolist(), "moments": stats.m2.ravel().tolist(),
                "mean_lo": stats.means_lo.ravel().tolist() if dd else None,
                "moments_lo": stats.m2_lo.ravel().tolist() if dd else None}

    def unpack(self, columns, n, null_rows, classes, counts, mean, moments, mean_lo=None, moments_lo=None, *,
               triangle=False):
        c, k = len(classes), len(columns)

        def grid(values):
            return np.array(values, dtype=float).reshape(c, k)

        lo = (None, None) if mean_lo is None or moments_lo is None else (grid(mean_lo), grid(moments_lo))
        return GaussianNBStats(columns, classes, counts, grid(mean), grid(moments), null_rows, *lo)

    def stored_values(self, k, classes=1, *, triangle=False):
        # the index stores means and second moments per class; the catalog's estimate counts the count too
        return classes * (2 * k if triangle else 1 + 2 * k)

    def catalog_values(self, k, classes=1):
        return 2 * classes * k  # class means and second moments; the counts are not floats

    def magnitudes(self, stats):
        return np.r_[stats.n, stats.m2.sum(axis=0)]

    def sql_scores(self, model, xs):
        """The joint log-likelihood per class: log πₖ − ½ Σ log(2π σ²ₖⱼ) − ½ Σ (xⱼ − θₖⱼ)² / σ²ₖⱼ."""
        out = []
        for k in range(len(model.classes_)):
            var, theta = model.var_[k], model.theta_[k]
            const = math.log(model.class_prior_[k]) - 0.5 * float(np.sum(np.log(2.0 * np.pi * var)))
            terms = [number(const)]
            for j, x in enumerate(xs):
                diff = exp.Paren(this=exp.Sub(this=x, expression=number(theta[j])))
                terms.append(exp.Mul(this=number(-0.5 / var[j]), expression=exp.Mul(this=diff, expression=diff.copy())))
            out.append(add(terms))
        return out

    def weights(self, model):
        features = list(model.descriptor.features)
        rows = [(plain(c), f, float(model.theta_[k, j]), float(model.var_[k, j]), float(model.class_prior_[k]))
                for k, c in enumerate(model.classes_) for j, f in enumerate(features)]
        return (rows, ["class_label", "processed_input", "mean", "variance", "class_prior"],
                ["text", "text", "double precision", "double precision", "double precision"])

    def summary(self, model):
        return {"classes": model.classes_, "class_prior": model.class_prior_, "theta": model.theta_,
                "var": model.var_}


class MultinomialNBFamily(_NaiveBayesFamily):
    kind = "multinomial_nb"
    model_types = ("multinomial_nb",)
    model_class = MultinomialNB
    statistics = MultinomialNBStats
    _stats_module = multinomial_stats

    groupable = True

    def params(self, *, l2=None, var_smoothing=1e-9, alpha=1.0, chunk_rows=None) -> dict:
        return {"alpha": check_nonnegative("alpha", alpha)}

    def shrink(self, stats, global_model, lam, params):
        return shrinkage.multinomial_nb(stats, global_model, lam, alpha=params.get("alpha", 1.0))

    def aggregate_terms(self, k: int) -> int:
        return 3 + k  # class, count, k sums, negative-value count

    def from_aggregate(self, columns, rows, *, target, where, max_classes, engine=("sql", "")):
        self._check_rows(rows, target=target, where=where, max_classes=max_classes)
        stats, negative = multinomial_stats.from_aggregate_rows(columns, rows)
        check_nonnegative_counts(negative, where)
        return stats

    def _check_values(self, X, where):
        check_nonnegative_counts(int((X < 0).any(axis=1).sum()), where)

    def pack(self, stats, *, triangle=False):
        return {"classes": Jsonb(list(stats.classes)), "counts": stats.counts.tolist(), "mean": None,
                "moments": stats.feature_sums.ravel().tolist(), "mean_lo": None, "moments_lo": None}

    def unpack(self, columns, n, null_rows, classes, counts, mean, moments, mean_lo=None, moments_lo=None, *,
               triangle=False):
        c, k = len(classes), len(columns)
        return MultinomialNBStats(columns, classes, counts, np.array(moments, dtype=float).reshape(c, k), null_rows)

    def stored_values(self, k, classes=1, *, triangle=False):
        return classes * (k if triangle else 1 + k)

    def catalog_values(self, k, classes=1):
        return classes * k  # per-class feature sums in moments; no means

    def magnitudes(self, stats):
        return np.r_[stats.n, stats.feature_sums.sum(axis=0)]

    def sql_scores(self, model, xs):
        """log πₖ + Σ xⱼ log pₖⱼ per class."""
        return [dot(model.feature_log_prob_[k], xs, model.class_log_prior_[k]) for k in range(len(model.classes_))]

    def weights(self, model):
        features = list(model.descriptor.features)
        rows = [(plain(c), f, float(model.feature_log_prob_[k, j]), float(model.class_log_prior_[k]))
                for k, c in enumerate(model.classes_) for j, f in enumerate(features)]
        return (rows, ["class_label", "processed_input", "feature_log_prob", "class_log_prior"],
                ["text", "text", "double precision", "double precision"])

    def summary(self, model):
        return {"classes": model.classes_, "class_log_prior": model.class_log_prior_,
                "feature_log_prob": model.feature_log_prob_}


GAUSSIAN_NB = GaussianNBFamily()
MULTINOMIAL_NB = MultinomialNBFamily()
