"""Range partitions on the ordering column: each partition's bounds as a range of that column
(docs/scale-out.md, "Statistics per partition").

A table range-partitioned on its ordering column (as pg_partman creates them) holds in each partition
exactly the rows of one half-open range ``[FROM, TO)``. On integer, date and timestamp columns that is
the closed range ``[FROM, TO − 1 step]`` (step: 1, one day, one microsecond — PostgreSQL's resolution),
the shape stored statistics have (paper §3: a stored model is a summary of one closed range), so a
whole partition is a natural stored model; and a change on one shard can only touch the summaries
whose range meets its partition's.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal

import psycopg

from modelstore.request.descriptor import Range
from modelstore.request.source import Table

#: the step below an exclusive upper bound, per ordering kind ('number' has none: no closed form)
_STEPS = {"integer": 1, "date": dt.timedelta(days=1), "timestamp": dt.timedelta(microseconds=1),
          "timestamptz": dt.timedelta(microseconds=1)}

#: ordering kinds whose range partitions have a closed form, so that a whole partition can be a stored model
CLOSED_KINDS = frozenset(_STEPS)

_BOUND = re.compile(r"^FOR VALUES FROM \((.+)\) TO \((.+)\)$")


@dataclass(frozen=True)
class PartitionBounds:
    """One direct partition of a table range-partitioned on the ordering column."""

    oid: int
    name: str  # schema-qualified, for EXPLAIN
    lo: object | None  # FROM, inclusive (None: MINVALUE)
    hi: object | None  # TO, exclusive (None: MAXVALUE)
    closed: Range | None  # [FROM, TO − 1 step] when both bounds are finite and the kind has a step


def _value(text: str, kind: str):
    """A bound literal as PostgreSQL prints it (``0``, ``'2024-01-01'``, ``MINVALUE``) → a Python value."""
    text = text.strip()
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    if text.startswith("'") and text.endswith("'"):
        text = text[1:-1].replace("''", "'")
    if kind == "integer":
        return int(text)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind in ("timestamp", "timestamptz"):
        return dt.datetime.fromisoformat(text)
    # a 'number' bound: exact (no closed form of [FROM, TO), but bounds for overlap); ±Infinity, NaN: none
    try:
        value = Decimal(text)
    except ArithmeticError:  # not a plain number: treated as unbounded (only ever over-invalidates)
        return None
    return value if value.is_finite() else None


def range_partitions(conn: psycopg.Connection, table: Table, order_by: str, kind: str) -> list[PartitionBounds]:
    """The direct partitions of ``table`` with their bounds, when it is partitioned by ``RANGE (order_by)``
    (one column); otherwise an empty list. A DEFAULT partition has no bounds and is left out."""
    if table.kind != "p":
        return []
    row = conn.execute(
        "SELECT pt.partstrat = 'r' AND pt.partnatts = 1 AND a.attname = %s "
        "FROM pg_catalog.pg_partitioned_table AS pt "
        "LEFT JOIN pg_catalog.pg_attribute AS a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0] "
        "WHERE pt.partrelid = %s::oid", [order_by, table.oid]).fetchone()
    if not row or not row[0]:
        return []
    out = []
    for oid, name, bound in conn.execute(
            "SELECT c.oid, c.oid::regclass::text, pg_catalog.pg_get_expr(c.relpartbound, c.oid) "
            "FROM pg_catalog.pg_inherits AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::oid ORDER BY c.oid", [table.oid]).fetchall():
        match = _BOUND.match(bound or "")
        if not match:
            continue
        try:
            lo, hi = _value(match.group(1), kind), _value(match.group(2), kind)
        except ValueError:  # ±infinity dates and timestamps, a DateStyle Python cannot read: unbounded
            lo = hi = None
        closed = None
        if lo is not None and hi is not None and kind in _STEPS and lo < hi:
            closed = Range(lo, hi - _STEPS[kind])
        out.append(PartitionBounds(oid, name, lo, hi, closed))
    return sorted(out, key=lambda p: (p.lo is not None, p.lo if p.lo is not None else 0))


def overlaps(a: Range, b: Range) -> bool:
    """Whether two ranges share a value (either end open or closed)."""
    lo_ok = a.hi > b.lo or (a.hi == b.lo and a.hi_closed and b.lo_closed)
    hi_ok = b.hi > a.lo or (b.hi == a.lo and b.hi_closed and a.lo_closed)
    return lo_ok and hi_ok


def contains(outer: Range, inner: Range) -> bool:
    """Whether every value of ``inner`` is in ``outer``."""
    lo_ok = outer.lo < inner.lo or (outer.lo == inner.lo and (outer.lo_closed or not inner.lo_closed))
    hi_ok = inner.hi < outer.hi or (outer.hi == inner.hi and (outer.hi_closed or not inner.hi_closed))
    return lo_ok and hi_ok


def _gap(lo, lo_closed: bool, hi, hi_closed: bool, kind: str) -> Range | None:
    """The range between two cuts, closed where the kind has a step; None when it holds no value."""
    if kind in _STEPS:
        lo = lo if lo_closed else lo + _STEPS[kind]
        hi = hi if hi_closed else hi - _STEPS[kind]
        return Range(lo, hi) if lo <= hi else None
    if lo < hi or (lo == hi and lo_closed and hi_closed):
        return Range(lo, hi, lo_closed, hi_closed)
    return None


def split(r: Range, pieces: list[Range], kind: str) -> list[Range]:
    """``r`` cut at the given non-overlapping sub-ranges of it: the pieces and the gaps between them,
    in order (gaps without a value of the ``kind`` left out); together exactly ``r``."""
    if not pieces:
        return [r]
    out: list[Range] = []
    lo, lo_closed = r.lo, r.lo_closed
    for p in sorted(pieces, key=lambda p: (p.lo, not p.lo_closed)):
        gap = _gap(lo, lo_closed, p.lo, not p.lo_closed, kind)
        out += [gap] if gap is not None else []
        out.append(p)
        lo, lo_closed = p.hi, not p.hi_closed
    tail = _gap(lo, lo_closed, r.hi, r.hi_closed, kind)
    return out + ([tail] if tail is not None else [])
