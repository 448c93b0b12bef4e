"""The exact solve of double-double linear statistics (modelstore.models.linear._solve_exact, fraction-free
integer elimination) against Gaussian elimination in :class:`fractions.Fraction` on the same rationals:
the same w, intercept and SSR to the last bit, and the same singular column."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from modelstore.errors import SingularMatrixError
from modelstore.models.linear import _solve_exact
from modelstore.stats.linear import LinearStats


def by_fractions(stats: LinearStats, live, l2: float):
    """(w, intercept, SSR) rounded once from the exact rationals, by textbook elimination."""
    d = len(stats.columns) - 1
    idx = [int(i) for i in live]

    def v(hi, lo):
        return Fraction(float(hi)) + Fraction(float(lo))

    C, Clo = stats.comoment, stats.comoment_lo
    M = [[v(C[i, j], Clo[i, j]) + (Fraction(l2) if i == j else 0) for j in idx] + [v(C[i, d], Clo[i, d])] for i in idx]
    m = len(idx)
    for col in range(m):
        pivot = next((r for r in range(col, m) if M[r][col] != 0), None)
        if pivot is None:
            raise SingularMatrixError(f"singular at column {stats.columns[idx[col]]!r}")
        M[col], M[pivot] = M[pivot], M[col]
        for r in range(col + 1, m):
            f = M[r][col] / M[col][col]
            M[r] = [a - f * b for a, b in zip(M[r], M[col])]
    w = [Fraction(0)] * m
    for r in range(m - 1, -1, -1):
        w[r] = (M[r][m] - sum(M[r][c] * w[c] for c in range(r + 1, m))) / M[r][r]
    means = [v(stats.mean[i], stats.mean_lo[i]) for i in range(d + 1)]
    intercept = means[d] - sum(wi * means[i] for wi, i in zip(w, idx))
    cxy = [v(C[i, d], Clo[i, d]) for i in idx]
    cxx_w = [sum(v(C[i, j], Clo[i, j]) * wj for j, wj in zip(idx, w)) for i in idx]
    ssr = v(C[d, d], Clo[d, d]) - 2 * sum(a * b for a, b in zip(w, cxy)) + sum(a * b for a, b in zip(w, cxx_w))
    return [float(x) for x in w], float(intercept), float(ssr)


@pytest.mark.parametrize("trial", range(40))
def test_exact_solve_matches_fractions_bit_for_bit(trial):
    rng = np.random.default_rng(trial)
    d = int(rng.integers(1, 12))
    X = rng.normal(size=(40, d + 1)) * rng.choice([1e-3, 1.0, 1e4], size=d + 1)
    if trial % 7 == 0 and d > 1:
        X[:, 1] = 3 * X[:, 0]  # exactly collinear
    C = X.T @ (X - X.mean(0))
    C = (C + C.T) / 2
    Clo = rng.normal(size=C.shape) * np.abs(C) * 1e-17
    mean = X.mean(0)
    stats = LinearStats([f"c{j}" for j in range(d + 1)], 40, mean, C, 0, rng.normal(size=d + 1) * np.abs(mean) * 1e-17,
                        (Clo + Clo.T) / 2)
    live = np.arange(d) if trial % 5 else np.arange(0, d, 2)
    l2 = (0.0, 0.5, 1e-3)[trial % 3]
    try:
        want = by_fractions(stats, live, l2)
    except SingularMatrixError as exc:
        column = str(exc).split("column ")[1]
        with pytest.raises(SingularMatrixError, match=f"column {column}"):
            _solve_exact(stats, live, l2)
        return
    w, intercept, ssr = _solve_exact(stats, live, l2)
    assert w.tolist() == want[0] and intercept == want[1] and ssr == want[2]


def _random_dd_stats(rng, d, n=200):
    X = rng.normal(size=(n, d)) * rng.choice([1e-3, 1.0, 1e4], size=d) + rng.normal(size=d) * rng.choice([0, 1, 1e3])
    y = X @ rng.normal(size=d) + rng.normal(size=n)
    st = LinearStats.from_rows([f"x{i}" for i in range(d)] + ["y"], np.column_stack([X, y]))
    lo = rng.normal(size=st.comoment.shape) * 1e-17 * np.abs(st.comoment)
    st.comoment_lo, st.mean_lo = (lo + lo.T) / 2, rng.normal(size=st.mean.shape) * 1e-17 * np.abs(st.mean)
    return st


def _scaled_factor(st, live, l2):
    d = len(st.columns) - 1
    Cxx = st.comoment[np.ix_(live, live)]
    s = np.sqrt(np.diag(Cxx))
    M = Cxx / np.outer(s, s) + np.diag(l2 / s**2)
    return s, (np.linalg.cholesky(M), True), d


@pytest.mark.parametrize("trial", range(60))
def test_refined_double_double_solve_gives_the_exact_solves_bits(trial):
    """A well-conditioned system solved by refinement with exact residuals (what fits use first) gives the very
    floats of the exact rational solve: coefficients, intercept and SSR."""
    from modelstore.models.linear import _solve_dd_refined

    rng = np.random.default_rng(1000 + trial)
    st = _random_dd_stats(rng, int(rng.integers(1, 15)))
    live = np.arange(len(st.columns) - 1)
    l2 = (0.0, 0.37)[trial % 2]
    s, chol, _ = _scaled_factor(st, live, l2)
    got = _solve_dd_refined(st, live, l2, s, chol)
    assert got is not None
    want = _solve_exact(st, live, l2)
    assert got[0].tolist() == want[0].tolist() and got[1] == want[1] and got[2] == want[2]


def test_an_ill_conditioned_system_falls_back_to_the_exact_solve():
    """NIST Filip-like conditioning (a degree-10 polynomial): refinement cannot reach 10⁻²⁶ in its steps, so the
    fit takes the exact solve, and its coefficients still equal it."""
    from modelstore.models.linear import LinearRegression, _solve_dd_refined

    x = np.linspace(-8.8, -3.1, 82)
    X = np.column_stack([x**k for k in range(1, 11)])
    y = X @ np.linspace(1, -1, 10) * 1e-6 + np.sin(x)
    st = LinearStats.from_rows([f"x{k}" for k in range(1, 11)] + ["y"], np.column_stack([X, y]))
    st.comoment_lo, st.mean_lo = np.zeros_like(st.comoment), np.zeros_like(st.mean)
    live = np.arange(10)
    s, chol, _ = _scaled_factor(st, live, 0.0)
    assert _solve_dd_refined(st, live, 0.0, s, chol) is None
    model = LinearRegression.from_stats(st)
    assert model.coef_.tolist() == _solve_exact(st, live, 0.0)[0].tolist()
