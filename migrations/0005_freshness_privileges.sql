-- modelstore catalog, version 5: stored statistics kept true under change, and a privilege model
-- (docs/freshness.md, docs/security.md).

-- A source is now bound to one table (its oid): a table dropped and re-created under the same name is
-- a different source of rows. column_types records, for every column stored statistics read, the
-- column's attnum, type and typmod when they were stored: a change (ALTER COLUMN … TYPE, DROP and
-- re-ADD) invalidates the statistics that read the column. stats_version is the source lock: every
-- request that writes statistics for the source updates it first (modelstore.freshness).
ALTER TABLE modelstore.sources ADD COLUMN relid oid;
ALTER TABLE modelstore.sources ADD COLUMN column_types jsonb NOT NULL DEFAULT '{}';
ALTER TABLE modelstore.sources ADD COLUMN stats_version bigint NOT NULL DEFAULT 0;
UPDATE modelstore.sources AS s SET relid = c.oid
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = s.schema_name AND c.relname = s.table_name;
CREATE INDEX sources_relid_idx ON modelstore.sources (relid);

-- Logistic chunk models cannot absorb a change; the capture trigger marks the ones a change touches
-- stale, and the planner no longer uses them (the range is trained again on demand).
ALTER TABLE modelstore.statistics ADD COLUMN stale boolean NOT NULL DEFAULT false;
-- Every column the statistics depend on (ordering column, features, target, filter columns): a role
-- may read a stored summary only when it may read all of them (policy below).
ALTER TABLE modelstore.statistics ADD COLUMN read_columns text[];
UPDATE modelstore.statistics AS st
SET read_columns = st.columns || (CASE WHEN st.target = '' THEN '{}'::text[] ELSE ARRAY[st.target] END)
                   || ARRAY[s.order_by]
FROM modelstore.sources AS s
WHERE s.source_id = st.source_id AND st.filter_sql = '';
-- statistics stored before this version were not kept fresh: the first request validates them
-- (modelstore.freshness drops a source's statistics when its table has no change capture)

-- The role analysts are granted to use modelstore without owning its catalog. Creating a role needs
-- CREATEROLE; without it the catalog still works for its owner, and an administrator can create the
-- role and run `modelstore migrate --grants` later (docs/security.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'modelstore_user') THEN
        IF (SELECT rolcreaterole OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
            CREATE ROLE modelstore_user NOLOGIN;
        ELSE
            RAISE NOTICE 'modelstore: role modelstore_user not created (this role lacks CREATEROLE); see docs/security.md';
        END IF;
    END IF;
END
$$;

-- Row-level security on the summaries: a stored summary is readable (and so reusable) only by a role
-- that may read every row and column it summarises. Owners of the catalog and superusers bypass it;
-- the capture trigger runs as the catalog's owner.
ALTER TABLE modelstore.statistics ENABLE ROW LEVEL SECURITY;
ALTER TABLE modelstore.stat_indexes ENABLE ROW LEVEL SECURITY;
ALTER TABLE modelstore.index_nodes ENABLE ROW LEVEL SECURITY;
