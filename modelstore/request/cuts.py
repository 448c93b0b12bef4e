"""Cuts: the vertices of the planning graph (paper §5, Fig. 1b), with exact boundary conventions.

A *cut* is a position between values of the ordering column: just before v, ``Cut(v, 0)``, or just
after v, ``Cut(v, 1)``. Any range is the rows between two cuts — closed [a, b] is
``(before a, after b)``, half-open (a, b] is ``(after a, after b)`` — and ranges that share a cut meet
exactly, with neither a gap nor an overlap. A path of signed edges between cuts therefore sums to the
indicator of the request's rows (each edge adds or subtracts the rows between its cuts).

On discrete domains "just after v" and "just before the next value" are the same cut; normalising to
the latter makes [1, 10] and [11, 20] share a vertex instead of leaving an empty gap to scan:
integers (+1), dates (+1 day), timestamps (+1 µs, PostgreSQL's resolution). ``number`` columns
(numeric, float8) are dense, and their gaps are real.

On those discrete domains every normalised cut is "just before" a value, so the planner's array path
(docs/planner.md, "Round trips") names a cut by one whole number, its *whole key*: the value (integer),
the day number (date), or microseconds since 1970-01-01 (timestamp; since 1970-01-01 UTC for timestamptz,
so no session TimeZone enters it). The catalog keeps timestamps in seconds (:func:`bound_key`); a whole key
is the catalog's key times :data:`WHOLE_KEY_SCALE`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from modelstore.request.descriptor import _EPOCH, _EPOCH_TZ, Range, bound_key

_STEP = {"integer": 1, "date": dt.timedelta(days=1), "timestamp": dt.timedelta(microseconds=1),
         "timestamptz": dt.timedelta(microseconds=1)}

#: whole keys per unit of the catalog's key (bound_key), for the ordering kinds whose cuts have whole keys:
#: one step of the domain (a value, a day, a microsecond) is one whole key
WHOLE_KEY_SCALE = {"integer": 1, "date": 1, "timestamp": 1_000_000, "timestamptz": 1_000_000}
#: whole keys are held in int64 with room for "+ 1" (a request bounded by ±1e30 takes the object path)
_INT64_ROOM = 2**62


@dataclass(frozen=True, order=True)
class Cut:
    """Just before (side 0) or just after (side 1) ``value``; ordered and compared by (key, side)."""

    key: Decimal
    side: int
    value: object = field(default=None, compare=False)  # the ordering value, for SQL and display

    def __repr__(self) -> str:
        return f"Cut({'before' if self.side == 0 else 'after'} {self.value!r})"


def make_cut(value, side: int, order_kind: str) -> Cut:
    """The cut just before (0) or after (1) ``value``, normalised on discrete domains."""
    if side == 1 and order_kind in _STEP:
        value, side = value + _STEP[order_kind], 0
    return Cut(bound_key(value), side, value)


def range_cuts(r: Range, order_kind: str) -> tuple[Cut, Cut]:
    """(lower cut, upper cut) of a range."""
    return (make_cut(r.lo, 0 if r.lo_closed else 1, order_kind),
            make_cut(r.hi, 1 if r.hi_closed else 0, order_kind))


def cuts_range(lo: Cut, hi: Cut, order_kind: str) -> Range:
    """The range of rows between two cuts (lo < hi), written closed where the domain allows."""
    lo_value, lo_closed = lo.value, lo.side == 0
    hi_value, hi_closed = hi.value, hi.side == 1
    if order_kind in _STEP and not hi_closed:  # [a, b) on a discrete domain is [a, b − step]
        hi_value, hi_closed = hi_value - _STEP[order_kind], True
    return Range(lo_value, hi_value, lo_closed, hi_closed)


def is_empty(lo: Cut, hi: Cut) -> bool:
    return not lo < hi


def whole_key(cut: Cut, order_kind: str) -> int:
    """The whole key of a normalised cut on a discrete domain (exact: the catalog's key is a Decimal)."""
    return int(cut.key * WHOLE_KEY_SCALE[order_kind])


def whole_keys(s: Cut, t: Cut, order_kind: str) -> bool:
    """Whether the request between cuts ``s`` and ``t`` can be planned on whole keys in int64 (the array
    path): a discrete ordering kind, both cuts "just before" a value, keys well inside int64."""
    scale = WHOLE_KEY_SCALE.get(order_kind)
    if scale is None or s.side or t.side:
        return False
    return all(-_INT64_ROOM < c.key * scale < _INT64_ROOM and c.key * scale == int(c.key * scale) for c in (s, t))


def cut_at(key: int, order_kind: str) -> Cut:
    """The cut just before the value whose whole key is ``key`` (inverse of :func:`whole_key`); a
    timestamptz value comes back in UTC."""
    key = int(key)
    if order_kind == "integer":
        value = key
    elif order_kind == "date":
        value = _EPOCH.date() + dt.timedelta(days=key)
    elif order_kind in ("timestamp", "timestamptz"):
        value = (_EPOCH if order_kind == "timestamp" else _EPOCH_TZ) + dt.timedelta(microseconds=key)
    else:
        raise ValueError(f"{order_kind} ordering columns have no whole keys")
    return Cut(bound_key(value), 0, value)
