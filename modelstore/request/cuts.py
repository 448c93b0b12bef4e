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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from modelstore.request.descriptor import Range, bound_key

_STEP = {"integer": 1, "date": dt.timedelta(days=1), "timestamp": dt.timedelta(microseconds=1),
         "timestamptz": dt.timedelta(microseconds=1)}


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
