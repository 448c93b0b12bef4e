"""The SPI adapter binds parameters as psycopg does: the text it sends PL/Python reads back, in
PostgreSQL, as the same values as psycopg's own client-side binding (``ClientCursor``), the reference."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.adapt import Transformer
from psycopg.types.json import Jsonb

from modelstore.doors.spi import SpiConnection, bind

VALUES = [
    None, 0, -7, 2**70, 1.5, float("nan"), float("inf"), True, "it's a \\ backslash; --", "", "%s", "%%",
    "ünïcødé ☃", b"\x00\xff'\\", decimal.Decimal("1.10"), dt.date(2024, 2, 29),
    dt.datetime(2024, 1, 1, 5, 6, 7, 500),
    dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.timedelta(days=1, seconds=3),
    uuid.UUID(int=5), [1, 2, None], [1.5, 2.0], ["a", "b'", None], [[1, 2], [3, 4]], Jsonb({"a": [1, "x'"]}),
]

QUERIES = [
    *[("SELECT %s AS v", [v]) for v in VALUES],
    ("SELECT %(a)s::text AS a, %(a)s::text || 'x' AS b, %(b)t AS c, %(c)b AS d", {"a": "q'", "b": 1, "c": 2.5}),
    ("SELECT 7 %% 3 AS m, %s AS p, '100%%' AS t", ["%"]),
    ("SELECT '100%%' AS kept", None),  # without parameters the text is left as it is, as psycopg does
    (sql.SQL("SELECT {} AS {}, %s AS p").format(sql.Literal("l'"), sql.Identifier("a b")), ("r",)),
    (sql.SQL("SELECT {} AS n").format(sql.Placeholder("n")), {"n": 4}),
]


@pytest.fixture(scope="module")
def conn(module_dsn):
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        yield conn


def _render(query, params) -> str:
    spi = SpiConnection(plpy=None)  # rendering never reaches plpy
    return spi._render(query, params)


@pytest.mark.parametrize("query, params", QUERIES)
def test_bound_text_reads_back_as_psycopgs_client_side_binding(conn, query, params):
    with psycopg.ClientCursor(conn) as cur:
        expected = cur.execute(query, params).fetchall()
    assert repr(conn.execute(_render(query, params)).fetchall()) == repr(expected)  # repr: NaN equals NaN


@pytest.mark.parametrize("query, params", [
    ("SELECT %s", []), ("SELECT %s", [1, 2]), ("SELECT %(a)s", {}), ("SELECT %s, %(a)s", [1, 2]),
    ("SELECT % s", [1]), ("SELECT %x", [1]), ("SELECT %(a", {"a": 1}), ("SELECT %s", {"a": 1}), ("SELECT %(a)s", [1]),
])
def test_malformed_placeholders_raise_as_psycopg_does(conn, query, params):
    with pytest.raises((psycopg.ProgrammingError, TypeError)) as expected:
        psycopg.ClientCursor(conn).mogrify(query, params)
    with pytest.raises(expected.type, match="placeholder|parameter|mapping|sequence"):
        bind(query, params, Transformer(SpiConnection(plpy=None)))
