"""Monitoring a deployment: prequential evaluation and a drift signal.

**Prequential evaluation** (Dawid's "predictive sequential" scheme, the evaluation of the
continuous-deployment paper, Derakhshan et al. §5; Velox, Crankshaw et al. §4 "online evaluation"):
every batch of new rows is scored by the version serving when it arrived, *before* the model absorbs
it, so the error is the error a user of the deployment saw. A batch is the rows appended past the
previous refresh's window end, ``(previous hi, new hi]`` (late rows inside the window and updates are
absorbed, not scored: they were never predicted as new). Scored in PostgreSQL next to the data with
the family's SQL scores (the arithmetic ML.PREDICT uses), one aggregate per version scored:

* regression: rows, Σ (y − ŷ)², Σ |y − ŷ|  (the loss is the squared error);
* classifiers: rows, the number misclassified (0/1 loss; ``abs_sum`` repeats it).

Figures are stored per (version, batch) in ``modelstore.deployment_metrics``; means per version and per
time bucket are sums over them (:func:`metrics_frame`, ``ML.EVALUATE`` over a time range).

**Drift**: the Page-Hinkley test (Page 1954; as in River's ``drift.PageHinkley``) on the stream of batch
mean losses: m_t = Σ (x_i − x̄_i − δ), M_t = min m_i; drift when m_t − M_t > λ. The state is kept in the
deployment's row, so it survives workers; a detection is recorded as a ``drift`` event and the test restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from sqlglot import exp

from modelstore.families import family
from modelstore.families import scoring

#: Page-Hinkley defaults (River's): tolerated change δ and detection threshold λ, on the batch mean loss
PH_DELTA = 0.005
PH_THRESHOLD = 50.0
PH_MIN_BATCHES = 5


@dataclass(frozen=True)
class BatchScore:
    rows: int
    loss_sum: float
    abs_sum: float
    batch_lo: str | None = None  # the batch (batch_lo, batch_hi], as bound text, once a refresh knows it
    batch_hi: str | None = None

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.rows if self.rows else float("nan")


def score_batch(conn: psycopg.Connection, table: sql.Composable, order_by: str, filter_sql: str, model,
                lo, hi) -> BatchScore:
    """``model``'s loss on the rows with ``lo < order_by <= hi`` (and the filter), in one aggregate.

    Each score is rendered once, in an inner query; the loss (and a classifier's argmax) is taken over
    the score columns outside it, so the SQL grows with classes × features, not with its square."""
    d = model.descriptor
    fam = family(d.kind)
    # a family with its own pipeline (SGD) takes the columns as they are and imputes NULL features itself
    raw = fam.takes_text
    xs = [exp.column(f, quoted=True) if raw else
          exp.Cast(this=exp.column(f, quoted=True), to=exp.DataType.build("double precision")) for f in d.features]
    z = fam.sql_scores(model, xs)
    names = [f"_s{k}" for k in range(len(z))]
    # sqlglot renders the scores from the model's parameters (literals it generates) and checked columns
    scores = sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.SQL(e.sql(dialect="postgres")), sql.Identifier(n))
                                for e, n in zip(z, names))
    columns = [exp.column(n, quoted=True) for n in names]
    y = exp.column("_y", quoted=True)
    if fam.classifier:
        wrong = exp.Case(ifs=[exp.If(this=exp.EQ(this=y, expression=scoring.predicted_class(model, columns)),
                                     true=exp.Literal.number(0))], default=exp.Literal.number(1))
        loss = abs_loss = exp.Sum(this=wrong)
    else:
        residual = exp.Paren(this=exp.Sub(this=exp.Cast(this=y, to=exp.DataType.build("double precision")),
                                          expression=columns[0]))
        loss = exp.Sum(this=exp.Mul(this=residual, expression=residual.copy()))
        abs_loss = exp.Sum(this=exp.Abs(this=residual.copy()))
    present = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c))
                                    for c in ((d.target,) if raw else (*d.features, d.target)))
    where = sql.SQL(" AND ({})").format(sql.SQL(filter_sql)) if filter_sql else sql.SQL("")
    query = sql.SQL("SELECT count(*), {loss}, {abs} FROM (SELECT {y} AS _y, {scores} FROM {t} "
                    "WHERE {o} > %s AND {o} <= %s AND {p}{w}) AS _batch").format(
        loss=sql.SQL(loss.sql(dialect="postgres")), abs=sql.SQL(abs_loss.sql(dialect="postgres")),
        y=sql.Identifier(d.target), scores=scores, t=table, o=sql.Identifier(order_by), p=present, w=where)
    rows, loss_sum, abs_sum = conn.execute(query, [lo, hi]).fetchone()
    return BatchScore(int(rows), float(loss_sum or 0.0), float(abs_sum or 0.0))


#: the most batch rows scored in Python (fetched in binary) rather than by one aggregate in PostgreSQL
MAX_FETCHED_BATCH = 20_000


def score_fetched(conn: psycopg.Connection, table, order_by: str, filter_sql: str, model, lo, hi) -> BatchScore:
    """The same figures as :func:`score_batch`, from the batch's rows fetched in binary and scored with the
    model's own ``predict`` in numpy.

    For the few hundred rows a refresh typically scores this is several times cheaper than the
    aggregate: rendering the family's SQL scores (sqlglot, one literal per parameter) costs more than
    the scoring itself — 3 ms for a 3-class, 10-feature Gaussian NB. ``table`` is the
    :class:`~modelstore.request.source.Table` (its columns' float8 expressions)."""
    d = model.descriptor
    fam = family(d.kind)
    values = [table.columns[f].value_expr() for f in d.features]
    y = sql.Identifier(d.target) if fam.classifier else table.columns[d.target].value_expr()
    present = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in (*d.features, d.target))
    where = sql.SQL(" AND ({})").format(sql.SQL(filter_sql)) if filter_sql else sql.SQL("")
    query = sql.SQL("SELECT {y}, {x} FROM {t} WHERE {o} > %s AND {o} <= %s AND {p}{w}").format(
        y=y, x=sql.SQL(", ").join(values), t=table.identifier, o=sql.Identifier(order_by), p=present, w=where)
    rows = conn.execute(query, [lo, hi], binary=not fam.classifier).fetchall()
    X = np.array([r[1:] for r in rows], dtype=float).reshape(-1, len(d.features))
    return score_values(model, X, [r[0] for r in rows])


def score_values(model, X: np.ndarray, y) -> BatchScore:
    """The batch's figures from its rows in hand (features ``X``, targets or class labels ``y``): the
    model's own ``predict``, the same loss as :func:`score_batch`."""
    if not len(y):
        return BatchScore(0, 0.0, 0.0)
    if family(model.descriptor.kind).classifier:
        predicted, labels = np.asarray(model.predict(X)), np.asarray(y)
        if predicted.dtype.kind in "iufb" and labels.dtype.kind in "iufb":  # numeric labels: one comparison
            wrong = float(np.count_nonzero(predicted != labels))
        else:
            wrong = float(sum(scoring.plain(p) != scoring.plain(v) for p, v in zip(predicted, y)))
        return BatchScore(len(y), wrong, wrong)
    residual = np.asarray(y, dtype=float) - model.predict(X)
    return BatchScore(len(y), float(residual @ residual), float(np.abs(residual).sum()))


def page_hinkley(state: dict, x: float, *, delta: float = PH_DELTA, threshold: float = PH_THRESHOLD,
                 min_batches: int = PH_MIN_BATCHES) -> tuple[dict, bool]:
    """One step of the Page-Hinkley test on value ``x``: (new state, drift detected). Restarts on drift."""
    n = state.get("n", 0) + 1
    mean = state.get("mean", 0.0) + (x - state.get("mean", 0.0)) / n
    cumulative = state.get("sum", 0.0) + x - mean - delta
    minimum = min(state.get("min", 0.0), cumulative)
    drift = n >= min_batches and cumulative - minimum > threshold
    if drift:
        return {}, True
    return {"n": n, "mean": mean, "sum": cumulative, "min": minimum}, False


def metrics_frame(conn: psycopg.Connection, deployment_id: int, *, since=None, until=None,
                  bucket: str | None = None) -> pd.DataFrame:
    """Prequential figures of one deployment: per (version, batch), or per (time bucket, version) when
    ``bucket`` is a date_trunc unit ('minute', 'hour', 'day', …); ``since``/``until`` bound evaluated_at."""
    cond = sql.SQL("deployment_id = %s AND (%s::timestamptz IS NULL OR evaluated_at >= %s) "
                   "AND (%s::timestamptz IS NULL OR evaluated_at < %s)")
    params = [deployment_id, since, since, until, until]
    if bucket is None:
        query = sql.SQL("SELECT version, active, batch_lo, batch_hi, rows, loss_sum, abs_sum, "
                        "loss_sum / nullif(rows, 0) AS mean_loss, evaluated_at "
                        "FROM modelstore.deployment_metrics WHERE {} ORDER BY metric_id").format(cond)
    else:
        query = sql.SQL("SELECT date_trunc(%s, evaluated_at) AS bucket, version, sum(rows)::bigint AS rows, "
                        "sum(loss_sum) AS loss_sum, sum(abs_sum) AS abs_sum, "
                        "sum(loss_sum) / nullif(sum(rows), 0) AS mean_loss "
                        "FROM modelstore.deployment_metrics WHERE {} AND active GROUP BY 1, 2 ORDER BY 1, 2").format(cond)
        params = [bucket] + params
    cur = conn.execute(query, params)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
