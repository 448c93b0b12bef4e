"""The relevant set (paper §5, Definition 1 and Algorithm 3): stored statistics a plan may use.

The search runs inside PostgreSQL (``modelstore.relevant_statistics`` in ``sql/planner.sql``): the
request's range is widened by every compatible stored range that intersects it until it stops
growing — the union of intersecting descriptors, the paper's *enhanced descriptor* — each widening a
probe of a GiST index, so the rest of the catalog is never read. Compatible means same source,
family, normalised filter, class column and training parameters, and columns that can serve the
request (a superset that skipped no NULL rows; the same set for logistic chunk models).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg

from modelstore.request.cuts import WHOLE_KEY_SCALE
from modelstore.request.descriptor import Descriptor, Range, bound_key, parse_bound


@dataclass(frozen=True)
class StoredModel:
    """A stored summary as the planner sees it (no arrays)."""

    stats_id: int
    range: Range
    columns: tuple[str, ...]
    n: int
    null_rows: int
    n_values: int  # floats held (fetch size)

    @property
    def rows(self) -> int:
        return self.n + self.null_rows


def relevant_models(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor, *,
                    contained_only: bool = False, exact_columns: bool = False,
                    params_key: str = "", limit: int | None = None) -> tuple[list[StoredModel], bool]:
    """(relevant stored models, whether the list was truncated at ``limit``; no limit by default)."""
    if source_id is None:
        return [], False
    limit = 2**31 - 2 if limit is None else limit
    r = descriptor.range
    rows = conn.execute(
        "SELECT * FROM modelstore.relevant_statistics(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [source_id, descriptor.kind, descriptor.filter_sql, descriptor.class_column, params_key,
         list(descriptor.stats_columns), exact_columns, bound_key(r.lo), bound_key(r.hi), contained_only,
         limit + 1],
    ).fetchall()
    kind = descriptor.source.order_kind
    models = [StoredModel(sid, Range(parse_bound(lo, kind), parse_bound(hi, kind)), tuple(cols), n, nr, nv)
              for sid, lo, hi, _lk, _hk, cols, n, nr, nv in rows[:limit]]
    return models, len(rows) > limit


def models_ending_near(conn: psycopg.Connection, source_id: int, descriptor: Descriptor,
                       windows: list[tuple], *, limit: int | None = None, rows: list | None = None) -> list[StoredModel]:
    """Compatible stored models with an endpoint inside one of ``windows`` (numeric key ranges).

    With a statistics index, the index's spans cover every run of whole chunks at a cost of a few node
    fetches; what stored models can still save is the partial-chunk scans at the request's two ends. So
    the planner then looks only at models that start or end in the chunks holding the request's ends
    (``rows``: those modelstore.request_context found, over the same windows).
    """
    kind = descriptor.source.order_kind
    if rows is not None:
        return [StoredModel(sid, Range(parse_bound(lo, kind), parse_bound(hi, kind)), tuple(cols), n, nr, nv)
                for sid, lo, hi, cols, n, nr, nv in rows]
    clauses, params = [], [source_id, descriptor.kind, descriptor.filter_sql, descriptor.class_column,
                           list(descriptor.stats_columns), list(descriptor.stats_columns)]
    for lo, hi in windows:
        clauses.append("(numrange(lo_key, hi_key, '[]') && numrange(%s, %s, '[]') "
                       "AND (lo_key BETWEEN %s AND %s OR hi_key BETWEEN %s AND %s))")
        params += [lo, hi, lo, hi, lo, hi]
    rows = conn.execute(
        "SELECT stats_id, lo, hi, columns, n, null_rows, cardinality(moments) + coalesce(cardinality(mean), 0) "
        "FROM modelstore.statistics WHERE source_id = %s AND family = %s AND filter_sql = %s AND target = %s "
        "AND params_key = '' AND columns @> %s AND (null_rows = 0 OR columns <@ %s) AND ("
        + " OR ".join(clauses) + ") ORDER BY stats_id LIMIT %s",
        params + [limit if limit is not None else 2**31 - 1],
    ).fetchall()
    kind = descriptor.source.order_kind
    return [StoredModel(sid, Range(parse_bound(lo, kind), parse_bound(hi, kind)), tuple(cols), n, nr, nv)
            for sid, lo, hi, cols, n, nr, nv in rows]


@dataclass(frozen=True)
class Candidates:
    """The relevant set as arrays (integer, date and timestamp ordering columns): per model its id, the whole
    keys of its closed range [lo, hi] (:func:`modelstore.request.cuts.whole_key`), the floats it holds, the
    rows it summarises, and its columns (an index into ``column_sets``). No Python object per model is made
    unless a plan uses it."""

    stats_ids: np.ndarray
    lo_keys: np.ndarray
    hi_keys: np.ndarray
    n_values: np.ndarray
    n_rows: np.ndarray
    column_ix: np.ndarray
    column_sets: list[tuple[str, ...]]
    probes: int = 0

    def __len__(self) -> int:
        return len(self.stats_ids)


def candidates(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor, *,
               contained_only: bool = False, exact_columns: bool = False, params_key: str = "",
               row: tuple | None = None) -> Candidates:
    """Every relevant stored model (Algorithm 3, ``modelstore.plan_candidates``), in one round trip.

    ``row``: the same statement's result already read (``modelstore.request_context``, docs/planner.md
    "Round trips"). Statistics families use the session's catalog cache instead (:mod:`.cache`)."""
    empty = np.zeros(0, dtype=np.int64)
    if source_id is None:
        return Candidates(empty, empty, empty, empty, empty, empty, [])
    if descriptor.source.order_kind not in WHOLE_KEY_SCALE:  # cuts with whole keys (request/cuts.py)
        raise ValueError(f"candidates() needs an integer, date or timestamp ordering column, got "
                         f"{descriptor.source.order_kind}")
    r = descriptor.range
    row = row if row is not None else conn.execute(
        "SELECT * FROM modelstore.plan_candidates(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [source_id, descriptor.kind, descriptor.filter_sql, descriptor.class_column, params_key,
         list(descriptor.stats_columns), exact_columns, bound_key(r.lo), bound_key(r.hi), contained_only,
         WHOLE_KEY_SCALE[descriptor.source.order_kind]],
        binary=True,
    ).fetchone()
    ids, lo, hi, nv, nr, cix, sets, probes = row[:8]
    return Candidates(np.asarray(ids, dtype=np.int64), np.asarray(lo, dtype=np.int64),
                      np.asarray(hi, dtype=np.int64), np.asarray(nv, dtype=np.int64), np.asarray(nr, dtype=np.int64),
                      np.asarray(cix, dtype=np.int64), [tuple(c) for c in sets], probes)
