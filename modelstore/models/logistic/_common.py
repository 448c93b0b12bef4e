"""What a chunk model and the mixture share: the penalty λ, labels, a chunk's bounds as JSON, and scores.

A private module of :mod:`modelstore.models.logistic`; its names are public to the package only.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from decimal import Decimal

import numpy as np
import pandas as pd

from modelstore.errors import InputError
from modelstore.models._input import feature_matrix

#: λ of F(w) = mean log-loss + λ‖w‖² (:mod:`~modelstore.models.logistic.chunk` says why this value)
DEFAULT_L2 = 1e-4

#: the layout of a chunk's and a mixture's ``to_state()``: ``from_state`` refuses a newer one
STATE_VERSION = 1


def check_l2(l2) -> float:
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not math.isfinite(float(l2)) or l2 <= 0:
        raise InputError(
            f"l2 (the penalty λ of logistic regression) must be a finite number > 0, got {l2!r} instead; "
            f"with l2 = 0 a chunk whose classes are separable has no finite model (the default is {DEFAULT_L2})"
        )
    return float(l2)


def plain(value):
    """A numpy scalar as the Python value it holds."""
    return value.item() if isinstance(value, np.generic) else value


def plain_bound(value):
    """An ordering value as a plain Python value (numpy/pandas timestamps as datetimes)."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return plain(value)


def describe_range(lo, hi) -> str:
    if lo is None and hi is None:
        return "the chunk"
    return f"the chunk [{show(lo)}, {show(hi)}]"


def show(v) -> str:
    return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v)


def encode_bound(value):
    """An ordering value as strict JSON; dates, timestamps and decimals are tagged so they come back."""
    value = plain_bound(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"a chunk's lo/hi must be finite, got {value!r} instead")
        return value
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"timestamp": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    raise InputError(f"a chunk's lo/hi must be a number, text, date or timestamp, got {value!r} instead")


def decode_bound(value):
    if isinstance(value, dict):
        (tag, text), = value.items()
        return {"decimal": Decimal, "timestamp": dt.datetime.fromisoformat, "date": dt.date.fromisoformat}[tag](text)
    return value


def decision(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """Raw scores: shape (n,) for two classes (log-odds of classes[1]), (n, K) otherwise."""
    scores = X @ coef.T + intercept
    return scores[:, 0] if coef.shape[0] == 1 else scores


def predict_index(scores: np.ndarray) -> np.ndarray:
    return (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)


def as_matrix(X) -> tuple[np.ndarray, list[str]]:
    """Training input as a finite float matrix and its feature names (a DataFrame's, else x1…xd)."""
    if isinstance(X, pd.DataFrame):
        features = [str(c) for c in X.columns]
        return feature_matrix(X.set_axis(features, axis=1), features), features
    shape = np.shape(X)
    if len(shape) != 2:
        raise InputError(f"X must be 2-D (rows × features), got shape {shape} instead")
    features = [f"x{i}" for i in range(1, shape[1] + 1)]
    return feature_matrix(X, features), features
