"""Workloads (paper §6): query sets and materialised-model placements for a target coverage.

A query is a closed range [lo, hi] of ``id`` (1…N). Its size is drawn from the figure's
distribution — N(50K, 12.5K) for Figs. 2, 3, 5, uniform for Fig. 4 — and its position uniformly
among the positions where it fits ("a range of data points positioned anywhere across the data").

Coverage is the paper's: |D₁ ∪ … ∪ Dₙ| / |D|. A placement draws models of the given size
distribution at uniform positions (overlaps allowed: models "spread uniformly across the data
set") until the union reaches the target coverage. Placements are *nested*: the models for 40%
are the models for 20% plus more, so one catalog grows through the coverage levels of a figure and
each model is fitted once. Every workload comes from its own seeded generator named by a tag, so
adding one experiment does not change another's queries.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Sampler = Callable[[np.random.Generator], int]


@dataclass(frozen=True)
class Query:
    lo: int
    hi: int

    @property
    def rows(self) -> int:
        return self.hi - self.lo + 1

    def to_json(self) -> list[int]:
        return [self.lo, self.hi]


def rng_for(seed: int, tag: str) -> np.random.Generator:
    """A generator for one workload, independent of every other tag's."""
    return np.random.default_rng([seed, zlib.crc32(tag.encode())])


def normal_size(mean: float, sd: float, rows: int, minimum: int = 2) -> Sampler:
    """Sizes ~ N(mean, sd), clipped to [minimum, rows]."""
    return lambda rng: int(np.clip(round(rng.normal(mean, sd)), minimum, rows))


def uniform_size(lo: float, hi: float, rows: int, minimum: int = 2) -> Sampler:
    """Sizes ~ U(lo, hi), clipped to [minimum, rows]."""
    return lambda rng: int(np.clip(round(rng.uniform(lo, hi)), minimum, rows))


def fixed_size(size: int, rows: int) -> Sampler:
    size = int(np.clip(size, 1, rows))
    return lambda rng: size


def place(rng: np.random.Generator, size: int, rows: int) -> Query:
    """A range of ``size`` rows at a uniform position in 1…rows."""
    lo = int(rng.integers(1, rows - size + 2))
    return Query(lo, lo + size - 1)


def queries(seed: int, tag: str, n: int, sizes: Sampler, rows: int) -> list[Query]:
    """``n`` queries of sizes drawn from ``sizes``, each at a uniform position."""
    rng = rng_for(seed, tag)
    return [place(rng, sizes(rng), rows) for _ in range(n)]


def any_ranges(seed: int, tag: str, n: int, rows: int) -> list[Query]:
    """``n`` ranges with both endpoints uniform over the table ("any range")."""
    rng = rng_for(seed, tag)
    out = []
    for _ in range(n):
        a, b = sorted(int(v) for v in rng.integers(1, rows + 1, size=2))
        out.append(Query(a, max(b, a + 1)) if a < rows else Query(rows - 1, rows))
    return out


@dataclass(frozen=True)
class Placement:
    """Materialised models in the order they are fitted, and how many of them each coverage needs."""

    models: tuple[Query, ...]
    prefix: dict  # target coverage → number of leading models
    achieved: dict  # target coverage → the coverage those models actually reach

    def upto(self, coverage: float) -> tuple[Query, ...]:
        return self.models[: self.prefix[coverage]]

    def to_json(self) -> dict:
        return {"models": len(self.models),
                "per_coverage": {f"{c:g}": {"models": self.prefix[c], "coverage": self.achieved[c]}
                                 for c in self.prefix}}


def placement(seed: int, tag: str, coverages: Sequence[float], sizes: Sampler, rows: int,
              max_models: int = 1_000_000) -> Placement:
    """Nested placements reaching each of ``coverages`` (fractions in [0, 1))."""
    rng = rng_for(seed, tag)
    covered = np.zeros(rows + 1, dtype=bool)  # index 0 unused: ids are 1-based
    count = 0
    models: list[Query] = []
    prefix, achieved = {}, {}
    for target in sorted(coverages):
        if not 0.0 <= target < 1.0:
            raise ValueError(f"coverage must be in [0, 1), got {target!r} instead")
        while count < target * rows:
            if len(models) >= max_models:
                raise RuntimeError(f"{max_models} models do not reach {target:.0%} coverage")
            q = place(rng, sizes(rng), rows)
            models.append(q)
            span = covered[q.lo : q.hi + 1]
            count += int(span.size - np.count_nonzero(span))
            span[:] = True
        prefix[target] = len(models)
        achieved[target] = count / rows
    return Placement(tuple(models), prefix, achieved)


def coverage_of(ranges: Sequence[Query], rows: int) -> float:
    """|∪ ranges| / rows."""
    covered = np.zeros(rows + 1, dtype=bool)
    for q in ranges:
        covered[q.lo : q.hi + 1] = True
    return float(np.count_nonzero(covered[1:])) / rows


def size_bins(sizes: Sequence[int], bins: int) -> list[tuple[int, int, list[int]]]:
    """Queries in increasing order of size, cut into ``bins`` groups of about equal count:
    (smallest, largest, indices) per group — the x-axis of the paper's Figs. 6–7."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    groups = [g for g in np.array_split(np.array(order, dtype=int), min(bins, len(order))) if g.size]
    return [(int(sizes[g[0]]), int(sizes[g[-1]]), [int(i) for i in g]) for g in groups]
