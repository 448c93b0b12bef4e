"""The ML table functions compiled to PostgreSQL subqueries (no rows are pulled to Python).

Each ``ML.<function>(MODEL m, …)`` in a FROM clause is replaced by a subquery with the same alias,
so the rest of the statement — its own columns, WHERE, ORDER BY, LIMIT, joins — runs unchanged:

- ML.PREDICT: the input rows plus ``predicted_<label>`` (and, for classifiers,
  ``predicted_<label>_probs``, a jsonb object class → probability), computed by :mod:`.scoring`;
- ML.EVALUATE: one row of metrics over ML.PREDICT of the input (default: the model's training rows):
  regression mean_absolute_error, mean_squared_error, r2_score, explained_variance; classification
  accuracy, precision, recall, f1_score (binary: of classes[1]; more classes: macro averages, as
  scikit-learn's ``average='macro'``) and log_loss (probabilities clipped to [ε, 1 − ε], ε = 2⁻⁵²);
- ML.WEIGHTS, ML.ADVANCED_WEIGHTS, ML.TRAINING_INFO: the model's parameters, standard errors and
  p-values, or the steps of the plan that built it, as a VALUES list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import psycopg
from sqlglot import exp

from modelstore.request.descriptor import bound_text
from modelstore.errors import ColumnTypeError, PrivilegeError, UnknownColumnError, UnknownTableError
from modelstore.families import family, scoring
from modelstore.language.dialect import MLAdvancedWeights, MLEvaluate, MLTrainingInfo, MLWeights, position
from modelstore.language.statements import LanguageError, model_name

#: sklearn's log_loss clips probabilities with the float64 machine epsilon
_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)
_FUNCTION_NAMES = {exp.Predict: "ML.PREDICT", MLEvaluate: "ML.EVALUATE", MLWeights: "ML.WEIGHTS",
                   MLAdvancedWeights: "ML.ADVANCED_WEIGHTS", MLTrainingInfo: "ML.TRAINING_INFO"}


@dataclass
class Context:
    """What compiling needs from the store: models by name and the input's column names."""

    load_model: object  # name -> fitted model (with .descriptor and .plan)
    input_columns: object  # postgres SQL of a query -> [(name, pg_type.typcategory, type name)] of its columns
    text: str


def compile_select(node: exp.Query, ctx: Context) -> exp.Query:
    """``node`` with every ML table function replaced by its subquery."""
    while True:  # one at a time: compiling a function also compiles the ones inside its input rows
        table = next((t for t in node.find_all(exp.Table) if isinstance(t.this, tuple(_FUNCTION_NAMES))), None)
        if table is None:
            return node
        function = table.this
        if (table.db or "").upper() != "ML":
            raise LanguageError(f"{function.key.upper()}(MODEL …) is written ML.{function.key.upper()}(MODEL …)",
                                position(ctx.text, table))
        alias = table.alias or _FUNCTION_NAMES[type(function)].split(".")[1].lower()
        subquery = _compile_function(function, ctx).subquery(alias=exp.to_identifier(alias, quoted=True), copy=False)
        table.replace(subquery)


def _compile_function(function: exp.Expression, ctx: Context) -> exp.Query:
    where = position(ctx.text, function)
    name = model_name(function.this, ctx.text)
    model = ctx.load_model(name)
    what = _FUNCTION_NAMES[type(function)]
    if (isinstance(function, MLEvaluate) and function.args.get("params_struct") is not None
            and function.args.get("expression") is None and getattr(model, "deployment_id", None) is not None):
        return prequential_query(model, function.args["params_struct"], where)
    if function.args.get("params_struct") is not None:
        raise LanguageError(f"{what} takes no STRUCT of options in modelstore (a deployment's ML.EVALUATE "
                            f"takes STRUCT(since, until, bucket))", where)
    rows = function.args.get("expression")
    if isinstance(function, exp.Predict):
        if rows is None:
            raise LanguageError("ML.PREDICT needs the rows to predict: ML.PREDICT(MODEL m, (SELECT …))", where)
        return predict_query(model, _input(rows, ctx), ctx, what, where)
    if isinstance(function, MLEvaluate):
        if rows is None:
            return evaluate_query(model, training_rows(model), ctx, where, rows="the training rows")
        return evaluate_query(model, _input(rows, ctx), ctx, where)
    if rows is not None:
        raise LanguageError(f"{what} takes only the model: {what}(MODEL m)", where)
    if isinstance(function, MLWeights):
        return weights_query(model)
    if isinstance(function, MLAdvancedWeights):
        return advanced_weights_query(model, where)
    return training_info_query(model)


def _input(rows: exp.Expression, ctx: Context) -> exp.Query:
    """The input rows of ML.PREDICT / ML.EVALUATE: ``(SELECT …)`` or ``TABLE t``."""
    if isinstance(rows, exp.Subquery) and isinstance(rows.this, exp.Query):
        return compile_select(rows.this, ctx)
    if isinstance(rows, exp.Table) and isinstance(rows.this, exp.Identifier):
        return exp.select("*").from_(exp.table_(rows.name, db=rows.db or None, quoted=True))
    raise LanguageError("the input rows are (SELECT …) or TABLE name", position(ctx.text, rows))


def training_rows(model) -> exp.Query:
    """The rows a model was trained on: its descriptor's table, range and filter."""
    d = model.descriptor
    order = exp.column(d.source.order_by, quoted=True)
    typ = {"integer": None, "number": None, "date": "date", "timestamp": "timestamp",
           "timestamptz": "timestamptz"}[d.source.order_kind]

    def bound(v):
        if typ is None:
            return exp.Literal.number(bound_text(v))
        return exp.Cast(this=exp.Literal.string(bound_text(v)), to=exp.DataType.build(typ, dialect="postgres"))

    condition = exp.Between(this=order, low=bound(d.range.lo), high=bound(d.range.hi))
    if d.filter_sql:
        condition = exp.and_(condition, exp.maybe_parse(d.filter_sql, dialect="postgres"))
    columns = [exp.column(c, quoted=True) for c in (*d.features, d.target)]
    table = exp.table_(d.source.table, db=d.source.schema, quoted=True)
    return exp.select(*columns).from_(table).where(condition)


def _check_columns(model, source: exp.Query, ctx: Context, what: str, where, need_label: bool,
                   rows: str = "the input rows") -> dict[str, str]:
    """The input's columns (name → pg_type.typcategory, in order), checked: every feature (and the label)
    is there and every feature is a number or a boolean. A query PostgreSQL cannot run raises the matching
    modelstore error (a dropped table, an unknown column, a missing privilege) at the function's position."""
    try:
        described = ctx.input_columns(source.sql(dialect="postgres"))
    except psycopg.Error as exc:
        raise _input_error(exc, f"{what}: {rows} of model {model.name!r} cannot be read", where) from None
    have = {name: category for name, category, _ in described}
    need = list(model.descriptor.features) + ([model.descriptor.target] if need_label else [])
    missing = [c for c in need if c not in have]
    if missing:
        raise LanguageError(f"{what}: the input rows lack column(s) {missing} of model {model.name!r} "
                            f"(they have {list(have)})", where)
    text = family(model.kind).text_inputs(model)
    bad = [(name, type_name) for name, category, type_name in described
           if name in model.descriptor.features and category not in (("S", "E") if name in text else ("N", "B"))]
    if bad:
        raise ColumnTypeError(_at(where) + f"{what}: feature column(s) {[n for n, _ in bad]} of {rows} must be "
                              f"numbers, got {[t for _, t in bad]}")
    return have


def _at(where) -> str:
    return f"line {where[0]}, column {where[1]}: " if where else ""


def _input_error(exc: psycopg.Error, message: str, where) -> Exception:
    """The modelstore error for a PostgreSQL error raised by the input rows' query."""
    detail = (exc.diag.message_primary if getattr(exc, "diag", None) is not None else None) or str(exc).splitlines()[0]
    text = _at(where) + f"{message}: {detail}"
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return UnknownTableError(text)
    if isinstance(exc, psycopg.errors.UndefinedColumn):
        return UnknownColumnError(text)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return PrivilegeError(text)
    if isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.DatatypeMismatch
                  | psycopg.errors.CannotCoerce):
        return ColumnTypeError(text)
    return LanguageError(f"{message}: {detail}", where)


def _as_float(column: exp.Expression, category: str | None) -> exp.Expression:
    """A feature column as double precision; booleans as 0/1, as the statistics count them."""
    if category == "B":
        column = exp.Cast(this=column, to=exp.DataType.build("int"))
    return exp.Cast(this=column, to=exp.DataType.build("double precision"))


def _scored(model, source: exp.Query, types: dict[str, str] | None = None, *, by_group: bool = False
            ) -> tuple[exp.Query, list[exp.Expression]]:
    """``SELECT _input.*, score₀, score₁, … FROM (source) AS _input`` and the score columns' names.

    ``by_group`` (a per-group model whose group column is among the input's): each row is scored with
    its group's model (:func:`_group_scores`)."""
    types = types or {}
    fam = family(model.kind)
    text = fam.text_inputs(model)  # text columns go to the family's own encoding (SGD's pipeline) uncast
    xs = [exp.column(f, table="_input", quoted=True) if f in text
          else _as_float(exp.column(f, table="_input", quoted=True), types.get(f)) for f in model.descriptor.features]
    join = None
    if by_group:
        z, join = _group_scores(model, xs)
    else:
        z = fam.sql_scores(model, xs)
    names = [f"__modelstore_score_{k}" for k in range(len(z))]
    query = exp.select(exp.Star(), copy=False).from_(source.subquery("_input", copy=False))
    if join is not None:
        query = query.join(join[0], on=join[1], join_type="left", copy=False)
    query.set("expressions", [exp.column(exp.Star(), table="_input")]
              + [exp.alias_(s, n, quoted=True) for s, n in zip(z, names)])
    return query, [exp.column(n, quoted=True) for n in names]


#: a per-group classifier is scored by a CASE over its groups; more groups than this, and ML.PREDICT asks
#: for modelstore.predict_class per row instead (a linear model's groups are joined, any number of them)
MAX_CASE_GROUPS = 200


def _group_scores(model, xs: list) -> tuple[list, tuple | None]:
    """Scores of each row's group model (docs/serving.md, "Predicting in the database"); the global model
    for a group the model has not seen. A family whose parameters are stored as native arrays (linear)
    joins the catalog's group rows, ``LEFT JOIN modelstore.group_models AS _group``, and scores with
    ``coalesce(_group.intercept, b) + Σ coalesce(_group.coef[j], w_j)·x_j``: one hash join, whatever the
    number of groups. Others: a CASE on the group key over each group's own SQL scores."""
    fam = family(model.kind)
    key = exp.Cast(this=exp.column(model.group_by, table="_input", quoted=True), to=exp.DataType.build("text"))
    coef, intercept = fam.native_parameters(model.global_model)
    if coef is not None and getattr(model, "model_id", None) is not None:
        group = exp.to_identifier("_group", quoted=True)
        table = exp.table_("group_models", db="modelstore", quoted=True).as_(group, quoted=True)
        on = exp.and_(exp.EQ(this=exp.column("model_id", table="_group", quoted=True),
                             expression=exp.Literal.number(int(model.model_id))),
                      exp.EQ(this=exp.column("group_key", table="_group", quoted=True), expression=key))

        def parameter(column: str, j: int | None, fallback: float) -> exp.Expression:
            value = exp.column(column, table="_group", quoted=True)
            if j is not None:
                # sqlglot's Bracket counts from 0 and writes PostgreSQL's 1-based subscript
                value = exp.Bracket(this=value, expressions=[exp.Literal.number(j)])
            return exp.Coalesce(this=value, expressions=[scoring.number(fallback)])

        terms = [parameter("intercept", None, intercept)]
        terms += [exp.Mul(this=parameter("coef", j, w), expression=x) for j, (w, x) in enumerate(zip(coef, xs))]
        return [scoring.add(terms)], (table, on)
    if len(model.models) > MAX_CASE_GROUPS:
        raise LanguageError(f"ML.PREDICT by group: model {model.name!r} has {len(model.models)} groups, more than "
                            f"{MAX_CASE_GROUPS} a {model.kind} model is scored over in one CASE; use "
                            f"modelstore.predict_class(name, group, ARRAY[…]) per row")
    per_group = {g: fam.sql_scores(m, [x.copy() for x in xs]) for g, m in sorted(model.models.items())}
    fallback = fam.sql_scores(model.global_model, xs)
    z = []
    for k, default in enumerate(fallback):
        ifs = [exp.If(this=exp.EQ(this=key.copy(), expression=exp.Literal.string(g)), true=scores[k])
               for g, scores in per_group.items()]
        z.append(exp.Case(ifs=ifs, default=default) if ifs else default)
    return z, None


def predict_query(model, source: exp.Query, ctx: Context, what: str, where) -> exp.Query:
    have = _check_columns(model, source, ctx, what, where, need_label=False)
    scored, z = _scored(model, source, have, by_group=getattr(model, "group_by", None) in have)
    label = model.descriptor.target
    out = [exp.column(c, quoted=True) for c in have]
    if not family(model.kind).classifier:
        out.append(exp.alias_(z[0], f"predicted_{label}", quoted=True))
    else:
        out.append(exp.alias_(scoring.predicted_class(model, z), f"predicted_{label}", quoted=True))
        pairs = []
        for c, p in zip(model.classes_, scoring.probabilities(model, z)):
            pairs += [exp.Literal.string(str(c.item() if isinstance(c, np.generic) else c)), p]
        out.append(exp.alias_(exp.Anonymous(this="jsonb_build_object", expressions=pairs),
                              f"predicted_{label}_probs", quoted=True))
    return exp.select(*out).from_(scored.subquery("_scored", copy=False))


def evaluate_query(model, source: exp.Query, ctx: Context, where, rows: str = "the input rows") -> exp.Query:
    have = _check_columns(model, source, ctx, "ML.EVALUATE", where, need_label=True, rows=rows)
    scored, z = _scored(model, source, have)
    y = exp.column(model.descriptor.target, quoted=True)
    count = exp.alias_(exp.Count(this=exp.Star()), "rows", quoted=True)
    if not family(model.kind).classifier:
        yf = _as_float(y, have.get(model.descriptor.target))
        residual = exp.Paren(this=exp.Sub(this=yf, expression=z[0]))
        sq = exp.Mul(this=residual, expression=residual.copy())
        var_y = exp.Anonymous(this="var_pop", expressions=[yf.copy()])
        metrics = [
            exp.alias_(exp.Avg(this=exp.Abs(this=residual.copy())), "mean_absolute_error", quoted=True),
            exp.alias_(exp.Avg(this=sq), "mean_squared_error", quoted=True),
            exp.alias_(exp.Sub(this=scoring.number(1.0), expression=exp.Div(
                this=exp.Avg(this=sq.copy()), expression=exp.Nullif(this=var_y, expression=scoring.number(0.0)))),
                "r2_score", quoted=True),
            exp.alias_(exp.Sub(this=scoring.number(1.0), expression=exp.Div(
                this=exp.Anonymous(this="var_pop", expressions=[residual.copy()]),
                expression=exp.Nullif(this=var_y.copy(), expression=scoring.number(0.0)))),
                "explained_variance", quoted=True),
            count,
        ]
        present = exp.and_(exp.Not(this=exp.Is(this=y.copy(), expression=exp.Null())),
                           exp.Not(this=exp.Is(this=z[0].copy(), expression=exp.Null())))
        return exp.select(*metrics).from_(scored.subquery("_scored", copy=False)).where(present)

    classes = [scoring.label(c) for c in model.classes_]
    predicted = scoring.predicted_class(model, z)
    probs = scoring.probabilities(model, z)
    p_true = exp.Case(ifs=[exp.If(this=exp.EQ(this=y.copy(), expression=c.copy()), true=p)
                           for c, p in zip(classes, probs)])
    eps = scoring.number(_LOG_LOSS_EPS)
    clipped = exp.Least(this=exp.Greatest(this=p_true, expressions=[eps]),
                        expressions=[scoring.number(1.0 - _LOG_LOSS_EPS)])
    inner = exp.select(
        exp.alias_(y.copy(), "y", quoted=True),
        exp.alias_(predicted, "p", quoted=True),
        exp.alias_(exp.Ln(this=clipped), "log_p", quoted=True),
    ).from_(scored.subquery("_scored", copy=False)).where(
        exp.and_(exp.Not(this=exp.Is(this=y.copy(), expression=exp.Null())),
                 exp.Not(this=exp.Is(this=z[0].copy(), expression=exp.Null()))))
    yc, pc = exp.column("y", quoted=True), exp.column("p", quoted=True)

    def count_if(condition) -> exp.Expression:
        return exp.Sum(this=exp.Case(ifs=[exp.If(this=condition, true=exp.Literal.number(1))],
                                     default=exp.Literal.number(0)))

    def ratio(num, den) -> exp.Expression:  # 0 when the denominator is 0 (scikit-learn's zero_division)
        return exp.Coalesce(this=exp.Div(this=exp.Cast(this=num, to=exp.DataType.build("double precision")),
                                          expression=exp.Nullif(this=den, expression=exp.Literal.number(0))),
                            expressions=[scoring.number(0.0)])

    per_class = []
    for c in (classes[1:] if len(classes) == 2 else classes):
        tp = count_if(exp.and_(exp.EQ(this=yc.copy(), expression=c.copy()), exp.EQ(this=pc.copy(), expression=c.copy())))
        precision = ratio(tp, count_if(exp.EQ(this=pc.copy(), expression=c.copy())))
        recall = ratio(tp.copy(), count_if(exp.EQ(this=yc.copy(), expression=c.copy())))
        f1 = exp.Coalesce(this=exp.Div(
            this=exp.Mul(this=scoring.number(2.0), expression=exp.Mul(this=precision.copy(), expression=recall.copy())),
            expression=exp.Nullif(this=exp.Add(this=precision.copy(), expression=recall.copy()),
                                  expression=scoring.number(0.0))), expressions=[scoring.number(0.0)])
        per_class.append((precision, recall, f1))

    def mean(values) -> exp.Expression:
        total = values[0]
        for v in values[1:]:
            total = exp.Add(this=total, expression=v)
        return exp.Div(this=exp.Paren(this=total), expression=scoring.number(float(len(values))))

    metrics = [
        exp.alias_(exp.Avg(this=exp.Case(ifs=[exp.If(this=exp.EQ(this=yc.copy(), expression=pc.copy()),
                                                      true=scoring.number(1.0))], default=scoring.number(0.0))),
                   "accuracy", quoted=True),
        exp.alias_(mean([p for p, _, _ in per_class]), "precision", quoted=True),
        exp.alias_(mean([r for _, r, _ in per_class]), "recall", quoted=True),
        exp.alias_(mean([f for _, _, f in per_class]), "f1_score", quoted=True),
        exp.alias_(exp.Neg(this=exp.Avg(this=exp.column("log_p", quoted=True))), "log_loss", quoted=True),
        count,
    ]
    return exp.select(*metrics).from_(inner.subquery("_predicted", copy=False))


def _values(rows: list[tuple], columns: list[str], types: list[str]) -> exp.Query:
    """``SELECT * FROM (VALUES …) AS t(columns…)`` with every value a typed constant."""
    def constant(v, typ):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return exp.Cast(this=exp.Null(), to=exp.DataType.build(typ, dialect="postgres"))
        if typ == "double precision":
            return scoring.number(v)
        if typ == "bigint":
            return exp.Cast(this=exp.Literal.number(str(int(v))), to=exp.DataType.build("bigint"))
        return exp.Cast(this=exp.Literal.string(str(v)), to=exp.DataType.build(typ, dialect="postgres"))

    tuples = [exp.Tuple(expressions=[constant(v, t) for v, t in zip(row, types)]) for row in rows]
    values = exp.Values(expressions=tuples, alias=exp.TableAlias(
        this=exp.to_identifier("_values"), columns=[exp.to_identifier(c, quoted=True) for c in columns]))
    return exp.select("*").from_(values)




def weights_query(model) -> exp.Query:
    return _values(*family(model.kind).weights(model))


def advanced_weights_query(model, where) -> exp.Query:
    if not family(model.kind).has_inference:
        raise LanguageError(f"ML.ADVANCED_WEIGHTS: standard errors and p-values are available for linear_reg "
                            f"models; {model.name!r} is {model.kind} (use ML.WEIGHTS)", where)
    # statsmodels' order is [intercept, features…]; BigQuery lists the intercept last
    names = ["__INTERCEPT__", *model.descriptor.features]
    columns = [model.params.to_numpy(), model.bse.to_numpy(), model.tvalues.to_numpy(), model.pvalues.to_numpy()]
    rows = [(n, *(float(c[i]) for c in columns)) for i, n in enumerate(names)]
    rows = rows[1:] + rows[:1]
    return _values(rows, ["processed_input", "weight", "standard_error", "t_value", "p_value"],
                   ["text"] + ["double precision"] * 4)


#: the date_trunc units ML.EVALUATE's bucket may name
_BUCKETS = ("minute", "hour", "day", "week", "month", "year")


def prequential_query(model, options: exp.Expression, where) -> exp.Query:
    """A deployment's prequential figures (docs/deployments.md, "Monitoring") over a time range:
    ``ML.EVALUATE(MODEL m, STRUCT(TIMESTAMP '…' AS since, TIMESTAMP '…' AS until[, 'hour' AS bucket]))``
    — one row per version (or per bucket and version): rows scored, mean loss, mean absolute error."""
    given = {}
    for item in options.expressions if isinstance(options, exp.Struct) else []:
        key = item.this.name.lower() if isinstance(item, exp.PropertyEQ) else item.alias.lower()
        value = item.expression if isinstance(item, exp.PropertyEQ) else item.this
        if key not in ("since", "until", "bucket"):
            raise LanguageError(f"ML.EVALUATE of a deployment takes STRUCT(since, until, bucket), got {key!r}", where)
        given[key] = value.this if isinstance(value, exp.Cast) else value
        if not isinstance(given[key], exp.Literal) or not given[key].is_string:
            raise LanguageError(f"ML.EVALUATE's {key} must be a string or TIMESTAMP constant", where)
    metrics = exp.table_("deployment_metrics", db="modelstore")
    conditions = [exp.EQ(this=exp.column("deployment_id"), expression=exp.Literal.number(model.deployment_id))]
    for key, op in (("since", exp.GTE), ("until", exp.LT)):
        if key in given:
            conditions.append(op(this=exp.column("evaluated_at"), expression=exp.Cast(
                this=exp.Literal.string(given[key].name), to=exp.DataType.build("timestamptz"))))
    condition = exp.and_(*conditions)
    rows = exp.Sum(this=exp.column("rows"))
    figures = [exp.alias_(exp.Cast(this=rows, to=exp.DataType.build("bigint")), "rows", quoted=True),
               exp.alias_(exp.Div(this=exp.Sum(this=exp.column("loss_sum")), expression=exp.Nullif(
                   this=rows.copy(), expression=exp.Literal.number(0))),
                   "accuracy_error" if family(model.kind).classifier else "mean_squared_error", quoted=True),
               exp.alias_(exp.Div(this=exp.Sum(this=exp.column("abs_sum")), expression=exp.Nullif(
                   this=rows.copy(), expression=exp.Literal.number(0))), "mean_absolute_error", quoted=True)]
    keys = [exp.alias_(exp.column("version"), "version", quoted=True)]
    if "bucket" in given:
        unit = given["bucket"].name.lower()
        if unit not in _BUCKETS:
            raise LanguageError(f"bucket must be one of {_BUCKETS}, got {unit!r}", where)
        keys.insert(0, exp.alias_(exp.Anonymous(this="date_trunc", expressions=[
            exp.Literal.string(unit), exp.column("evaluated_at")]), "bucket", quoted=True))
    query = exp.select(*keys, *figures).from_(metrics).where(condition)
    query = query.group_by(*[exp.Literal.number(i + 1) for i in range(len(keys))])
    return query.order_by(*[exp.Literal.number(i + 1) for i in range(len(keys))])


def training_info_query(model) -> exp.Query:
    versions = getattr(model, "deployment_versions", None)
    if versions is not None:  # a deployment: one row per version (docs/deployments.md)
        rows = [(int(v.version), str(v.created_at), int(v.rows), v.lo, v.hi, v.reason, bool(v.active),
                 None if v.scored_rows is None or v.scored_rows != v.scored_rows else int(v.scored_rows),
                 None if v.prequential_loss is None or v.prequential_loss != v.prequential_loss
                 else float(v.prequential_loss)) for v in versions.itertuples()]
        return _values(rows, ["version", "created_at", "rows", "lo", "hi", "reason", "active", "scored_rows",
                              "prequential_loss"],
                       ["integer", "timestamptz", "bigint", "text", "text", "text", "boolean", "bigint",
                        "double precision"])
    executed = model.plan
    plan = executed.plan
    rows = []
    for i, r in enumerate(executed.results, start=1):
        rows.append((i, r.step.label(), r.step.est_rows, r.rows, r.step.est_cost_ms, r.seconds * 1000.0,
                     plan.strategy, executed.rows_scanned, plan.planning_seconds * 1000.0,
                     executed.execution_seconds * 1000.0))
    return _values(rows, ["step", "operation", "estimated_rows", "actual_rows", "estimated_ms", "actual_ms",
                          "strategy", "rows_scanned", "planning_ms", "execution_ms"],
                   ["bigint", "text", "bigint", "bigint", "double precision", "double precision", "text", "bigint",
                    "double precision", "double precision"])
