"""Storing the cost model in the catalog (``modelstore.cost_model``) and loading it back.

A calibration is measured once per server version and statistics engine and kept: :func:`load_or_calibrate` is what a store
asks on first use, so that only the first connection to a new server pays a (quick) calibration.
"""

from __future__ import annotations

import hashlib
import logging

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from modelstore.planner.costs.calibration import calibrate
from modelstore.planner.costs.model import CostModel
from modelstore.stats import engine as stats_engine

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key serialising first-use calibrations (sha1 of a fixed name, like migrate's;
#: the name predates the split of costs.py and stays, so that every version takes the same lock)
LOCK_KEY = int.from_bytes(hashlib.sha1(b"modelstore.planner.costs.calibrate").digest()[:8], "big", signed=True)


def save(conn: psycopg.Connection, model: CostModel) -> int:
    """Store ``model`` in ``modelstore.cost_model``; returns its id."""
    with conn.transaction():
        row = conn.cursor(row_factory=tuple_row).execute(
            "INSERT INTO modelstore.cost_model (measured_at, server_version, method, params) "
            "VALUES (%s, %s, %s, %s) RETURNING cost_model_id",
            [model.measured_at, model.server_version, model.method, Jsonb(model.to_json())],
        ).fetchone()
    return row[0]


def load(conn: psycopg.Connection, *, any_version: bool = False, engine: str | None = None) -> CostModel | None:
    """The latest stored cost model measured on this server's version (any version with
    ``any_version``) for the statistics engine ``engine`` (default: the one this connection uses; models
    stored before engines had figures of their own are the SQL engine's); None when there is none, or
    the catalog has no ``cost_model`` table yet."""
    engine = engine or stats_engine.engine(conn)[0]
    where = [sql.SQL("coalesce(params->>'engine', 'sql') = {}").format(sql.Literal(engine))]
    if not any_version:
        where.append(sql.SQL("server_version = current_setting('server_version')"))
    query = sql.SQL(
        "SELECT params FROM modelstore.cost_model WHERE {} ORDER BY measured_at DESC, cost_model_id DESC LIMIT 1"
    ).format(sql.SQL(" AND ").join(where))
    try:
        with conn.transaction():
            row = conn.cursor(row_factory=tuple_row).execute(query).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None else CostModel.from_json(row[0])


def load_or_calibrate(conn: psycopg.Connection, *, quick: bool = True) -> CostModel:
    """The stored cost model of this server version and statistics engine, or — on first use — a quick
    calibration of that engine, saved.

    Concurrent first uses serialise on an advisory lock: one measures, the others wait and load it.
    A role that may not write the catalog still gets the measured model (it is just not stored).
    """
    model = load(conn)
    if model is not None:
        return model
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        model = load(conn)
        if model is None:
            model = calibrate(conn, quick=quick)
            try:
                save(conn, model)
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction,
                    psycopg.errors.UndefinedTable) as exc:
                log.warning("cost model measured but not stored: %s", exc)
    return model



__all__ = ["LOCK_KEY", "load", "load_or_calibrate", "save"]
