-- Living models (docs/deployments.md): the trigger that tells deployments their table changed, and
-- modelstore.rollback in SQL. Idempotent (CREATE OR REPLACE only), re-applied by `modelstore migrate`.

-- AFTER … FOR EACH STATEMENT on a deployed table (created by store.deploy, one trigger per table):
-- records the writing transaction as pending for every deployment of the table, in the writer's own
-- transaction — a rolled-back write leaves nothing, a committed one is never lost — and wakes the
-- workers with a notification, which PostgreSQL delivers at commit (one per transaction and table).
-- SECURITY DEFINER: writers need no privilege on the catalog.
CREATE OR REPLACE FUNCTION modelstore._deployment_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO modelstore.deployment_pending (deployment_id, xid)
    SELECT d.deployment_id, pg_catalog.pg_current_xact_id()
      FROM modelstore.deployments AS d
     WHERE d.relid = TG_RELID
        -- a partition's write concerns the deployments of the partitioned tables above it (docs/scale-out.md)
        OR d.relid IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(TG_RELID) AS a)
    ON CONFLICT DO NOTHING;
    PERFORM pg_catalog.pg_notify('modelstore_deployments', d.relid::text)
       FROM modelstore.deployments AS d
      WHERE d.relid = TG_RELID OR d.relid IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors(TG_RELID) AS a);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION modelstore._deployment_changed() IS
    'Deployments: marks a committed write to a deployed table as pending and notifies the workers (docs/deployments.md).';

-- Pin a deployment to one of its versions (p_version NULL: unpin, back to its strategy). Served at
-- once: the version's parameters are written to the deployment's model row, which modelstore.predict reads.
CREATE OR REPLACE FUNCTION modelstore.rollback(p_name text, p_version integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    v record;
BEGIN
    SELECT * INTO d FROM modelstore.deployments WHERE name = p_name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'modelstore: no deployment named "%"', p_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM modelstore.deployments lists them.';
    END IF;
    IF p_version IS NULL THEN
        UPDATE modelstore.deployments
           SET pinned_version = NULL, strategy = CASE WHEN strategy = 'pinned' THEN 'most_recent' ELSE strategy END
         WHERE deployment_id = d.deployment_id;
        -- the strategy serves again from the next refresh; mark the deployment for one now
        INSERT INTO modelstore.deployment_pending (deployment_id, xid)
        VALUES (d.deployment_id, pg_catalog.pg_current_xact_id()) ON CONFLICT DO NOTHING;
        INSERT INTO modelstore.deployment_events (deployment_id, kind, version) VALUES (d.deployment_id, 'unpin', NULL);
        PERFORM pg_catalog.pg_notify('modelstore_deployments', d.relid::text);
        RETURN d.active_version;
    END IF;
    SELECT * INTO v FROM modelstore.deployment_versions WHERE deployment_id = d.deployment_id AND version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'modelstore: deployment "%" has no version %', p_name, p_version
            USING ERRCODE = 'no_data_found',
                  HINT = format('Its versions are 1 to %s.', d.latest_version);
    END IF;
    UPDATE modelstore.fitted_models
       SET state = v.state, rows_used = v.rows_used, rows_skipped = v.rows_skipped, lo = v.lo, hi = v.hi
     WHERE model_id = d.model_id;
    UPDATE modelstore.deployments SET pinned_version = p_version, active_version = p_version
     WHERE deployment_id = d.deployment_id;
    INSERT INTO modelstore.deployment_events (deployment_id, kind, version) VALUES (d.deployment_id, 'rollback', p_version);
    RETURN p_version;
END
$$;

COMMENT ON FUNCTION modelstore.rollback(text, integer) IS
    'Pin a deployment to a version (NULL: unpin); modelstore.predict serves it at once (docs/deployments.md).';
