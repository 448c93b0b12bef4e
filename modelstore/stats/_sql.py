"""SQL shared by the statistics families: the complete-rows subquery.

A row takes part in a model only when every column the model reads is non-NULL (listwise deletion,
as R's ``na.omit`` and MADlib do). Rows with a NULL are *counted*, not silently lost: the subquery
turns every value of an incomplete row into NULL, so that each aggregate skips exactly the same rows
and ``count(*) - count(c0)`` is the number of rows skipped.
"""

from __future__ import annotations

from psycopg import sql


def column_alias(i: int) -> sql.Identifier:
    """The positional alias of the i-th value column inside the subquery."""
    return sql.Identifier(f"c{i}")


CLASS_ALIAS = sql.Identifier("cls")
PART_ALIAS = sql.Identifier("part")


def complete_rows(
    relation: sql.Composable,
    value_exprs: list[sql.Composable],
    where: sql.Composable,
    class_expr: sql.Composable | None = None,
    part_expr: sql.Composable | None = None,
) -> sql.Composed:
    """``SELECT CASE WHEN <all present> THEN v_i END AS c_i, … FROM relation WHERE …``.

    ``value_exprs`` are float8-valued expressions over the relation (already cast); ``class_expr``
    is the class column of a classifier, kept in its own type; ``part_expr`` numbers the range a row
    belongs to when one statement aggregates several ranges (the executor's batched gap scans).
    """
    present = [sql.SQL("({}) IS NOT NULL").format(e) for e in value_exprs]
    if class_expr is not None:
        present.append(sql.SQL("({}) IS NOT NULL").format(class_expr))
    all_present = sql.SQL(" AND ").join(present)
    items = [
        sql.SQL("CASE WHEN {} THEN {} END AS {}").format(all_present, e, column_alias(i))
        for i, e in enumerate(value_exprs)
    ]
    if class_expr is not None:
        items.append(sql.SQL("CASE WHEN {} THEN {} END AS {}").format(all_present, class_expr, CLASS_ALIAS))
    if part_expr is not None:
        items.append(sql.SQL("{} AS {}").format(part_expr, PART_ALIAS))
    return sql.SQL("SELECT {} FROM {} WHERE {}").format(sql.SQL(", ").join(items), relation, where)


def grouped_by_class(items: list[sql.Composable], inner: sql.Composable, max_classes: int,
                     part_expr: sql.Composable | None, parts: int) -> sql.Composed:
    """The Naive Bayes families' outer query: ``items`` grouped by class (and by part, when one statement
    aggregates several ranges: each result row then starts with its part number). ``LIMIT`` bounds the
    result when the class column has far too many values; the caller checks the count."""
    if part_expr is None:
        return sql.SQL("SELECT {} FROM ({}) AS s GROUP BY {} ORDER BY {} NULLS FIRST LIMIT {}").format(
            sql.SQL(", ").join(items), inner, CLASS_ALIAS, CLASS_ALIAS, sql.Literal(max_classes + 2))
    return sql.SQL("SELECT {0}, {1} FROM ({2}) AS s GROUP BY {0}, {3} ORDER BY {0}, {3} NULLS FIRST LIMIT {4}").format(
        PART_ALIAS, sql.SQL(", ").join(items), inner, CLASS_ALIAS, sql.Literal((max_classes + 2) * parts))
