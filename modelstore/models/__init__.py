"""Models solved from sufficient statistics (paper §3.1): exactly the from-scratch fit.

Each model is built by ``Model.from_stats(stats, ...)`` from a statistics object of
:mod:`modelstore.stats`, exposes scikit-learn's fitted attributes (``coef_``, ``classes_``,
``theta_``, ...), predicts from arrays or DataFrames, and round-trips through ``to_state()`` /
``from_state()`` (strict JSON) so that the catalog can serve it without its statistics. The model
class of each family is the registry's (``modelstore.families.FAMILIES[kind].model_class``).
"""

from modelstore.models.linear import LinearRegression
from modelstore.models.naive_bayes import GaussianNB, MultinomialNB

__all__ = ["GaussianNB", "LinearRegression", "MultinomialNB"]
