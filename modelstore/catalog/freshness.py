"""Keeping the promise a stored model makes: its statistics are those of the rows it describes, now.

Three mechanisms (docs/freshness.md, docs/security.md):

* **Change capture.** A table gets four statement-level triggers (the ``sql/capture_*.sql`` scripts) when
  it gets its first stored statistics; INSERT/UPDATE/DELETE/TRUNCATE then maintain them in the writer's
  transaction.
* **The source lock.** A request that writes statistics first updates its source's catalog row
  (:func:`lock_source`); the capture trigger takes that row FOR SHARE. Writers wait for such a request
  and it waits for them, so every READ COMMITTED statement it runs sees the same table, and the
  statistics it stores already include every committed change (and later changes find them).
* **Validation.** Before stored statistics are used, the table must be the one they were computed on
  (same oid), with the same column types, and still captured; anything else drops them.

:func:`check_access` decides, per request, whether stored statistics may be used and stored at all:
the caller must be able to read every row and column they summarise (no row-level security narrowing
its view), the table must be an ordinary or partitioned table (views and foreign tables cannot be
captured; a partition's statistics are its parent's; a sharded table's are validated by its shards'
change counters, docs/scale-out.md), and a new summary is stored only from a READ COMMITTED
transaction (an older snapshot may miss changes that committed since).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from modelstore.catalog import records, shards
from modelstore.request import bounds
from modelstore.request.descriptor import Descriptor
from modelstore.errors import PrivilegeError
from modelstore.request.source import Table

TRIGGERS = ("modelstore_capture_insert", "modelstore_capture_update", "modelstore_capture_delete",
            "modelstore_capture_truncate")

_RELKINDS = {"v": "a view", "m": "a materialized view", "p": "a partitioned table", "f": "a foreign table"}


@dataclass(frozen=True)
class Access:
    """What one request may do with stored statistics of its table."""

    reuse: bool  # stored statistics may be read (and the table's summaries validated)
    store: bool  # new statistics may be stored (capture is, or can be, installed)
    captured: bool  # the capture triggers are all in place and enabled
    read_committed: bool
    notes: tuple[str, ...] = ()  # why not, for EXPLAIN
    shard_versions: shards.Versions | None = None  # a sharded table's change counters, as this transaction sees them


def check_access(conn: psycopg.Connection, table: Table, descriptor: Descriptor, row: tuple | None = None) -> Access:
    """The caller's rights on the request's table, in one round trip (none with ``row``, request_access's
    row from a :class:`~modelstore.catalog.context.RequestContext`); a :class:`PrivilegeError` when
    it may not read a column the request needs (nothing is read or written then)."""
    if row is None:  # the same row modelstore.request_context returns (sql/request.sql)
        row = conn.execute("SELECT * FROM modelstore.request_access(%s::oid, %s::text[])",
                           [table.oid, list(descriptor.read_columns)]).fetchone()
    (rls, may_trigger, n_triggers, n_enabled, isolation, inherited, role, denied, n_members, foreign,
     is_partition, key_columns, key_def) = row
    if denied:
        raise PrivilegeError(
            f"role {role!r} may not read column(s) {denied} of table {table.display} (SELECT privilege)")
    notes: list[str] = []
    reuse = True
    versions = None
    if table.kind not in ("r", "p"):
        reuse = False
        notes.append(f"{table.display} is {_RELKINDS.get(table.kind, 'not a table')}: stored statistics are kept "
                     f"for ordinary and partitioned tables only, where change capture keeps them true; every "
                     f"request scans it")
    elif is_partition:
        # a write through the partitioned table fires the parent's triggers, not this partition's
        reuse = False
        notes.append(f"{table.display} is a partition: stored statistics are kept for the partitioned table it "
                     f"belongs to (whose capture sees every write); requests over the partition alone scan it")
    elif foreign:
        # their rows change on other servers: the shards' change counters say whether they did
        versions = shards.read_versions(conn, table)
        servers = sorted({p.server or "?" for p in table.shards})
        if not versions.complete:
            reuse = False
            notes.append(f"{table.display} is sharded over {', '.join(servers)}, but not every shard's change counter "
                         f"can be read ({'; '.join(f'{k}: {v}' for k, v in versions.missing.items())}): stored "
                         f"statistics are neither used nor stored for it (docs/scale-out.md)")
        else:
            notes.append(f"{table.display} is sharded over {', '.join(servers)}: each scan's aggregate runs on the "
                         f"shards, and stored statistics are used while every shard's change counter is as recorded")
    elif inherited and table.kind == "r":
        # a request reads the children's rows too, but writes to a child do not fire the parent's triggers
        reuse = False
        notes.append(f"{table.display} has inheritance children, whose rows it includes but whose changes its "
                     f"capture cannot see: stored statistics are neither used nor stored for it")
    elif rls:
        reuse = False
        notes.append(f"row-level security narrows what role {role!r} sees of {table.display}: stored statistics "
                     f"are neither used nor stored for it")
    if reuse and table.kind == "p":
        notes.append(_partitioning_note(table, descriptor.source.order_by, descriptor.source.order_kind, key_columns,
                                        key_def, n_members))
    captured = n_enabled == len(TRIGGERS) * n_members  # on the table, or every member of its partition tree
    disabled = n_enabled < n_triggers  # someone turned capture off: nothing stored can be trusted, or stored
    read_committed = isolation == "read committed"
    store = reuse and read_committed and not disabled and (captured or may_trigger)
    if reuse and disabled:
        notes.append(f"change capture on {table.display} is disabled: its stored statistics were dropped and none "
                     f"are stored until it is enabled again (its owner: SELECT modelstore.enable_capture(…))")
    elif reuse and not read_committed:
        notes.append(f"the transaction is {isolation.upper()}: its snapshot may miss changes committed since it "
                     f"began, so no new statistics are stored")
    elif reuse and not captured and not may_trigger:
        notes.append(f"role {role!r} lacks the TRIGGER privilege on {table.display} to install change capture: "
                     f"no statistics are stored (its owner can run SELECT modelstore.enable_capture(…))")
    return Access(reuse, store, captured, read_committed, tuple(notes), versions)


def _partitioning_note(table: Table, order_by: str, order_kind: str, key_columns, key_def: str,
                       n_members: int) -> str:
    """What partitioning means for a request over a partitioned table, for EXPLAIN (docs/scale-out.md)."""
    common = (f"stored statistics are kept for {table.display} as a whole, and change capture runs on all "
              f"{n_members} tables of its partition tree")
    if key_columns and key_columns[0] == order_by and key_def.upper().startswith("RANGE"):
        per_partition = ("" if len(key_columns) > 1 or order_kind not in bounds.CLOSED_KINDS else
                         "; a request that scans whole partitions also keeps each one's statistics, for later "
                         "requests over them (docs/scale-out.md, \"Statistics per partition\")")
        return (f"{table.display} is partitioned by {order_by} ({key_def}): a range of {order_by} reads only the "
                f"partitions it meets (partition pruning); {common}{per_partition}")
    keys = ", ".join(k or "an expression" for k in key_columns or ())
    return (f"{table.display} is partitioned by {keys}, not by the ordering column {order_by} ({key_def}): every "
            f"range may read every partition (no partition pruning for ranges); {common}")


def usable_source(conn: psycopg.Connection, descriptor: Descriptor, table: Table, access: Access,
                  context=None) -> int | None:
    """The request's source id (None when it has none, or may not reuse), after dropping the
    statistics that may no longer describe the table — one read of the catalog when nothing changed:

    * the table was dropped and created again (another oid), or lost its capture triggers: all of them;
    * a column they read changed type or was dropped and added again: those that read it.
    """
    if not access.reuse:
        return None
    if context is not None:  # read by modelstore.request_context (catalog/context.py)
        row = context.source
    else:
        row = _source_row(conn, descriptor, table)
    if row is None:
        return None
    return _validated_source(conn, descriptor, table, access, row)


def _source_row(conn: psycopg.Connection, descriptor: Descriptor, table: Table):
    source = descriptor.source
    return conn.execute(
        "SELECT source_id, relid, column_types, members IS NOT DISTINCT FROM "
        "(CASE WHEN %s THEN modelstore._partition_tree(%s::oid) END) FROM modelstore.sources "
        "WHERE schema_name = %s AND table_name = %s AND order_by = %s",
        [table.kind == "p", table.oid, source.schema, source.table, source.order_by],
    ).fetchone()


def source_is_current(table: Table, access: Access, row) -> bool:
    """Whether the source row read by modelstore.request_context needs no validation write (see
    :func:`usable_source`): same table, captured, no recorded column changed, no shards to check."""
    if row is None:
        return True
    relid, recorded, same_tree = row[1], row[2] or {}, row[3]
    changed = [name for name, sig in recorded.items()
               if name not in table.columns or table.columns[name].signature != sig]
    return relid == table.oid and access.captured and same_tree and not changed and access.shard_versions is None


def _validated_source(conn: psycopg.Connection, descriptor: Descriptor, table: Table, access: Access, row) -> int:
    source = descriptor.source
    source_id, relid, recorded, same_tree = row[0], row[1], row[2] or {}, row[3]
    changed = [name for name, sig in recorded.items()
               if name not in table.columns or table.columns[name].signature != sig]
    # a partition tree other than the recorded one: partitions came or went where the partition event
    # trigger (sql/capture_7_partitions.sql) did not see it, so nothing stored can be trusted
    if relid != table.oid or not access.captured or source.order_by in changed or not same_tree:
        conn.execute("DELETE FROM modelstore.statistics WHERE source_id = %s", [source_id])
        conn.execute("DELETE FROM modelstore.stat_indexes WHERE source_id = %s", [source_id])
        conn.execute("UPDATE modelstore.sources SET relid = %s, column_types = '{}', members = NULL "
                     "WHERE source_id = %s", [table.oid, source_id])
        return source_id
    if access.shard_versions is not None:
        # a shard changed since its summaries were computed: those that may have read it are dropped
        shards.validate(conn, source_id, access.shard_versions, table, source)
    if changed:
        conn.execute(
            "DELETE FROM modelstore.statistics WHERE source_id = %(s)s AND (read_columns IS NULL "
            "OR read_columns && %(c)s::text[] OR columns && %(c)s::text[] OR target = ANY (%(c)s::text[]))",
            {"s": source_id, "c": changed},
        )
        conn.execute(
            "DELETE FROM modelstore.stat_indexes WHERE source_id = %(s)s "
            "AND (columns && %(c)s::text[] OR target = ANY (%(c)s::text[]))",
            {"s": source_id, "c": changed},
        )
        # an index whose group column changed keeps its chunks, not its per-group nodes (docs/index.md)
        conn.execute(
            "DELETE FROM modelstore.index_group_nodes AS g USING modelstore.stat_indexes AS i "
            "WHERE i.index_id = g.index_id AND i.source_id = %(s)s AND i.group_by = ANY (%(c)s::text[])",
            {"s": source_id, "c": changed},
        )
        conn.execute("UPDATE modelstore.stat_indexes SET group_by = NULL WHERE source_id = %(s)s "
                     "AND group_by = ANY (%(c)s::text[])", {"s": source_id, "c": changed})
        conn.execute("UPDATE modelstore.sources SET column_types = column_types - %s::text[] WHERE source_id = %s",
                     [changed, source_id])
    return source_id


def prepare_write(conn: psycopg.Connection, descriptor: Descriptor, table: Table, access: Access,
                  source_id: int | None) -> int:
    """Before a request reads rows for statistics it will store: the source recorded (when
    ``source_id`` is None), change capture in place, the columns' types recorded, and the source
    locked. Returns the source id."""
    if source_id is None:
        source_id = records.ensure_source(conn, descriptor.source, table.oid)
    if not access.captured:
        # CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock: it waits for writers in flight, and writers
        # that come later wait for this transaction, which then sees a table nobody is changing
        conn.execute("SELECT modelstore.enable_capture(%s::oid::regclass)", [table.oid])
    signatures = {c: table.columns[c].signature for c in descriptor.read_columns}
    conn.execute(
        "UPDATE modelstore.sources SET relid = %s, column_types = column_types || %s, "
        "members = CASE WHEN %s THEN modelstore._partition_tree(%s::oid) END, "
        "stats_version = stats_version + 1 WHERE source_id = %s",
        [table.oid, Jsonb(signatures), table.kind == "p", table.oid, source_id],
    )
    if access.shard_versions is not None:
        shards.record(conn, source_id, access.shard_versions)
    return source_id


def lock_source(conn: psycopg.Connection, source_id: int) -> None:
    """The source lock (see the module's docstring): held until the transaction ends."""
    conn.execute("UPDATE modelstore.sources SET stats_version = stats_version + 1 WHERE source_id = %s", [source_id])
