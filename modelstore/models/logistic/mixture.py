"""Logistic regression by the mixture-weight method over chunks (paper §2.3, §4, Algorithms 1–2).

Logistic regression has no finite sufficient statistics, so modelstore cannot give the exact
from-scratch model from stored summaries. Instead (paper §4, after Mann et al. 2009) the rows of a
request are cut into chunks of about ``l`` rows along the ordering column (:func:`split_chunks`),
one regularised model is trained per chunk (:func:`train_chunk`, Algorithm 1's inner loop), and the
request's model is their average weighted by chunk size (:meth:`LogisticMixture.from_chunks`,
Algorithm 1 line 8 with μ_k = n_k / Σ n):

    w_μ = Σ_k (n_k / Σ_j n_j) · w_k.

A :class:`ChunkModel` is small, immutable and JSON-serialisable, so it can be materialised and
reused by any later request whose range covers that chunk (Algorithm 2). Chunks can be added to a
mixture but never subtracted: the planner's graph has forward edges only for this kind.

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

import bisect
import datetime as dt
import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.special
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from modelstore.errors import InputError
from modelstore.models._input import check_name, decode_floats, encode_floats, feature_matrix, labels_array
from modelstore.stats._classes import normalize_label

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_L2",
    "ChunkModel",
    "LogisticMixture",
    "fit_mixture",
    "split_chunks",
    "train_chunk",
    "train_chunks",
]

#: λ of F(w) = mean log-loss + λ‖w‖² (see the module docstring for the choice)
DEFAULT_L2 = 1e-4

#: a suggested chunk size l: the paper's best logistic gains came with 10K-row materialised models
#: (§6, Figure 2(e)); large enough that every chunk holds every class of a not too rare label
DEFAULT_CHUNK_ROWS = 10_000

#: L-BFGS stops when the largest gradient entry of F is below this (F is a mean, so this is absolute)
_TOL = 1e-10
_MAX_ITER = 10_000

#: the fit is accepted when every gradient entry of F in standardised coordinates (∂F/∂w_j / sd_j,
#: and ∂F/∂b) is below this: a scale-free test, which lbfgs's absolute tolerance is not
_STATIONARY_TOL = 1e-6

_STATE_VERSION = 1


# -- small helpers --------------------------------------------------------------------------------


def _check_l2(l2) -> float:
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not math.isfinite(float(l2)) or l2 <= 0:
        raise InputError(
            f"l2 (the penalty λ of logistic regression) must be a finite number > 0, got {l2!r} instead; "
            f"with l2 = 0 a chunk whose classes are separable has no finite model (the default is {DEFAULT_L2})"
        )
    return float(l2)


def _plain(value):
    """A numpy scalar as the Python value it holds."""
    return value.item() if isinstance(value, np.generic) else value


def _normalize_classes(classes) -> tuple:
    """The request's classes as a sorted tuple of JSON-storable labels (scikit-learn's order)."""
    if isinstance(classes, str | bytes) or not hasattr(classes, "__iter__"):
        raise InputError(f"classes must be a collection of class labels, got {classes!r} instead")
    try:
        labels = {normalize_label(_plain(c)) for c in classes}
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
    value = _plain(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise InputError(f"the target holds NULL/NaN labels in {where}; skip or fill those rows first")
    try:
        return index[normalize_label(value)]
    except (KeyError, TypeError):
        raise InputError(
            f"label {value!r} in {where} is not one of the request's classes {list(classes)!r}"
        ) from None


def _plain_bound(value):
    """An ordering value as a plain Python value (numpy/pandas timestamps as datetimes)."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return _plain(value)


def _describe_range(lo, hi) -> str:
    if lo is None and hi is None:
        return "the chunk"
    return f"the chunk [{_show(lo)}, {_show(hi)}]"


def _show(v) -> str:
    return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v)


def _encode_bound(value):
    """An ordering value as strict JSON; dates, timestamps and decimals are tagged so they come back."""
    value = _plain_bound(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"a chunk's lo/hi must be finite, got {value!r} instead")
        return value
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"timestamp": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    raise InputError(f"a chunk's lo/hi must be a number, text, date or timestamp, got {value!r} instead")


def _decode_bound(value):
    if isinstance(value, dict):
        (tag, text), = value.items()
        return {"decimal": Decimal, "timestamp": dt.datetime.fromisoformat, "date": dt.date.fromisoformat}[tag](text)
    return value


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, dtype=float)  # a private copy
    arr.setflags(write=False)
    return arr


def _decision(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Raw scores: shape (n,) for two classes (log-odds of classes[1]), (n, K) otherwise."""
    scores = X @ coef.T + intercept
    return scores[:, 0] if coef.shape[0] == 1 else scores


def _predict_index(scores: np.ndarray) -> np.ndarray:
    return (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)


# -- chunk models ---------------------------------------------------------------------------------


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
            "version": _STATE_VERSION,
            "lo": _encode_bound(self.lo),
            "hi": _encode_bound(self.hi),
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
        if state.get("version", 1) > _STATE_VERSION:
            raise InputError(
                f"logistic chunk state version {state['version']} is newer than this modelstore ({_STATE_VERSION})"
            )
        return cls(
            lo=_decode_bound(state["lo"]),
            hi=_decode_bound(state["hi"]),
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
            f"<ChunkModel [{_show(self.lo)}, {_show(self.hi)}] n={self.n}, classes={list(self.classes)!r}, "
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


def _as_matrix(X) -> tuple[np.ndarray, list[str]]:
    """Training input as a finite float matrix and its feature names (a DataFrame's, else x1…xd)."""
    if isinstance(X, pd.DataFrame):
        features = [str(c) for c in X.columns]
        return feature_matrix(X.set_axis(features, axis=1), features), features
    shape = np.shape(X)
    if len(shape) != 2:
        raise InputError(f"X must be 2-D (rows × features), got shape {shape} instead")
    features = [f"x{i}" for i in range(1, shape[1] + 1)]
    return feature_matrix(X, features), features


def train_chunk(X, y, *, l2: float = DEFAULT_L2, classes, lo=None, hi=None) -> ChunkModel:
    """Train one chunk's model: the minimiser of F(w, b) (module docstring) on these rows.

    ``X`` is a 2-D array or DataFrame of the features (in the request's order), ``y`` the labels,
    ``classes`` the classes of the *whole request*: every chunk must contain each of them, or its
    model could not be averaged with the others (a missing class would get no weight vector, or a
    binary chunk would learn a different problem). Raises :class:`InputError` naming the missing
    class(es) and the chunk's range, :class:`NonFiniteValueError` for NaN/±inf features.
    """
    l2 = _check_l2(l2)
    classes = _normalize_classes(classes)
    where = _describe_range(lo, hi)
    X, _ = _as_matrix(X)
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
    accuracy = float(np.mean(_predict_index(_decision(X, coef, intercept)) == codes))
    r_max = float(np.sqrt(np.max(np.einsum("ij,ij->i", X, X))))
    return ChunkModel(
        lo=_plain_bound(lo), hi=_plain_bound(hi), n=m, classes=classes, class_counts=tuple(counts.tolist()),
        coef=coef, intercept=intercept, r_max=r_max, l2=l2, accuracy=accuracy,
    )


# -- cutting a gap into chunks --------------------------------------------------------------------


def _round_half_up(a: int, b: int) -> int:
    """round(a / b) for non-negative ints, halves up (Python's round() goes to even)."""
    return (2 * a + b) // (2 * b)


def _check_ascending(values) -> None:
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "iufmM":
        if arr.dtype.kind in "fmM" and np.isnan(arr).any():
            raise InputError("the ordering values hold NULL/NaN; the ordering column must be non-NULL")
        if arr.size > 1 and not (arr[1:] >= arr[:-1]).all():
            raise InputError("the ordering values must be sorted ascending")
        return
    try:
        for i in range(1, len(values)):
            if not values[i - 1] <= values[i]:
                raise InputError(
                    f"the ordering values must be sorted ascending, got {values[i - 1]!r} before {values[i]!r} "
                    f"at row {i}"
                )
    except TypeError as exc:
        raise InputError(f"the ordering values must be comparable non-NULL values: {exc}") from exc


def split_chunks(order_values, chunk_rows: int) -> list[slice]:
    """Cut sorted ordering values into about-``chunk_rows`` chunks, never splitting a tie.

    The rule (paper §4 cuts a gap into ⌊|Dq|/l⌋ chunks of l rows; we balance them instead):

    - n rows are cut into p = max(1, round(n / l)) chunks (halves round up), greedily from the
      start: with r rows left and q chunks still to cut, the next chunk takes round(r / q) rows;
      without ties the sizes are therefore ⌊n/p⌋ or ⌈n/p⌉, i.e. between 0.75·l and 1.5·l once
      n ≥ l (a gap smaller than 1.5·l is a single chunk).
    - a chunk is described by the closed range [lo, hi] of its ordering values, so rows with equal
      values must stay together: a cut that would split a run of equal values moves to the end of
      the run (and to the end of the rows if fewer than l/2 would be left). The rows after such a
      run are re-planned: q becomes min(q − 1, max(1, round(r/l))), so the chunks after a long run
      are not squeezed. Ties can thus make fewer and larger chunks; every chunk still holds at
      least min(n, ⌊l/2⌋) rows.

    Returns consecutive slices that partition ``range(n)`` in order ([] for no rows).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, numbers.Integral) or chunk_rows < 1:
        raise InputError(f"chunk_rows must be a whole number >= 1, got {chunk_rows!r} instead")
    l = int(chunk_rows)
    if isinstance(order_values, pd.Series | pd.Index):
        order_values = order_values.to_numpy()
    values = order_values if isinstance(order_values, np.ndarray) else list(order_values)
    n = len(values)
    if n == 0:
        return []
    _check_ascending(values)
    slices = []
    start, left = 0, max(1, _round_half_up(n, l))
    while start < n:
        r = n - start
        cut = start + _round_half_up(r, left) if left > 1 else n
        if cut >= n:
            slices.append(slice(start, n))
            break
        left -= 1
        if values[cut] == values[cut - 1]:  # the cut would split a tie: move it to the end of the run
            cut = bisect.bisect_right(values, values[cut - 1], lo=cut)
            if _round_half_up(n - cut, l) == 0:  # a tail under l/2 rows joins this chunk
                cut = n
            left = min(left, max(1, _round_half_up(n - cut, l)))
        slices.append(slice(start, cut))
        start = cut
    return slices


def train_chunks(order_values, X, y, *, chunk_rows: int, l2: float = DEFAULT_L2, classes=None) -> list[ChunkModel]:
    """Algorithm 2 lines 9–11 for one gap: cut its rows (sorted by ``order_values``) and train each chunk.

    ``classes`` defaults to the labels of ``y``; pass the request's classes when the gap is only
    part of the request.
    """
    y = np.asarray(y)
    if classes is None:
        classes = [_plain(v) for v in pd.unique(y)]
    if isinstance(X, pd.DataFrame):
        take = lambda s: X.iloc[s]  # noqa: E731
    else:
        X = np.asarray(X)
        take = lambda s: X[s]  # noqa: E731
    if isinstance(order_values, pd.Series | pd.Index):
        order_values = order_values.to_numpy()
    if len(order_values) != len(y) or len(y) != len(X):
        raise InputError(f"order_values, X and y must have one entry per row, got {len(order_values)}, {len(X)}, {len(y)}")
    return [
        train_chunk(take(s), y[s], l2=l2, classes=classes, lo=order_values[s.start], hi=order_values[s.stop - 1])
        for s in split_chunks(order_values, chunk_rows)
    ]


# -- the mixture ----------------------------------------------------------------------------------


class LogisticMixture:
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
        self.l2 = _check_l2(l2)
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
                    f"chunk models disagree on the classes: {list(first.classes)!r} for {_describe_range(first.lo, first.hi)}, "
                    f"{list(c.classes)!r} for {_describe_range(c.lo, c.hi)}"
                )
            if c.l2 != first.l2:
                raise InputError(
                    f"chunk models disagree on l2: {first.l2!r} for {_describe_range(first.lo, first.hi)}, "
                    f"{c.l2!r} for {_describe_range(c.lo, c.hi)}; a mixture averages models of one objective"
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
        return _decision(feature_matrix(X, self.feature_names_in_), self.coef_, self.intercept_)

    def predict(self, X) -> np.ndarray:
        return self.classes_[_predict_index(self.decision_function(X))]

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
        columns = ["coef"] if self.coef_.shape[0] == 1 else [_plain(c) for c in self.classes_]
        return pd.DataFrame(values, index=index, columns=columns)

    def __repr__(self) -> str:
        if not hasattr(self, "coef_"):
            return f"LogisticMixture(l2={self.l2!r}, name={self.name!r})"
        label = f"{self.name!r}, " if self.name else ""
        acc = "" if self.training_accuracy_ is None else f", accuracy={self.training_accuracy_:.4f}"
        return (
            f"<LogisticMixture {label}classes={[_plain(c) for c in self.classes_]!r}, "
            f"features={self.feature_names_in_.tolist()!r}, n={self.rows_used} in {self.n_chunks} chunk(s) "
            f"(mean {self.bound_inputs['l']:.0f} rows), l2={self.l2:g}{acc}>"
        )

    # -- catalog --------------------------------------------------------------------------------

    def to_state(self) -> dict:
        """The mixture as a JSON-serialisable dict (strict JSON), for the catalog (chunks not included)."""
        return {
            "kind": self.kind,
            "version": _STATE_VERSION,
            "name": self.name,
            "l2": self.l2,
            "features": self.feature_names_in_.tolist(),
            "classes": [_plain(c) for c in self.classes_],
            "class_count": encode_floats(self.class_count_),
            "coef": encode_floats(self.coef_),
            "intercept": encode_floats(self.intercept_),
            "chunk_rows": list(self.chunk_rows),
            "chunk_ranges": [[_encode_bound(lo), _encode_bound(hi)] for lo, hi in self.chunk_ranges],
            "chunk_accuracy": encode_floats(self.chunk_accuracy),
            "r_max": encode_floats(self.r_max_),
            "rows_skipped": self.rows_skipped,
            "training_accuracy": None if self.training_accuracy_ is None else encode_floats(self.training_accuracy_),
        }

    @classmethod
    def from_state(cls, state: dict) -> "LogisticMixture":
        if not isinstance(state, dict) or state.get("kind") != cls.kind:
            raise InputError(f"not the state of a logistic model: {state!r:.200}")
        if state.get("version", 1) > _STATE_VERSION:
            raise InputError(f"logistic model state version {state['version']} is newer than this modelstore ({_STATE_VERSION})")
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
            chunk_ranges=[(_decode_bound(lo), _decode_bound(hi)) for lo, hi in state["chunk_ranges"]],
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
    X, features = _as_matrix(X)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InputError(f"y must be 1-D with one label per row of X ({X.shape[0]}), got shape {y.shape} instead")
    if order_values is None:
        order_values = np.arange(X.shape[0])
    elif isinstance(order_values, pd.Series | pd.Index):
        order_values = order_values.to_numpy()
    classes = [_plain(v) for v in pd.unique(y)]
    chunks = train_chunks(order_values, X, y, chunk_rows=chunk_rows, l2=l2, classes=classes)
    if not chunks:
        raise InputError("no rows to fit a logistic model on")
    model = LogisticMixture.from_chunks(chunks, features, name=name)
    model.training_accuracy_ = model.score(X, y)
    return model
