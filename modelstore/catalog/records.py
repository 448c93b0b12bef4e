"""The catalog: sources, stored statistics with their descriptors, and named models (schema ``modelstore``).

Layout and the meaning of each array are in ``migrations/0001_catalog.sql`` and ``docs/statistics.md``.
Statistics are written with ``INSERT … ON CONFLICT DO NOTHING`` on the descriptor's unique key, so
that concurrent requests for one descriptor store it once; every write happens inside the caller's
transaction, so a failed request leaves nothing behind.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from modelstore.request.descriptor import Descriptor, Range, Source, bound_key, bound_text
from modelstore.catalog.wire import float8_array
from modelstore.errors import InputError, ModelNotFoundError
from modelstore.families import FAMILIES, statistics_family


def ensure_source(conn: psycopg.Connection, source: Source, relid: int | None = None) -> int:
    """The source's id, recording it (bound to the table's oid) on first use."""
    row = conn.execute(
        """
        INSERT INTO modelstore.sources (schema_name, table_name, order_by, order_kind, relid)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (schema_name, table_name, order_by) DO NOTHING
        RETURNING source_id
        """,
        [source.schema, source.table, source.order_by, source.order_kind, relid],
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT source_id FROM modelstore.sources WHERE schema_name = %s AND table_name = %s AND order_by = %s",
            [source.schema, source.table, source.order_by],
        ).fetchone()
    return row[0]


# -- statistics ---------------------------------------------------------------------------------------

_INSERT_STATS = """
        INSERT INTO modelstore.statistics
            (source_id, family, lo_key, hi_key, filter_sql, target, params_key, columns, lo, hi, n, null_rows,
             classes, counts, mean, moments, extra, read_columns, mean_lo, moments_lo)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (source_id, family, lo_key, hi_key, filter_sql, target, params_key, columns) DO NOTHING
        RETURNING stats_id
        """
_STATS_KEY = ("source_id = %s AND family = %s AND lo_key = %s AND hi_key = %s AND filter_sql = %s "
              "AND target = %s AND params_key = %s AND columns = %s")
_INSERT_STATS_SQL, _STATS_KEY_SQL = sql.SQL(_INSERT_STATS), sql.SQL(_STATS_KEY)


def stats_insert(source_id: int, descriptor: Descriptor, stats, *, r: Range | None = None, params_key: str = "",
                 extra: dict | None = None, read_columns: tuple[str, ...] | None = None, binary: bool = False,
                 ) -> tuple[sql.Composable, list, sql.Composable, list]:
    """The statement materialising ``stats`` (``INSERT … ON CONFLICT DO NOTHING RETURNING stats_id``) and
    the condition finding the row of its key, each with its parameters — for callers that store a
    summary inside a larger statement (a deployment's refresh writes everything in one). ``read_columns``:
    the descriptor's, when the caller has them (parsing the filter for them costs ~0.5 ms). ``binary``: the
    float arrays as :class:`~modelstore.catalog.wire.Float8Array` (a psycopg connection only, not SPI)."""
    r = r or descriptor.range
    if not (r.lo_closed and r.hi_closed):
        raise ValueError("stored statistics cover closed ranges only")
    key = [source_id, descriptor.kind, bound_key(r.lo), bound_key(r.hi), descriptor.filter_sql,
           descriptor.class_column, params_key, list(stats.columns)]
    arrays = statistics_family(stats).pack(stats)
    if binary:
        arrays = {k: float8_array(v) if k in _FLOAT_ARRAYS else v for k, v in arrays.items()}
    values = key + [bound_text(r.lo), bound_text(r.hi), stats.n, stats.null_rows, arrays["classes"], arrays["counts"],
                    arrays["mean"], arrays["moments"], None if extra is None else json_value(extra),
                    list(descriptor.read_columns if read_columns is None else read_columns), arrays.get("mean_lo"), arrays.get("moments_lo")]
    return _INSERT_STATS_SQL, values, _STATS_KEY_SQL, key


#: the packed statistics' float8[] columns (counts is bigint[], classes jsonb)
_FLOAT_ARRAYS = frozenset({"mean", "moments", "mean_lo", "moments_lo"})


def store_stats(conn: psycopg.Connection, source_id: int, descriptor: Descriptor, stats, *,
                r: Range | None = None, params_key: str = "", extra: dict | None = None) -> int:
    """Materialise ``stats`` for the descriptor's range (or ``r``); returns its id (an existing one if stored)."""
    insert, values, key_sql, key = stats_insert(source_id, descriptor, stats, r=r, params_key=params_key, extra=extra,
                                                binary=isinstance(conn, psycopg.Connection))
    row = conn.execute(insert, values).fetchone()
    if row is None:
        row = conn.execute(sql.SQL("SELECT stats_id FROM modelstore.statistics WHERE {}").format(key_sql), key).fetchone()
    return row[0]


def store_chunk(conn: psycopg.Connection, source_id: int, descriptor: Descriptor, chunk, params_key: str) -> int:
    """Materialise one logistic chunk model (family 'logistic'): intercepts in ``mean``, the coefficient
    matrix in ``moments``, class counts in ``counts``, R and training accuracy in ``extra``."""
    r = Range(chunk.lo, chunk.hi)
    lo_key, hi_key = bound_key(r.lo), bound_key(r.hi)
    # a stale chunk of the same descriptor (its rows changed, sql/capture_5_trigger.sql) is replaced: rebuilt
    # on demand
    row = conn.execute(
        """
        INSERT INTO modelstore.statistics
            (source_id, family, lo_key, hi_key, filter_sql, target, params_key, columns, lo, hi, n, null_rows,
             classes, counts, mean, moments, extra, read_columns)
        VALUES (%s, 'logistic', %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (source_id, family, lo_key, hi_key, filter_sql, target, params_key, columns) DO UPDATE SET
            n = EXCLUDED.n, classes = EXCLUDED.classes, counts = EXCLUDED.counts, mean = EXCLUDED.mean,
            moments = EXCLUDED.moments, extra = EXCLUDED.extra, stale = false, created_at = now(),
            created_by = current_user
        WHERE statistics.stale
        RETURNING stats_id
        """,
        [source_id, lo_key, hi_key, descriptor.filter_sql, descriptor.target, params_key,
         list(descriptor.features), bound_text(r.lo), bound_text(r.hi), chunk.n, Jsonb(list(chunk.classes)),
         list(chunk.class_counts), chunk.intercept.tolist(), chunk.coef.ravel().tolist(),
         Jsonb({"r_max": chunk.r_max, "accuracy": chunk.accuracy, "l2": chunk.l2}), list(descriptor.read_columns)],
    ).fetchone()
    if row is not None:
        # stale chunks this one overlaps are superseded by it
        conn.execute(
            """
            DELETE FROM modelstore.statistics
            WHERE source_id = %s AND family = 'logistic' AND stale AND filter_sql = %s AND target = %s
              AND params_key = %s AND columns = %s AND numrange(lo_key, hi_key, '[]') && numrange(%s, %s, '[]')
            """,
            [source_id, descriptor.filter_sql, descriptor.target, params_key, list(descriptor.features),
             lo_key, hi_key],
        )
    return None if row is None else row[0]


def fetch_stats(conn: psycopg.Connection, stats_ids: list[int], known: dict | None = None) -> dict[int, object]:
    """The statistics objects of ``stats_ids``, in one round trip (none when ``known``, statistics read
    already by modelstore.request_context, holds them all)."""
    if not stats_ids:
        return {}
    if known and all(i in known for i in stats_ids):
        return {i: known[i] for i in stats_ids}
    rows = conn.execute(
        """
        SELECT stats_id, family, columns, n, null_rows, classes, counts, mean, moments, mean_lo, moments_lo
        FROM modelstore.statistics WHERE stats_id = ANY (%s)
        """,
        [list(stats_ids)],
        binary=True,  # float8 arrays in binary: ~5× cheaper per value than parsing their text
    ).fetchall()
    found = {row[0]: FAMILIES[row[1]].unpack(*row[2:]) for row in rows}
    missing = set(stats_ids) - set(found)
    if missing:
        raise LookupError(f"stored statistics {sorted(missing)} disappeared while the request ran")
    return found


# -- commit durability -------------------------------------------------------------------------------

#: sent in a materialisation transaction the store owns when the request names no model: its rows are
#: derived data the store can recompute, so its COMMIT need not wait for the WAL flush (docs/freshness.md,
#: "Asynchronous commit of derived rows"). A later synchronous commit flushes it (WAL is written in order),
#: so a crash can only lose a suffix of such transactions, never leave the catalog half of one.
ASYNC_COMMIT = sql.SQL("SET LOCAL synchronous_commit = off")


def commits_asynchronously(name: str | None, materialize: bool) -> bool:
    """Whether a request's materialisation may commit without waiting for the WAL flush: it stores
    something, and no model under a name the user gave (a named model keeps the synchronous commit the
    user expects)."""
    return materialize and name is None


# -- named models -------------------------------------------------------------------------------------

def store_model(conn: psycopg.Connection, *, name: str | None, kind: str, source_id: int, stats_id: int | None,
                descriptor: Descriptor, params: dict, rows_used: int, rows_skipped: int, state: dict,
                plan: dict, replace: bool, name_prefix: str = "") -> tuple[int, str]:
    """Insert (or with ``replace`` upsert) the named model; returns (model id, name). Without a
    ``name`` the model is named ``name_prefix`` + a number drawn from the models' sequence, in the
    same statement (no round trip of its own)."""
    query, values = model_insert(name=name, kind=kind, source_id=source_id, stats_id=stats_id, descriptor=descriptor,
                                 params=params, rows_used=rows_used, rows_skipped=rows_skipped, state=state,
                                 plan=plan, replace=replace, name_prefix=name_prefix)
    return inserted_model(conn.execute(query, values).fetchone(), name)


def inserted_model(row, name: str | None) -> tuple[int, str]:
    """(model id, name) from the row :func:`model_insert`'s statement returned."""
    if row is None:
        raise name_taken(name)
    return row[0], row[1]


def name_taken(name: str | None) -> InputError:
    """The error for a model name in use (:func:`inserted_model`; a pipelined :func:`model_insert` with
    ``stats_key`` raises the unique violation on constraint :data:`NAME_TAKEN` instead)."""
    return InputError(f"a model named {name!r} already exists; pass replace=True or choose another name")


#: the unique constraint on model names
NAME_TAKEN = "fitted_models_name_key"


def model_insert(*, name: str | None, kind: str, source_id: int, stats_id: int | None, descriptor: Descriptor,
                 params: dict, rows_used: int, rows_skipped: int, state: dict, plan: dict, replace: bool,
                 name_prefix: str = "", stats_key: tuple[sql.Composable, list] | None = None,
                 ) -> tuple[sql.Composable, list]:
    """The statement :func:`store_model` runs, with its parameters (for a caller that pipelines it).

    ``stats_key``: (condition, parameters) of :func:`stats_insert` — the model's statistics are the row of
    that key, inserted by an earlier statement of the same transaction (pipelined with this one, so the
    id is not known yet); the plan's ``stored_stats_id`` is set to it too. A name taken then fails the
    statement (a unique violation, :data:`NAME_TAKEN`) instead of inserting nothing, so that a COMMIT
    pipelined after it cannot keep the statistics without the model. The statement returns (model id,
    name, statistics id)."""
    r = descriptor.range
    key_sql, key_values = (None, []) if stats_key is None else (stats_key[0], list(stats_key[1]))
    head = [name, name, name_prefix, kind, source_id]
    tail = [bound_text(r.lo), bound_text(r.hi), descriptor.filter_sql, descriptor.target, list(descriptor.features),
            json_value(params), rows_used, rows_skipped, json_value(state)]
    statement = (_model_statement(key_sql is not None, replace) if key_sql is None or key_sql is _STATS_KEY_SQL
                 else _compose_model_statement(key_sql, replace))
    return (statement,
            head + ([stats_id] if key_sql is None else key_values) + tail + [json_value(plan)] + key_values)


@functools.lru_cache(maxsize=None)
def _model_statement(keyed: bool, replace: bool) -> sql.SQL:
    """:func:`model_insert`'s statement, composed once per variant (it holds no value)."""
    return sql.SQL(_compose_model_statement(_STATS_KEY_SQL if keyed else None, replace).as_string())


def _compose_model_statement(key_sql: sql.Composable | None, replace: bool) -> sql.Composed:
    # replace: one upsert, so that two requests replacing one name at once both succeed (the last
    # commit wins); a DELETE then INSERT would let the second INSERT meet the first one's row
    conflict = ("DO UPDATE SET kind = EXCLUDED.kind, source_id = EXCLUDED.source_id, stats_id = EXCLUDED.stats_id, "
                "lo = EXCLUDED.lo, hi = EXCLUDED.hi, filter_sql = EXCLUDED.filter_sql, target = EXCLUDED.target, "
                "features = EXCLUDED.features, params = EXCLUDED.params, rows_used = EXCLUDED.rows_used, "
                "rows_skipped = EXCLUDED.rows_skipped, state = EXCLUDED.state, plan = EXCLUDED.plan, "
                "created_at = now(), created_by = current_user, group_by = NULL, group_l2 = NULL") if replace else "DO NOTHING"
    stats_value, plan_value = sql.SQL("%s"), sql.SQL("%s")
    if key_sql is not None:
        stats_value = sql.SQL("(SELECT stats_id FROM modelstore.statistics WHERE {})").format(key_sql)
        plan_value = sql.SQL("pg_catalog.jsonb_set(%s::jsonb, '{{stored_stats_id}}', pg_catalog.to_jsonb({}))").format(
            stats_value)
    return sql.SQL("""
        WITH number AS (SELECT CASE WHEN %s::text IS NULL
                                    THEN nextval(pg_get_serial_sequence('modelstore.fitted_models', 'model_id'))
                               END AS v)
        INSERT INTO modelstore.fitted_models
            (name, kind, source_id, stats_id, lo, hi, filter_sql, target, features, params,
             rows_used, rows_skipped, state, plan)
        SELECT coalesce(%s::text, %s::text || number.v), %s, %s, {}, %s, %s, %s, %s, %s, %s, %s, %s, %s, {}
        FROM number
        {}
        RETURNING model_id, name, stats_id
        """).format(stats_value, plan_value,
                    sql.SQL("" if key_sql is not None and not replace else f"ON CONFLICT (name) {conflict}"))


def next_model_number(conn: psycopg.Connection) -> int:
    """A number for an unnamed model (kept for callers; :func:`store_model` draws it itself)."""
    return conn.execute("SELECT nextval(pg_get_serial_sequence('modelstore.fitted_models', 'model_id'))").fetchone()[0]


def load_model_row(conn: psycopg.Connection, name: str) -> dict:
    cur = conn.execute(
        """
        SELECT m.model_id, m.name, m.kind, m.stats_id, m.lo, m.hi, m.filter_sql, m.target, m.features,
               m.params, m.rows_used, m.rows_skipped, m.state, m.plan, m.created_at, m.created_by,
               m.group_by, m.group_l2, s.schema_name, s.table_name, s.order_by, s.order_kind
        FROM modelstore.fitted_models m JOIN modelstore.sources s USING (source_id)
        WHERE m.name = %s
        """,
        [name],
    )
    row = cur.fetchone()
    if row is None:
        raise ModelNotFoundError(f"no model named {name!r}")
    return dict(zip([c.name for c in cur.description], row))


def list_models(conn: psycopg.Connection) -> list[dict]:
    cur = conn.execute(sql.SQL("SELECT * FROM modelstore.models ORDER BY created_at, name"))
    return [dict(zip([c.name for c in cur.description], row)) for row in cur.fetchall()]


def drop_model(conn: psycopg.Connection, name: str, *, missing_ok: bool = False) -> bool:
    """Drop the named model; its statistics stay in the catalog for reuse."""
    cur = conn.execute("DELETE FROM modelstore.fitted_models WHERE name = %s", [name])
    if cur.rowcount == 0 and not missing_ok:
        raise ModelNotFoundError(f"no model named {name!r}")
    return cur.rowcount > 0


def json_value(obj) -> Jsonb:
    """``obj`` as a jsonb parameter, serialised once, here: :func:`json.dumps` straight from the object
    (numpy values through ``default``), falling back to :func:`_jsonable`'s copy only when the object holds
    what JSON cannot say as it is (NaN/±inf → null, keys that are not strings or numbers). Several
    times cheaper than copying every dict and list of a model's plan and state before dumping them."""
    try:
        text = json.dumps(obj, allow_nan=False, default=_json_default)
    except (ValueError, TypeError):
        text = json.dumps(_jsonable(obj), allow_nan=False)
    return Jsonb(text, dumps=_as_is)


def _json_default(obj):
    """What :func:`json.dumps` cannot encode itself: numpy arrays and scalars (as :func:`_jsonable` converts
    them), anything else as its text. A non-finite value in an array raises ValueError: the fallback.
    (Dict keys are the catalog's names, strings; json.dumps would spell a True or None key 'true', 'null'.)"""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _as_is(text: str) -> str:
    return text


def _jsonable(obj):
    """JSON-safe copy: numpy values to Python, tuples to lists, NaN/±inf to None (jsonb has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "fiub" and (obj.dtype.kind != "f" or np.isfinite(obj).all()):
        return obj.tolist()  # numbers only, all finite: numpy's own conversion (a model's covariance, per request)
    if type(obj) is list and all(type(v) is float for v in obj) and all(map(math.isfinite, obj)):
        return list(obj)  # floats only, all finite (a row of a model's covariance, per request): as they are
    if isinstance(obj, list | tuple | np.ndarray):
        return [_jsonable(v) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)
