"""Linear regression (OLS and ridge) solved from :class:`~modelstore.stats.linear.LinearStats`.

Paper §3.1.1 solves XᵀX β = Xᵀy from the stored statistics. We never form XᵀX from raw power sums:
the statistics hold n, the means and the comoment C of [x_1 … x_d, y], and with an intercept the
normal equations reduce to the centered system (Cxx + λI) w = cxy, intercept b = ȳ − wᵀx̄.

Numerics (DESIGN §6)
--------------------
The centered system is solved *scaled*: with s = √diag(Cxx), A = Cxx / ssᵀ is the correlation
matrix of the features, and

    (A + λ·diag(1/s²)) u = cxy / s,        w = u / s,

which makes columns of wildly different magnitude (Longley's GNP ≈ 4·10⁵ next to its Year ≈ 2·10³
with a spread of 5) numerically equal partners: cond(A) is 1.2·10⁴ for Longley where the raw
[1, X]ᵀ[1, X] has 2.4·10¹⁹. The scaled matrix M is factored by Cholesky (backward stable for SPD
matrices; its pivots are exactly the "variance left after projecting on the previous columns" that
the rank check needs). The solution then gets three steps of iterative refinement whose residual
cxy − (Cxx + λI) w is taken against the *stored* comoment in extended precision (``np.longdouble``,
80-bit on x86-64), so that w is the exact solution of the stored statistics to ~15 digits and the
only error left is that of the statistics themselves (tests check this against a rational solve).

Measured on NIST StRD Longley, against the certified values (min over the 7 coefficients): 11.9
digits with the statistics of the 16 rows, 12.8 from two merged halves, 12.2 from 16 one-row
statistics merged, 11.8–12.4 from subtraction paths. Plain Cholesky, ``eigh`` or SVD of the
correlation matrix without refinement gave 11.2–12.6 depending on the path, and only the Cholesky
pivots name the column that makes XᵀX singular.

Rank check
----------
Without a penalty, a feature is refused when it is constant (its spread is below the rounding of
its mean) or when its Cholesky pivot — 1 − R² of the feature regressed on the features before it,
in column order — is below ``COLLINEAR_TOL`` (10⁻¹⁰). Longley's smallest pivot is 1.3·10⁻³, far
from it. The error names the column and the earlier columns it is a combination of.
Double-double statistics (the C aggregate's, ~32 digits) that the float64 check refuses are checked
again exactly: the pivots of their centered system in rational arithmetic, against
``DD_COLLINEAR_TOL`` (10⁻²⁴: the float64 margin of 10⁶ over u, over u² instead). NIST's Filip
(degree 10; smallest pivot 3.7·10⁻¹⁵) passes it; a column that is another's float64 sum (pivot
~u² ≈ 10⁻³²) is still refused. Such a fit's covariance is computed exactly as well.
With λ > 0 a constant column gets coefficient 0 (its centered values are zero, as in scikit-learn)
and collinear columns are fine: A + λ·diag(1/s²) is positive definite.

Inference
---------
OLS: the classical σ̂²(XᵀX)⁻¹ with σ̂² = SSR / (n − d − 1), exactly statsmodels' ``OLS`` nonrobust
covariance, written on the centered system:

    Var(w) = σ̂² Cxx⁻¹,  Var(b) = σ̂² (1/n + x̄ᵀ Cxx⁻¹ x̄),  Cov(b, w) = −Var(w) x̄.

Ridge: the usual sandwich for a fixed λ, Var(w) = σ̂² (Cxx + λI)⁻¹ Cxx (Cxx + λI)⁻¹, with σ̂² from
the ridge residuals over the same df_resid = n − d − 1; ȳ is uncorrelated with w (w is linear in
the centered y), so the intercept extends exactly as above: Var(b) = σ̂²/n + x̄ᵀ Var(w) x̄,
Cov(b, w) = −Var(w) x̄. At λ = 0 the OLS formulas are used, so ridge reduces to OLS exactly.
The t statistics and p-values treat the ridge estimate as if unbiased (they test w + bias = 0);
they are descriptive, as in most ridge software.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
import warnings

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.special
import scipy.stats

from modelstore.errors import (
    InputError,
    NonFiniteValueError,
    RangeError,
    SingularMatrixError,
)
from modelstore.models._input import (
    check_name, check_nonnegative, decode_float, decode_floats, encode_floats, feature_matrix,
)
from modelstore.models._provenance import Provenance
from modelstore.stats import _dd
from modelstore.stats.linear import LinearStats

__all__ = ["COLLINEAR_TOL", "LinearRegression"]

#: a feature whose variance left after regressing it on the earlier features is below this
#: fraction of its own variance (i.e. R² > 1 − 10⁻¹⁰) makes XᵀX singular
COLLINEAR_TOL = 1e-10
#: the same for double-double statistics, checked in exact arithmetic (see "Rank check")
DD_COLLINEAR_TOL = 1e-24

#: a feature whose standard deviation is below this fraction of |mean| is constant: its spread is
#: indistinguishable from the rounding of the values themselves
CONSTANT_RTOL = 1e-12

#: refinement steps of the scaled solve (each one gains ~log10(1/(κ·eps)) digits until converged)
_REFINEMENT_STEPS = 3

#: above this many features the inverse for the covariance is not refined (longdouble matmul is
#: not BLAS-accelerated; the coefficients are always refined)
_REFINE_INVERSE_MAX_D = 50

_STATE_VERSION = 1

#: double-double statistics over at most this many live features are solved exactly (rationals)
EXACT_SOLVE_MAX_D = 30

#: a refined double-double solve is kept when its last correction is below this fraction of w (else the
#: exact rational solve runs: the system is too ill-conditioned for refinement to converge quickly)
DD_REFINED_TOL = 1e-26
#: refinement steps of that solve (each gains ~16 − log10 κ digits)
DD_REFINEMENT_STEPS = 4


# -- the solver -------------------------------------------------------------------------------------


def _refine(M: np.ndarray, chol, rhs: np.ndarray, x: np.ndarray, steps: int) -> np.ndarray:
    """Iterative refinement of M x = rhs with residuals in extended precision."""
    M_ext = M.astype(np.longdouble)
    rhs_ext = rhs.astype(np.longdouble)
    for _ in range(steps):
        r = (rhs_ext - M_ext @ x.astype(np.longdouble)).astype(float)
        x = x + scipy.linalg.cho_solve(chol, r)
    return x


def _solve_refined(Cxx: np.ndarray, cxy: np.ndarray, s: np.ndarray, l2: float, chol) -> np.ndarray:
    """w solving (Cxx + l2·I) w = cxy, in extended precision, by refinement on the scaled factor.

    The residual is taken against the *stored* comoment (not its rounded scaled copy), so the
    result is the solution of the stored statistics to about working precision.
    """
    if len(s) == 0:
        return np.zeros(0, dtype=np.longdouble)
    s_ext = s.astype(np.longdouble)
    C_ext = Cxx.astype(np.longdouble) + np.diag(np.full(len(s), l2, dtype=np.longdouble))
    c_ext = cxy.astype(np.longdouble)
    u = scipy.linalg.cho_solve(chol, cxy / s).astype(np.longdouble)
    for _ in range(_REFINEMENT_STEPS):
        residual = ((c_ext - C_ext @ (u / s_ext)) / s_ext).astype(float)
        u = u + scipy.linalg.cho_solve(chol, residual)
    return u / s_ext


def _dyadic(values) -> tuple[list[int], int]:
    """Floats (each hi or lo part is a dyadic rational p / 2^e) as integers over one power of two:
    (the integers, e). Exact: nothing is rounded."""
    ratios = [float(v).as_integer_ratio() for v in values]
    e = max(q.bit_length() - 1 for _, q in ratios)
    return [p << (e - (q.bit_length() - 1)) for p, q in ratios], e


def _solve_exact(stats: LinearStats, live: np.ndarray, l2: float) -> tuple[np.ndarray, float, float]:
    """(w, intercept, SSR) of the *exact* solution of double-double statistics' centered system
    (Cxx + l2·I) w = cxy over the ``live`` features, each rounded once from its exact rational value.

    Every hi + lo is a dyadic rational, so the system is scaled to integers by one power of two and
    solved by fraction-free (Bareiss) elimination in Python integers: every division is exact, and no
    gcd is ever taken — many times faster than :class:`fractions.Fraction` elimination (which it
    replaced: a 10-feature solve went from ~20 ms to ~1 ms, most of an observe's refresh, docs/serving.md)
    and the same results to the last bit. With det the last pivot, X = det·w is integral (Cramer), so
    back substitution stays in integers too; only the final roundings see a fraction."""
    d = len(stats.columns) - 1
    idx = [int(i) for i in live]
    m = len(idx)
    C, Clo = stats.comoment, stats.comoment_lo
    cells = [(i, j) for i in idx for j in idx] + [(i, d) for i in idx] + [(d, d)]
    his = [C[i, j] for i, j in cells] + [float(l2)]
    los = [Clo[i, j] for i, j in cells] + [0.0]
    ints, e = _dyadic(his + los)
    k = len(his)
    scaled = [ints[t] + ints[k + t] for t in range(k)]  # hi + lo over 2^e, exactly
    lam = scaled[-1]
    Cxx = [scaled[r * m:(r + 1) * m] for r in range(m)]
    b = scaled[m * m:m * m + m]
    cyy = scaled[m * m + m]
    M = [[Cxx[r][c] + (lam if r == c else 0) for c in range(m)] + [b[r]] for r in range(m)]
    previous = 1
    for col in range(m):
        pivot = next((r for r in range(col, m) if M[r][col] != 0), None)
        if pivot is None:
            raise SingularMatrixError(f"XᵀX is singular in exact arithmetic at column {stats.columns[idx[col]]!r}",
                                      collinear=[stats.columns[idx[col]]])
        M[col], M[pivot] = M[pivot], M[col]
        p, row_c = M[col][col], M[col]
        for r in range(col + 1, m):
            row_r = M[r]
            f = row_r[col]
            for c in range(col + 1, m + 1):
                row_r[c] = (row_r[c] * p - f * row_c[c]) // previous  # exact (Sylvester's identity)
            row_r[col] = 0
        previous = p
    det = previous  # the last pivot: det(Cxx + l2·I) over 2^(e·m), up to sign
    X = [0] * m     # det · w, integers
    for r in range(m - 1, -1, -1):
        X[r] = (M[r][m] * det - sum(M[r][c] * X[c] for c in range(r + 1, m))) // M[r][r]
    mean_ints, f = _dyadic([stats.mean[i] for i in range(d + 1)] + [stats.mean_lo[i] for i in range(d + 1)])
    means = [mean_ints[i] + mean_ints[d + 1 + i] for i in range(d + 1)]  # over 2^f
    intercept = Fraction(means[d] * det - sum(x * means[i] for x, i in zip(X, idx)), det << f)
    # SSR = cyy − 2wᵀcxy + wᵀ Cxx w (exact; at λ = 0 it is cyy − wᵀcxy), times det² · 2^e
    quad = sum(X[r] * sum(Cxx[r][c] * X[c] for c in range(m)) for r in range(m))
    ssr = Fraction(cyy * det * det - 2 * det * sum(x * y for x, y in zip(X, b)) + quad, (det * det) << e)
    return np.array([float(Fraction(x, det)) for x in X]), float(intercept), float(ssr)


def _solve_dd_refined(stats: LinearStats, live: np.ndarray, l2: float, s: np.ndarray, chol
                      ) -> tuple[np.ndarray, float, float] | None:
    """(w, intercept, SSR) of double-double statistics' centered system (Cxx + l2·I) w = cxy over the
    ``live`` features by iterative refinement on the float64 scaled factor ``chol``, with w carried as a
    double-double and every residual summed exactly (``math.fsum`` of the exact products, Dekker's
    ``two_prod``) — so each step gains ~16 − log10 κ digits, down to ~κ·10⁻³² of w.

    Accepted only when the last correction is below :data:`DD_REFINED_TOL` of w (the system is
    well-conditioned: about 10 digits beyond float64's rounding are known, so rounding w once gives the
    exact solution's float64 unless it lies within 10⁻²⁶ of a rounding tie); otherwise None, and the caller
    takes the exact rational solve (:func:`_solve_exact`), which costs ~5 ms for 10 features where this
    costs ~0.2 ms."""
    d = len(stats.columns) - 1
    C, Clo = stats.comoment, stats.comoment_lo
    Ch, Cl = C[np.ix_(live, live)], Clo[np.ix_(live, live)]
    bh, bl = C[live, d], Clo[live, d]
    m = len(live)
    lam = np.full(m, float(l2))

    def residual(wh, wl):
        """cxy − (Cxx + l2·I) w, each entry the float64 rounding of its exact value (up to the ~10⁻³² terms)."""
        p, e = _dd.two_prod(Ch, wh[None, :])
        parts = [bh[:, None], bl[:, None], -p, -e, -(Ch * wl[None, :]), -(Cl * wh[None, :])]
        if l2:
            lp, le = _dd.two_prod(lam, wh)
            parts += [-lp[:, None], -le[:, None], -(lam * wl)[:, None]]
        terms = np.concatenate(parts, axis=1)
        if not np.isfinite(terms).all():
            return None
        return np.array(list(map(math.fsum, terms.tolist())))

    # the scaled inverse once (m ≤ EXACT_SOLVE_MAX_D): each correction is then one small product
    Minv = scipy.linalg.cho_solve(chol, np.eye(m), check_finite=False)
    wh = (Minv @ (bh / s)) / s
    wl = np.zeros(m)
    Mh = Ch + np.diag(lam)
    for _ in range(DD_REFINEMENT_STEPS):
        r = residual(wh, wl)
        if r is None:
            return None
        delta = (Minv @ (r / s)) / s
        wh, wl = _dd.add(wh, wl, delta, np.zeros(m))
        if np.max(np.abs(delta), initial=0.0) <= DD_REFINED_TOL * np.max(np.abs(wh), initial=0.0):
            break
    else:
        return None
    # the residual at the accepted w without a third exact summation: the last correction is below 10⁻²⁶ of w,
    # so (Cxx + l2·I)·delta in float64 is off by ~10⁻⁴² of cxy, far below the ~10⁻³² terms every residual drops
    r = r - Mh @ delta
    mh, ml = stats.mean, stats.mean_lo
    # intercept = ȳ − wᵀx̄, summed exactly from the double-double products
    p, e = _dd.two_prod(wh, mh[live])
    intercept = math.fsum(np.concatenate(([mh[d], ml[d]], -p, -e, -(wh * ml[live]), -(wl * mh[live]))).tolist())
    # SSR = cyy − 2wᵀcxy + wᵀCxx w = cyy − wᵀcxy − wᵀr − l2·wᵀw (r the residual of the system with l2·I)
    p, e = _dd.two_prod(wh, bh)
    terms = [[C[d, d], Clo[d, d]], -p, -e, -(wh * bl), -(wl * bh), -(wh * r)]
    if l2:
        q, f = _dd.two_prod(wh, wh)
        lq, lf = _dd.two_prod(lam, q)
        terms += [-lq, -lf, -(lam * f), -2 * lam * wh * wl]
    ssr = math.fsum(np.concatenate(terms).tolist())
    return wh + wl, intercept, ssr


def _exact_rank(stats: LinearStats, live: np.ndarray, tol: float) -> list[int]:
    """The positions in ``live`` that exact elimination refuses: a column whose pivot (the spread left
    after projecting it on the kept columns before it, in rational arithmetic on the double-double
    statistics) is at most ``tol`` times its own spread. Refused columns are skipped, as in
    :func:`_greedy_cholesky`."""
    C, Clo = stats.comoment, stats.comoment_lo
    idx = [int(i) for i in live]
    M = [[Fraction(float(C[i, j])) + Fraction(float(Clo[i, j])) for j in idx] for i in idx]
    diag = [M[r][r] for r in range(len(idx))]
    kept: list[int] = []
    refused: list[int] = []
    for col in range(len(idx)):
        if not M[col][col] > tol * diag[col]:
            refused.append(col)
            continue
        inv = 1 / M[col][col]
        for r in range(col + 1, len(idx)):
            f = M[r][col] * inv
            if f:
                row_r, row_c = M[r], M[col]
                for c in range(col, len(idx)):
                    row_r[c] -= f * row_c[c]
        kept.append(col)
    return refused


def _exact_covariance(stats: LinearStats, live: np.ndarray, sigma2: float) -> np.ndarray:
    """σ̂²-scaled covariance of [intercept, w] (OLS) from the exact inverse of the double-double Cxx:
    Var(w) = σ̂² Cxx⁻¹, Cov(b, w) = −Var(w) x̄, Var(b) = σ̂² (1/n + x̄ᵀ Cxx⁻¹ x̄)."""
    d = len(stats.columns) - 1
    idx = [int(i) for i in live]
    m = len(idx)
    C, Clo = stats.comoment, stats.comoment_lo
    A = [[Fraction(float(C[i, j])) + Fraction(float(Clo[i, j])) for j in idx]
         + [Fraction(int(r == c)) for c in range(m)] for r, i in enumerate(idx)]
    for col in range(m):  # Gauss–Jordan on [Cxx | I] (Cxx positive definite: no pivoting needed)
        inv = 1 / A[col][col]
        A[col] = [v * inv for v in A[col]]
        for r in range(m):
            f = A[r][col]
            if r != col and f:
                A[r] = [a - f * b for a, b in zip(A[r], A[col])]
    Cinv = [row[m:] for row in A]
    xbar = [Fraction(float(stats.mean[i])) + Fraction(float(stats.mean_lo[i])) for i in idx]
    cross = [sum((Cinv[r][c] * xbar[c] for c in range(m)), Fraction(0)) for r in range(m)]
    quad = sum((x * c for x, c in zip(xbar, cross)), Fraction(0))
    s2 = Fraction(sigma2) if math.isfinite(sigma2) else None
    cov = np.full((d + 1, d + 1), math.nan) if s2 is None else np.zeros((d + 1, d + 1))
    if s2 is None:
        return cov
    cov[0, 0] = float(s2 * (Fraction(1, stats.n) + quad))
    for r, i in enumerate(idx):
        cov[0, 1 + i] = cov[1 + i, 0] = float(-s2 * cross[r])
        for c, j in enumerate(idx):
            cov[1 + i, 1 + j] = float(s2 * Cinv[r][c])
    return cov


def _greedy_cholesky(M: np.ndarray, tol: float):
    """Cholesky factor of M over the columns it keeps, taking them in order.

    A column is kept when its pivot — the variance left after projecting it on the kept columns
    before it — is at least ``tol`` times its diagonal entry. Returns the lower factor of the kept
    block, the kept indices, and for each refused column its index and the kept columns it depends
    on (non-negligible coefficients of its projection).
    """
    d = M.shape[0]
    if d == 0:
        return np.zeros((0, 0)), [], []
    try:  # the common case: LAPACK's factor; its squared diagonal is the sequence of pivots
        L = scipy.linalg.cholesky(M, lower=True)
        if np.all(np.diag(L) ** 2 > tol * np.diag(M)):
            return L, list(range(d)), []
    except np.linalg.LinAlgError:
        pass
    L = np.zeros((0, 0))
    kept: list[int] = []
    refused: list[tuple[int, list[int]]] = []
    for j in range(d):
        if kept:
            l = scipy.linalg.solve_triangular(L, M[kept, j], lower=True)
            pivot = M[j, j] - l @ l
        else:
            l = np.zeros(0)
            pivot = M[j, j]
        if not pivot > tol * M[j, j]:
            if kept:
                coef = scipy.linalg.solve_triangular(L.T, l, lower=False)
                big = np.abs(coef) > 1e-7 * np.abs(coef).max()
                deps = [k for k, b in zip(kept, big) if b]
            else:
                deps = []
            refused.append((j, deps))
            continue
        m = len(kept)
        grown = np.zeros((m + 1, m + 1))
        grown[:m, :m] = L
        grown[m, :m] = l
        grown[m, m] = math.sqrt(pivot)
        L = grown
        kept.append(j)
    return L, kept, refused


def _quote(names) -> str:
    return ", ".join(repr(n) for n in names)


class LinearRegression(Provenance):
    """Linear regression with intercept (OLS, or ridge with ``l2 > 0``) in scikit-learn style.

    Build one with :meth:`from_stats` (the modelstore way), :meth:`fit` (from arrays, for analysts
    and tests) or :meth:`from_state` (a catalog row). Fitted attributes end in ``_``; the fit
    figures (``rsquared``, ``aic``, ...) follow statsmodels' names and definitions.
    """

    kind = "linear"

    def __init__(self, *, l2: float = 0.0, name: str | None = None):
        self.l2 = check_nonnegative("l2 (the ridge penalty)", l2)
        self.name = check_name(name)

    def get_params(self, deep: bool = True) -> dict:
        return {"l2": self.l2, "name": self.name}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_stats(cls, stats: LinearStats, *, l2: float = 0.0, name: str | None = None) -> "LinearRegression":
        """The model that a from-scratch fit on the rows behind ``stats`` would give.

        Features are ``stats.columns[:-1]``, the target ``stats.columns[-1]``; always with intercept.
        Raises :class:`SingularMatrixError` (naming the columns) when ``l2 == 0`` and XᵀX is singular.
        """
        model = cls(l2=l2, name=name)
        model._fit_stats(stats)
        return model

    def fit(self, X, y) -> "LinearRegression":
        """Fit on arrays (convenience): X a DataFrame or 2-D array, y a sequence or Series."""
        if isinstance(X, pd.DataFrame):
            features = [str(c) for c in X.columns]
            X = X.set_axis(features, axis=1)
        else:
            X = np.asarray(X, dtype=float)
            if X.ndim != 2:
                raise InputError(f"X must be 2-D (rows × features), got an array of shape {X.shape} instead")
            features = [f"x{i}" for i in range(1, X.shape[1] + 1)]
        X = feature_matrix(X, features)
        target = str(y.name) if isinstance(y, pd.Series) and y.name is not None else "y"
        y = np.asarray(y, dtype=float).reshape(-1)
        if y.shape[0] != X.shape[0]:
            raise InputError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
        self._fit_stats(LinearStats.from_rows([*features, target], np.column_stack([X, y])))
        return self

    def _fit_stats(self, stats: LinearStats) -> None:
        if not isinstance(stats, LinearStats):
            raise InputError(f"stats must be LinearStats, got {type(stats).__name__} instead")
        if len(stats.columns) < 1:
            raise InputError("the statistics must hold at least the target column")
        features, target = list(stats.columns[:-1]), stats.columns[-1]
        n, d, l2 = stats.n, len(features), self.l2
        if n == 0:
            raise RangeError(f"no complete rows to fit {target!r} on ({stats.null_rows} skipped for NULLs)")
        bad = stats.non_finite_columns()
        if bad:
            raise NonFiniteValueError(f"the rows hold NaN or ±Infinity in column(s) {bad!r}")

        C, mean = stats.comoment, stats.mean
        Cxx, cxy, cyy = C[:d, :d], C[:d, d], float(C[d, d])
        xbar, ybar = mean[:d], float(mean[d])

        # constant features: no spread beyond the rounding of their mean
        var = np.diag(Cxx).copy()
        constant = ~(var > n * (CONSTANT_RTOL * np.abs(xbar)) ** 2)
        live = np.flatnonzero(~constant)
        s = np.sqrt(var[live])
        A = Cxx[np.ix_(live, live)] / np.outer(s, s)
        M = A + np.diag(l2 / s**2) if l2 > 0 else A

        L, kept, refused = _greedy_cholesky(M, COLLINEAR_TOL)
        exact_rank = False
        if refused and l2 == 0 and stats.comoment_lo is not None and len(live) <= EXACT_SOLVE_MAX_D:
            # double-double statistics hold ~32 digits: decide the rank on them exactly (Filip)
            exact_refused = set(_exact_rank(stats, live, DD_COLLINEAR_TOL))
            refused = [(j, deps) for j, deps in refused if j in exact_refused] + [
                (j, []) for j in sorted(exact_refused - {j for j, _ in refused})]
            exact_rank = not refused
        if (l2 == 0 and constant.any()) or refused:
            refused = [(int(live[j]), [int(live[k]) for k in deps]) for j, deps in refused]
            self._raise_singular(features, n, constant if l2 == 0 else np.zeros(d, bool), refused, l2)

        chol = (L, True)
        if stats.comoment_lo is not None and len(live) <= EXACT_SOLVE_MAX_D:
            # double-double statistics: solve their system to ~10⁻²⁶ by refinement with exact residuals when
            # it converges (well-conditioned), else exactly (rationals), so that the only error left is the
            # statistics' own (~1e-30 relative) and the final rounding
            solved = _solve_dd_refined(stats, live, l2, s, chol) if not exact_rank else None
            w_live, intercept, ssr = solved if solved is not None else _solve_exact(stats, live, l2)
            w = np.zeros(d)
            w[live] = w_live
        else:
            w_live = _solve_refined(Cxx[np.ix_(live, live)], cxy[live], s, l2, chol)
            w = np.zeros(d)
            w[live] = w_live.astype(float)
            intercept = float(np.longdouble(ybar) - w_live @ xbar[live].astype(np.longdouble))

            # SSR = cyy − 2wᵀcxy + wᵀCxx w on the stored comoment: stationary at the OLS optimum, so the
            # error left in w enters squared
            Cll, cl = Cxx[np.ix_(live, live)].astype(np.longdouble), cxy[live].astype(np.longdouble)
            ssr = float(np.longdouble(cyy) - 2 * (w_live @ cl) + w_live @ (Cll @ w_live))
        ssr = max(ssr, 0.0)

        df_resid = n - d - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma2 = ssr / df_resid if df_resid > 0 else math.nan
            if exact_rank:  # the float64 factor is incomplete: the covariance from the exact inverse
                cov = _exact_covariance(stats, live, sigma2)
            else:
                cov = self._covariance(n, d, live, s, xbar, A, M, chol, sigma2, l2)

        self.feature_names_in_ = np.array(features, dtype=object)
        self.n_features_in_ = d
        self.target_ = target
        self.coef_ = w
        self.intercept_ = intercept
        self._cov = cov
        self._set_figures(
            n_obs=n, rows_skipped=stats.null_rows, df_model=d, df_resid=df_resid, ssr=ssr,
            centered_tss=max(cyy, 0.0), condition_number=self._condition_number(n, xbar, live, s, A, constant.any(),
                                                                                 L if l2 == 0 and not exact_rank else None),
        )

    @staticmethod
    def _raise_singular(features, n, constant, refused, l2) -> None:
        d = len(features)
        problems = [f"{features[j]!r} is constant" for j in np.flatnonzero(constant)]
        for j, deps in refused:
            if deps:
                problems.append(f"{features[j]!r} is a linear combination of {_quote(features[k] for k in deps)}")
            else:
                problems.append(f"{features[j]!r} is constant")
        names = [features[j] for j in np.flatnonzero(constant)] + [features[j] for j, _ in refused]
        if l2 > 0:
            raise SingularMatrixError(
                f"XᵀX + l2·I is numerically singular at l2={l2!r}: {'; '.join(problems)}; "
                f"increase l2 or drop a column", collinear=names)
        head = "XᵀX is singular"
        if n <= d:
            head += f" ({n} rows cannot determine {d + 1} parameters: the intercept and {d} features)"
        raise SingularMatrixError(f"{head}: {'; '.join(problems)}; drop a column or pass l2 > 0", collinear=names)

    @staticmethod
    def _covariance(n, d, live, s, xbar, A, M, chol, sigma2, l2) -> np.ndarray:
        """σ̂²-scaled covariance of [intercept, w] (see the module docstring), shape (d+1, d+1)."""
        m = len(live)
        cov = np.zeros((d + 1, d + 1))
        cov[0, 0] = sigma2 / n
        if m == 0:  # intercept only (every feature constant, under ridge)
            return cov
        z = xbar[live] / s  # x̄ in the scaled coordinates
        L = chol[0]
        if l2 == 0:
            # Var(u) ∝ A⁻¹ = L⁻ᵀL⁻¹; x̄ᵀA⁻¹x̄ = ‖L⁻¹z‖² is a sum of squares (no cancellation)
            Ainv = scipy.linalg.cho_solve(chol, np.eye(m))
            if m <= _REFINE_INVERSE_MAX_D:
                Ainv = _refine(A, chol, np.eye(m), Ainv, 1)
                Ainv = (Ainv + Ainv.T) / 2
            t = scipy.linalg.solve_triangular(L, z, lower=True)
            var_u, quad = Ainv, float(t @ t)
            cross = Ainv @ z
        else:
            Minv = scipy.linalg.cho_solve(chol, np.eye(m))
            var_u = Minv @ A @ Minv
            var_u = (var_u + var_u.T) / 2
            g = scipy.linalg.cho_solve(chol, z)
            quad = max(float(g @ A @ g), 0.0)
            cross = var_u @ z
        idx = 1 + live
        cov[np.ix_(idx, idx)] = sigma2 * var_u / np.outer(s, s)
        cov[0, idx] = cov[idx, 0] = -sigma2 * cross / s
        cov[0, 0] = sigma2 * (1.0 / n + quad)
        return cov

    @staticmethod
    def _condition_number(n, xbar, live, s, A, has_constant, chol_A) -> float:
        """statsmodels' ``condition_number``: σ_max / σ_min of [1, X], from R with RᵀR = XᵀX.

        R = [[√n, √n x̄ᵀ], [0, Lᵀ S]] with A = L Lᵀ the scaled comoment (a symmetric square root
        when A is singular); its SVD is as accurate as statsmodels' SVD of the design matrix.
        """
        d = len(xbar)
        if has_constant:
            return math.inf
        if chol_A is None and len(live):
            try:
                chol_A = scipy.linalg.cholesky(A, lower=True)
            except np.linalg.LinAlgError:
                lam, V = np.linalg.eigh(A)
                chol_A = V * np.sqrt(np.clip(lam, 0, None))
        R = np.zeros((d + 1, d + 1))
        R[0, 0] = math.sqrt(n)
        R[0, 1:] = math.sqrt(n) * xbar
        if len(live):
            R[1:, 1:] = chol_A.T * s
        sv = np.linalg.svd(R, compute_uv=False)
        return float(sv[0] / sv[-1]) if sv[-1] > 0 else math.inf

    def _set_figures(self, *, n_obs, rows_skipped, df_model, df_resid, ssr, centered_tss, condition_number,
                     inference: bool = True):
        self.n_obs = int(n_obs)
        self.rows_skipped = int(rows_skipped)
        self.df_model = int(df_model)
        self.df_resid = int(df_resid)
        self.ssr = float(ssr)
        self.centered_tss = float(centered_tss)
        self.condition_number = float(condition_number)
        n, k = self.n_obs, self.df_model
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.ess = self.centered_tss - self.ssr
            self.rsquared = float(1 - np.float64(self.ssr) / self.centered_tss) if self.centered_tss > 0 else math.nan
            dfr = self.df_resid if self.df_resid > 0 else math.nan
            self.rsquared_adj = float(1 - (n - 1) / dfr * (1 - self.rsquared))
            self.mse_resid = float(self.ssr / dfr)
            self.mse_model = float(self.ess / k) if k > 0 else math.nan
            self.residual_std_error = math.sqrt(self.mse_resid) if self.mse_resid >= 0 else math.nan
            self.fvalue = float(np.float64(self.mse_model) / self.mse_resid)
            # inference=False: an estimate without the F distribution (a shrunk per-group model, shrinkage.py)
            # scipy.stats.f.sf's own kernel, without its ~1 ms of argument handling
            self.f_pvalue = float(scipy.special.fdtrc(k, dfr, self.fvalue)) if inference and k > 0 and self.df_resid > 0 \
                else math.nan
            self.llf = float(-n / 2 * math.log(2 * math.pi) - n / 2 * np.log(np.float64(self.ssr) / n) - n / 2)
            self.aic = -2 * self.llf + 2 * (k + 1)
            self.bic = -2 * self.llf + math.log(n) * (k + 1)

    # -- inference ------------------------------------------------------------------------------

    @property
    def _index(self) -> list[str]:
        return ["intercept", *self.feature_names_in_.tolist()]

    @property
    def params(self) -> pd.Series:
        """[intercept, coef_…] as a Series (statsmodels' ``params``)."""
        return pd.Series(np.r_[self.intercept_, self.coef_], index=self._index, name="coef")

    def cov_params(self) -> pd.DataFrame:
        """The estimated covariance of [intercept, coef_…] (see the module docstring for ridge)."""
        return pd.DataFrame(self._cov.copy(), index=self._index, columns=self._index)

    @property
    def bse(self) -> pd.Series:
        with np.errstate(invalid="ignore"):
            return pd.Series(np.sqrt(np.diag(self._cov)), index=self._index, name="std_err")

    @property
    def tvalues(self) -> pd.Series:
        with np.errstate(divide="ignore", invalid="ignore"):
            return pd.Series(self.params.to_numpy() / self.bse.to_numpy(), index=self._index, name="t")

    @property
    def pvalues(self) -> pd.Series:
        t = self.tvalues.to_numpy()
        p = 2 * scipy.stats.t.sf(np.abs(t), self.df_resid) if self.df_resid > 0 else np.full_like(t, math.nan)
        return pd.Series(p, index=self._index, name="p_value")

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Two-sided (1 − alpha) intervals, columns 0 and 1 like statsmodels."""
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
            raise InputError(f"alpha must be a number in (0, 1), got {alpha!r} instead")
        q = scipy.stats.t.ppf(1 - alpha / 2, self.df_resid) if self.df_resid > 0 else math.nan
        params, bse = self.params.to_numpy(), self.bse.to_numpy()
        return pd.DataFrame({0: params - q * bse, 1: params + q * bse}, index=self._index)

    def summary(self, alpha: float = 0.05) -> pd.DataFrame:
        """One row per parameter: coef, std_err, t, p_value, ci_low, ci_high."""
        ci = self.conf_int(alpha)
        return pd.DataFrame(
            {
                "coef": self.params,
                "std_err": self.bse,
                "t": self.tvalues,
                "p_value": self.pvalues,
                "ci_low": ci[0],
                "ci_high": ci[1],
            },
            index=self._index,
        )

    _FIGURES = (
        "n_obs", "rows_skipped", "df_model", "df_resid", "ssr", "ess", "centered_tss", "rsquared",
        "rsquared_adj", "mse_model", "mse_resid", "residual_std_error", "fvalue", "f_pvalue", "llf",
        "aic", "bic", "condition_number",
    )
    _INT_FIGURES = ("n_obs", "rows_skipped", "df_model", "df_resid")

    def fit_figures(self) -> dict:
        """The scalar fit figures as plain ints/floats (NaN → None, ±inf → "inf"/"-inf": strict JSON)."""
        out = {"l2": self.l2}
        for key in self._FIGURES:
            value = getattr(self, key)
            out[key] = int(value) if key in self._INT_FIGURES else encode_floats(value)
        return out

    # -- prediction -----------------------------------------------------------------------------

    def predict(self, X) -> np.ndarray:
        """ŷ = intercept_ + X coef_ for a 2-D array (model's column order) or a DataFrame (by name)."""
        return self.intercept_ + feature_matrix(X, self.feature_names_in_) @ self.coef_

    def score(self, X, y) -> float:
        """R² of the predictions on (X, y), as scikit-learn's ``score``."""
        y = np.asarray(y, dtype=float).reshape(-1)
        resid = y - self.predict(X)
        tss = float(((y - y.mean()) ** 2).sum())
        return 1 - float(resid @ resid) / tss if tss > 0 else math.nan

    # -- catalog --------------------------------------------------------------------------------

    def to_state(self) -> dict:
        """The solved model as a JSON-serialisable dict (strict JSON: no NaN), for the catalog."""
        return {
            "kind": "linear",
            "version": _STATE_VERSION,
            "name": self.name,
            "l2": self.l2,
            "features": self.feature_names_in_.tolist(),
            "target": self.target_,
            "coef": encode_floats(self.coef_),
            "intercept": encode_floats(self.intercept_),
            "cov_params": encode_floats(self._cov),
            "figures": self.fit_figures(),
        }

    @classmethod
    def from_state(cls, state: dict) -> "LinearRegression":
        """Rebuild a solved model from :meth:`to_state` without its statistics."""
        if not isinstance(state, dict) or state.get("kind") != "linear":
            raise InputError(f"not the state of a linear model: {state!r:.200}")
        if state.get("version", 1) > _STATE_VERSION:
            raise InputError(f"linear model state version {state['version']} is newer than this modelstore ({_STATE_VERSION})")
        model = cls(l2=state["l2"], name=state.get("name"))
        features = list(state["features"])
        d = len(features)
        model.feature_names_in_ = np.array(features, dtype=object)
        model.n_features_in_ = d
        model.target_ = state["target"]
        model.coef_ = decode_floats(state["coef"], (d,))
        model.intercept_ = decode_float(state["intercept"])
        model._cov = decode_floats(state["cov_params"], (d + 1, d + 1))
        fig = state["figures"]
        model._set_figures(
            n_obs=fig["n_obs"], rows_skipped=fig["rows_skipped"], df_model=fig["df_model"], df_resid=fig["df_resid"],
            ssr=decode_float(fig["ssr"]), centered_tss=decode_float(fig["centered_tss"]),
            condition_number=decode_float(fig["condition_number"]),
        )
        return model

    def __repr__(self) -> str:
        if not hasattr(self, "coef_"):
            return f"LinearRegression(l2={self.l2!r}, name={self.name!r})"
        kind = "OLS" if self.l2 == 0 else f"ridge l2={self.l2:g}"
        label = f"{self.name!r}, " if self.name else ""
        feats = ", ".join(self.feature_names_in_.tolist())
        return (
            f"<LinearRegression {label}{self.target_} ~ {feats} ({kind}); n={self.n_obs}, "
            f"R²={self.rsquared:.6g}, intercept={self.intercept_:.6g}, coef={np.array2string(self.coef_, precision=6)}>"
        )
