"""The WHERE clauses of a scan: a range of the ordering column, plus the residual filter.

Shared by everything that reads base rows (the executor, the index build, calibration, logistic
training), so they agree on what "the rows of a range" means.
"""

from __future__ import annotations

from psycopg import sql

from modelstore.request.descriptor import Descriptor, Range


def range_predicate(order_by: str, r: Range) -> sql.Composed:
    """``order_by >= lo AND order_by <= hi`` (strict where the range is open), values as literals."""
    col = sql.Identifier(order_by)
    return sql.SQL("{} {} {} AND {} {} {}").format(
        col, sql.SQL(">=" if r.lo_closed else ">"), sql.Literal(r.lo),
        col, sql.SQL("<=" if r.hi_closed else "<"), sql.Literal(r.hi),
    )


def with_filter(descriptor: Descriptor, pred: sql.Composable) -> sql.Composable:
    """Add the normalised residual filter — SQL that sqlglot generated from a validated expression
    tree (:func:`modelstore.request.descriptor.normalize_filter`), never the user's text verbatim."""
    if descriptor.filter_sql:
        return sql.SQL("({}) AND ({})").format(pred, sql.SQL(descriptor.filter_sql))
    return pred


def row_predicate(descriptor: Descriptor, r: Range) -> sql.Composable:
    """The WHERE clause of a scan: the range plus the residual filter."""
    return with_filter(descriptor, range_predicate(descriptor.source.order_by, r))


__all__ = ["range_predicate", "row_predicate", "with_filter"]
