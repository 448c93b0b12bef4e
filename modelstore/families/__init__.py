"""Model families: each one object that says everything the rest of modelstore asks of it
(:class:`~modelstore.families._base.Family`; docs/architecture.md, "Adding a family").

Adding a family: its statistics in :mod:`modelstore.stats`, its model in :mod:`modelstore.models`,
a module here with its :class:`Family`, and one line in :data:`FAMILIES`.
"""

from __future__ import annotations

from modelstore.errors import InputError
from modelstore.families._base import Family
from modelstore.families.linear import LINEAR
from modelstore.families.logistic import LOGISTIC
from modelstore.families.naive_bayes import GAUSSIAN_NB, MULTINOMIAL_NB
from modelstore.families.sgd import SGD_LINEAR, SGD_LOGISTIC, SGD_SVM

#: every family of this release, by kind
FAMILIES: dict[str, Family] = {f.kind: f for f in (LINEAR, GAUSSIAN_NB, MULTINOMIAL_NB, LOGISTIC, SGD_LOGISTIC,
                                                   SGD_SVM, SGD_LINEAR)}

#: the model language's model_type names
MODEL_TYPES: dict[str, str] = {name: f.kind for f in FAMILIES.values() for name in f.model_types}


def family(kind) -> Family:
    """The family of ``kind``; an :class:`InputError` naming the kinds there are otherwise."""
    try:
        return FAMILIES[kind]
    except (KeyError, TypeError):
        raise InputError(f"kind must be one of {sorted(FAMILIES)}, got {kind!r} instead") from None


def statistics_family(stats) -> Family:
    """The family whose statistics class ``stats`` is."""
    for f in FAMILIES.values():
        if f.statistics is not None and isinstance(stats, f.statistics):
            return f
    raise TypeError(f"unknown statistics {type(stats).__name__}")


__all__ = ["FAMILIES", "MODEL_TYPES", "Family", "family", "statistics_family"]
