"""Double-double arithmetic on numpy arrays: a value is the unevaluated sum hi + lo of two float64 with
|lo| ≤ ulp(hi)/2, 106 significant bits (Dekker 1971; Hida, Li & Bailey's QD library).

The statistics the ``modelstore_stats`` C aggregate returns are in this representation
(docs/statistics.md, "The C aggregate"); merging and unmerging them (Chan, Golub & LeVeque's pairwise
updates) in it keeps their precision: every operation here has a relative error of a few u²
(u = 2⁻⁵³, u² ≈ 1.2·10⁻³²) of its operands' magnitudes.

numpy has no vectorised fma, so the error-free product splits its operands (Dekker's split): exact for
|x| < 2⁹⁹⁶; larger values overflow the split and come out non-finite (the statistics' non-finite
check then names the column).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

_SPLITTER = 134217729.0  # 2^27 + 1


def two_sum(a, b):
    """s + e == a + b exactly, s = fl(a + b)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _fast_two_sum(a, b):
    s = a + b
    return s, b - (s - a)


def _split(a):
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a, b):
    """p + e == a · b exactly, p = fl(a · b)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def add(ah, al, bh, bl):
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    e = e + t
    s, e = _fast_two_sum(s, e)
    e = e + f
    return _fast_two_sum(s, e)


def neg(ah, al):
    return -ah, -al


def sub(ah, al, bh, bl):
    return add(ah, al, -bh, -bl)


def mul(ah, al, bh, bl):
    p, e = two_prod(ah, bh)
    e = e + (ah * bl + al * bh)
    return _fast_two_sum(p, e)


def mul_d(ah, al, b):
    p, e = two_prod(ah, b)
    e = e + al * b
    return _fast_two_sum(p, e)


def div_d(ah, al, b):
    """(ah + al) / b for a float64 b (a row count)."""
    q1 = ah / b
    rh, rl = sub(ah, al, *two_prod(q1, b))
    q2 = rh / b
    rh, rl = sub(rh, rl, *two_prod(q2, b))
    q3 = rh / b
    q1, q2 = _fast_two_sum(q1, q2)
    return add(q1, q2, q3, np.zeros_like(q3) if isinstance(q3, np.ndarray) else 0.0)


def ratio(p: int, q: int) -> tuple[float, float]:
    """The double-double nearest to p / q for integers (row counts): a scalar factor computed once, exactly
    rounded, instead of a double-double division of every entry."""
    return from_fraction(Fraction(p, q))


def sum0(ah, al):
    """Σ over the first axis of double-double arrays: the high parts added pairwise by :func:`two_sum`
    (log2(k) vectorised levels, every rounding error kept), the low parts and those errors added in plain
    float64, and the pair normalised once at the end — Ogita, Rump & Oishi's Sum2 ("Accurate sum and dot
    product", SIAM J. Sci. Comput. 2005) on a balanced tree: as accurate as summing in twice the working
    precision, an error of about log2(k)·u² of Σ|terms|."""
    lo = al
    while ah.shape[0] > 1:
        h = ah.shape[0] // 2
        s, e = two_sum(ah[:h], ah[h:2 * h])
        lo_next = (lo[:h] + lo[h:2 * h]) + e
        if ah.shape[0] % 2:  # the odd one out waits for the next level
            s, lo_next = np.concatenate((s, ah[2 * h:])), np.concatenate((lo_next, lo[2 * h:]))
        ah, lo = s, lo_next
    return two_sum(ah[0], lo[0])


def normalize(ah, al):
    """(hi, lo) with |lo| ≤ ulp(hi)/2 (a rounded float64 value in hi)."""
    return two_sum(np.asarray(ah, dtype=float), np.asarray(al, dtype=float))


def to_fraction(hi, lo) -> Fraction:
    """The exact rational value of one double-double (non-finite values raise ValueError)."""
    return Fraction(float(hi)) + Fraction(float(lo))


def from_fraction(x: Fraction) -> tuple[float, float]:
    """The double-double nearest to a rational (hi correctly rounded, lo the rounded remainder)."""
    hi = float(x)
    return hi, float(x - Fraction(hi))
