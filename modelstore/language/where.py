"""A MODEL query's WHERE clause as a descriptor: the range on the ordering column and the residual filter.

The top-level conjuncts of the WHERE clause that compare the ordering column with a constant
(``=``, ``<``, ``<=``, ``>``, ``>=``, ``BETWEEN``, either side) become the range; every other conjunct
stays in the residual filter, which :func:`modelstore.request.descriptor.normalize_filter` normalises, so that
``id BETWEEN 1 AND 10 AND region = 'EU'`` and ``region = 'EU' AND id >= 1 AND id <= 10`` are the same
descriptor and share stored statistics (paper §3.3). A conjunct under OR or NOT is not a range.

Descriptor ranges are closed. A strict bound is made closed exactly where the column's type has a
next value: integers and dates (± 1), timestamps (± 1 µs, PostgreSQL's resolution), ``double
precision`` / ``real`` (the next double). On ``numeric`` ordering columns a strict bound has no closed
equivalent and is refused, naming the conjunct.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from modelstore.request.descriptor import coerce_bound
from modelstore.errors import RangeError

_FLIP = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE, exp.EQ: exp.EQ}
_DATE_TYPES = {exp.DataType.Type.DATE}
_TIMESTAMP_TYPES = {exp.DataType.Type.TIMESTAMP, exp.DataType.Type.DATETIME, exp.DataType.Type.TIMESTAMPTZ,
                    exp.DataType.Type.TIMESTAMPLTZ}


@dataclass(frozen=True)
class Bounds:
    """The closed range the WHERE clause asks for (None = unbounded on that side), and the rest."""

    lo: object
    hi: object
    residual: exp.Expression | None  # the conjuncts that are not bounds on the ordering column


def split_where(where: exp.Expression | None, order_by: str, order_kind: str, order_type: str) -> Bounds:
    """Split a WHERE condition (identifiers already folded as PostgreSQL folds them) into bounds on
    ``order_by`` and the residual condition. ``order_type`` is the column's SQL type (format_type)."""
    lo = hi = None
    rest: list[exp.Expression] = []
    for conjunct in _conjuncts(where):
        bounds = _as_bounds(conjunct, order_by, order_kind, order_type)
        if bounds is None:
            rest.append(conjunct)
            continue
        for side, value in bounds:
            if side == "lo":
                lo = value if lo is None else max(lo, value)
            else:
                hi = value if hi is None else min(hi, value)
    if lo is not None and hi is not None and lo > hi:
        raise RangeError(f"the WHERE clause's range on {order_by!r} is empty (from {lo} to {hi}): no row can match")
    residual = exp.and_(*rest, copy=False) if rest else None
    return Bounds(lo, hi, residual)


def _conjuncts(where: exp.Expression | None) -> list[exp.Expression]:
    if where is None:
        return []
    node = where.unnest()
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _is_order_column(node: exp.Expression, order_by: str) -> bool:
    node = node.unnest()
    return isinstance(node, exp.Column) and not node.table and node.name == order_by


def _as_bounds(node: exp.Expression, order_by: str, kind: str, order_type: str):
    """[(side, closed bound value)…] when ``node`` bounds the ordering column by constants, else None."""
    if isinstance(node, exp.Between):
        if not _is_order_column(node.this, order_by):
            return None
        low, high = _constant(node.args["low"], kind), _constant(node.args["high"], kind)
        if low is None or high is None:
            return None
        return [("lo", _closed(low, "lo", False, kind, order_type, node)),
                ("hi", _closed(high, "hi", False, kind, order_type, node))]
    op = type(node)
    if op not in _FLIP:
        return None
    if _is_order_column(node.left, order_by):
        value = _constant(node.right, kind)
    elif _is_order_column(node.right, order_by):
        value, op = _constant(node.left, kind), _FLIP[op]
    else:
        return None
    if value is None:
        return None
    if op is exp.EQ:
        return [("lo", _closed(value, "lo", False, kind, order_type, node)),
                ("hi", _closed(value, "hi", False, kind, order_type, node))]
    side = "lo" if op in (exp.GT, exp.GTE) else "hi"
    return [(side, _closed(value, side, op in (exp.GT, exp.LT), kind, order_type, node))]


def _constant(node: exp.Expression, kind: str):
    """The Python value of a constant (number, string, DATE '…', TIMESTAMP '…', a negation), or None."""
    node = node.unnest()
    if isinstance(node, exp.Neg):
        inner = _constant(node.this, kind)
        return -inner if isinstance(inner, int | float | Decimal) else None
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
        if node.to.this in _DATE_TYPES | _TIMESTAMP_TYPES:
            return node.this.name
        return None
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.name
        try:
            number = Decimal(node.name)
        except InvalidOperation:
            return None
        if number == number.to_integral_value() and "." not in node.name and "e" not in node.name.lower():
            return int(number)
        return float(number) if kind != "number" else number
    return None


def _closed(value, side: str, strict: bool, kind: str, order_type: str, node: exp.Expression):
    """The closed bound equivalent to ``col > value`` (strict) or ``col >= value`` on this column type."""
    if isinstance(value, str) and kind in ("integer", "number"):
        raise RangeError(f"{node.sql(dialect='postgres')}: the ordering column is a number, the bound a string")
    if isinstance(value, Decimal) and kind == "number" and not order_type.startswith("numeric"):
        value = float(value)
    bound = coerce_bound(value, kind, side)
    if not strict:
        return bound
    step = 1 if side == "lo" else -1
    if kind == "integer":
        # coerce_bound already rounded a fractional bound inwards; only a whole bound moves
        return bound + step if bound == value else bound
    try:
        if kind == "date":
            return coerce_bound(bound + dt.timedelta(days=step), kind, side)
        if kind in ("timestamp", "timestamptz"):
            return coerce_bound(bound + step * dt.timedelta(microseconds=1), kind, side)
    except OverflowError:
        raise RangeError(f"{node.sql(dialect='postgres')}: no {kind} lies beyond this bound that modelstore can "
                         f"represent") from None
    if order_type in ("double precision", "real"):
        return math.nextafter(float(bound), math.inf * step)
    raise RangeError(
        f"{node.sql(dialect='postgres')}: a strict bound on the {order_type} ordering column has no closed "
        f"equivalent; write it with >= or <= (descriptor ranges are closed)"
    )
