"""Per-group models shrunk toward the global model (issue #18; docs/serving.md, "Per-group models").

Velox (Crankshaw et al., CIDR 2015, §4 "personalized models" and the bootstrapping of new users)
serves one model per user and starts a user with few observations from the shared model. modelstore
does the same from statistics alone, exactly:

* **linear**: w_g = (XᵀX + λI)⁻¹(Xᵀy + λ w_global), X the group's design matrix *with* its column of
  ones and w = (intercept, coef) — ridge toward the global parameters, the intercept included. It is
  solved on the centered system (DESIGN §6): with θ = (a, β), a = b + x̄ᵀβ, the design [1, x − x̄]
  has the block-diagonal Gram matrix [[n, 0], [0, Cxx]] and the penalty is λ‖Tθ − w_global‖² with
  T = [[1, −x̄ᵀ], [0, I]], so (diag(n, Cxx) + λTᵀT) θ = (n ȳ, cxy) + λTᵀw_global. λ = 0: the group's
  own OLS fit (the exact from-scratch fit of its rows).
* **Gaussian Naive Bayes** (the analogue): the group's per-class statistics are merged with λ
  pseudo-rows distributed as the global model's rows — the global per-class statistics scaled to a
  total weight of λ (class c gets λ·n_c/N rows with the global class mean and variance) — and solved
  as scikit-learn solves a fit (priors from the weighted counts, ε = var_smoothing × the largest
  pooled variance). λ = 0: scikit-learn's fit on the group's rows; λ → ∞: the global model.

* **multinomial Naive Bayes** (the same analogue): the group's class counts and per-class feature sums
  plus λ pseudo-rows distributed as the global model's rows (class c: λ·n_c/N rows carrying the global
  feature sums × λ/N), smoothed with ``alpha`` and solved as scikit-learn solves a fit.

An unseen group is served the global model, the limit λ → ∞ of all three.
"""

from __future__ import annotations

import math

import numpy as np

from modelstore.models.linear import LinearRegression
from modelstore.models.naive_bayes import GaussianNB, MultinomialNB
from modelstore.stats.gaussian_nb import GaussianNBStats
from modelstore.stats.multinomial_nb import MultinomialNBStats
from modelstore.stats.linear import LinearStats


def linear(stats: LinearStats, global_model: LinearRegression, lam: float, *, name: str | None = None
           ) -> LinearRegression:
    """The group's linear model shrunk toward ``global_model`` with penalty ``lam`` (module docstring)."""
    if lam == 0:
        return LinearRegression.from_stats(stats, name=name)
    d = len(stats.columns) - 1
    n = float(stats.n)
    C, mean = stats.comoment, stats.mean
    Cxx, cxy, cyy = C[:d, :d], C[:d, d], float(C[d, d])
    xbar, ybar = mean[:d], float(mean[d])
    T = np.eye(d + 1)
    T[0, 1:] = -xbar
    A = lam * (T.T @ T)
    A[0, 0] += n
    A[1:, 1:] += Cxx
    w_global = np.r_[global_model.intercept_, global_model.coef_]
    rhs = lam * (T.T @ w_global)
    rhs[0] += n * ybar
    rhs[1:] += cxy
    theta = np.linalg.solve(A, rhs)
    beta = theta[1:]
    intercept = float(theta[0] - xbar @ beta)
    # Σ (y − b − xβ)²: the centered part plus n (ȳ − b − x̄ᵀβ)²
    ssr = max(cyy - 2 * beta @ cxy + beta @ Cxx @ beta + n * (ybar - intercept - xbar @ beta) ** 2, 0.0)
    model = LinearRegression(l2=float(lam), name=name)
    model.feature_names_in_ = np.array(list(stats.columns[:-1]), dtype=object)
    model.n_features_in_ = d
    model.target_ = stats.columns[-1]
    model.coef_ = beta
    model.intercept_ = intercept
    model._cov = np.full((d + 1, d + 1), math.nan)  # no sampling theory for a shrunk estimate
    model._set_figures(n_obs=stats.n, rows_skipped=stats.null_rows, df_model=d, df_resid=stats.n - d - 1, ssr=ssr,
                       centered_tss=max(cyy, 0.0), condition_number=math.nan, inference=False)
    return model


def gaussian_nb(stats: GaussianNBStats, global_model: GaussianNB, lam: float, *, var_smoothing: float,
                name: str | None = None) -> GaussianNB:
    """The group's Gaussian Naive Bayes model with λ pseudo-rows of the global model (module docstring)."""
    if lam == 0:
        return GaussianNB.from_stats(stats, var_smoothing=var_smoothing, name=name)
    classes = list(global_model.classes_.tolist())
    g_counts = np.asarray(global_model.class_count_, dtype=float)
    g_means = np.asarray(global_model.theta_, dtype=float)
    g_m2 = (np.asarray(global_model.var_, dtype=float) - global_model.epsilon_) * g_counts[:, None]
    b = lam * g_counts / g_counts.sum()  # the pseudo-rows of each class
    own = {label: i for i, label in enumerate(stats.classes)}
    extra = [label for label in own if label not in classes]  # a class the global model never saw (not possible
    labels = classes + extra                                   # for one range and filter, kept for safety)
    d = len(stats.features)
    counts, means, m2 = np.zeros(len(labels)), np.zeros((len(labels), d)), np.zeros((len(labels), d))
    for c, label in enumerate(labels):
        a = float(stats.counts[own[label]]) if label in own else 0.0
        mu_a = stats.means[own[label]] if label in own else np.zeros(d)
        m2_a = stats.m2[own[label]] if label in own else np.zeros(d)
        wb = b[c] if c < len(classes) else 0.0
        mu_b = g_means[c] if c < len(classes) else np.zeros(d)
        m2_b = g_m2[c] * (wb / g_counts[c]) if c < len(classes) else np.zeros(d)
        total = a + wb
        counts[c] = total
        means[c] = (a * mu_a + wb * mu_b) / total
        m2[c] = m2_a + m2_b + (a * wb / total) * (mu_a - mu_b) ** 2  # Chan et al.'s pairwise merge
    weighted = GaussianNBStats(stats.features, labels, None, means, m2, stats.null_rows)
    order = [labels.index(label) for label in weighted.classes]  # the constructor sorts the classes
    weighted.counts = counts[order]  # weights, not integers: the pseudo-rows are fractional
    weighted.means, weighted.m2 = means[order], m2[order]
    model = GaussianNB.from_stats(weighted, var_smoothing=var_smoothing, name=name)
    model.rows_used = stats.n
    return model


def multinomial_nb(stats: MultinomialNBStats, global_model: MultinomialNB, lam: float, *, alpha,
                   name: str | None = None) -> MultinomialNB:
    """The group's multinomial Naive Bayes model with λ pseudo-rows of the global model (module docstring)."""
    if lam == 0:
        return MultinomialNB.from_stats(stats, alpha=alpha, name=name)
    classes = list(global_model.classes_.tolist())
    g_counts = np.asarray(global_model.class_count_, dtype=float)
    share = lam / g_counts.sum()
    own = {label: i for i, label in enumerate(stats.classes)}
    labels = classes + [label for label in own if label not in classes]
    d = len(stats.features)
    counts, sums = np.zeros(len(labels)), np.zeros((len(labels), d))
    for c, label in enumerate(labels):
        if label in own:
            counts[c] += float(stats.counts[own[label]])
            sums[c] += stats.feature_sums[own[label]]
        if c < len(classes):
            counts[c] += share * g_counts[c]
            sums[c] += share * np.asarray(global_model.feature_count_[c], dtype=float)
    weighted = MultinomialNBStats(stats.features, labels, None, sums, stats.null_rows)
    order = [labels.index(label) for label in weighted.classes]
    weighted.counts = counts[order]  # weights: the pseudo-rows are fractional
    model = MultinomialNB.from_stats(weighted, alpha=alpha, name=name)
    model.rows_used = stats.n
    return model


__all__ = ["linear", "gaussian_nb", "multinomial_nb"]
