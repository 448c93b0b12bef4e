"""The baselines a gain is measured against, in the same run on the same rows.

- **From scratch** (the paper's baseline T0, DESIGN.md §7): linear and Naive Bayes by one
  in-database aggregate scan of the request's rows (:func:`modelstore.execution.executor.scan`, the statement
  modelstore itself runs for a gap) and solving the model; logistic by training every chunk of the
  request (:func:`modelstore.execution.mixture.execute_logistic` on a plan of one train step) with nothing
  stored. No planning, no catalog. The scratch model's parameters are kept, so that every modelstore
  answer of a linear or Naive Bayes request can be checked against it (they must be equal).

  A linear or Naive Bayes T0 is measured on two statistics engines (issue #15, docs/statistics.md
  "Engines"): ``best``, the best from-scratch method available — the ``modelstore_stats`` C aggregate
  when the extension is installed, whatever engine modelstore itself is set to use — and ``sql``, the
  SQL aggregates (``avg`` + ``regr_sxy``), the paper's baseline. Without the extension the two are the
  same statement and are measured once. Logistic T0 trains chunks on the rows and uses no statistics
  aggregate, so it has one T0.
- **The analyst's way**: ``pandas.read_sql`` of the rows, then scikit-learn (``LinearRegression``,
  ``GaussianNB``, ``LogisticRegression`` on all rows with the chunks' objective).

A query's from-scratch time (on each engine) is measured once per run (the first time any experiment
asks for it) and shared: Fig. 2 at every coverage, Fig. 5 and the index experiment ask the same queries.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from psycopg import sql

from modelstore.benchmark import data, measure
from modelstore.benchmark.context import Context
from modelstore.benchmark.workloads import Query
from modelstore.execution.executor import scan
from modelstore.execution.mixture import execute_logistic
from modelstore.planner.plan import Plan, Step
from modelstore.request.source import resolve_table
from modelstore.families import family
from modelstore.stats import engine as stats_engine

#: the engines a T0 can be measured on (see the module docstring)
T0_ENGINES = ("best", "sql")


@dataclass(frozen=True)
class Scratch:
    seconds: float
    parameters: np.ndarray | None  # the from-scratch model's, for the equality check


def _table(ctx: Context):
    table = ctx.shared.get("_table_info")
    if table is None:
        table = ctx.shared["_table_info"] = resolve_table(ctx.conn, ctx.table)
    return table


def t0_engine(ctx: Context, which: str = "best") -> tuple[str, str]:
    """(engine, schema) a ``which`` T0 runs on: ``best`` is the C aggregate when installed (else the SQL
    aggregates), ``sql`` always the SQL aggregates."""
    if which not in T0_ENGINES:
        raise ValueError(f"which must be one of {T0_ENGINES}, got {which!r} instead")
    if which == "sql":
        return ("sql", "")
    if "_best_engine" not in ctx.shared:
        schema = stats_engine.installed_schema(ctx.conn)
        ctx.shared["_best_engine"] = ("sql", "") if schema is None else ("c", schema)
    return ctx.shared["_best_engine"]


def engines(ctx: Context) -> dict:
    """Which engine computed each T0 and modelstore's own statistics in this run (for the JSON)."""
    mine = stats_engine.engine(ctx.conn)[0]
    return {"t0_best": t0_engine(ctx, "best")[0], "t0_sql": "sql", "modelstore": mine,
            "descriptions": dict(stats_engine.DESCRIPTIONS)}


def scratch(ctx: Context, kind: str, q: Query, *, chunk_rows: int | None = None, which: str = "best") -> Scratch:
    """T0 of one query on the ``which`` engine (cached for the run; logistic has one T0 for both)."""
    args = measure.request(ctx, kind, q, chunk_rows=chunk_rows)
    engine = t0_engine(ctx, which)
    if kind == "logistic" or engine == t0_engine(ctx, "best"):
        which = "best"  # the same measurement: no statistics aggregate, or no C aggregate installed
    key = (kind, q.lo, q.hi, args.get("chunk_rows"), which)
    cached = ctx.scratch.get(key)
    if cached is not None:
        return cached
    descriptor = ctx.store.explain(kind, **args).descriptor  # validated descriptor; not timed
    table = _table(ctx)
    conn = ctx.conn
    if kind == "logistic":
        plan = Plan(descriptor, (Step(1, "train", descriptor.range),), "from scratch: train every chunk")
        started = time.perf_counter()
        execute_logistic(conn, plan, table, l2=descriptor.params["l2"], chunk_rows=descriptor.params["chunk_rows"])
        result = Scratch(time.perf_counter() - started, None)
    else:
        started = time.perf_counter()
        stats = scan(conn, table, descriptor, descriptor.range, engine=engine)
        model = family(kind).solve(stats, descriptor.params)
        result = Scratch(time.perf_counter() - started, measure.parameters(model, kind))
    ctx.scratch[key] = result
    return result


def analyst(ctx: Context, kind: str, q: Query, *, l2: float | None = None) -> float:
    """Seconds to read the rows with pandas and fit the model with scikit-learn."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.naive_bayes import GaussianNB

    from modelstore.models.logistic import DEFAULT_L2

    target = measure.TARGETS[kind]
    query = sql.SQL("SELECT {}, {} FROM {} WHERE id BETWEEN {} AND {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in data.FEATURES), sql.Identifier(target),
        sql.Identifier(data.SCHEMA, data.TABLE), sql.Literal(q.lo), sql.Literal(q.hi)).as_string(ctx.conn)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas prefers SQLAlchemy; a DBAPI connection works
        frame = pd.read_sql(query, ctx.conn)
    X = frame[list(data.FEATURES)].to_numpy(dtype=float)
    y = frame[target].to_numpy()
    if kind == "linear":
        LinearRegression().fit(X, y)
    elif kind == "gaussian_nb":
        GaussianNB().fit(X, y)
    elif kind == "logistic":
        lam = DEFAULT_L2 if l2 is None else l2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            LogisticRegression(C=1.0 / (2.0 * lam * len(y)), max_iter=1000).fit(X, y)
    else:
        raise ValueError(f"no analyst baseline for {kind!r}")
    return time.perf_counter() - started
