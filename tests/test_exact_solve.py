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
