"""Windows: the moving range of rows a deployed model is the exact model of.

A deployment's model is at every moment the exact model of the committed rows in its window
(continuous deployment, Derakhshan et al. §3: the model follows the stream; here exactly, because the
sufficient statistics of linear and Naive Bayes models add and subtract). Three kinds:

* ``None`` / ``'all'``: every row — the range [first, last] ordering value;
* ``100_000`` / ``'100000 rows'``: the last N rows — [v, last], where v is the N-th largest ordering
  value (rows that tie with it are all in the window, so a non-unique ordering column may give more
  than N rows; rows with a NULL ordering value are never in any range);
* ``'30 days'`` (or a :class:`datetime.timedelta`): the last interval of a date or timestamp ordering
  column — [anchor − interval, last], where the anchor is the newest row's ordering value
  (``anchor='newest'``, the default: the window moves only when rows arrive, so a quiet table keeps
  its model) or the clock (``anchor='now'``: rows slide out as time passes, and the worker refreshes
  such deployments on a schedule as well as on writes).

A window resolves to a closed range (``lo``, ``hi``) on the ordering column; the store plans that range
like any request (stored statistics, the statistics index, gap scans), so the refresh reads only the
rows that entered or left the window since the stored summary of the previous one.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from modelstore.errors import RangeError, WindowError

#: interval units PostgreSQL accepts, by their singular name (plural and abbreviations below)
UNITS = {
    "microsecond": "microseconds", "millisecond": "milliseconds", "second": "seconds", "minute": "minutes",
    "hour": "hours", "day": "days", "week": "weeks", "month": "months", "year": "years",
}
_ABBREVIATIONS = {"us": "microsecond", "ms": "millisecond", "s": "second", "sec": "second", "secs": "second",
                  "min": "minute", "mins": "minute", "h": "hour", "hr": "hour", "hrs": "hour", "d": "day",
                  "w": "week", "mon": "month", "mons": "month", "y": "year", "yr": "year", "yrs": "year"}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")
_ROWS = re.compile(r"^\s*(\d+)\s*rows?\s*$")
TIME_KINDS = ("date", "timestamp", "timestamptz")


@dataclass(frozen=True)
class Window:
    """A parsed window: ``kind`` 'all', 'rows' (``rows``) or 'interval' (``interval``, PostgreSQL text)."""

    kind: str
    rows: int | None = None
    interval: str | None = None
    anchor: str = "newest"

    def __str__(self) -> str:
        if self.kind == "all":
            return "every row"
        if self.kind == "rows":
            return f"the last {self.rows} rows"
        return f"the last {self.interval} (from the {'newest row' if self.anchor == 'newest' else 'clock'})"

    @property
    def moves_with_time(self) -> bool:
        return self.kind == "interval" and self.anchor == "now"


def parse_window(window, anchor: str = "newest") -> Window:
    """``None``/'all', a positive row count (int or 'N rows'), or an interval ('30 days', timedelta)."""
    if anchor not in ("newest", "now"):
        raise WindowError(f"window_anchor must be 'newest' or 'now', got {anchor!r} instead")
    if window is None or (isinstance(window, str) and window.strip().lower() in ("all", "")):
        return Window("all", anchor=anchor)
    if isinstance(window, bool):
        raise WindowError(f"window must be None/'all', a row count or an interval, got {window!r} instead")
    if isinstance(window, int):
        return Window("rows", rows=_positive_rows(window), anchor=anchor)
    if isinstance(window, dt.timedelta):
        if window <= dt.timedelta(0):
            raise WindowError(f"a time window must be positive, got {window!r} instead")
        return Window("interval", interval=f"{window.total_seconds()!r} seconds", anchor=anchor)
    if not isinstance(window, str):
        raise WindowError(f"window must be None/'all', a row count or an interval, got {window!r} instead")
    text = window.strip().lower()
    rows = _ROWS.match(text)
    if rows:
        return Window("rows", rows=_positive_rows(int(rows.group(1))), anchor=anchor)
    match = _INTERVAL.match(text)
    if not match:
        raise WindowError(f"window must look like '30 days', '100000 rows' or 'all', got {window!r} instead")
    amount, unit = match.groups()
    unit = _ABBREVIATIONS.get(unit, unit)
    singular = unit[:-1] if unit.endswith("s") and unit[:-1] in UNITS else unit
    if singular not in UNITS:
        raise WindowError(f"window {window!r} has an unknown unit {unit!r}; units: {', '.join(UNITS)} "
                          f"(or a row count: '{amount} rows')")
    if float(amount) <= 0:
        raise WindowError(f"a time window must be positive, got {window!r} instead")
    return Window("interval", interval=f"{amount} {UNITS[singular]}", anchor=anchor)


def _positive_rows(n: int) -> int:
    if n <= 0:
        raise WindowError(f"a row window must hold at least 1 row, got {n} instead")
    return n


def check_window(window: Window, order_by: str, order_kind: str) -> None:
    """A time window needs a date or timestamp ordering column."""
    if window.kind == "interval" and order_kind not in TIME_KINDS:
        raise WindowError(f"a time window ({window.interval}) needs a date or timestamp ordering column; "
                          f"{order_by!r} is a number: give a row count (e.g. window=100000) or 'all'")


def resolve(conn: psycopg.Connection, table: sql.Composable, order_by: str, order_kind: str,
            window: Window, previous: tuple | None = None) -> tuple[object, object]:
    """The window's closed range (lo, hi) now, as Python values of the ordering column's type, by one
    statement (:func:`window_query`); raises RangeError when the window is empty."""
    count = None if previous is None else sql.Placeholder("w_count0")
    query, params = window_query(table, order_by, order_kind, window, previous and previous[:2], count)
    if previous is not None:
        params["w_count0"] = previous[2]
    lo, hi = conn.execute(query, params).fetchone()
    if previous is not None and lo is None:  # the incremental walk found nothing: from scratch
        query, params = window_query(table, order_by, order_kind, window)
        lo, hi = conn.execute(query, params).fetchone()
    return check_bounds(window, order_by, lo, hi)


def check_bounds(window: Window, order_by: str, lo, hi) -> tuple[object, object]:
    if hi is None:
        raise RangeError(f"the window ({window}) is empty: the table has no rows with a non-NULL {order_by!r}")
    if lo is None or lo > hi:
        raise RangeError(f"the window ({window}) holds no rows: the newest {order_by!r} is {hi}")
    return lo, hi


def window_query(table: sql.Composable, order_by: str, order_kind: str, window: Window,
                 previous: tuple | None = None, count: sql.Composable | None = None) -> tuple[sql.Composable, dict]:
    """One statement giving the window's (lo, hi), and its named parameters (``w_…``), to run alone or
    as a subquery of a larger statement (a refresh reads it with its state).

    One index probe each for the newest row and the lower end (put a btree index on the ordering
    column). A row window's lower end is the N-th newest value; from scratch that walks N index entries,
    so when ``previous`` = (lo₀, hi₀) and ``count`` (an SQL expression: the rows in [lo₀, hi₀], from the
    previous window's stored summary, kept exact by change capture) are known, it walks only the rows
    appended since: with A rows past hi₀ and T = count + A rows at or after lo₀, the N-th newest is the
    (T − N + 1)-th value from lo₀ up (T ≥ N), else the (N − T)-th below lo₀ (or the first row: fewer than
    N in all). lo is NULL when ``count`` is: the caller then asks again without ``previous``.
    """
    col = sql.Identifier(order_by)
    if window.kind == "rows" and previous is not None and count is not None:
        query = sql.SQL(
            "WITH a AS (SELECT {count}::bigint + count(*) AS total, max({c}) AS hi FROM {t} WHERE {c} > %(w_hi0)s) "
            "SELECT CASE WHEN a.total IS NULL THEN NULL WHEN a.total >= %(w_n)s "
            "THEN (SELECT {c} FROM {t} WHERE {c} >= %(w_lo0)s ORDER BY {c} "
            "      OFFSET (SELECT greatest(total - %(w_n)s, 0) FROM a) LIMIT 1) "
            "ELSE coalesce((SELECT {c} FROM {t} WHERE {c} < %(w_lo0)s ORDER BY {c} DESC "
            "               OFFSET (SELECT greatest(%(w_n)s - total - 1, 0) FROM a) LIMIT 1), "
            "              (SELECT min({c}) FROM {t})) END AS lo, coalesce(a.hi, %(w_hi0)s) AS hi FROM a"
        ).format(count=count, c=col, t=table)
        return query, {"w_lo0": previous[0], "w_hi0": previous[1], "w_n": window.rows}
    if window.kind == "rows":
        # fewer than N rows: all of them
        query = sql.SQL("SELECT coalesce((SELECT {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {c} DESC "
                        "OFFSET %(w_offset)s LIMIT 1), (SELECT min({c}) FROM {t})) AS lo, "
                        "(SELECT max({c}) FROM {t}) AS hi").format(c=col, t=table)
        return query, {"w_offset": window.rows - 1}
    if window.kind == "interval":
        anchor = sql.SQL("max({})").format(col) if window.anchor == "newest" else sql.SQL("now()")
        lo = sql.SQL("l")
        if order_kind == "date":  # the first date at or after the lower end
            lo = sql.SQL("CASE WHEN l::date = l THEN l::date ELSE l::date + 1 END")
        elif order_kind == "timestamp":
            lo = sql.SQL("l::timestamp")
        query = sql.SQL("SELECT {lo} AS lo, m AS hi FROM (SELECT {a} - %(w_interval)s::interval AS l, "
                        "max({c}) AS m FROM {t}) AS w").format(lo=lo, a=anchor, c=col, t=table)
        return query, {"w_interval": window.interval}
    return sql.SQL("SELECT min({c}) AS lo, max({c}) AS hi FROM {t}").format(c=col, t=table), {}
