"""Float arrays sent to PostgreSQL in binary (docs/planner.md, "Round trips": the Python side).

psycopg sends a Python list of floats as ``float8[]`` text: each value through ``repr`` and a quoting check on
the client, and parsed back on the server — about 1 ms for a 10-feature linear summary's four arrays (mean and
comoment, high and low parts of their double-double values), as much as the rest of the write. A
:class:`Float8Array` is dumped as the array's binary wire format built by numpy in one pass (the header, then
each value as a 4-byte length and a big-endian double): the same values bit for bit, NaN and ±inf included.

Only psycopg connections use it (the dumper is registered in psycopg's default adapters); callers that may
run over SPI (:mod:`modelstore.doors.spi`) keep plain lists.
"""

from __future__ import annotations

import struct

import numpy as np
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

#: pg_type oids of float8 and float8[]
FLOAT8_OID = 701
FLOAT8_ARRAY_OID = 1022

_ELEMENT = np.dtype([("length", ">i4"), ("value", ">f8")])


class Float8Array:
    """A one-dimensional float array to send as ``float8[]`` in binary (a parameter of a psycopg statement)."""

    __slots__ = ("values",)

    def __init__(self, values) -> None:
        self.values = np.ascontiguousarray(values, dtype=np.float64).ravel()

    def __len__(self) -> int:
        return self.values.size


class Float8ArrayBinaryDumper(Dumper):
    """``float8[]`` in PostgreSQL's binary array format: ndim, has-nulls, element oid, then (length, lower
    bound) per dimension, then each element as its byte length and value."""

    format = Format.BINARY
    oid = FLOAT8_ARRAY_OID

    def dump(self, obj: Float8Array) -> bytes:
        values = obj.values
        if values.size == 0:
            return struct.pack("!iiI", 0, 0, FLOAT8_OID)  # an empty array has no dimensions
        body = np.empty(values.size, dtype=_ELEMENT)
        body["length"] = 8
        body["value"] = values
        return struct.pack("!iiIii", 1, 0, FLOAT8_OID, values.size, 1) + body.tobytes()


psycopg.adapters.register_dumper(Float8Array, Float8ArrayBinaryDumper)


def float8_array(values) -> Float8Array | None:
    """``values`` (a sequence of floats, or None) as a binary ``float8[]`` parameter."""
    return None if values is None else Float8Array(values)


__all__ = ["Float8Array", "Float8ArrayBinaryDumper", "float8_array"]
