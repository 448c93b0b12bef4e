"""Input helpers shared by the models: feature matrices from arrays or DataFrames, JSON-safe floats,
parameter checks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd

from modelstore.errors import ColumnTypeError, InputError, NonFiniteValueError, UnknownColumnError

def feature_matrix(X, features: Sequence[str]) -> np.ndarray:
    """``X`` as a finite float matrix with one column per entry of ``features``.

    A pandas DataFrame is matched by column name (order and extra columns do not matter); anything
    else must be 2-D with exactly ``len(features)`` columns, in the model's order.
    """
    features = list(features)
    if isinstance(X, pd.DataFrame):
        missing = [f for f in features if f not in X.columns]
        if missing:
            raise UnknownColumnError(
                f"X is missing the feature column(s) {missing!r}; the model needs {features!r}, "
                f"got columns {list(X.columns)!r} instead"
            )
        frame = X.loc[:, features]
        bad = [f for f in features if not (pd.api.types.is_numeric_dtype(frame[f]) or pd.api.types.is_bool_dtype(frame[f]))]
        if bad:
            raise ColumnTypeError(f"feature column(s) {bad!r} must be numeric, got dtypes {[str(frame[f].dtype) for f in bad]!r} instead")
        arr = np.ascontiguousarray(frame.to_numpy(dtype=float, na_value=np.nan))
    else:
        if isinstance(X, pd.Series):
            raise InputError("X must be 2-D (rows × features), got a pandas Series instead; use a DataFrame or X.to_frame().T")
        try:
            arr = np.asarray(X, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ColumnTypeError(f"X must hold numbers only: {exc}") from exc
        if arr.ndim != 2:
            raise InputError(
                f"X must be 2-D (rows × features), got an array of shape {arr.shape} instead; "
                f"for a single row use [row] or np.reshape(row, (1, -1))"
            )
        if arr.shape[1] != len(features):
            raise InputError(f"X must have {len(features)} columns {features!r}, got {arr.shape[1]} instead")
    if not np.isfinite(arr).all():
        bad = [f for f, ok in zip(features, np.isfinite(arr).all(axis=0)) if not ok]
        raise NonFiniteValueError(f"X holds NaN, NULL or ±Infinity in column(s) {bad!r}")
    return arr


def encode_floats(value):
    """A float, list or array as JSON-safe values: NaN → None, ±inf → "inf"/"-inf" (strict JSON, jsonb)."""
    if isinstance(value, np.ndarray):
        return [encode_floats(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [encode_floats(v) for v in value]
    if type(value) is float and math.isfinite(value):  # the common case, without the abstract-class check below
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    v = float(value)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def decode_floats(value, shape=None) -> np.ndarray:
    """The inverse of :func:`encode_floats`, as a float array (of ``shape`` if given)."""

    def one(v):
        if v is None:
            return math.nan
        if isinstance(v, str):
            return float(v)
        if isinstance(v, list):
            return [one(x) for x in v]
        return float(v)

    arr = np.asarray(one(value), dtype=float)
    return arr.reshape(shape) if shape is not None else arr


def decode_float(value) -> float:
    return float(decode_floats(value))


def check_name(name) -> str | None:
    if name is not None and not isinstance(name, str):
        raise InputError(f"name must be a string or None, got {name!r} instead")
    return name


def check_nonnegative(what: str, value) -> float:
    """A finite float ≥ 0, or an InputError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a finite number >= 0, got {value!r} instead")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{what} must be a finite number >= 0, got {value!r} instead")
    return value


def labels_array(labels) -> np.ndarray:
    """Class labels as scikit-learn holds them in ``classes_`` (the numpy array of np.unique(y))."""
    labels = list(labels)
    kinds = {type(v) for v in labels}
    if len(kinds) > 1 and not kinds <= {int, float}:
        return np.array(labels, dtype=object)
    return np.asarray(labels)
