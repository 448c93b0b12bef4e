"""Float arrays sent in binary (modelstore/catalog/wire.py): the server receives the same bits as the text path."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from modelstore.catalog.wire import Float8Array, float8_array

CASES = {
    "random": np.random.default_rng(11).normal(scale=1e6, size=121),
    "edges": np.array([0.0, -0.0, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308, 1 / 3, np.pi]),
    "non-finite": np.array([np.nan, np.inf, -np.inf, 1.0]),
    "one": np.array([42.5]),
    "empty": np.array([], dtype=float),
}


@pytest.mark.parametrize("name", CASES)
def test_a_float8_array_arrives_bit_for_bit(dsn, name):
    values = CASES[name]
    with psycopg.connect(dsn) as conn:
        # compared on the server against the text form of the same values (repr: shortest exact digits),
        # and read back in binary
        text = "{" + ",".join(repr(float(v)).replace("inf", "Infinity") for v in values) + "}"
        same, back, ndims = conn.execute(
            "SELECT %s::float8[] IS NOT DISTINCT FROM %s::float8[], %s::float8[], array_ndims(%s::float8[])",
            [Float8Array(values), text, Float8Array(values), Float8Array(values)], binary=True).fetchone()
    assert same
    assert np.array_equal(np.array(back, dtype=float).view(np.int64), values.view(np.int64))
    assert ndims == (None if values.size == 0 else 1)


def test_a_matrix_is_sent_flat_and_none_stays_null(dsn):
    matrix = np.arange(6, dtype=float).reshape(2, 3)
    with psycopg.connect(dsn) as conn:
        back, null = conn.execute("SELECT %s::float8[], %s::float8[]", [float8_array(matrix), float8_array(None)]
                                  ).fetchone()
    assert back == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and null is None
