"""One chunk's regularised logistic model: training it (paper §4, Algorithm 1's inner loop) and its stored form.

Objective and the ``l2`` convention
-----------------------------------
Each chunk of m rows minimises the paper's Equation 2 with R(w) = ‖w‖²::

    F(w, b) = (1/m) Σ_i L(w, b; x_i, y_i) + λ ‖w‖²,      λ = ``l2``

with L the log-loss (cross-entropy): for two classes L = log(1 + e^z) − y·z with z = wᵀx + b and
y = 1 for ``classes[1]``; for K ≥ 3 classes the multinomial loss L = logsumexp(z) − z_y over one
weight vector per class (K × d coefficients, ‖w‖² their squared Frobenius norm). The intercept b is
*not* penalised. This is scikit-learn's objective ½‖w‖² + C Σ_i L divided by C·m, so a chunk is
trained with ``LogisticRegression(solver="lbfgs", C=1/(2·λ·m))``; the tests check the minimiser
against ``scipy.optimize.minimize`` on F itself. Note that λ is per *mean* loss, so a chunk and the
whole request share one objective whatever their sizes (a fixed C would not).

Solving: features are centred per chunk first (the unpenalised intercept absorbs the shift, so the
minimiser of F is unchanged; it removes the conditioning cost of columns with a large offset), and
multinomial intercepts are centred to sum to zero (the loss cannot see a common shift). lbfgs's
tolerance is on the raw gradient, so it can stop short when feature scales differ by ~10⁹; every fit
is therefore checked to be stationary in standardised coordinates (|∂F/∂w_j| / sd_j and |∂F/∂b|
≤ 10⁻⁶) and, failing that, re-solved with scikit-learn's ``newton-cholesky`` (same objective; Newton
steps do not care about scales); if that fails too, a ``ConvergenceWarning`` names the chunk.

``l2`` must be > 0; :data:`DEFAULT_L2` = 10⁻⁴. With λ = 0 a chunk whose classes happen to be
linearly separable has no finite minimiser and Theorem 1's bound is infinite; with λ > 0 every
chunk's coefficients obey λ‖w‖² ≤ F(0) = log K, so ‖w‖ ≤ √(log 2 / 10⁻⁴) ≈ 83 for two classes.
10⁻⁴ is scikit-learn's default C = 1 on a 5,000-row chunk, and it is close to unregularised on
features of order one: on the tests' synthetic data (5 correlated features of unit scale, strong
signal) the full fit's coefficients move 0.5–2 % from the unregularised ones and its accuracy by
≤ 0.06 pt; λ = 10⁻³ moved them 4–15 % (0.07–0.14 pt), λ = 10⁻² 25–50 % (0.2–0.9 pt), with the
mixture-vs-full accuracy gap negligible (≤ 0.05 pt) at all three. The penalty is in the units of
the features, as in scikit-learn: features on a much larger scale want a smaller ``l2`` (λ scales
like 1/Var(x)) or standardising.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.special
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from modelstore.errors import InputError
from modelstore.models._input import decode_floats, encode_floats
from modelstore.models.logistic._common import (DEFAULT_L2, STATE_VERSION, as_matrix, check_l2, decision,
                                                decode_bound, describe_range, encode_bound, plain, plain_bound,
                                                predict_index, show)
from modelstore.stats._classes import normalize_label

__all__ = ["ChunkModel", "train_chunk"]

#: L-BFGS stops when the largest gradient entry of F is below this (F is a mean, so this is absolute)
_TOL = 1e-10
_MAX_ITER = 10_000

#: the fit is accepted when every gradient entry of F in standardised coordinates (∂F/∂w_j / sd_j,
#: and ∂F/∂b) is below this: a scale-free test, which lbfgs's absolute tolerance is not
_STATIONARY_TOL = 1e-6


def _normalize_classes(classes) -> tuple:
    """The request's classes as a sorted tuple of JSON-storable labels (scikit-learn's order)."""
    if isinstance(classes, str | bytes) or not hasattr(classes, "__iter__"):
        raise InputError(f"classes must be a collection of class labels, got {classes!r} instead")
    try:
        labels = {normalize_label(plain(c)) for c in classes}
    except TypeError as exc:
        raise InputError(f"class labels must be numbers, booleans or text: {exc}") from exc
    try:
        ordered = tuple(sorted(labels))
    except TypeError as exc:
        raise InputError(
            f"class labels must be all numbers, all text or all booleans, got {sorted(map(repr, labels))} instead"
        ) from exc
    if len(ordered) < 2:
        raise InputError(
            f"logistic regression needs at least two classes in the target, got {list(ordered)!r} instead"
        )
    return ordered


def _class_indices(y, classes: tuple, where: str) -> np.ndarray:
    """y as indices into ``classes``; labels outside them (or missing) are an InputError."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise InputError(f"y must be 1-D (one label per row), got shape {y.shape} instead")
    index = {c: i for i, c in enumerate(classes)}
    try:
        uniq, inverse = np.unique(y, return_inverse=True)
    except TypeError:  # mixed or unorderable labels: map them one by one
        uniq, inverse = None, None
    if uniq is None:
        codes = np.empty(len(y), dtype=np.intp)
        for i, v in enumerate(y):
            codes[i] = _lookup(index, v, classes, where)
        return codes
    table = np.array([_lookup(index, v, classes, where) for v in uniq], dtype=np.intp)
    return table[np.asarray(inverse).reshape(-1)]


def _lookup(index: dict, value, classes: tuple, where: str) -> int:
    value = plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise InputError(f"the target holds NULL/NaN labels in {where}; skip or fill those rows first")
    try:
        return index[normalize_label(value)]
    except (KeyError, TypeError):
        raise InputError(
            f"label {value!r} in {where} is not one of the request's classes {list(classes)!r}"
        ) from None


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, dtype=float)  # a private copy
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ChunkModel:
    """One chunk's regularised logistic model: the unit that is materialised and reused.

    ``lo``/``hi`` are the chunk's closed range of ordering values (opaque here; they only travel
    through the state), ``n`` its rows, ``classes`` the sorted labels of the whole request (every
    one present in the chunk), ``class_counts`` the rows of each, ``coef`` shape (1, d) for two
    classes (log-odds of ``classes[1]``) or (K, d), ``intercept`` shape (1,) or (K,), ``r_max`` the
    largest Euclidean norm of the chunk's feature vectors (Theorem 1's R), ``l2`` the λ it was
    trained with and ``accuracy`` its training accuracy on its own rows.
    """

    lo: object
    hi: object
    n: int
    classes: tuple
    class_counts: tuple
    coef: np.ndarray
    intercept: np.ndarray
    r_max: float
    l2: float
    accuracy: float

    def __post_init__(self):
        classes = tuple(self.classes)
        coef = _readonly(self.coef)
        intercept = _readonly(np.reshape(self.intercept, -1))
        k = len(classes)
        rows = 1 if k == 2 else k
        if k < 2 or coef.ndim != 2 or coef.shape[0] != rows or intercept.shape != (rows,):
            raise InputError(
                f"a chunk model with {k} classes needs coef of shape ({rows}, d) and intercept of shape ({rows},), "
                f"got {coef.shape} and {intercept.shape} instead"
            )
        counts = tuple(int(c) for c in self.class_counts)
        if len(counts) != k:
            raise InputError(f"class_counts must have one entry per class ({k}), got {len(counts)} instead")
        set_ = object.__setattr__
        set_(self, "classes", classes)
        set_(self, "class_counts", counts)
        set_(self, "coef", coef)
        set_(self, "intercept", intercept)
        set_(self, "n", int(self.n))
        set_(self, "r_max", float(self.r_max))
        set_(self, "l2", float(self.l2))
        set_(self, "accuracy", float(self.accuracy))

    @property
    def n_features(self) -> int:
        return self.coef.shape[1]

    def __eq__(self, other) -> bool:
        if not isinstance(other, ChunkModel):
            return NotImplemented
        return (
            (self.lo, self.hi, self.n, self.classes, self.class_counts, self.r_max, self.l2, self.accuracy)
            == (other.lo, other.hi, other.n, other.classes, other.class_counts, other.r_max, other.l2, other.accuracy)
            and [type(c) for c in self.classes] == [type(c) for c in other.classes]
            and np.array_equal(self.coef, other.coef)
            and np.array_equal(self.intercept, other.intercept)
        )

    __hash__ = None

    def to_state(self) -> dict:
        """The chunk as a JSON-serialisable dict (strict JSON; floats round-trip exactly)."""
        return {
            "kind": "logistic_chunk",
            "version": STATE_VERSION,
            "lo": encode_bound(self.lo),
            "hi": encode_bound(self.hi),
            "n": self.n,
            "classes": list(self.classes),
            "class_counts": list(self.class_counts),
            "coef": encode_floats(self.coef),
            "intercept": encode_floats(self.intercept),
            "r_max": encode_floats(self.r_max),
            "l2": self.l2,
            "accuracy": encode_floats(self.accuracy),
        }

    @classmethod
    def from_state(cls, state: dict) -> "ChunkModel":
        if not isinstance(state, dict) or state.get("kind") != "logistic_chunk":
            raise InputError(f"not the state of a logistic chunk model: {state!r:.200}")
        if state.get("version", 1) > STATE_VERSION:
            raise InputError(
                f"logistic chunk state version {state['version']} is newer than this modelstore ({STATE_VERSION})"
            )
        return cls(
            lo=decode_bound(state["lo"]),
            hi=decode_bound(state["hi"]),
            n=state["n"],
            classes=tuple(state["classes"]),
            class_counts=tuple(state["class_counts"]),
            coef=decode_floats(state["coef"]),
            intercept=decode_floats(state["intercept"]),
            r_max=decode_floats(state["r_max"]).item(),
            l2=state["l2"],
            accuracy=decode_floats(state["accuracy"]).item(),
        )

    def __repr__(self) -> str:
        return (
            f"<ChunkModel [{show(self.lo)}, {show(self.hi)}] n={self.n}, classes={list(self.classes)!r}, "
            f"d={self.n_features}, l2={self.l2:g}, accuracy={self.accuracy:.4f}>"
        )


def _solve(Xc: np.ndarray, codes: np.ndarray, l2: float, solver: str):
    """Minimise F on centred features with scikit-learn; (coef, intercept, reached the minimum)."""
    m = Xc.shape[0]
    model = LogisticRegression(C=1.0 / (2.0 * l2 * m), solver=solver, tol=_TOL, max_iter=_MAX_ITER)
    with warnings.catch_warnings():
        # judged below by our own, scale-free test
        warnings.simplefilter("ignore", ConvergenceWarning)
        # newton-cholesky falls back to lbfgs on an ill-conditioned Hessian, with a LinAlgWarning
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        model.fit(Xc, codes)
    coef = np.asarray(model.coef_, dtype=float)
    intercept = np.asarray(model.intercept_, dtype=float).reshape(-1)
    if coef.shape[0] > 1:
        intercept = intercept - intercept.mean()  # the loss cannot see a common shift
    return coef, intercept, _stationary(Xc, codes, coef, intercept, l2)


def _stationary(Xc: np.ndarray, codes: np.ndarray, coef: np.ndarray, intercept: np.ndarray, l2: float) -> bool:
    """Whether ∇F vanishes to ``_STATIONARY_TOL`` in standardised coordinates."""
    m = Xc.shape[0]
    scores = Xc @ coef.T + intercept
    if coef.shape[0] == 1:
        resid = (scipy.special.expit(scores[:, 0]) - (codes == 1))[:, None]
    else:
        resid = scipy.special.softmax(scores, axis=1)
        resid[np.arange(m), codes] -= 1.0
    grad_w = resid.T @ Xc / m + 2.0 * l2 * coef
    grad_b = resid.mean(axis=0)
    sd = np.sqrt(np.mean(Xc * Xc, axis=0))
    sd[sd == 0] = 1.0
    # in the coordinates u_j = w_j·sd_j of standardised features, ∂F/∂u_j = ∂F/∂w_j / sd_j
    worst = max(float(np.max(np.abs(grad_w / sd))), float(np.max(np.abs(grad_b))))
    return math.isfinite(worst) and worst <= _STATIONARY_TOL


def train_chunk(X, y, *, l2: float = DEFAULT_L2, classes, lo=None, hi=None) -> ChunkModel:
    """Train one chunk's model: the minimiser of F(w, b) (module docstring) on these rows.

    ``X`` is a 2-D array or DataFrame of the features (in the request's order), ``y`` the labels,
    ``classes`` the classes of the *whole request*: every chunk must contain each of them, or its
    model could not be averaged with the others (a missing class would get no weight vector, or a
    binary chunk would learn a different problem). Raises :class:`InputError` naming the missing
    class(es) and the chunk's range, :class:`NonFiniteValueError` for NaN/±inf features.
    """
    l2 = check_l2(l2)
    classes = _normalize_classes(classes)
    where = describe_range(lo, hi)
    X, _ = as_matrix(X)
    m, d = X.shape
    if d == 0:
        raise InputError("logistic regression needs at least one feature")
    codes = _class_indices(y, classes, where)
    if codes.shape[0] != m:
        raise InputError(f"X has {m} rows but y has {codes.shape[0]} labels in {where}")
    if m < 2:
        raise InputError(f"{where} has {m} row(s); a chunk needs at least 2 rows (use a larger chunk size)")
    counts = np.bincount(codes, minlength=len(classes))
    missing = [c for c, k in zip(classes, counts) if k == 0]
    if missing:
        raise InputError(
            f"{where} ({m} rows) holds no row of class(es) {missing!r} out of the request's classes "
            f"{list(classes)!r}; every chunk of a logistic mixture must contain every class: use a larger "
            f"chunk size (chunk_rows) or a range where each class occurs throughout"
        )

    mean = X.mean(axis=0)
    Xc = X - mean
    # lbfgs as scikit-learn's default; it can stop short when the feature scales differ by many orders
    # of magnitude (its tolerance is on the raw gradient), which the scale-free check catches: Newton's
    # method does not care about scales, so it is the fallback
    coef, intercept_c, converged = _solve(Xc, codes, l2, "lbfgs")
    if not converged:
        coef, intercept_c, converged = _solve(Xc, codes, l2, "newton-cholesky")
    if not converged:
        warnings.warn(
            f"logistic regression on {where} ({m} rows) did not reach the minimum of its objective; "
            f"features on wildly different scales or a tiny l2 ({l2:g}) make it ill-conditioned: "
            f"consider rescaling the features",
            ConvergenceWarning,
            stacklevel=2,
        )
    intercept = intercept_c - coef @ mean
    accuracy = float(np.mean(predict_index(decision(X, coef, intercept)) == codes))
    r_max = float(np.sqrt(np.max(np.einsum("ij,ij->i", X, X))))
    return ChunkModel(
        lo=plain_bound(lo), hi=plain_bound(hi), n=m, classes=classes, class_counts=tuple(counts.tolist()),
        coef=coef, intercept=intercept, r_max=r_max, l2=l2, accuracy=accuracy,
    )
