"""Class labels of the Naive Bayes statistics: normalised, sorted, aligned between two summaries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal


def normalize_label(value):
    """A class label as a JSON-storable Python value (int, float, str or bool)."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"class labels must be numbers, booleans or text, got {type(value).__name__} instead")


def sorted_labels(labels) -> tuple:
    """Labels in scikit-learn's order (``np.unique``: ascending)."""
    return tuple(sorted(set(labels)))
