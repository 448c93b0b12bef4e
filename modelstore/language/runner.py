"""Running model-language statements on a :class:`~modelstore.store.Store`.

CREATE MODEL becomes ``store.fit`` with the WHERE clause turned into a descriptor (:mod:`.where`);
EXPLAIN CREATE MODEL ``store.explain``; DROP MODEL ``store.drop``; SHOW MODELS ``store.models``.
A SELECT — with ML.PREDICT / ML.EVALUATE / … compiled into subqueries (:mod:`.functions`) — is sent
to PostgreSQL as one statement in a READ ONLY transaction that is rolled back afterwards, so nothing
an input query contains can write or change the session, and its rows come back as a pandas DataFrame.
"""

from __future__ import annotations

import warnings

import pandas as pd
from psycopg import sql
from sqlglot import exp

from modelstore.errors import InputError, ModelNotFoundError, PlanNoteWarning
from modelstore.language import functions
from modelstore.deploy.refresh import load as load_deployment
from modelstore.language.statements import (
    DEPLOY_OPTIONS, CreateModel, DropModel, ExplainCreate, LanguageError, Select, ShowModelsStatement, parse,
)
from modelstore.language.where import split_where
from modelstore.request.source import resolve_table


def run(store, text: str) -> list:
    """Run every statement of ``text`` in order, in one transaction; returns their results (a model or a
    DataFrame each). When one fails, the ones before it are rolled back too, and the error carries a note
    naming the failing statement (``statement 2 of 3 (CREATE MODEL b) failed …``)."""
    statements = parse(text)
    if len(statements) == 1:
        return [run_statement(store, statements[0])]
    results = []
    with store.conn.transaction():
        for number, statement in enumerate(statements, 1):
            try:
                results.append(run_statement(store, statement))
            except Exception as exc:
                exc.add_note(f"statement {number} of {len(statements)} ({statement_label(statement)}) failed; "
                             "the script is one transaction, so nothing was written")
                raise
    return results


def statement_label(statement) -> str:
    """A statement in a few words, for errors: ``CREATE MODEL sales_jan``, ``SELECT``, …"""
    if isinstance(statement, CreateModel):
        return f"CREATE MODEL {statement.name}"
    if isinstance(statement, ExplainCreate):
        return f"EXPLAIN CREATE MODEL {statement.create.name}"
    if isinstance(statement, DropModel):
        return f"DROP MODEL {statement.name}"
    if isinstance(statement, ShowModelsStatement):
        return "SHOW MODELS"
    return "SELECT"


def run_statement(store, statement):
    if isinstance(statement, CreateModel):
        arguments = fit_arguments(store, statement)
        refresh = arguments.pop("refresh", None)
        if refresh is not None or any(k in arguments for k in DEPLOY_OPTIONS):
            return _deploy(store, statement, arguments, refresh)
        return store.fit(**arguments, name=statement.name, replace=statement.replace)
    if isinstance(statement, ExplainCreate):
        plan = store.explain(**fit_arguments(store, statement.create))
        frame = pd.DataFrame({"QUERY PLAN": str(plan).splitlines()})
        frame.attrs["plan"] = plan
        return frame
    if isinstance(statement, DropModel):
        if load_deployment(store.conn, name=statement.name) is not None:  # a deployment: its trigger goes too
            store.undeploy(statement.name)
            return pd.DataFrame({"model": [statement.name], "dropped": [True]})
        dropped = store.drop(statement.name, missing_ok=statement.if_exists)
        return pd.DataFrame({"model": [statement.name], "dropped": [bool(dropped)]})
    if isinstance(statement, ShowModelsStatement):
        return store.models()
    if isinstance(statement, Select):
        return _select(store, statement)
    raise TypeError(f"not a statement: {statement!r}")


def _deploy(store, create: CreateModel, arguments: dict, refresh):
    """CREATE MODEL … OPTIONS (refresh = 'continuous', window = …): a deployment (docs/deployments.md)."""
    props = create.node.args.get("properties") if create.node is not None else None
    if not isinstance(refresh, str) or refresh.lower() != "continuous":
        raise create.error(f"refresh must be 'continuous' (a deployment that follows the table), got {refresh!r}; "
                           f"window, window_anchor and strategy need it", props)
    if arguments.pop("lo") is not None or arguments.pop("hi") is not None:
        raise create.error(f"a deployed model's range is its window: WHERE may filter rows but not bound "
                           f"{arguments['order_by']!r}", create.where)
    window = arguments.pop("window", None)
    if isinstance(window, float) and window.is_integer():
        window = int(window)
    kind = arguments.pop("kind")
    for note in arguments.pop("notes", ()):  # what was decided for the request (the default order_by): said once
        warnings.warn(note, PlanNoteWarning, stacklevel=3)
    d = store.deploy(create.name, kind, window=window, replace=create.replace, **arguments)
    model = d.model
    return model


def fit_arguments(store, create: CreateModel) -> dict:
    """The ``store.fit`` arguments of a CREATE MODEL: the table resolved, the WHERE clause split."""
    conn = store.conn
    with conn.transaction():
        table = resolve_table(conn, create.table)
    order_by = create.order_by or _primary_key(conn, table, create)
    order_by = _column(table, order_by, "order_by", create)
    label = _column(table, create.label, "input_label_cols", create)
    if create.features is None:  # SELECT *: every other column
        features = [c for c in table.columns if c not in (label, order_by)]
        text_like = [c for c in features if not table.columns[c].is_numeric]
        if text_like:
            raise create.error(f"SELECT * selects column(s) {text_like} that are not numbers; list the feature "
                               f"columns instead", create.node.expression)
    else:
        features = list(create.features)
        for name in features:
            if name not in table.columns:
                node = next((c for c in create.node.expression.expressions if c.name == name), None)
                raise create.error(f"column {name!r} does not exist in table {table.display} "
                                   f"(columns: {list(table.columns)})", node)
    order_kind = table.order_kind(order_by)
    bounds = split_where(create.where, order_by, order_kind, table.columns[order_by].type_name)
    where = None
    if bounds.residual is not None:
        residual = bounds.residual.copy()
        for column in residual.find_all(exp.Column):  # names were folded by the parser: now they are exact
            column.this.set("quoted", True)
        where = residual.sql(dialect="postgres")
    notes = ()
    if create.order_by is None:
        notes = _default_order_notes(table, order_by, bounds.residual)
    return dict(kind=create.kind, table=create.table, target=label, features=features, order_by=order_by,
                lo=bounds.lo, hi=bounds.hi, where=where, notes=notes, **create.params)


def _default_order_notes(table, order_by: str, residual) -> tuple[str, ...]:
    """CREATE MODEL without order_by ranges over the primary key: a comparison of another column (a
    timestamp, say) stays a filter over every row. Say so, in the plan and as a warning."""
    compared = []
    for node in residual.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between) if residual is not None else ():
        for column in node.find_all(exp.Column):
            name = next((c for c in table.columns if c == column.name or c.lower() == column.name.lower()), None)
            if name and name != order_by and name not in compared:
                compared.append(name)
    if not compared:
        return ()
    names = ", ".join(repr(c) for c in compared)
    note = (f"order_by was not given, so the range is on the primary key {order_by!r}; the condition on {names} "
            f"is a filter over every row. OPTIONS (order_by = '{compared[0]}') makes it the range.")
    warnings.warn(note, PlanNoteWarning, stacklevel=4)
    return (note,)


def _column(table, name: str, role: str, create: CreateModel) -> str:
    """The table's column ``name``: exact, else the one column equal to it ignoring case (SQL folds)."""
    if name in table.columns:
        return name
    folded = [c for c in table.columns if c.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise create.error(f"{role} names column {name!r}, which table {table.display} does not have "
                       f"(columns: {list(table.columns)})", create.node.args.get("properties"))


def _primary_key(conn, table, create: CreateModel) -> str:
    row = conn.execute(
        """
        SELECT array_agg(a.attname ORDER BY a.attnum)
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = %s AND i.indisprimary
        """,
        [table.oid],
    ).fetchone()
    key = row[0] if row else None
    if not key or len(key) != 1:
        raise create.error(f"table {table.display} has no single-column primary key to order by; give "
                           f"OPTIONS (order_by = 'column')", create.node.args.get("properties"))
    return key[0]


def _select(store, statement: Select) -> pd.DataFrame:
    conn = store.conn
    models = {}

    def load_model(name):
        if name not in models:
            try:
                models[name] = store.model(name)
            except ModelNotFoundError:
                raise LanguageError(f"no model named {name!r} (SHOW MODELS lists them)") from None
            spec = load_deployment(conn, name=name)
            if spec is not None:  # ML.TRAINING_INFO lists its versions, ML.EVALUATE its prequential figures
                models[name].deployment_versions = store.deployment(name).versions()
                models[name].deployment_id = spec.deployment_id
        return models[name]

    def input_columns(query_sql: str) -> list[tuple[str, str, str]]:
        """(name, pg_type.typcategory, type name) of each column of the input rows."""
        with conn.transaction():
            cur = conn.execute(sql.SQL("SELECT * FROM ({}) AS _probe LIMIT 0").format(sql.SQL(query_sql)))
            described = [(d.name, d.type_code) for d in cur.description]
            types = {oid: (category, name) for oid, category, name in conn.execute(
                "SELECT oid, typcategory, pg_catalog.format_type(oid, NULL) FROM pg_catalog.pg_type "
                "WHERE oid = ANY (%s)", [[int(t) for _, t in described]]).fetchall()}
        return [(name, *types.get(oid, ("X", "unknown"))) for name, oid in described]

    ctx = functions.Context(load_model, input_columns, statement.text)
    # READ ONLY: nothing in an input query can write; rolled back: nor change the session (set_config)
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        compiled = functions.compile_select(statement.node, ctx)
        query = compiled.sql(dialect="postgres")
        cur = conn.execute(sql.SQL(query))
        columns = [d.name for d in cur.description]
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["sql"] = query
    return frame


def describe(result) -> pd.DataFrame:
    """A table for any result: a model as one row of what it is and how it was built."""
    if isinstance(result, pd.DataFrame):
        return result
    plan = result.plan
    return pd.DataFrame([{
        "model": result.name, "kind": result.kind, "rows_used": getattr(result, "rows_used", None),
        "strategy": plan.plan.strategy, "rows_scanned": plan.rows_scanned,
        "planning_ms": round(plan.plan.planning_seconds * 1000, 3),
        "execution_ms": round(plan.execution_seconds * 1000, 3),
    }])


__all__ = ["run", "run_statement", "statement_label", "fit_arguments", "describe", "InputError", "exp"]
