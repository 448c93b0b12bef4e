"""Sufficient statistics, one module per model family (paper §3.1).

Each statistic is a small object that supports ``a + b`` and ``a - b`` exactly (the pairwise
formulas of Chan, Golub & LeVeque), knows the single SQL aggregate that computes it inside
PostgreSQL (:func:`aggregate_query`), and rebuilds itself from a result row or a catalog row. The
statistics class of each family is the registry's (``modelstore.families.FAMILIES[kind].statistics``).
"""

from modelstore.stats.gaussian_nb import GaussianNBStats
from modelstore.stats.linear import LinearStats
from modelstore.stats.multinomial_nb import MultinomialNBStats

__all__ = ["GaussianNBStats", "LinearStats", "MultinomialNBStats"]
