"""The session's catalog cache: the planner's candidates, kept between requests (docs/planner.md).

A session keeps, per (source, family, filter, class column, columns) — the *catalog key* — every compatible
stored summary as arrays (:class:`CatalogEntry`), and for each request's relevant set (Definition 1, a run
of connected components of those arrays) the cost graph over their cuts (:class:`~.search.CutGraph`).
``modelstore.plan_catalog`` (``sql/planner.sql``) returns the arrays with the source's catalog version
(migration 0019), or only the version when the session already holds the arrays of that version, read as
the same role: one index probe per request. The version changes whenever a row of the source's statistics
is inserted, deleted or updated (a statement trigger), so equal versions mean equal arrays; a transaction
that changed the source and has not committed keeps nothing it reads (``cacheable``).
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import psycopg

from modelstore.planner.search import CutGraph, Topology
from modelstore.request.cuts import WHOLE_KEY_SCALE
from modelstore.request.descriptor import Descriptor

#: cut graphs kept per catalog entry (different relevant sets, directions or row estimators): about 60 MB
#: each at 100,000 stored models
GRAPHS_PER_ENTRY = 2
#: cost figures kept per cut graph (a learned correction changes them every few plans)
WEIGHTS_PER_GRAPH = 4
#: catalog keys kept per session
ENTRIES_PER_SESSION = 32


@dataclass
class CatalogEntry:
    """Every compatible stored summary of a catalog key, sorted by (lo, hi, id), split into connected
    components (ranges sharing no key with any range before them start a new one). Keys are whole keys
    (:func:`modelstore.request.cuts.whole_key`: values, days, or microseconds for timestamps)."""

    version: int
    reader: str
    stats_ids: np.ndarray
    lo_keys: np.ndarray
    hi_keys: np.ndarray
    n_values: np.ndarray
    n_rows: np.ndarray
    column_ix: np.ndarray
    column_sets: list[tuple[str, ...]]
    comp_start: np.ndarray  # index of each component's first summary, and len(...) at the end
    comp_lo: np.ndarray
    comp_hi: np.ndarray
    nv_distinct: np.ndarray
    nv_inverse: np.ndarray
    graphs: OrderedDict = field(default_factory=OrderedDict)

    @classmethod
    def from_arrays(cls, version: int, reader: str, ids, lo, hi, nv, nr, cix, sets) -> CatalogEntry:
        ids, lo, hi = (np.asarray(a, dtype=np.int64) for a in (ids, lo, hi))
        order = np.lexsort((ids, hi, lo))
        ids, lo, hi = ids[order], lo[order], hi[order]
        nv = np.asarray(nv, dtype=np.int64)[order]
        nr = np.asarray(nr, dtype=np.int64)[order]
        cix = np.asarray(cix, dtype=np.int64)[order]
        if len(lo):
            reach = np.maximum.accumulate(hi)
            new = np.ones(len(lo), dtype=bool)
            new[1:] = lo[1:] > reach[:-1]  # meets none of the ranges before it (keys are whole numbers)
            starts = np.flatnonzero(new)
            comp_lo, comp_hi = lo[starts], np.maximum.reduceat(hi, starts)
        else:
            starts = comp_lo = comp_hi = np.zeros(0, dtype=np.int64)
        distinct, inverse = np.unique(nv, return_inverse=True)
        return cls(version, reader, ids, lo, hi, nv, nr, cix, [tuple(c) for c in sets],
                   np.append(starts, len(lo)), comp_lo, comp_hi, distinct, inverse)

    def __len__(self) -> int:
        return len(self.stats_ids)

    def relevant(self, lo_key: Decimal | float, hi_key: Decimal | float) -> tuple[int, int]:
        """The slice [a, b) of summaries relevant to the closed request [lo_key, hi_key] (whole keys): the
        components it intersects, which with it form one connected set (Definition 1's closure, as
        plan_candidates)."""
        lo, hi = math.ceil(lo_key), math.floor(hi_key)
        first = int(np.searchsorted(self.comp_hi, lo, side="left"))  # components are disjoint and sorted
        last = int(np.searchsorted(self.comp_lo, hi, side="right")) - 1
        if first > last:
            return 0, 0
        return int(self.comp_start[first]), int(self.comp_start[last + 1])


@dataclass
class Lookup:
    entry: CatalogEntry
    hit: bool  # the session's arrays were current (only the version came back)
    fetched: int  # summaries read from the catalog by this request
    cached: bool  # kept for later requests


#: per connection (a session): catalog key → entry, least recently used first
_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _entries(conn) -> OrderedDict:
    """The session's entries; a connection that cannot be weakly referenced (PL/Python's SPI) keeps none."""
    try:
        return _SESSIONS.setdefault(conn, OrderedDict())
    except TypeError:
        return OrderedDict()


def catalog_key(source_id: int, descriptor: Descriptor) -> tuple:
    return (source_id, descriptor.kind, descriptor.filter_sql, descriptor.class_column,
            tuple(descriptor.stats_columns))


@dataclass
class Pending:
    """A ``plan_catalog`` call sent (possibly in a pipeline with other statements), not yet read."""

    conn: psycopg.Connection
    key: tuple
    held: CatalogEntry | None
    cursor: object  # the call's cursor, read by receive()


def send(conn: psycopg.Connection, source_id: int, descriptor: Descriptor) -> Pending:
    """Send the request's ``plan_catalog`` call (with the version of the arrays the session holds)."""
    entries = _entries(conn)
    key = catalog_key(source_id, descriptor)
    held = entries.get(key)
    cursor = conn.execute(
        "SELECT * FROM modelstore.plan_catalog(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [source_id, descriptor.kind, descriptor.filter_sql, descriptor.class_column, "",
         list(descriptor.stats_columns), held.version if held else None, held.reader if held else None,
         WHOLE_KEY_SCALE[descriptor.source.order_kind]],
        binary=True)
    return Pending(conn, key, held, cursor)


def receive(pending: Pending) -> Lookup:
    """The catalog entry of the request's key, current as of the call's snapshot."""
    entries = _entries(pending.conn)
    key, held = pending.key, pending.held
    row = pending.cursor.fetchone()
    version, reader, cacheable, changed = row[:4]
    if not changed and held is not None:
        if key in entries:
            entries.move_to_end(key)
        return Lookup(held, True, 0, True)
    entry = CatalogEntry.from_arrays(int(version), reader, *row[4:])
    if cacheable:
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > ENTRIES_PER_SESSION:
            entries.popitem(last=False)
    else:
        entries.pop(key, None)
    return Lookup(entry, False, len(entry), cacheable)


def lookup(conn: psycopg.Connection, source_id: int, descriptor: Descriptor) -> Lookup:
    """The catalog entry of the request's key, current as of this statement's snapshot (one round trip)."""
    return receive(send(conn, source_id, descriptor))


def from_row(conn: psycopg.Connection, source_id: int, descriptor: Descriptor, row: tuple) -> Lookup:
    """The entry for a relevant set read elsewhere (``modelstore.request_context``'s ``plan_candidates``
    row, in the request's first round trip), with no version: it is kept under its own contents — the
    next request's arrays are compared with it element by element, and equal arrays make an equal entry,
    so its cost graphs are reused exactly when they would be built the same."""
    entries = _entries(conn)
    key = ("row", *catalog_key(source_id, descriptor))
    ids, lo, hi, nv, nr, cix, sets = row[:7]
    arrays = tuple(np.asarray(x, dtype=np.int64) for x in (ids, lo, hi, nv, nr, cix))
    sets = [tuple(c) for c in sets]
    held = entries.get(key)
    if held is not None and held[1] == sets and all(np.array_equal(x, y) for x, y in zip(held[0], arrays)):
        entries.move_to_end(key)
        return Lookup(held[2], True, len(held[2]), True)
    entry = CatalogEntry.from_arrays(-1, "", *arrays, sets)
    entries[key] = (arrays, sets, entry)
    entries.move_to_end(key)
    while len(entries) > ENTRIES_PER_SESSION:
        entries.popitem(last=False)
    return Lookup(entry, False, len(entry), True)


def graph_for(entry: CatalogEntry, key: tuple, estimator, build) -> tuple[Topology, bool]:
    """The entry's cut graph for ``key`` (relevant slice, direction) and ``estimator`` (kept by identity: a
    new row estimator counts the rows below each cut anew), built by ``build()`` when missing."""
    held = entry.graphs.get(key)
    if held is not None and held[0] is estimator:
        entry.graphs.move_to_end(key)
        return held[1], True
    graph = build()
    entry.graphs[key] = (estimator, graph)
    entry.graphs.move_to_end(key)
    while len(entry.graphs) > GRAPHS_PER_ENTRY:
        entry.graphs.popitem(last=False)
    return graph, False


def weighted(topology: Topology, key: tuple, weigh) -> tuple[CutGraph, bool]:
    """The topology weighted with the cost figures ``key`` (a learned correction changes them every few
    plans: only the two cost vectors are made again, the adjacency is shared), made by ``weigh(topology)``."""
    held = topology.weighted.get(key)
    if held is not None:
        topology.weighted.move_to_end(key)
        return held, True
    graph = weigh(topology)
    topology.weighted[key] = graph
    while len(topology.weighted) > WEIGHTS_PER_GRAPH:
        topology.weighted.popitem(last=False)
    return graph, False


def forget(conn: psycopg.Connection) -> None:
    """Drop what this session keeps (tests; a session's cache is otherwise dropped with its connection)."""
    _SESSIONS.pop(conn, None)
