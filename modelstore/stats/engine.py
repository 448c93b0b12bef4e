"""Which engine computes statistics inside PostgreSQL: the ``modelstore_stats`` C aggregate or the
standard SQL aggregates (DESIGN §5; docs/statistics.md, "Engines").

``c``: the extension is installed in the database (``CREATE EXTENSION modelstore_stats``, done by the
migrations when the server has it, or ``modelstore install-extension``): one transition call per row,
double-double sums. ``sql``: ``avg`` and ``regr_sxy`` (float64, Youngs–Cramer), everywhere else.

``MODELSTORE_STATS_ENGINE`` chooses: ``auto`` (the default: ``c`` when installed), ``sql`` (never the
extension), ``c`` (the extension, or an error saying it is missing).
"""

from __future__ import annotations

import os
import weakref

import psycopg

from modelstore.errors import InputError

ENV = "MODELSTORE_STATS_ENGINE"
EXTENSION = "modelstore_stats"

#: what each engine is called in EXPLAIN and in a model's plan
DESCRIPTIONS = {
    "c": "modelstore_stats C aggregate (double-double)",
    "sql": "SQL aggregates avg/regr_sxy (float64)",
}

_cache: "weakref.WeakKeyDictionary[psycopg.Connection, tuple[str, str]]" = weakref.WeakKeyDictionary()


def requested() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "c", "sql"):
        raise InputError(f"{ENV} must be 'auto', 'c' or 'sql', got {value!r}")
    return value


def installed_schema(conn: psycopg.Connection) -> str | None:
    """The schema the extension is installed in, or None."""
    row = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_catalog.pg_extension WHERE extname = %s",
                       [EXTENSION]).fetchone()
    return None if row is None else row[0].strip('"')


def engine(conn: psycopg.Connection) -> tuple[str, str]:
    """(engine, schema of the extension's functions) for this connection; looked up once per connection
    (:func:`forget` after installing or dropping the extension)."""
    want = requested()
    key = (want,)
    hit = _cache.get(conn)
    if hit is not None and hit[0] == key:
        return hit[1]
    schema = None if want == "sql" else installed_schema(conn)
    if want == "c" and schema is None:
        raise InputError(f"{ENV}=c but the {EXTENSION} extension is not installed in this database; "
                         f"run `modelstore install-extension` (or unset {ENV})")
    result = ("c", schema) if schema is not None else ("sql", "")
    _cache[conn] = (key, result)
    return result


def forget(conn: psycopg.Connection | None = None) -> None:
    if conn is None:
        _cache.clear()
    else:
        _cache.pop(conn, None)
