"""Naive Bayes classifiers solved from their statistics, with scikit-learn's exact semantics.

Paper §3.1.2: a Naive Bayes model is a closed-form function of per-class counts and per-class
feature moments (Gaussian) or feature count sums (multinomial), so the statistics of any plan give
exactly the model a from-scratch fit gives.

Gaussian (``sklearn.naive_bayes.GaussianNB``, priors=None)::

    class_count_[c] = n_c,  class_prior_[c] = n_c / n,  theta_[c] = mean_c,
    epsilon_ = var_smoothing · max_j Var(x_j over ALL rows),   var_[c] = M2_c / n_c + epsilon_

The all-rows variance is merged from the per-class statistics with the k-way form of the pairwise
update (Chan et al.): M2 = Σ_c M2_c + Σ_c n_c (mean_c − mean)², mean = Σ_c n_c mean_c / n.

Multinomial (``sklearn.naive_bayes.MultinomialNB``, force_alpha=True by default)::

    feature_count_[c, j] = N_cj,   feature_log_prob_[c, j] = log((N_cj + α_j) / Σ_j (N_cj + α_j)),
    class_log_prior_[c] = log(n_c) − log(n)          (fit_prior=True, class_prior=None)

Predictions: joint log likelihood jll[i, c] as scikit-learn computes it, predict = classes_[argmax],
predict_log_proba = jll − logsumexp(jll), predict_proba = exp(predict_log_proba). A single class is
allowed, as in scikit-learn (every row gets it, with probability 1).
"""

from __future__ import annotations

import abc
import numbers
import warnings

import numpy as np
import pandas as pd
import scipy.special

from modelstore.errors import InputError, NonFiniteValueError, RangeError
from modelstore.models._input import (
    labels_array,
    check_name,
    check_nonnegative,
    decode_float,
    decode_floats,
    encode_floats,
    feature_matrix,
)
from modelstore.models._provenance import Provenance
from modelstore.stats.gaussian_nb import GaussianNBStats
from modelstore.stats.multinomial_nb import MultinomialNBStats

__all__ = ["GaussianNB", "MultinomialNB"]

_STATE_VERSION = 1


def _check_stats(stats, cls, what: str):
    if not isinstance(stats, cls):
        raise InputError(f"stats must be {cls.__name__} for {what}, got {type(stats).__name__} instead")
    if len(stats.features) == 0:
        raise InputError(f"{what} needs at least one feature")
    if stats.n == 0 or len(stats.classes) == 0:
        raise RangeError(f"no complete rows to fit {what} on ({stats.null_rows} skipped for NULLs)")
    bad = stats.non_finite_columns()
    if bad:
        raise NonFiniteValueError(f"the rows hold NaN or ±Infinity in feature column(s) {bad!r}")


class _NaiveBayes(Provenance, abc.ABC):
    """predict / predict_proba / predict_log_proba over ``_joint_log_likelihood`` (as sklearn's _BaseNB)."""

    kind = ""

    @abc.abstractmethod
    def _joint_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """log P(c) + log P(x | c) for each row of the feature matrix X and each class."""

    def predict_joint_log_proba(self, X) -> np.ndarray:
        """log P(c) + log P(x | c) per row and class (columns in the order of ``classes_``)."""
        return self._joint_log_likelihood(feature_matrix(X, self.feature_names_in_))

    def predict(self, X) -> np.ndarray:
        jll = self.predict_joint_log_proba(X)
        return self.classes_[np.argmax(jll, axis=1)]

    def predict_log_proba(self, X) -> np.ndarray:
        jll = self.predict_joint_log_proba(X)
        with np.errstate(invalid="ignore"):
            return jll - scipy.special.logsumexp(jll, axis=1, keepdims=True)

    def predict_proba(self, X) -> np.ndarray:
        return np.exp(self.predict_log_proba(X))

    def score(self, X, y) -> float:
        """Mean accuracy on (X, y), as scikit-learn's ``score``."""
        y = np.asarray(y)
        return float(np.mean(self.predict(X) == y))

    def _common_state(self) -> dict:
        return {
            "kind": self.kind,
            "version": _STATE_VERSION,
            "name": self.name,
            "features": self.feature_names_in_.tolist(),
            "classes": [v.item() if hasattr(v, "item") else v for v in self.classes_.tolist()],
            "class_count": encode_floats(self.class_count_),
            "rows_used": self.rows_used,
            "rows_skipped": self.rows_skipped,
        }

    @classmethod
    def _check_state(cls, state) -> None:
        if not isinstance(state, dict) or state.get("kind") != cls.kind:
            raise InputError(f"not the state of a {cls.kind} model: {state!r:.200}")
        if state.get("version", 1) > _STATE_VERSION:
            raise InputError(f"{cls.kind} model state version {state['version']} is newer than this modelstore ({_STATE_VERSION})")

    def _restore_common(self, state) -> None:
        self.feature_names_in_ = np.array(state["features"], dtype=object)
        self.n_features_in_ = len(state["features"])
        self.classes_ = labels_array(state["classes"])
        self.class_count_ = decode_floats(state["class_count"], (len(self.classes_),))
        self.rows_used = int(state["rows_used"])
        self.rows_skipped = int(state["rows_skipped"])

    def _set_common(self, stats) -> None:
        self.feature_names_in_ = np.array(stats.features, dtype=object)
        self.n_features_in_ = len(stats.features)
        self.classes_ = labels_array(stats.classes)
        self.class_count_ = stats.counts.astype(float)
        self.rows_used = int(stats.n)
        self.rows_skipped = int(stats.null_rows)


class GaussianNB(_NaiveBayes):
    """Gaussian Naive Bayes with scikit-learn's attributes (``theta_``, ``var_``, ``epsilon_``, ...)."""

    kind = "gaussian_nb"

    def __init__(self, *, var_smoothing: float = 1e-9, name: str | None = None):
        self.var_smoothing = check_nonnegative("var_smoothing", var_smoothing)
        self.name = check_name(name)

    def get_params(self, deep: bool = True) -> dict:
        return {"var_smoothing": self.var_smoothing, "name": self.name}

    @classmethod
    def from_stats(cls, stats: GaussianNBStats, *, var_smoothing: float = 1e-9, name: str | None = None) -> "GaussianNB":
        """The model ``sklearn.naive_bayes.GaussianNB(var_smoothing=...)`` fits on the rows behind ``stats``."""
        model = cls(var_smoothing=var_smoothing, name=name)
        model._fit_stats(stats)
        return model

    def fit(self, X, y) -> "GaussianNB":
        """Fit on arrays (convenience): X a DataFrame or 2-D array, y the labels."""
        features, X = _named_matrix(X)
        self._fit_stats(GaussianNBStats.from_rows(features, X, _labels(y, X)))
        return self

    def _fit_stats(self, stats: GaussianNBStats) -> None:
        _check_stats(stats, GaussianNBStats, "Gaussian Naive Bayes")
        counts = stats.counts.astype(float)
        n = counts.sum()
        m2 = np.clip(stats.m2, 0.0, None)  # an unmerge may leave −tiny where the spread is zero
        # all-rows variance per feature: within-class plus between-class sums of squares
        mean = (counts[:, None] * stats.means).sum(axis=0) / n
        total_m2 = m2.sum(axis=0) + (counts[:, None] * (stats.means - mean) ** 2).sum(axis=0)
        self._set_common(stats)
        self.epsilon_ = float(self.var_smoothing * np.max(total_m2 / n))
        self.theta_ = stats.means.copy()
        self.var_ = m2 / counts[:, None] + self.epsilon_
        self.class_prior_ = counts / n

    def _joint_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.empty((X.shape[0], len(self.classes_)))
            for i in range(len(self.classes_)):
                n_ij = -0.5 * np.sum(np.log(2.0 * np.pi * self.var_[i, :]))
                n_ij = n_ij - 0.5 * np.sum(((X - self.theta_[i, :]) ** 2) / self.var_[i, :], axis=1)
                out[:, i] = np.log(self.class_prior_[i]) + n_ij
        return out

    def to_state(self) -> dict:
        """The solved model as a JSON-serialisable dict (strict JSON), for the catalog."""
        state = self._common_state()
        state.update(
            var_smoothing=self.var_smoothing,
            epsilon=encode_floats(self.epsilon_),
            class_prior=encode_floats(self.class_prior_),
            theta=encode_floats(self.theta_),
            var=encode_floats(self.var_),
        )
        return state

    @classmethod
    def from_state(cls, state: dict) -> "GaussianNB":
        cls._check_state(state)
        model = cls(var_smoothing=state["var_smoothing"], name=state.get("name"))
        model._restore_common(state)
        shape = (len(model.classes_), model.n_features_in_)
        model.epsilon_ = decode_float(state["epsilon"])
        model.class_prior_ = decode_floats(state["class_prior"], (shape[0],))
        model.theta_ = decode_floats(state["theta"], shape)
        model.var_ = decode_floats(state["var"], shape)
        return model

    def __repr__(self) -> str:
        if not hasattr(self, "theta_"):
            return f"GaussianNB(var_smoothing={self.var_smoothing!r}, name={self.name!r})"
        label = f"{self.name!r}, " if self.name else ""
        return (
            f"<GaussianNB {label}classes={self.classes_.tolist()!r}, features={self.feature_names_in_.tolist()!r}, "
            f"n={self.rows_used}, var_smoothing={self.var_smoothing:g}>"
        )


class MultinomialNB(_NaiveBayes):
    """Multinomial Naive Bayes with scikit-learn's attributes (``feature_log_prob_``, ``class_log_prior_``, ...).

    ``alpha`` is a number ≥ 0 or one per feature; with ``force_alpha=True`` (scikit-learn's default
    since 1.4) it is used as given, so ``alpha=0`` means no smoothing (a zero count gives −inf);
    with ``force_alpha=False`` values below 1e-10 are raised to 1e-10 with a warning.
    """

    kind = "multinomial_nb"

    def __init__(self, *, alpha=1.0, force_alpha: bool = True, fit_prior: bool = True, class_prior=None,
                 name: str | None = None):
        self.alpha = _check_alpha_param(alpha)
        if not isinstance(force_alpha, bool) or not isinstance(fit_prior, bool):
            raise InputError(f"force_alpha and fit_prior must be booleans, got {force_alpha!r}, {fit_prior!r} instead")
        self.force_alpha = force_alpha
        self.fit_prior = fit_prior
        if class_prior is not None:
            prior = np.asarray(class_prior, dtype=float)
            if prior.ndim != 1 or not np.isfinite(prior).all() or (prior < 0).any():
                raise InputError(f"class_prior must be a list of probabilities >= 0, got {class_prior!r} instead")
            class_prior = prior.tolist()
        self.class_prior = class_prior
        self.name = check_name(name)

    def get_params(self, deep: bool = True) -> dict:
        return {"alpha": self.alpha, "force_alpha": self.force_alpha, "fit_prior": self.fit_prior,
                "class_prior": self.class_prior, "name": self.name}

    @classmethod
    def from_stats(cls, stats: MultinomialNBStats, *, alpha=1.0, force_alpha: bool = True, fit_prior: bool = True,
                   class_prior=None, name: str | None = None) -> "MultinomialNB":
        """The model ``sklearn.naive_bayes.MultinomialNB(alpha=...)`` fits on the rows behind ``stats``."""
        model = cls(alpha=alpha, force_alpha=force_alpha, fit_prior=fit_prior, class_prior=class_prior, name=name)
        model._fit_stats(stats)
        return model

    def fit(self, X, y) -> "MultinomialNB":
        """Fit on arrays (convenience): X a DataFrame or 2-D array of counts, y the labels."""
        features, X = _named_matrix(X)
        if (X < 0).any():
            bad = [f for f, neg in zip(features, (X < 0).any(axis=0)) if neg]
            raise InputError(f"Multinomial Naive Bayes needs non-negative feature values (counts), got negative values in {bad!r}")
        self._fit_stats(MultinomialNBStats.from_rows(features, X, _labels(y, X)))
        return self

    def _fit_stats(self, stats: MultinomialNBStats) -> None:
        _check_stats(stats, MultinomialNBStats, "Multinomial Naive Bayes")
        negative = (stats.feature_sums < 0).any(axis=0)
        if negative.any():
            bad = [f for f, neg in zip(stats.features, negative) if neg]
            raise InputError(f"Multinomial Naive Bayes needs non-negative feature values (counts), got negative sums in {bad!r}")
        self._set_common(stats)
        d = len(stats.features)
        alpha = self._effective_alpha(d)
        self.feature_count_ = stats.feature_sums.astype(float).copy()
        with np.errstate(divide="ignore"):
            smoothed_fc = self.feature_count_ + alpha
            smoothed_cc = smoothed_fc.sum(axis=1)
            self.feature_log_prob_ = np.log(smoothed_fc) - np.log(smoothed_cc.reshape(-1, 1))
            n_classes = len(self.classes_)
            if self.class_prior is not None:
                if len(self.class_prior) != n_classes:
                    raise InputError(f"class_prior has {len(self.class_prior)} entries for {n_classes} classes {self.classes_.tolist()!r}")
                self.class_log_prior_ = np.log(np.asarray(self.class_prior, dtype=float))
            elif self.fit_prior:
                self.class_log_prior_ = np.log(self.class_count_) - np.log(self.class_count_.sum())
            else:
                self.class_log_prior_ = np.full(n_classes, -np.log(n_classes))

    def _effective_alpha(self, d: int):
        alpha = self.alpha
        if isinstance(alpha, list):
            if len(alpha) != d:
                raise InputError(f"alpha has {len(alpha)} values for {d} features; give one per feature or a single number")
            alpha = np.asarray(alpha, dtype=float)
        if np.min(alpha) < 1e-10 and not self.force_alpha:
            warnings.warn(
                "alpha too small will result in numeric errors, setting alpha = 1.0e-10. "
                "Use `force_alpha=True` to keep alpha unchanged.",
                stacklevel=3,
            )
            return np.maximum(alpha, 1e-10)
        return alpha

    def _joint_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return X @ self.feature_log_prob_.T + self.class_log_prior_

    def to_state(self) -> dict:
        """The solved model as a JSON-serialisable dict (strict JSON), for the catalog."""
        state = self._common_state()
        state.update(
            alpha=self.alpha,
            force_alpha=self.force_alpha,
            fit_prior=self.fit_prior,
            class_prior=self.class_prior,
            feature_count=encode_floats(self.feature_count_),
            class_log_prior=encode_floats(self.class_log_prior_),
            feature_log_prob=encode_floats(self.feature_log_prob_),
        )
        return state

    @classmethod
    def from_state(cls, state: dict) -> "MultinomialNB":
        cls._check_state(state)
        model = cls(alpha=state["alpha"], force_alpha=state.get("force_alpha", True), fit_prior=state.get("fit_prior", True),
                    class_prior=state.get("class_prior"), name=state.get("name"))
        model._restore_common(state)
        shape = (len(model.classes_), model.n_features_in_)
        model.feature_count_ = decode_floats(state["feature_count"], shape)
        model.class_log_prior_ = decode_floats(state["class_log_prior"], (shape[0],))
        model.feature_log_prob_ = decode_floats(state["feature_log_prob"], shape)
        return model

    def __repr__(self) -> str:
        if not hasattr(self, "feature_log_prob_"):
            return f"MultinomialNB(alpha={self.alpha!r}, name={self.name!r})"
        label = f"{self.name!r}, " if self.name else ""
        return (
            f"<MultinomialNB {label}classes={self.classes_.tolist()!r}, features={self.feature_names_in_.tolist()!r}, "
            f"n={self.rows_used}, alpha={self.alpha!r}>"
        )


# -- helpers --------------------------------------------------------------------------------------


def _check_alpha_param(alpha):
    """A number ≥ 0 (kept as float) or a list of them (one per feature), as scikit-learn validates."""
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        return check_nonnegative("alpha", alpha)
    try:
        arr = np.asarray(alpha, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"alpha must be a number >= 0 or one per feature, got {alpha!r} instead") from exc
    if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all() or (arr < 0).any():
        raise InputError(f"alpha must be a number >= 0 or a list of finite numbers >= 0 (one per feature), got {alpha!r} instead")
    return arr.tolist()


def _named_matrix(X):
    if isinstance(X, pd.DataFrame):
        features = [str(c) for c in X.columns]
        X = X.set_axis(features, axis=1)
    else:
        shape = np.shape(X)
        if len(shape) != 2:
            raise InputError(f"X must be 2-D (rows × features), got shape {shape} instead")
        features = [f"x{i}" for i in range(1, shape[1] + 1)]
    return features, feature_matrix(X, features)


def _labels(y, X) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InputError(f"y must be 1-D with one label per row of X ({X.shape[0]}), got shape {y.shape} instead")
    return y

