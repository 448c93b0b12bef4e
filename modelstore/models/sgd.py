"""Linear models trained by mini-batch SGD (continuous-deployment paper §2.1, Algorithm 1; §3.3).

Three losses over the score z = w·x + b (x the pipeline's features, :mod:`.pipeline`), with the
derivative ∂L/∂z that each step uses (y ∈ {0, 1} the class indicator, s = 2y − 1 ∈ {−1, +1}):

- ``squared`` (linear regression): L = ½(z − y)², ∂L/∂z = z − y;
- ``log`` (logistic regression): L = log(1 + eᶻ) − yz, ∂L/∂z = σ(z) − y;
- ``hinge`` (linear SVM): L = max(0, 1 − sz), ∂L/∂z = −s when sz ≤ 1, else 0.

The objective is the mean loss + (λ₂/2)‖w‖² + λ₁‖w‖₁ (the intercept is not penalised), the objective of
scikit-learn's SGDClassifier / SGDRegressor with ``alpha = λ₂`` (penalty 'l2'). One step on a mini-batch
B takes the gradient g_w = (1/|B|) Σ ∂L/∂z · x + λ₂w, g_b = (1/|B|) Σ ∂L/∂z, hands it to the optimizer
(:mod:`.optimizers`), then applies L1 as a proximal step: wⱼ ← sign(wⱼ) max(|wⱼ| − λ₁ηⱼ, 0) with ηⱼ the
coordinate's step size (soft thresholding; exactly ISTA with plain SGD on full batches). With batch
size 1, plain SGD, no shuffling and λ₁ = 0, the steps are scikit-learn's ``plain_sgd`` update
(w ← (1 − ηλ₂)w − η ∂L/∂z x) one for one.

More than two classes are one-vs-rest: one binary problem per class, stacked (scikit-learn's scheme);
the predicted class has the largest score. Probabilities are σ(z) for two classes and the softmax of
the scores otherwise (the rule ML.PREDICT writes in SQL for every classifier), for hinge as for log.

The model carries its pipeline and its optimizer state: ``to_state`` is everything a later warm start
(§3.3: "the deployment platform only needs to store the model weights and the learning rate") needs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from modelstore.errors import InputError, RangeError
from modelstore.models._input import decode_floats, encode_floats, labels_array
from modelstore.models._provenance import Provenance
from modelstore.models.optimizers import Optimizer
from modelstore.models.pipeline import Pipeline

LOSSES = ("squared", "log", "hinge")
_STATE_VERSION = 1


class SGDModel(Provenance):
    """A linear model with its pipeline, trained by SGD; ``kind`` is the family's name."""

    def __init__(self, kind: str, loss: str, params: dict, pipeline: Pipeline, classes=None):
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.kind = kind
        self.loss = loss
        self.params = dict(params)
        self.pipeline = pipeline
        self.name = None
        if classes is not None:  # a regression has no classes_ attribute at all, as in scikit-learn
            self.classes_ = labels_array(list(classes))
        d = len(pipeline.feature_names())
        k = self.outputs
        self.coef_ = np.zeros((k, d)) if self.classifier else np.zeros(d)
        self.intercept_ = np.zeros(k) if self.classifier else 0.0
        self.optimizer = Optimizer(params, self._size())
        self.rows_used = 0
        self.rows_skipped = 0
        self.steps = 0
        self.feature_names_ = pipeline.feature_names()
        self.training_loss_ = None

    @property
    def feature_names_in_(self) -> np.ndarray:
        """The raw input columns, in the order rows are given (scikit-learn's name)."""
        return np.array(self.pipeline.raw_order or self.pipeline.columns, dtype=object)

    @property
    def classifier(self) -> bool:
        return self.loss != "squared"

    @property
    def outputs(self) -> int:
        if not self.classifier:
            return 1
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def _size(self) -> int:
        return self.coef_.size + np.size(self.intercept_)

    def _theta(self) -> np.ndarray:
        return np.r_[np.ravel(self.coef_), np.ravel(self.intercept_)]

    def _set_theta(self, theta: np.ndarray) -> None:
        d = len(self.feature_names_)
        if self.classifier:
            k = self.outputs
            self.coef_ = theta[:k * d].reshape(k, d).copy()
            self.intercept_ = theta[k * d:].copy()
        else:
            self.coef_ = theta[:d].copy()
            self.intercept_ = float(theta[d])

    # -- the features layout may grow (a category seen for the first time) ----------------------------------

    def sync_features(self) -> None:
        """After the pipeline learned new categories: the weights (and optimizer accumulators) of the
        known features move to their new positions, the new ones start at 0."""
        new = self.pipeline.feature_names()
        if new == self.feature_names_:
            return
        old = {f: i for i, f in enumerate(self.feature_names_)}
        idx = np.array([old.get(f, -1) for f in new])
        d_old, d_new = len(self.feature_names_), len(new)
        k = self.outputs
        flat = []  # the new θ layout in terms of the old one
        for row in range(k):
            flat += [row * d_old + i if i >= 0 else -1 for i in idx]
        flat += [k * d_old + row for row in range(k)]
        flat = np.array(flat)
        theta = self._theta()
        new_theta = np.where(flat >= 0, theta[np.maximum(flat, 0)], 0.0)
        self.feature_names_ = new
        self.coef_ = np.zeros((k, d_new)) if self.classifier else np.zeros(d_new)
        self._set_theta(new_theta)
        self.optimizer.remap(flat)

    # -- training ------------------------------------------------------------------------------------------------

    def _targets(self, y) -> np.ndarray:
        """y as the loss wants it: numbers (squared) or per-output class indicators (n, outputs)."""
        if not self.classifier:
            return np.asarray(y, dtype=float)
        y = labels_array(list(y))
        if self.outputs == 1:
            return (y == self.classes_[1]).astype(float)[:, None]
        return np.column_stack([(y == c).astype(float) for c in self.classes_])

    def _dloss(self, z: np.ndarray, t: np.ndarray) -> np.ndarray:
        if self.loss == "squared":
            return z - t
        if self.loss == "log":
            return expit(z) - t
        s = 2.0 * t - 1.0
        return np.where(s * z <= 1.0, -s, 0.0)

    def step(self, X: np.ndarray, targets: np.ndarray) -> None:
        """One SGD iteration on the mini-batch (X, targets) (Algorithm 1, lines 4–5)."""
        n = len(X)
        l2, l1 = self.params["l2"], self.params["l1"]
        if self.classifier:
            z = X @ self.coef_.T + self.intercept_
            dl = self._dloss(z, targets)                      # (n, k)
            grad_w = dl.T @ X / n + l2 * self.coef_
            grad_b = dl.mean(axis=0)
        else:
            z = X @ self.coef_ + self.intercept_
            dl = self._dloss(z, targets)
            grad_w = X.T @ dl / n + l2 * self.coef_
            grad_b = np.array([dl.mean()])
        theta, rates = self.optimizer.step(self._theta(), np.r_[np.ravel(grad_w), grad_b])
        if l1 > 0:
            m = self.coef_.size  # soft thresholding of the weights, not the intercepts
            theta[:m] = np.sign(theta[:m]) * np.maximum(np.abs(theta[:m]) - l1 * rates[:m], 0.0)
        self._set_theta(theta)
        self.steps += 1

    def train(self, X: np.ndarray, targets: np.ndarray, *, epochs: int, batch_size: int, shuffle: bool,
              seed: int, tol: float | None = None, n_iter_no_change: int = 5) -> int:
        """``epochs`` passes of mini-batch steps over transformed features (shuffled per epoch by a
        generator seeded with ``seed`` and the step count, so a warm start does not replay the order);
        returns the passes made.

        With ``tol``, training runs *to convergence*, scikit-learn's stopping rule for ``SGDRegressor`` /
        ``SGDClassifier``: it stops once the objective (:meth:`objective`, after each pass) has failed
        ``n_iter_no_change`` passes in a row to fall below the best one so far minus ``tol``, and ``epochs``
        is the most passes it makes (scikit-learn's ``max_iter``)."""
        n = len(X)
        if n == 0:
            raise RangeError("no rows to train on")
        rng = np.random.default_rng([seed, self.steps])
        best, stale, passes = np.inf, 0, 0
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            for start in range(0, n, batch_size):
                batch = order[start:start + batch_size]
                self.step(X[batch], targets[batch])
            passes += 1
            if tol is not None:
                loss = self.objective(X, targets)
                stale = stale + 1 if loss > best - tol else 0
                best = min(best, loss)
                if stale >= n_iter_no_change:
                    break
        self.training_loss_ = self.objective(X, targets)
        return passes

    def objective(self, X: np.ndarray, targets: np.ndarray) -> float:
        """Mean loss + (λ₂/2)‖w‖² + λ₁‖w‖₁ on transformed features."""
        z = self.decision_features(X)
        if self.loss == "squared":
            loss = 0.5 * (z - targets) ** 2
        elif self.loss == "log":
            loss = np.logaddexp(0.0, z) - targets * z
        else:
            loss = np.maximum(0.0, 1.0 - (2.0 * targets - 1.0) * z)
        w = np.ravel(self.coef_)
        per_output = loss.mean(axis=0)
        return float(np.sum(per_output) + 0.5 * self.params["l2"] * w @ w + self.params["l1"] * np.abs(w).sum())

    def fit_frame(self, frame: pd.DataFrame, y, *, update_statistics: bool = True) -> "SGDModel":
        """Train on raw rows: fold them into the pipeline's statistics, transform, run the epochs."""
        if update_statistics:
            self.pipeline.update(frame)
            self.sync_features()
        X = self.pipeline.transform(frame)
        p = self.params
        self.train(X, self._targets(y), epochs=p["epochs"], batch_size=p["batch_size"], shuffle=p["shuffle"],
                   seed=p["seed"])
        self.rows_used += len(frame)
        return self

    # -- prediction -------------------------------------------------------------------------------------------

    def decision_features(self, X: np.ndarray) -> np.ndarray:
        if self.classifier:
            return X @ self.coef_.T + self.intercept_
        return X @ self.coef_ + self.intercept_

    def decision_function(self, X) -> np.ndarray:
        z = self.decision_features(self.pipeline.transform(self.pipeline.frame(X)))
        return z[:, 0] if self.classifier and self.outputs == 1 else z

    def predict(self, X) -> np.ndarray:
        z = self.decision_function(X)
        if not self.classifier:
            return z
        if self.outputs == 1:
            return np.where(z > 0, self.classes_[1], self.classes_[0])
        return self.classes_[np.argmax(z, axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        if not self.classifier:
            raise InputError("a regression has no class probabilities")
        z = self.decision_function(X)
        if self.outputs == 1:
            p = expit(z)
            return np.column_stack([1.0 - p, p])
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # -- storage -------------------------------------------------------------------------------------------------

    def to_state(self) -> dict:
        return {
            "kind": self.kind, "version": _STATE_VERSION, "name": self.name, "loss": self.loss,
            "params": self.params, "pipeline": self.pipeline.to_state(), "feature_names": self.feature_names_,
            "classes": None if not self.classifier else [c.item() if isinstance(c, np.generic) else c
                                                         for c in self.classes_],
            "coef": encode_floats(self.coef_), "intercept": encode_floats(self.intercept_),
            "optimizer_state": self.optimizer.to_state(), "rows_used": self.rows_used,
            "rows_skipped": self.rows_skipped, "steps": self.steps,
            "training_loss": self.training_loss_,
        }

    @classmethod
    def from_state(cls, state: dict) -> "SGDModel":
        if not isinstance(state, dict) or "loss" not in state or "pipeline" not in state:
            raise InputError(f"not the state of an SGD-trained model: {state!r:.200}")
        model = cls(state["kind"], state["loss"], state["params"], Pipeline.from_state(state["pipeline"]),
                    state["classes"])
        model.name = state.get("name")
        model.feature_names_ = list(state["feature_names"])
        d = len(model.feature_names_)
        if model.classifier:
            model.coef_ = decode_floats(state["coef"], (model.outputs, d))
            model.intercept_ = decode_floats(state["intercept"], (model.outputs,))
        else:
            model.coef_ = decode_floats(state["coef"], (d,))
            model.intercept_ = float(decode_floats(state["intercept"]))
        model.optimizer = Optimizer(model.params, model._size(), state["optimizer_state"])
        model.rows_used = int(state.get("rows_used", 0))
        model.rows_skipped = int(state.get("rows_skipped", 0))
        model.steps = int(state.get("steps", 0))
        model.training_loss_ = state.get("training_loss")
        return model

    def warm_copy(self) -> "SGDModel":
        """A copy to continue training from (the previous version's weights, statistics and optimizer state)."""
        copy = SGDModel.from_state(self.to_state())
        copy.rows_used = 0
        copy.rows_skipped = 0
        return copy

    def __repr__(self) -> str:
        return f"<SGDModel {self.kind} {self.loss} {len(self.feature_names_)} features, {self.steps} steps>"


__all__ = ["LOSSES", "SGDModel"]
