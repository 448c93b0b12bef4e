"""Sufficient statistics, one module per model family (paper §3.1).

Each statistic is a small object that supports ``a + b`` and ``a - b`` exactly (the pairwise
formulas of Chan, Golub & LeVeque), knows the single SQL aggregate that computes it inside
PostgreSQL (:func:`aggregate_query`), and rebuilds itself from a result row or a catalog row.
"""

from modelstore.stats.gaussian_nb import GaussianNBStats
from modelstore.stats.linear import LinearStats
from modelstore.stats.multinomial_nb import MultinomialNBStats

#: the statistics class of each family; a family is what a stored row can serve
FAMILIES = {
    "linear": LinearStats,
    "gaussian_nb": GaussianNBStats,
    "multinomial_nb": MultinomialNBStats,
}

__all__ = ["FAMILIES", "GaussianNBStats", "LinearStats", "MultinomialNBStats"]
