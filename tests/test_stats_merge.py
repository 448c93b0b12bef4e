"""Merging many summaries at once (``merge_many``, ``Family.sum``) and the pairwise double-double merges,
against exact rationals: each block's statistics are the double-double rounding of its exact centered
moments, and every merge must land within a few u² (u = 2⁻⁵³) of the exact moments of the union."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from modelstore.families import family
from modelstore.stats import _dd
from modelstore.stats.linear import LinearStats


def exact_moments(rows):
    """n, means and comoment of ``rows`` (lists of floats) as Fractions."""
    n, k = len(rows), len(rows[0])
    fr = [[Fraction(v) for v in r] for r in rows]
    mean = [sum((r[i] for r in fr), Fraction(0)) / n for i in range(k)]
    C = [[sum(((r[i] - mean[i]) * (r[j] - mean[j]) for r in fr), Fraction(0)) for j in range(k)] for i in range(k)]
    return mean, C


def dd_stats(columns, rows, null_rows=0) -> LinearStats:
    """The double-double statistics nearest to the exact moments of ``rows`` (what the C aggregate returns)."""
    mean, C = exact_moments(rows)
    k = len(columns)
    mh, ml = np.array([_dd.from_fraction(m) for m in mean]).T
    pairs = np.array([[_dd.from_fraction(C[i][j]) for j in range(k)] for i in range(k)])
    return LinearStats(columns, len(rows), mh, pairs[:, :, 0], null_rows, ml, pairs[:, :, 1])


def assert_near_exact(stats: LinearStats, rows, tol=1e-30):
    """Within tol of the exact moments, relative to (|mean| + spread) per column (and per pair for C):
    Chan's updates move C by products of mean differences held to ~u²·|mean|."""
    mean, C = exact_moments(rows)
    n, k = len(rows), len(mean)
    assert stats.n == n and stats.precision == "double-double"
    spread = [math.sqrt(float(C[i][i]) / n) for i in range(k)]
    size = [abs(float(mean[i])) + spread[i] + 1e-300 for i in range(k)]
    for i in range(k):
        got = Fraction(float(stats.mean[i])) + Fraction(float(stats.mean_lo[i]))
        assert abs(float(got - mean[i])) <= tol * size[i], (i, float(got - mean[i]))
        for j in range(k):
            got = Fraction(float(stats.comoment[i, j])) + Fraction(float(stats.comoment_lo[i, j]))
            assert abs(float(got - C[i][j])) <= tol * n * size[i] * size[j], (i, j, float(got - C[i][j]))
    # C stays exactly symmetric (the catalog and the index keep its upper triangle)
    assert np.array_equal(stats.comoment, stats.comoment.T) and np.array_equal(stats.comoment_lo, stats.comoment_lo.T)


def blocks(seed, k_blocks, cols=4):
    rng = np.random.default_rng(seed)
    offsets = rng.choice([0.0, 1.0, 1e6, 1e12, -1e15], size=cols)  # shared digits: cancellation
    scales = rng.choice([1e-8, 1.0, 1e4], size=cols)
    sizes = rng.integers(1, 12, size=k_blocks)
    rows = [list(offsets * scales + rng.uniform(-1e3, 1e3, size=cols) * scales) for _ in range(int(sizes.sum()))]
    cut = np.r_[0, np.cumsum(sizes)]
    return [rows[cut[b]:cut[b + 1]] for b in range(k_blocks)], rows


@pytest.mark.parametrize("seed", range(12))
def test_merge_many_and_pairwise_merges_are_exact_to_u_squared(seed):
    k_blocks = 2 + seed % 9
    parts, rows = blocks(seed, k_blocks)
    cols = [f"c{i}" for i in range(len(rows[0]))]
    summaries = [dd_stats(cols, p, null_rows=i % 2) for i, p in enumerate(parts)]
    many = LinearStats.merge_many(cols, summaries)
    assert_near_exact(many, rows)
    assert many.null_rows == sum(i % 2 for i in range(k_blocks))
    one_by_one = LinearStats(cols)
    for s in summaries:
        one_by_one += s
    assert_near_exact(one_by_one, rows)
    assert family("linear").sum(cols, summaries) == many
    # and the inverse: the whole minus the last block is the rest
    rest = dd_stats(cols, rows, null_rows=many.null_rows) - summaries[-1]
    assert_near_exact(rest, [r for p in parts[:-1] for r in p])


def test_merge_many_skips_empty_summaries_and_follows_the_precision_rules():
    parts, rows = blocks(3, 4)
    cols = [f"c{i}" for i in range(len(rows[0]))]
    summaries = [dd_stats(cols, p) for p in parts]
    empties = [LinearStats(cols, null_rows=2), LinearStats(cols, 0, mean_lo=np.zeros(4), comoment_lo=np.zeros((4, 4)))]
    merged = LinearStats.merge_many(cols, [empties[0], *summaries[:2], empties[1], *summaries[2:]])
    assert_near_exact(merged, rows)
    assert merged.null_rows == 2
    # a float64 summary among double-double ones: the result is float64, as with +=
    mixed = LinearStats.merge_many(cols, [*summaries[:3], summaries[3].to_float64()])
    folded = LinearStats(cols)
    for s in [*summaries[:3], summaries[3].to_float64()]:
        folded += s
    assert mixed.precision == "float64" and mixed == folded
    # nothing to merge: empty statistics; one summary: itself
    assert LinearStats.merge_many(cols, []) == LinearStats(cols)
    assert LinearStats.merge_many(cols, summaries[:1]) == summaries[0]
    with pytest.raises(ValueError, match="different columns"):
        LinearStats.merge_many(cols, [summaries[0], LinearStats(["a", "b", "c", "d"])])


@pytest.mark.parametrize("seed", range(4))
def test_float64_merge_many_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(300, 5)) * [1, 10, 1e3, 1e-3, 1] + [0, 1e4, -3e5, 0, 7]
    cuts = np.sort(rng.choice(np.arange(1, 300), size=6, replace=False))
    cols = [f"c{i}" for i in range(5)]
    merged = LinearStats.merge_many(cols, [LinearStats.from_rows(cols, p) for p in np.split(z, cuts)])
    centered = z - z.mean(axis=0)
    assert merged.n == 300 and merged.precision == "float64"
    np.testing.assert_allclose(merged.mean, z.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(merged.comoment, centered.T @ centered, rtol=1e-10, atol=1e-9)



# -- Gaussian Naive Bayes: per class, the same pooled merge ---------------------------------------------------------

def gnb_dd_stats(features, rows, labels):
    """Double-double Gaussian NB statistics nearest to the exact per-class means and M2 of ``rows``."""
    from modelstore.stats.gaussian_nb import GaussianNBStats

    classes = sorted(set(labels))
    counts, mh, ml, sh, sl = [], [], [], [], []
    for c in classes:
        mine = [r for r, lab in zip(rows, labels) if lab == c]
        mean, C = exact_moments(mine)
        counts.append(len(mine))
        pairs = [_dd.from_fraction(m) for m in mean]
        mh.append([p[0] for p in pairs])
        ml.append([p[1] for p in pairs])
        pairs = [_dd.from_fraction(C[j][j]) for j in range(len(features))]
        sh.append([p[0] for p in pairs])
        sl.append([p[1] for p in pairs])
    return GaussianNBStats(features, classes, counts, mh, sh, 0, ml, sl)


@pytest.mark.parametrize("seed", range(6))
def test_gaussian_nb_merges_are_exact_to_u_squared(seed):
    from modelstore.stats.gaussian_nb import GaussianNBStats

    parts, rows = blocks(100 + seed, 2 + seed % 5, cols=3)
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, 3, size=len(rows))]
    cut = np.cumsum([0] + [len(p) for p in parts])
    features = ["a", "b", "c"]
    summaries = [gnb_dd_stats(features, p, labels[cut[i]:cut[i + 1]]) for i, p in enumerate(parts)]
    many = GaussianNBStats.merge_many(features, summaries)
    folded = GaussianNBStats(features)
    for s in summaries:
        folded += s
    assert family("gaussian_nb").sum(features, summaries) == many
    for merged in (many, folded):
        assert merged.precision == "double-double" and merged.classes == tuple(sorted(set(labels)))
        for i, c in enumerate(merged.classes):
            mine = [r for r, lab in zip(rows, labels) if lab == c]
            mean, C = exact_moments(mine)
            n = len(mine)
            assert merged.counts[i] == n
            for j in range(3):
                size = abs(float(mean[j])) + math.sqrt(float(C[j][j]) / n) + 1e-300
                got = Fraction(float(merged.means[i, j])) + Fraction(float(merged.means_lo[i, j]))
                assert abs(float(got - mean[j])) <= 1e-30 * size
                got = Fraction(float(merged.m2[i, j])) + Fraction(float(merged.m2_lo[i, j]))
                assert abs(float(got - C[j][j])) <= 1e-30 * n * size * size
    # float64 summaries: the same as numpy's per-class moments
    f64 = GaussianNBStats.merge_many(features, [s.to_float64() for s in summaries])
    for i, c in enumerate(f64.classes):
        mine = np.array([r for r, lab in zip(rows, labels) if lab == c])
        np.testing.assert_allclose(f64.means[i], mine.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(f64.m2[i], ((mine - mine.mean(axis=0)) ** 2).sum(axis=0), rtol=1e-6,
                                   atol=1e-12 * float(np.max(np.abs(mine))) ** 2 * len(mine))
