"""Models solved from sufficient statistics (paper §3.1): exactly the from-scratch fit.

Each model is built by ``Model.from_stats(stats, ...)`` from a statistics object of
:mod:`modelstore.stats`, exposes scikit-learn's fitted attributes (``coef_``, ``classes_``,
``theta_``, ...), predicts from arrays or DataFrames, and round-trips through ``to_state()`` /
``from_state()`` (strict JSON) so that the catalog can serve it without its statistics.
"""

from modelstore.models.linear import LinearRegression
from modelstore.models.naive_bayes import GaussianNB, MultinomialNB

#: the model class of each statistics family
MODELS = {
    "linear": LinearRegression,
    "gaussian_nb": GaussianNB,
    "multinomial_nb": MultinomialNB,
}

__all__ = ["MODELS", "GaussianNB", "LinearRegression", "MultinomialNB"]
