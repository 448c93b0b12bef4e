"""modelstore inside PostgreSQL: the bodies of the SQL functions of ``sql/plpython.sql``.

``modelstore.create_model``, ``modelstore.explain`` and ``modelstore.query`` (docs/plpython.md) call
:func:`create_model`, :func:`explain` and :func:`query` with the ``plpy`` module. They run the same
:class:`~modelstore.store.Store` as the Python API, over :class:`~modelstore.doors.spi.SpiConnection`
(PL/Python's SPI imitating a psycopg connection): every statement runs inside the caller's
transaction and with the caller's privileges. Errors reach the caller as PostgreSQL errors with a
SQLSTATE per modelstore error class (:data:`SQLSTATES`); results come back as JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from modelstore import errors
from modelstore.doors.spi import SpiConnection
from modelstore.planner import costs
from modelstore.planner.costs import CostModel
from modelstore.request.descriptor import bound_text, coerce_bound
from modelstore.errors import ModelstoreError, RangeError
from modelstore.request.source import resolve_table
from modelstore.stats import engine as stats_engine
from modelstore.store import Store

__all__ = ["InsideStore", "SpiConnection", "create_model", "explain", "frame_rows", "model_summary", "query"]


# -- the store ------------------------------------------------------------------------------------------

class InsideStore(Store):
    """A :class:`Store` over SPI. It never calibrates: a SQL function call must not spend seconds
    measuring the server (and a calibration would run inside the caller's transaction)."""

    @property
    def cost_model(self) -> CostModel:
        """The stored calibration of this server version, else the built-in default figures."""
        if self._cost_model is None:
            try:
                stored = costs.load(self.conn)
            except psycopg.errors.InsufficientPrivilege:
                stored = None  # a role that may not read modelstore.cost_model plans with the defaults
            self._cost_model = stored or CostModel.default(stats_engine.engine(self.conn)[0])
        return self._cost_model

    def _setup(self, materialize: bool, max_digits_lost: float) -> None:
        super()._setup(materialize, max_digits_lost)
        self.cost_learner = None  # no refit nor catalog write inside the caller's SQL function call

    def calibrate(self, *, quick: bool = False) -> CostModel:
        raise ModelstoreError("calibration does not run inside a SQL function; run `modelstore calibrate` "
                              "(or store.calibrate() from Python) against this database instead")


#: row estimates per role (pg_stats shows a role only the tables it may read), kept across the calls of
#: one backend and re-read after Store's ESTIMATOR_TTL_SECONDS, as a Python client's Store keeps them
_ESTIMATORS: dict[str, dict] = {}


def open_store(plpy) -> InsideStore:
    """A store over this call's SPI connection."""
    store = InsideStore.on_connection(SpiConnection(plpy))
    role = store.conn.execute("SELECT current_user").fetchone()[0]
    store._estimators = _ESTIMATORS.setdefault(role, {})
    return store


# -- the SQL functions' bodies ----------------------------------------------------------------------------

#: SQLSTATE of each modelstore error, so that clients can catch them by class (the most specific wins)
SQLSTATES: tuple[tuple[type, str], ...] = (
    (errors.UnknownTableError, "42P01"),      # undefined_table
    (errors.UnknownColumnError, "42703"),     # undefined_column
    (errors.ColumnTypeError, "42804"),        # datatype_mismatch
    (errors.FilterError, "42601"),            # syntax_error
    (errors.TooManyClassesError, "54000"),    # program_limit_exceeded
    (errors.ModelNotFoundError, "42704"),     # undefined_object
    (errors.SingularMatrixError, "22000"),    # data_exception
    (errors.MigrationError, "55000"),         # object_not_in_prerequisite_state
    (errors.InputError, "22023"),             # invalid_parameter_value (RangeError, NonFiniteValueError, …)
    (ModelstoreError, "XX000"),
)


def _sqlstate(exc: ModelstoreError) -> str:
    return next(code for cls, code in SQLSTATES if isinstance(exc, cls))


def _as_sql_error(plpy, fn, *args, **kwargs):
    """Run ``fn``; a modelstore or database error becomes a PostgreSQL error with the same message.

    Raised at the outermost level, after every subtransaction has rolled back, so nothing the call
    wrote survives it (and the caller's transaction is aborted, as by any ERROR)."""
    try:
        return fn(*args, **kwargs)
    except ModelstoreError as exc:
        failure = {"sqlstate": _sqlstate(exc), "detail": f"raised by modelstore as {type(exc).__name__}"}
        message = str(exc)
    except psycopg.Error as exc:  # from SPI (the cause keeps its detail and hint) or from psycopg itself
        cause = exc.__cause__
        failure = {"sqlstate": getattr(exc, "sqlstate", None) or "XX000", "detail": getattr(cause, "detail", None),
                   "hint": getattr(cause, "hint", None)}
        message = str(exc)
    raise _sql_error(plpy, message, **{k: v for k, v in failure.items() if v})


def _sql_error(plpy, message: str, **fields):
    """A ``plpy.Error`` carrying SQLSTATE, DETAIL and HINT (what ``plpy.error()`` raises), whose class is
    named ``modelstore`` and counts as a builtin: PL/Python prefixes an error's message with its Python
    type, so the PostgreSQL error reads "modelstore: <message>" rather than "plpy.Error: <message>"."""
    cls = _ERROR_CLASSES.get(id(plpy.Error))
    if cls is None:
        cls = _ERROR_CLASSES[id(plpy.Error)] = type("modelstore", (plpy.Error,), {"__module__": "builtins"})
    exc = cls(message)
    for key, value in fields.items():
        setattr(exc, key, value)
    return exc


_ERROR_CLASSES: dict[int, type] = {}


def _bounds(conn: SpiConnection, table, order_by, lo, hi) -> tuple:
    """The range bounds given as text, read as PostgreSQL reads literals of the ordering column's kind
    (integers and numbers as numeric, dates, timestamps in the session's DateStyle order and TimeZone)."""
    if lo is None and hi is None:
        return None, None
    tbl = resolve_table(conn, table)
    kind = tbl.order_kind(order_by)
    column = tbl.columns[order_by]
    sql_type = {"integer": "numeric", "date": "date", "timestamp": "timestamp", "timestamptz": "timestamptz",
                "number": "float8" if column.type_name in ("real", "double precision") else "numeric"}[kind]
    cast = sql.SQL("CAST(%s AS {})").format(sql.SQL(sql_type))
    given = [(which, text) for which, text in (("lo", lo), ("hi", hi)) if text is not None]
    try:
        with conn.transaction():
            values = conn.execute(sql.SQL("SELECT {}").format(sql.SQL(", ").join([cast] * len(given))),
                                  [text for _, text in given]).fetchone()
    except psycopg.DataError:
        for which, text in given:  # which one PostgreSQL cannot read
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("SELECT {}").format(cast), [text])
            except psycopg.DataError as exc:
                raise RangeError(f"{which} {text!r} is not a valid {sql_type} for order_by column {order_by!r} "
                                 f"({column.type_name}): {exc}") from exc
        raise
    out = {"lo": None, "hi": None}
    for (which, text), value in zip(given, values):
        if isinstance(value, Decimal | float) and not math.isfinite(value):
            raise RangeError(f"{which} must be finite, got {text!r} instead")
        out[which] = coerce_bound(value, kind, which)
    return out["lo"], out["hi"]


def _fit(plpy, *, name, kind, table, target, features, order_by, lo, hi, where, l2, chunk_rows, replace,
         var_smoothing, alpha) -> str:
    store = open_store(plpy)
    lo, hi = _bounds(store.conn, table, order_by, lo, hi)
    model = store.fit(
        kind, table=table, target=target, features=features, order_by=order_by, lo=lo, hi=hi,
        where=where, l2=l2, chunk_rows=chunk_rows, name=name, replace=bool(replace),
        **_optional(var_smoothing=var_smoothing, alpha=alpha))
    return json.dumps(model_summary(model))


def _explain(plpy, *, kind, table, target, features, order_by, lo, hi, where, l2, chunk_rows, var_smoothing,
             alpha) -> list[str]:
    store = open_store(plpy)
    lo, hi = _bounds(store.conn, table, order_by, lo, hi)
    plan = store.explain(
        kind, table=table, target=target, features=features, order_by=order_by, lo=lo, hi=hi,
        where=where, l2=l2, chunk_rows=chunk_rows, **_optional(var_smoothing=var_smoothing, alpha=alpha))
    return str(plan).splitlines()


def _query(plpy, statement) -> list[str]:
    store = open_store(plpy)
    if not hasattr(store, "query"):
        raise ModelstoreError("modelstore.query needs the model language (Store.query), which this installed "
                              "modelstore does not have yet")
    result = store.query(statement)
    if isinstance(result, pd.DataFrame):
        return [json.dumps(row) for row in frame_rows(result)]
    if hasattr(result, "descriptor") and hasattr(result, "plan"):
        return [json.dumps(model_summary(result))]
    if result is None:
        return []
    return [json.dumps({"result": _jsonable(result if isinstance(result, bool | int | float) else str(result))})]


def _optional(**values) -> dict:
    """The keyword arguments given (SQL NULL = the Python default)."""
    return {k: v for k, v in values.items() if v is not None}


def create_model(plpy, **arguments) -> str:
    """``modelstore.create_model(...)``: fit and materialise; the model's summary as JSON text."""
    return _as_sql_error(plpy, _fit, plpy, **arguments)


def explain(plpy, **arguments) -> list[str]:
    """``modelstore.explain(...)``: the plan's lines."""
    return _as_sql_error(plpy, _explain, plpy, **arguments)


def query(plpy, statement) -> list[str]:
    """``modelstore.query(text)``: one JSON object per result row (a model: its summary)."""
    return _as_sql_error(plpy, _query, plpy, statement)


# -- JSON ------------------------------------------------------------------------------------------------

def model_summary(model) -> dict:
    """What a fitted model is, as JSON-ready data: descriptor, rows, parameters, the plan's text."""
    d = model.descriptor
    out = {
        "name": model.name, "kind": d.kind, "table": d.source.qualified, "target": d.target,
        "features": list(d.features), "order_by": d.source.order_by, "lo": bound_text(d.range.lo),
        "hi": bound_text(d.range.hi), "where": d.filter_sql or None, "params": d.params,
        "rows_used": getattr(model, "rows_used", getattr(model, "n_obs", None)),
        "rows_skipped": getattr(model, "rows_skipped", None),
    }
    out.update(d.family.summary(model))
    out["stats_id"] = getattr(model.plan, "stored_stats_id", None)
    out["plan"] = str(model.plan)
    return _jsonable(out)


def frame_rows(frame: pd.DataFrame) -> list[dict]:
    """A DataFrame's rows as JSON-ready dicts: NaN/NaT → null, numpy scalars → numbers, times → ISO text."""
    columns = [str(c) for c in frame.columns]
    return [dict(zip(columns, (_jsonable(v) for v in row))) for row in frame.itertuples(index=False, name=None)]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if obj is None or obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, pd.Timestamp | dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, pd.Timedelta | dt.timedelta):
        return pd.Timedelta(obj).isoformat()
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, Decimal):
        return int(obj) if obj.is_finite() and obj == obj.to_integral_value() else _jsonable(float(obj))
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None  # jsonb has no NaN or infinities
    if isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, bytes):
        return obj.hex()
    return str(obj)
