-- Change capture — partitions: ATTACH, DETACH and DROP PARTITION keep a partitioned table's stored
-- statistics true (docs/scale-out.md, "Partitioned tables").
--
-- A partitioned source records its partition tree (modelstore.sources.members). After each CREATE,
-- ALTER or DROP TABLE this event trigger compares every partitioned source's tree with the recorded one:
--   * a partition that left and is still a table (DETACH): its rows leave the statistics exactly, as a
--     DELETE of them would (the capture body, modelstore._capture_apply, over a view of its rows);
--   * a partition that joined (ATTACH, or CREATE TABLE … PARTITION OF): it gets the capture triggers
--     (and a deployed table's trigger), and its rows enter the statistics as an INSERT of them would;
--   * a partition that was dropped (DROP TABLE, or DROP of a partitioned member): its rows are gone
--     before any trigger can read them, so the source's statistics are forgotten (DETACH first, then
--     DROP, keeps them: the detach subtracts exactly); a foreign partition that joined or left: the same;
-- then it records the new tree. A request that finds a tree other than the recorded one (a change
-- made where this trigger was not installed) forgets the statistics itself (modelstore.catalog.freshness).

-- A partitioned table's tree: every member, itself included, sorted (the value sources.members keeps).
CREATE OR REPLACE FUNCTION modelstore._partition_tree(p_root oid)
RETURNS oid[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT t.relid::oid FROM pg_partition_tree(p_root) AS t ORDER BY 1)
$$;

-- The rows of one table entering (p_op 'INSERT') or leaving ('DELETE') the stored statistics of p_root's
-- sources: the capture body reads them from a temporary view with the transition table's name.
CREATE OR REPLACE FUNCTION modelstore._apply_partition_rows(p_root oid, p_partition oid, p_op text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_view text := CASE p_op WHEN 'INSERT' THEN 'modelstore_new' ELSE 'modelstore_old' END;
BEGIN
    EXECUTE format('CREATE TEMPORARY VIEW %I AS SELECT * FROM ONLY %s', v_view, p_partition::regclass);
    PERFORM modelstore._capture_apply(p_partition, p_op, ARRAY[p_root]);
    EXECUTE format('DROP VIEW pg_temp.%I', v_view);
END
$$;

CREATE OR REPLACE FUNCTION modelstore._capture_partitions()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    root record;
    tree oid[];
    m oid;
    kind "char";
    forget boolean;
BEGIN
    FOR root IN SELECT DISTINCT ON (s.relid) s.relid, s.members FROM modelstore.sources AS s
                  JOIN pg_class AS c ON c.oid = s.relid AND c.relkind = 'p'
                 WHERE s.members IS NOT NULL
                 ORDER BY s.relid LOOP
        tree := modelstore._partition_tree(root.relid);
        CONTINUE WHEN tree = root.members;
        -- recorded first: installing triggers below runs ALTER TABLE, which fires this trigger again
        UPDATE modelstore.sources SET members = tree WHERE relid = root.relid;
        forget := false;
        -- the rows that left first, then those that joined: every intermediate state is a true summary
        FOREACH m IN ARRAY root.members LOOP
            CONTINUE WHEN m = ANY (tree);
            SELECT c.relkind INTO kind FROM pg_class AS c WHERE c.oid = m;
            IF kind IS NULL OR kind = 'f' THEN
                forget := true;  -- dropped (its rows cannot be read any more), or a shard
            ELSIF kind = 'r' THEN
                PERFORM modelstore._apply_partition_rows(root.relid, m, 'DELETE');
            END IF;  -- a partitioned member that left: its leaves left with it and are handled one by one
        END LOOP;
        FOREACH m IN ARRAY tree LOOP
            CONTINUE WHEN m = ANY (root.members);
            SELECT c.relkind INTO kind FROM pg_class AS c WHERE c.oid = m;
            IF kind = 'f' THEN
                forget := true;
                CONTINUE;
            END IF;
            -- what was stored for it as a table of its own no longer sees the writes made through the parent
            DELETE FROM modelstore.statistics AS s USING modelstore.sources AS o
             WHERE o.source_id = s.source_id AND o.relid = m;
            DELETE FROM modelstore.stat_indexes AS i USING modelstore.sources AS o
             WHERE o.source_id = i.source_id AND o.relid = m;
            PERFORM modelstore._capture_triggers(m, root.relid::regclass);
            IF EXISTS (SELECT 1 FROM modelstore.deployments AS d WHERE d.relid = root.relid)
               AND NOT EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgrelid = m AND g.tgname = 'modelstore_deploy') THEN
                EXECUTE format('CREATE TRIGGER modelstore_deploy AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                               'FOR EACH STATEMENT EXECUTE FUNCTION modelstore._deployment_changed()', m::regclass);
                EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER modelstore_deploy', m::regclass);
            END IF;
            IF kind = 'r' THEN
                PERFORM modelstore._apply_partition_rows(root.relid, m, 'INSERT');
            END IF;
        END LOOP;
        IF forget THEN
            DELETE FROM modelstore.statistics AS s USING modelstore.sources AS o
             WHERE o.source_id = s.source_id AND o.relid = root.relid;
            DELETE FROM modelstore.stat_indexes AS i USING modelstore.sources AS o
             WHERE o.source_id = i.source_id AND o.relid = root.relid;
        END IF;
        -- the partitioned table's rows changed: its deployments refresh, as after any write
        INSERT INTO modelstore.deployment_pending (deployment_id, xid)
        SELECT d.deployment_id, pg_catalog.pg_current_xact_id() FROM modelstore.deployments AS d
         WHERE d.relid = root.relid
        ON CONFLICT DO NOTHING;
        PERFORM pg_catalog.pg_notify('modelstore_deployments', root.relid::text);
    END LOOP;
END
$$;

DO $$
BEGIN
    IF (SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = current_user) THEN
        DROP EVENT TRIGGER IF EXISTS modelstore_capture_partitions;
        CREATE EVENT TRIGGER modelstore_capture_partitions ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'DROP TABLE')
            EXECUTE FUNCTION modelstore._capture_partitions();
    END IF;
END
$$;
