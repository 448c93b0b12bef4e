-- The privilege model (docs/security.md). Idempotent: re-applied whenever this file changes.

-- May the current role read every row and every listed column of a source's table? That is the
-- condition for reading (and so reusing) a stored summary of it: the role has SELECT on the table or
-- on each column, and no row-level security policy narrows what it sees. A dropped table or column
-- reads as false.
CREATE OR REPLACE FUNCTION modelstore.may_read(p_source_id bigint, p_columns text[])
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((
        SELECT CASE
                   WHEN NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.relid) THEN false
                   WHEN row_security_active(s.relid) THEN false
                   WHEN has_table_privilege(s.relid, 'SELECT') THEN
                       NOT EXISTS (SELECT 1 FROM unnest(coalesce(p_columns, '{}'::text[])) AS col(name)
                                   LEFT JOIN pg_attribute AS a
                                          ON a.attrelid = s.relid AND a.attname = col.name AND NOT a.attisdropped
                                   WHERE a.attnum IS NULL)
                   WHEN p_columns IS NULL THEN false
                   ELSE NOT EXISTS (SELECT 1 FROM unnest(p_columns) AS col(name)
                                    LEFT JOIN pg_attribute AS a
                                           ON a.attrelid = s.relid AND a.attname = col.name AND NOT a.attisdropped
                                    WHERE a.attnum IS NULL
                                       OR NOT has_column_privilege(s.relid, a.attnum, 'SELECT'))
               END
        FROM modelstore.sources AS s
        WHERE s.source_id = p_source_id), false)
$$;

COMMENT ON FUNCTION modelstore.may_read(bigint, text[]) IS
    'Whether the current role may read every row and the listed columns of a source (row-level security on stored summaries).';

DROP POLICY IF EXISTS statistics_readable ON modelstore.statistics;
CREATE POLICY statistics_readable ON modelstore.statistics
    USING (modelstore.may_read(source_id, read_columns))
    WITH CHECK (modelstore.may_read(source_id, read_columns));

DROP POLICY IF EXISTS stat_indexes_readable ON modelstore.stat_indexes;
CREATE POLICY stat_indexes_readable ON modelstore.stat_indexes
    USING (modelstore.may_read(source_id, columns || CASE WHEN target = '' THEN '{}'::text[] ELSE ARRAY[target] END
                                          || CASE WHEN group_by IS NULL THEN '{}'::text[] ELSE ARRAY[group_by] END
                                          || (SELECT ARRAY[s.order_by] FROM modelstore.sources s
                                              WHERE s.source_id = stat_indexes.source_id)))
    WITH CHECK (modelstore.may_read(source_id, columns));

DROP POLICY IF EXISTS index_nodes_readable ON modelstore.index_nodes;
CREATE POLICY index_nodes_readable ON modelstore.index_nodes
    USING (EXISTS (SELECT 1 FROM modelstore.stat_indexes AS i WHERE i.index_id = index_nodes.index_id))
    WITH CHECK (EXISTS (SELECT 1 FROM modelstore.stat_indexes AS i WHERE i.index_id = index_nodes.index_id));

DROP POLICY IF EXISTS index_group_nodes_readable ON modelstore.index_group_nodes;
CREATE POLICY index_group_nodes_readable ON modelstore.index_group_nodes
    USING (EXISTS (SELECT 1 FROM modelstore.stat_indexes AS i WHERE i.index_id = index_group_nodes.index_id))
    WITH CHECK (EXISTS (SELECT 1 FROM modelstore.stat_indexes AS i WHERE i.index_id = index_group_nodes.index_id));

DROP POLICY IF EXISTS group_sets_readable ON modelstore.group_sets;
CREATE POLICY group_sets_readable ON modelstore.group_sets
    USING (modelstore.may_read(source_id, columns || ARRAY[group_by]))
    WITH CHECK (modelstore.may_read(source_id, columns || ARRAY[group_by]));

-- What a role needs to use modelstore without owning the catalog: read and write the catalog's tables
-- (row-level security still decides which summaries it sees), use its sequences, run its functions.
-- Run by the catalog's owner; `SELECT modelstore.grant_usage('alice')` grants to another role.
CREATE OR REPLACE FUNCTION modelstore.grant_usage(p_role name)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA modelstore TO %I', p_role);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA modelstore TO %I', p_role);
    EXECUTE format('GRANT INSERT, UPDATE, DELETE ON modelstore.sources, modelstore.statistics, '
                   'modelstore.fitted_models, modelstore.stat_indexes, modelstore.index_nodes, '
                   'modelstore.index_group_nodes, modelstore.group_sets, '
                   'modelstore.cost_model, modelstore.shard_versions, modelstore.served_predictions TO %I', p_role);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA modelstore TO %I', p_role);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA modelstore TO %I', p_role);
    -- objects the owner creates later (views and functions of a newer release) follow
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA modelstore GRANT SELECT ON TABLES TO %I', p_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA modelstore GRANT USAGE, SELECT ON SEQUENCES TO %I', p_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA modelstore GRANT EXECUTE ON FUNCTIONS TO %I', p_role);
END
$$;

COMMENT ON FUNCTION modelstore.grant_usage(name) IS
    'Grant a role what it needs to use modelstore without owning the catalog (docs/security.md).';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'modelstore_user') THEN
        PERFORM modelstore.grant_usage('modelstore_user');
    END IF;
END
$$;
