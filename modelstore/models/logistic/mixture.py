"""The request's logistic model: the size-weighted average of its chunk models (paper §4, Algorithm 1).

Algorithm 1 line 8 with μ_k = n_k / Σ n (:meth:`LogisticMixture.from_chunks`):

    w_μ = Σ_k (n_k / Σ_j n_j) · w_k.

Theorem 1
---------
:meth:`LogisticMixture.theorem1_bound` evaluates the paper's bound: with probability ≥ 1 − δ over
an i.i.d. draw of the rows,

    ‖w_μ − w‖ ≤ (R√2/λ)(1/√l + 1/√|Dq|) + (2√2·R / (λ√(p·l))) · √(log 1/δ),

where w is the single model trained on *all* |Dq| rows of the request with the same objective and
λ (the paper's w_SGD, "SGD applied to Dq", which converges to that minimiser), R = max ‖x‖ over the
rows (max of the chunks' ``r_max``), p the number of chunks and l their mean size (= |Dq|/p). The
bound is a worst case that grows like R/λ (strong convexity from the penalty only); it is usually
several orders of magnitude above the measured distance (tests, λ = 10⁻⁴: bound ≈ 10⁴,
distance ≈ 10⁻²). It assumes i.i.d. rows: chunks cut along an ordering column with drift are not, and it
covers the penalised coefficients; the unpenalised intercept is outside its strong-convexity
argument (we report and test the distance with and without it).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.special

from modelstore.errors import InputError
from modelstore.models._input import check_name, decode_floats, encode_floats, feature_matrix, labels_array
from modelstore.models.logistic._common import (DEFAULT_L2, STATE_VERSION, as_matrix, check_l2, decision,
                                                decode_bound, describe_range, encode_bound, plain, predict_index)
from modelstore.models._provenance import Provenance
from modelstore.models.logistic.chunk import ChunkModel
from modelstore.models.logistic.split import DEFAULT_CHUNK_ROWS, train_chunks

__all__ = ["LogisticMixture", "fit_mixture"]


class LogisticMixture(Provenance):
    """The request's logistic model: the size-weighted average of its chunk models (Algorithm 1).

    Build it with :meth:`from_chunks` (the modelstore way), :func:`fit_mixture` (from arrays) or
    :meth:`from_state` (a catalog row). Attributes follow scikit-learn's ``LogisticRegression``:
    ``classes_``, ``coef_`` (shape (1, d) for two classes, (K, d) otherwise), ``intercept_``,
    ``feature_names_in_``, ``n_features_in_``. Also: ``n_chunks``, ``chunk_rows`` (rows per
    chunk), ``chunk_ranges`` ((lo, hi) per chunk), ``chunk_accuracy`` (each chunk's training
    accuracy), ``class_count_``, ``rows_used`` (Σ n), ``rows_skipped`` and ``training_accuracy_``
    (set by whoever has the rows: the mixture's accuracy on the request's rows, or None), and
    ``bound_inputs`` (the inputs of :meth:`theorem1_bound`).
    """

    kind = "logistic"

    def __init__(self, *, l2: float = DEFAULT_L2, name: str | None = None):
        self.l2 = check_l2(l2)
        self.name = check_name(name)

    def get_params(self, deep: bool = True) -> dict:
        return {"l2": self.l2, "name": self.name}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_chunks(cls, chunks: Sequence[ChunkModel], features: Sequence[str], *, name: str | None = None) -> "LogisticMixture":
        """w_μ = Σ_k (n_k / Σ n) w_k over chunk models that agree on classes, l2 and feature count."""
        chunks = list(chunks)
        if not chunks:
            raise InputError("a logistic mixture needs at least one chunk model")
        bad = [type(c).__name__ for c in chunks if not isinstance(c, ChunkModel)]
        if bad:
            raise InputError(f"chunks must be ChunkModel objects, got {bad[0]} instead")
        if isinstance(features, str) or not all(isinstance(f, str) for f in features):
            raise InputError(f"features must be a list of column names, got {features!r} instead")
        features = list(features)
        if len(set(features)) != len(features):
            raise InputError(f"features must be distinct, got {features!r}")
        first = chunks[0]
        for c in chunks[1:]:
            if c.classes != first.classes or [type(v) for v in c.classes] != [type(v) for v in first.classes]:
                raise InputError(
                    f"chunk models disagree on the classes: {list(first.classes)!r} for {describe_range(first.lo, first.hi)}, "
                    f"{list(c.classes)!r} for {describe_range(c.lo, c.hi)}"
                )
            if c.l2 != first.l2:
                raise InputError(
                    f"chunk models disagree on l2: {first.l2!r} for {describe_range(first.lo, first.hi)}, "
                    f"{c.l2!r} for {describe_range(c.lo, c.hi)}; a mixture averages models of one objective"
                )
            if c.n_features != first.n_features:
                raise InputError(
                    f"chunk models disagree on the number of features: {first.n_features} and {c.n_features}"
                )
        if first.n_features != len(features):
            raise InputError(
                f"the chunk models have {first.n_features} feature(s) but {len(features)} name(s) were given: {features!r}"
            )
        model = cls(l2=first.l2, name=name)
        total = sum(c.n for c in chunks)
        weights = [c.n / total for c in chunks]  # one chunk: weight exactly 1.0, so its model unchanged
        model.coef_ = sum(w * c.coef for w, c in zip(weights, chunks))
        model.intercept_ = sum(w * c.intercept for w, c in zip(weights, chunks))
        model._set_common(
            features=features,
            classes=first.classes,
            class_count=np.sum([c.class_counts for c in chunks], axis=0),
            chunk_rows=[c.n for c in chunks],
            chunk_ranges=[(c.lo, c.hi) for c in chunks],
            chunk_accuracy=[c.accuracy for c in chunks],
            r_max=max(c.r_max for c in chunks),
        )
        return model

    def _set_common(self, *, features, classes, class_count, chunk_rows, chunk_ranges, chunk_accuracy, r_max,
                    rows_skipped=0, training_accuracy=None):
        self.feature_names_in_ = np.array(features, dtype=object)
        self.n_features_in_ = len(features)
        self.classes_ = labels_array(classes)
        self.class_count_ = np.asarray(class_count, dtype=float)
        self.chunk_rows = [int(n) for n in chunk_rows]
        self.chunk_ranges = [tuple(r) for r in chunk_ranges]
        self.chunk_accuracy = [float(a) for a in chunk_accuracy]
        self.n_chunks = len(self.chunk_rows)
        self.rows_used = sum(self.chunk_rows)
        self.rows_skipped = int(rows_skipped)
        self.training_accuracy_ = None if training_accuracy is None else float(training_accuracy)
        self.r_max_ = float(r_max)
        p = self.n_chunks
        self.bound_inputs = {
            "R": self.r_max_,
            "l2": self.l2,
            "p": p,
            "l": self.rows_used / p,
            "rows": self.rows_used,
        }

    # -- Theorem 1 ------------------------------------------------------------------------------

    def theorem1_bound(self, delta: float = 0.05) -> float:
        """The paper's Theorem 1 bound on ‖w_μ − w‖ (see the module docstring), at confidence 1 − δ.

        (R√2/λ)(1/√l + 1/√|Dq|) + (2√2·R / (λ√(p·l)))·√(log 1/δ), with the inputs of
        ``bound_inputs``: w is the model trained on all ``rows_used`` rows with the same objective.
        """
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0 < delta < 1:
            raise InputError(f"delta must be a probability in (0, 1), got {delta!r} instead")
        b = self.bound_inputs
        R, lam, p, l, rows = b["R"], b["l2"], b["p"], b["l"], b["rows"]
        return (R * math.sqrt(2) / lam) * (1 / math.sqrt(l) + 1 / math.sqrt(rows)) + (
            2 * math.sqrt(2) * R / (lam * math.sqrt(p * l))
        ) * math.sqrt(math.log(1 / delta))

    # -- prediction -----------------------------------------------------------------------------

    def decision_function(self, X) -> np.ndarray:
        """Scores: shape (n,) for two classes (log-odds of ``classes_[1]``), (n, K) otherwise."""
        return decision(feature_matrix(X, self.feature_names_in_), self.coef_, self.intercept_)

    def predict(self, X) -> np.ndarray:
        return self.classes_[predict_index(self.decision_function(X))]

    def predict_log_proba(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:  # log σ(−z), log σ(z) without overflow
            return np.column_stack([-np.logaddexp(0.0, scores), -np.logaddexp(0.0, -scores)])
        return scores - scipy.special.logsumexp(scores, axis=1, keepdims=True)

    def predict_proba(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = scipy.special.expit(scores)
            return np.column_stack([1.0 - p, p])
        return scipy.special.softmax(scores, axis=1)

    def score(self, X, y) -> float:
        """Mean accuracy on (X, y), as scikit-learn's ``score``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # -- reporting ------------------------------------------------------------------------------

    def summary(self) -> pd.DataFrame:
        """Intercept and coefficients, one row per parameter.

        Two classes: one column ``coef`` (log-odds of ``classes_[1]`` against ``classes_[0]``);
        K ≥ 3 classes: one column per class label (multinomial scores).
        """
        index = pd.Index(["intercept", *self.feature_names_in_.tolist()], name="parameter")
        values = np.column_stack([self.intercept_, self.coef_]).T  # (d + 1, rows)
        columns = ["coef"] if self.coef_.shape[0] == 1 else [plain(c) for c in self.classes_]
        return pd.DataFrame(values, index=index, columns=columns)

    def __repr__(self) -> str:
        if not hasattr(self, "coef_"):
            return f"LogisticMixture(l2={self.l2!r}, name={self.name!r})"
        label = f"{self.name!r}, " if self.name else ""
        acc = "" if self.training_accuracy_ is None else f", accuracy={self.training_accuracy_:.4f}"
        return (
            f"<LogisticMixture {label}classes={[plain(c) for c in self.classes_]!r}, "
            f"features={self.feature_names_in_.tolist()!r}, n={self.rows_used} in {self.n_chunks} chunk(s) "
            f"(mean {self.bound_inputs['l']:.0f} rows), l2={self.l2:g}{acc}>"
        )

    # -- catalog --------------------------------------------------------------------------------

    def to_state(self) -> dict:
        """The mixture as a JSON-serialisable dict (strict JSON), for the catalog (chunks not included)."""
        return {
            "kind": self.kind,
            "version": STATE_VERSION,
            "name": self.name,
            "l2": self.l2,
            "features": self.feature_names_in_.tolist(),
            "classes": [plain(c) for c in self.classes_],
            "class_count": encode_floats(self.class_count_),
            "coef": encode_floats(self.coef_),
            "intercept": encode_floats(self.intercept_),
            "chunk_rows": list(self.chunk_rows),
            "chunk_ranges": [[encode_bound(lo), encode_bound(hi)] for lo, hi in self.chunk_ranges],
            "chunk_accuracy": encode_floats(self.chunk_accuracy),
            "r_max": encode_floats(self.r_max_),
            "rows_skipped": self.rows_skipped,
            "training_accuracy": None if self.training_accuracy_ is None else encode_floats(self.training_accuracy_),
        }

    @classmethod
    def from_state(cls, state: dict) -> "LogisticMixture":
        if not isinstance(state, dict) or state.get("kind") != cls.kind:
            raise InputError(f"not the state of a logistic model: {state!r:.200}")
        if state.get("version", 1) > STATE_VERSION:
            raise InputError(f"logistic model state version {state['version']} is newer than this modelstore ({STATE_VERSION})")
        model = cls(l2=state["l2"], name=state.get("name"))
        features, classes = list(state["features"]), list(state["classes"])
        rows = 1 if len(classes) == 2 else len(classes)
        model.coef_ = decode_floats(state["coef"], (rows, len(features)))
        model.intercept_ = decode_floats(state["intercept"], (rows,))
        model._set_common(
            features=features,
            classes=classes,
            class_count=decode_floats(state["class_count"], (len(classes),)),
            chunk_rows=state["chunk_rows"],
            chunk_ranges=[(decode_bound(lo), decode_bound(hi)) for lo, hi in state["chunk_ranges"]],
            chunk_accuracy=decode_floats(state["chunk_accuracy"]).reshape(-1).tolist(),
            r_max=decode_floats(state["r_max"]).item(),
            rows_skipped=state.get("rows_skipped", 0),
            training_accuracy=state.get("training_accuracy"),
        )
        return model


def fit_mixture(X, y, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, l2: float = DEFAULT_L2, order_values=None,
                name: str | None = None) -> LogisticMixture:
    """Fit a mixture on arrays (convenience, no database): split, train each chunk, average.

    Rows are taken in the order of ``order_values`` (sorted ascending; default: row order). Sets
    ``training_accuracy_`` to the mixture's accuracy on these rows.
    """
    X, features = as_matrix(X)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InputError(f"y must be 1-D with one label per row of X ({X.shape[0]}), got shape {y.shape} instead")
    if order_values is None:
        order_values = np.arange(X.shape[0])
    elif isinstance(order_values, pd.Series | pd.Index):
        order_values = order_values.to_numpy()
    classes = [plain(v) for v in pd.unique(y)]
    chunks = train_chunks(order_values, X, y, chunk_rows=chunk_rows, l2=l2, classes=classes)
    if not chunks:
        raise InputError("no rows to fit a logistic model on")
    model = LogisticMixture.from_chunks(chunks, features, name=name)
    model.training_accuracy_ = model.score(X, y)
    return model
