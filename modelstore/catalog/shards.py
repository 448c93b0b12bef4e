"""Freshness on shards: per-shard change counters (docs/scale-out.md, "Freshness on shards").

A foreign partition's rows change on its own server, where no trigger of the coordinator fires. Each
shard therefore keeps a change counter per table — ``modelstore_shard.changes``, bumped by a
statement-level trigger in every writing transaction (:data:`SHARD_SCRIPT`, installed by
:func:`prepare_shards`) — and the coordinator reads it through a foreign table of its own,
``modelstore."shard_changes:<server>"``, over the same postgres_fdw connection as the data.

postgres_fdw runs one REPEATABLE READ remote transaction per server for the coordinator's transaction:
the counter a request reads first and the aggregates it runs next see the same snapshot of the shard.
So the counter read with the rows is exactly the version of the rows the statistics were computed
from; ``modelstore.shard_versions`` records it per source and shard, and a stored summary is used
only while every shard still shows the recorded value (:func:`validate`). A shard whose counter cannot
be read (down, or never prepared) makes the request scan without reusing or storing anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from modelstore.errors import InputError
from modelstore.request import bounds
from modelstore.request.descriptor import Source, bound_key
from modelstore.request.source import Partition, Table

#: the shard side: the counters, the trigger function that bumps them, and a function that puts a table
#: under counting. Idempotent; run on each shard by :func:`prepare_shards`.
SHARD_SCRIPT = """
CREATE SCHEMA IF NOT EXISTS modelstore_shard;

CREATE TABLE IF NOT EXISTS modelstore_shard.changes (
    schema_name text   NOT NULL,
    table_name  text   NOT NULL,
    version     bigint NOT NULL DEFAULT 0,  -- bumped by every statement that writes the table
    PRIMARY KEY (schema_name, table_name)
);

-- In the writer's transaction: a rolled-back write leaves the counter as it was. Writers of one table
-- take turns on its counter row until they commit.
CREATE OR REPLACE FUNCTION modelstore_shard.bump()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE modelstore_shard.changes SET version = version + 1
     WHERE schema_name = TG_TABLE_SCHEMA AND table_name = TG_TABLE_NAME;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION modelstore_shard.count_changes(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schema text;
    v_name text;
BEGIN
    SELECT n.nspname, c.relname INTO v_schema, v_name
      FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = p_table;
    INSERT INTO modelstore_shard.changes (schema_name, table_name) VALUES (v_schema, v_name)
    ON CONFLICT DO NOTHING;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = p_table AND tgname = 'modelstore_shard_changes') THEN
        EXECUTE format('CREATE TRIGGER modelstore_shard_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION modelstore_shard.bump()', p_table);
        -- it bumps the counter without having seen the writes made before it existed
        UPDATE modelstore_shard.changes SET version = version + 1 WHERE schema_name = v_schema AND table_name = v_name;
    END IF;
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER modelstore_shard_changes', p_table);
END
$$;
"""


@dataclass(frozen=True)
class Versions:
    """The shards' counters as this transaction sees them: relid → version, and what could not be read."""

    versions: dict[int, int]
    missing: dict[str, str]  # partition → why its counter could not be read

    @property
    def complete(self) -> bool:
        return not self.missing


def counter_table(server: str) -> sql.Identifier:
    """The coordinator's foreign table over one server's ``modelstore_shard.changes``."""
    return sql.Identifier("modelstore", f"shard_changes:{server}")


def remote_name(partition: Partition) -> tuple[str, str]:
    """The table a foreign partition reads on its shard (postgres_fdw's schema_name and table_name
    options; by default the foreign table's own schema and name)."""
    found = dict(o.split("=", 1) for o in partition.options)
    return found.get("schema_name", partition.schema), found.get("table_name", partition.name)


def _counter_query(partition: Partition) -> sql.Composed:
    schema, name = remote_name(partition)
    return sql.SQL("SELECT {}::oid, version FROM {} WHERE schema_name = {} AND table_name = {}").format(
        sql.Literal(partition.oid), counter_table(partition.server), sql.Literal(schema), sql.Literal(name))


def read_versions(conn: psycopg.Connection, table: Table) -> Versions:
    """Every shard's counter for its partition of ``table``: in one statement (the foreign scans run
    concurrently), or — when that fails — one savepoint per shard, so that a shard that is down or
    unprepared costs only its own counter."""
    shards = [p for p in table.shards if p.wrapper == "postgres_fdw"]
    missing = {p.display: f"its server {p.server!r} is not a postgres_fdw server" for p in table.shards
               if p.wrapper != "postgres_fdw"}
    if not shards:
        return Versions({}, missing)
    queries = {}
    names = [counter_table(p.server).as_string(conn) for p in shards]
    exists = dict(conn.execute("SELECT n, to_regclass(n) IS NOT NULL FROM unnest(%s::text[]) AS n",
                               [names]).fetchall())
    for p, name in zip(shards, names):
        if exists[name]:
            queries[p] = _counter_query(p)
        else:
            missing[p.display] = (f"its shard {p.server!r} has no change counter here "
                                  f"(store.prepare_shards({table.display!r}) installs them)")
    versions: dict[int, int] = {}
    try:
        with conn.transaction():
            rows = conn.execute(sql.SQL(" UNION ALL ").join(
                sql.SQL("({})").format(q) for q in queries.values())).fetchall() if queries else []
        versions = {relid: version for relid, version in rows}
    except psycopg.Error:
        for p, q in queries.items():
            try:
                with conn.transaction():
                    row = conn.execute(q).fetchone()
            except psycopg.Error as exc:
                missing[p.display] = f"its shard {p.server!r} cannot be reached ({str(exc).strip().splitlines()[0]})"
                continue
            if row is not None:
                versions[row[0]] = row[1]
    for p in queries:
        if p.oid not in versions and p.display not in missing:
            missing[p.display] = f"its table on shard {p.server!r} has no change counter (prepare_shards installs it)"
    return Versions(versions, missing)


def validate(conn: psycopg.Connection, source_id: int, versions: Versions, table: Table, source: Source) -> bool:
    """Whether the source's stored statistics were computed from the shards' current rows: every
    shard's counter as recorded. When not, the statistics that may have read a changed shard's rows are
    dropped and that shard's counter is recorded anew; returns whether nothing was dropped.

    A request's scans read a partition only when its range meets the partition's bounds (partition
    pruning), so on a table range-partitioned on the ordering column a summary whose range misses a
    shard's bounds never read that shard: a change there leaves it true, and it stays reusable. Anything
    else — shards that came or went, a partition key other than the ordering column, a shard below a
    sub-partition — drops all of the source's statistics. The statistics index, built over the whole
    table, goes with any change."""
    recorded = dict(conn.execute("SELECT relid, version FROM modelstore.shard_versions WHERE source_id = %s",
                                 [source_id]).fetchall())
    if recorded == versions.versions:
        return True
    changed = [relid for relid, version in versions.versions.items() if recorded.get(relid) != version]
    direct = {p.oid: p for p in bounds.range_partitions(conn, table, source.order_by, source.order_kind)}
    if not recorded or set(recorded) != set(versions.versions) or any(relid not in direct for relid in changed):
        conn.execute("DELETE FROM modelstore.statistics WHERE source_id = %s", [source_id])
        conn.execute("DELETE FROM modelstore.stat_indexes WHERE source_id = %s", [source_id])
        conn.execute("DELETE FROM modelstore.shard_versions WHERE source_id = %s", [source_id])
        return False
    for relid in changed:
        p = direct[relid]  # its rows lie in [lo, hi) (None: MINVALUE / MAXVALUE)
        conn.execute(
            "DELETE FROM modelstore.statistics WHERE source_id = %s "
            "AND numrange(lo_key, hi_key, '[]') && numrange(%s, %s, '[)')",
            [source_id, None if p.lo is None else bound_key(p.lo), None if p.hi is None else bound_key(p.hi)])
        conn.execute("UPDATE modelstore.shard_versions SET version = %s WHERE source_id = %s AND relid = %s",
                     [versions.versions[relid], source_id, relid])
    conn.execute("DELETE FROM modelstore.stat_indexes WHERE source_id = %s", [source_id])
    return False


def record(conn: psycopg.Connection, source_id: int, versions: Versions) -> None:
    """The shards' counters the statistics about to be stored are computed at."""
    conn.execute("DELETE FROM modelstore.shard_versions WHERE source_id = %s", [source_id])
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO modelstore.shard_versions (source_id, relid, version) VALUES (%s, %s, %s)",
                        [(source_id, relid, version) for relid, version in sorted(versions.versions.items())])


def shard_conninfo(conn: psycopg.Connection, server: str) -> str:
    """A libpq connection string for a postgres_fdw server, from its options and the current user's
    mapping (what postgres_fdw itself would use)."""
    row = conn.execute(
        "SELECT s.srvoptions, (SELECT m.umoptions FROM pg_catalog.pg_user_mappings m "
        "WHERE m.srvid = s.oid AND m.usename IN (current_user, 'public') ORDER BY m.usename = 'public' LIMIT 1) "
        "FROM pg_catalog.pg_foreign_server s WHERE s.srvname = %s", [server]).fetchone()
    if row is None:
        raise InputError(f"no foreign server named {server!r}")
    libpq = {"host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "connect_timeout"}
    options = dict(o.split("=", 1) for o in (row[0] or []) + (row[1] or []))
    return make_conninfo(**{k: v for k, v in options.items() if k in libpq})


def prepare_shards(conn: psycopg.Connection, table: Table, dsns: dict[str, str] | None = None) -> list[str]:
    """Put every foreign partition of ``table`` under change counting: on its shard, the counter and the
    trigger (:data:`SHARD_SCRIPT`; connecting as the server's user mapping says, or with ``dsns[server]``);
    here, the foreign table over the counters. Returns the servers prepared."""
    if not table.shards:
        raise InputError(f"{table.display} has no foreign partitions: nothing to prepare")
    prepared = []
    for p in table.shards:
        if p.wrapper != "postgres_fdw":
            raise InputError(f"partition {p.display} is on server {p.server!r}, which is not a postgres_fdw server")
        schema, name = remote_name(p)
        dsn = (dsns or {}).get(p.server) or shard_conninfo(conn, p.server)
        with psycopg.connect(dsn, autocommit=True) as shard:
            with shard.transaction():
                shard.execute(SHARD_SCRIPT)
                shard.execute("SELECT modelstore_shard.count_changes(%s::regclass)",
                              [sql.Identifier(schema, name).as_string(shard)])
        conn.execute(sql.SQL("CREATE FOREIGN TABLE IF NOT EXISTS {} (schema_name text, table_name text, version bigint) "
                             "SERVER {} OPTIONS (schema_name 'modelstore_shard', table_name 'changes')").format(
            counter_table(p.server), sql.Identifier(p.server)))
        prepared.append(p.server)
    return sorted(set(prepared))
