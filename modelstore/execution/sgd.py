"""Training the SGD families over a table's rows (continuous-deployment paper §3.1, §3.3; docs/continuous.md).

A fit reads the request's rows once, in ``order_by`` order (numbers as float8, booleans as 0/1, text
as text; the filter in the WHERE clause), folds them into the pipeline's online statistics, transforms
them and runs the SGD epochs. A warm start continues from a stored model: its weights, pipeline
statistics and optimizer state (the TFX-style warm start of the paper's periodical baseline, and what
a deployment's refresh does).
"""

from __future__ import annotations

import time

import pandas as pd
from psycopg import sql

from modelstore.errors import ColumnTypeError, InputError, RangeError
from modelstore.models.pipeline import Pipeline
from modelstore.models.sgd import SGDModel
from modelstore.planner.plan import ExecutedPlan, Plan, Step, StepResult
from modelstore.request.descriptor import Descriptor, Range
from modelstore.request.predicates import row_predicate
from modelstore.request.source import Table


def column_expr(table: Table, name: str) -> sql.Composable:
    """A feature as the pipeline reads it: a number as float8 (boolean 0/1), text as text."""
    col = table.columns[name]
    if col.is_numeric:
        return col.value_expr()
    return sql.SQL("{}::text").format(sql.Identifier(name))


def rows_query(table: Table, descriptor: Descriptor, r: Range) -> sql.Composed:
    """The rows of ``r`` (filtered) with a non-NULL target, in ``order_by`` order."""
    return sql.SQL("SELECT {}, {} FROM {} WHERE ({}) AND {} IS NOT NULL ORDER BY {}").format(
        sql.SQL(", ").join(column_expr(table, f) for f in descriptor.features), sql.Identifier(descriptor.target),
        table.identifier, row_predicate(descriptor, r), sql.Identifier(descriptor.target),
        sql.Identifier(descriptor.source.order_by))


def read_rows(conn, table: Table, descriptor: Descriptor, r: Range) -> tuple[pd.DataFrame, list, int]:
    """(raw feature frame, targets, rows skipped for a NULL target) of range ``r``."""
    rows = conn.execute(rows_query(table, descriptor, r)).fetchall()
    skipped = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE ({}) AND {} IS NULL").format(
        table.identifier, row_predicate(descriptor, r), sql.Identifier(descriptor.target))).fetchone()[0]
    k = len(descriptor.features)
    frame = pd.DataFrame([row[:k] for row in rows], columns=list(descriptor.features), dtype=object)
    return frame, [row[k] for row in rows], int(skipped)


def new_model(table: Table, descriptor: Descriptor, labels: list) -> SGDModel:
    """A model at zero weights whose pipeline encodes the descriptor's features by their column types."""
    fam = descriptor.family
    numeric = [f for f in descriptor.features if table.columns[f].is_numeric]
    text = [f for f in descriptor.features if table.columns[f].category in ("S", "E")]
    if len(numeric) + len(text) != len(descriptor.features):
        raise ColumnTypeError("every feature of an SGD-trained model must be numeric, boolean or text")
    pipeline = Pipeline(numeric, text, descriptor.params["hash_buckets"])
    pipeline.raw_order = list(descriptor.features)
    pipeline.boolean = [f for f in numeric if table.columns[f].category == "B"]
    classes = None
    if fam.classifier:
        classes = sorted(set(labels), key=lambda v: (str(type(v)), v))
        if len(classes) < 2:
            raise InputError(f"{fam.kind} needs at least two classes in {descriptor.range}, got {classes}")
    return SGDModel(fam.kind, fam.loss, descriptor.params, pipeline, classes)


def check_classes(model: SGDModel, labels: list, where: str) -> None:
    """A warm start trains the same classes: a label the model has never had is an error."""
    if model.classifier:
        unknown = sorted({str(v) for v in labels} - {str(c) for c in model.classes_})
        if unknown:
            raise InputError(f"rows of {where} have class(es) {unknown} that the model being continued does not "
                             f"have ({list(model.classes_)}); fit a new model")


def train(conn, table: Table, descriptor: Descriptor, *, warm_start: SGDModel | None = None,
          max_classes: int = 1000) -> tuple[SGDModel, ExecutedPlan]:
    """Fit (or continue) a model on the request's rows; the executed 'plan' is one read of them."""
    started = time.perf_counter()
    frame, labels, skipped = read_rows(conn, table, descriptor, descriptor.range)
    where = f"{descriptor.source.qualified} in {descriptor.range}"
    if not len(frame):
        raise RangeError(f"no rows with a non-NULL {descriptor.target!r} in {where}"
                         + (f" WHERE {descriptor.filter_sql}" if descriptor.filter_sql else ""))
    if descriptor.family.classifier and len(set(labels)) > max_classes:
        raise InputError(f"class column {descriptor.target!r} has more than {max_classes} distinct values in {where}")
    if warm_start is not None:
        if warm_start.params["optimizer"] != descriptor.params["optimizer"]:
            raise InputError(f"the warm start was trained with {warm_start.params['optimizer']!r}, whose state "
                             f"{descriptor.params['optimizer']!r} cannot continue; ask for the same optimizer")
        model = warm_start.warm_copy()
        model.params = dict(descriptor.params)  # this request's epochs, batches, penalties and learning rate
        model.optimizer.hyper.update({k: v for k, v in descriptor.params.items() if k in model.optimizer.hyper})
        check_classes(model, labels, where)
    else:
        model = new_model(table, descriptor, labels)
    model.fit_frame(frame, labels)
    model.rows_skipped = skipped
    seconds = time.perf_counter() - started
    step = Step(1, "scan", descriptor.range, est_rows=len(frame) + skipped)
    strategy = "SGD warm start from the stored model" if warm_start is not None else "SGD from zero weights"
    plan = Plan(descriptor, (step,), strategy)
    extra = {"SGD": f"{model.params['epochs']} epoch(s) of batches of {model.params['batch_size']}, "
                    f"{model.params['optimizer']}, {model.steps} steps in all; objective {model.training_loss_:.6g}",
             "Features": f"{len(model.feature_names_)} after the pipeline (numeric scaled, text "
                         + ("hashed)" if model.pipeline.hash_buckets else "one-hot)")}
    return model, ExecutedPlan(plan, (StepResult(step, len(frame) + skipped, seconds),), 0.0, None, 0.0, (), extra)


__all__ = ["column_expr", "new_model", "read_rows", "rows_query", "train"]
