"""The model row's JSON (modelstore.catalog.records.json_value): one json.dumps, the same document as
dumping the recursive JSON-safe copy (_jsonable)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np



def test_json_value_equals_the_jsonable_copy():
    """One json.dumps straight from the object gives what dumping :func:`_jsonable`'s copy gives, and falls
    back to that copy for what JSON cannot say (NaN, ±inf, numpy arrays holding them, non-string keys)."""
    import json

    from modelstore.catalog.records import _jsonable, json_value

    cases = [
        {"a": 1, "b": [1.5, 2, None, True], "c": (1, 2), "d": {"e": "x"}},
        {"arr": np.arange(6.0).reshape(2, 3), "i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True)},
        {"nan": float("nan"), "inf": [1.0, float("-inf")], "nested": {"x": np.array([1.0, np.nan])}},
        {"tuple_key": {(1, 2): 3}, "int_key": {4: "four"}, "obj": Fraction(1, 3)},
        [np.float64(2.5), {"k": np.array([], dtype=float)}],
    ]
    for obj in cases:
        got = json_value(obj)
        assert json.loads(got.dumps(got.obj)) == json.loads(json.dumps(_jsonable(obj), allow_nan=False))
