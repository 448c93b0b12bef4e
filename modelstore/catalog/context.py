"""A request's context in one round trip: ``modelstore.request_context`` (``sql/request.sql``).

Validating a request, finding its source, the statistics index and the relevant stored models, and
reading the statistics a plan may use took a statement each (docs/planner.md, "Round trips"). The server
function returns all of it at once; the functions that used to ask — :func:`freshness.check_access`,
:func:`freshness.usable_source`, :func:`index.find`, :func:`index.spans`, the relevant set, and the
executor's fetches — take their rows from a :class:`RequestContext` instead, and decide exactly as before.
What the context does not hold (more than :data:`MAX_PREFETCHED` relevant models, a table other than an
ordinary one) the caller reads the usual way.

With ``speculate`` (an index plan, docs/planner.md "Round trips"), the call takes the source lock before it
reads anything (``locked``) and cuts the chunks holding the request's ends into ``pieces``, which the
statement pipelined after it aggregates (:func:`modelstore.execution.executor.piece_scan_query`). Without an
index it takes the lock too whenever the plan may scan or merge (anything but one stored summary of exactly the
request's range), and when nothing stored can serve it turns on the from-scratch scan pipelined after it
(``scratch``; :func:`modelstore.execution.executor.scratch_scan_query`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from modelstore.families import FAMILIES
from modelstore.request.cuts import WHOLE_KEY_SCALE, Cut
from modelstore.request.descriptor import Descriptor, bound_key
from modelstore.request.source import Column, Table

#: the most relevant stored models whose statistics come back with the context (an index plan reads a few)
MAX_PREFETCHED = 64

#: the most pieces the ends' chunks are cut into (two cuts per model ending there, beyond the ends and boundaries)
MAX_PIECES = 64

#: request_access's columns, in the order freshness.check_access unpacks them
ACCESS_FIELDS = ("rls", "may_trigger", "n_triggers", "n_enabled", "isolation", "inherited", "role", "denied",
                 "n_members", "foreign_members", "is_partition", "key_columns", "key_def")


@dataclass
class RequestContext:
    """What ``modelstore.request_context`` returned for one request (rows as the readers expect them)."""

    table: Table | None = None  # None: no such table visible to the caller
    relkind: str = ""
    access: tuple | None = None
    source: tuple | None = None  # (source_id, relid, column_types, same partition tree)
    index_rows: list[tuple] = field(default_factory=list)
    boundaries: list[tuple] = field(default_factory=list)
    near: list[tuple] = field(default_factory=list)
    candidates: tuple | None = None
    stats: dict[int, object] = field(default_factory=dict)
    nodes: dict[tuple[int, int, int], object] = field(default_factory=dict)
    node_families: dict[int, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    locked: bool = False  # the call took the source lock before reading anything below it
    #: the partial-chunk pieces at the request's ends: (sorted cut keys, [lo, hi) key windows), when scanned —
    #: whole keys (request/cuts.py: microseconds for timestamps)
    pieces: tuple[tuple[int, ...], tuple[tuple[int, int], ...]] | None = None
    #: the lock was taken and nothing stored or indexed can serve: the pipelined from-scratch scan read the rows
    scratch: bool = False

    @property
    def complete(self) -> bool:
        """Whether the context holds everything freshness and the planner read (an ordinary table)."""
        return self.table is not None and self.relkind == "r" and self.access is not None


def send(conn: psycopg.Connection, schema: str | None, relname: str, descriptor: Descriptor, s: Cut, t: Cut,
         *, array_keys: bool, speculate: bool = False) -> psycopg.Cursor:
    """Send one call of ``modelstore.request_context`` for ``descriptor`` between the cuts ``s`` < ``t``
    (in a pipeline, nothing waits); :func:`parse` reads its rows. ``speculate``: take the source lock and
    cut the ends' chunks into pieces when an index serves the request (sql/request.sql). ``array_keys``: the
    ordering column's cuts have whole keys (integer, date, timestamp: :func:`~modelstore.request.cuts.whole_keys`),
    so the relevant set and the pieces come back as arrays of them."""
    r = descriptor.range
    family = descriptor.family
    return conn.execute(
        "SELECT * FROM modelstore.request_context(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::int2, %s, %s::int2,"
        " %s, %s, %s, %s, %s)",
        [schema, relname, descriptor.source.order_by, list(descriptor.read_columns), descriptor.kind,
         descriptor.filter_sql, descriptor.class_column, list(descriptor.stats_columns),
         bound_key(r.lo) if array_keys else None, bound_key(r.hi) if array_keys else None,
         s.key, s.side, t.key, t.side, family.indexable and not family.trained, MAX_PREFETCHED, speculate,
         MAX_PIECES, WHOLE_KEY_SCALE.get(descriptor.source.order_kind, 1)],
        binary=True,
    )


def load(conn: psycopg.Connection, schema: str | None, relname: str, descriptor: Descriptor, s: Cut, t: Cut,
         *, array_keys: bool) -> RequestContext:
    """One call of ``modelstore.request_context`` for ``descriptor`` between the cuts ``s`` < ``t``."""
    return parse(send(conn, schema, relname, descriptor, s, t, array_keys=array_keys), descriptor)


def parse(cursor: psycopg.Cursor, descriptor: Descriptor) -> RequestContext:
    """The :class:`RequestContext` from the rows of :func:`send`'s call."""
    rows = cursor.fetchall()
    out = RequestContext()
    index_columns: dict[int, tuple[str, ...]] = {}
    for part, id_, info, fam, columns, n, null_rows, classes, counts, mean, moments, mean_lo, moments_lo in rows:
        if part == "table":
            out.relkind = info["relkind"]
            out.table = Table(info["schema"], info["name"], id_,
                              {c[0]: Column(*c) for c in info["columns"] or ()}, info["relkind"])
        elif part == "access":
            out.access = tuple(info[f] for f in ACCESS_FIELDS)
        elif part == "source":
            out.source = (id_, info["relid"], info["column_types"], info["members"])
        elif part == "index":
            out.index_rows.append(tuple(info))
            index_columns[id_] = tuple(info[4])
        elif part == "boundary":
            out.boundaries.append(tuple(info))
        elif part == "near":
            out.near.append(tuple(info))
        elif part == "candidates":
            out.candidates = tuple(info)
        elif part == "stats":
            out.stats[id_] = FAMILIES[fam].unpack(columns, n, null_rows, classes, counts, mean, moments, mean_lo,
                                                  moments_lo)
        elif part == "locked":
            out.locked = True
        elif part == "scratch":
            out.scratch = True
        elif part == "pieces":
            cuts, windows = info
            out.pieces = (tuple(int(c) for c in cuts), tuple((int(lo), int(hi)) for lo, hi in windows))
        elif part == "node":
            level, pos = info
            out.nodes[(id_, level, pos)] = FAMILIES[descriptor.kind].unpack(
                index_columns[id_], n, null_rows, classes, counts, mean, moments, mean_lo, moments_lo, triangle=True)
    return out


__all__ = ["ACCESS_FIELDS", "MAX_PIECES", "MAX_PREFETCHED", "RequestContext", "load", "parse", "send"]
