-- modelstore catalog, version 19: a version of each source's stored statistics, so that a session can keep
-- the planner's candidates between requests and read them again only after they changed (issue #20;
-- docs/planner.md, "The session's catalog cache").
--
-- Every statement that inserts, deletes or updates rows of modelstore.statistics (a fit's INSERT, COPY,
-- change capture's UPDATEs of n and DELETEs in sql/capture_*.sql, a source's cascade, TRUNCATE) fires the
-- statement trigger below, so no writer can forget it. It sets the version of each source it touched to a
-- new value of a sequence, once per transaction and source: the UPDATE locks the source's version row until
-- the transaction ends, so versions of one source are committed in the order they were drawn, and a
-- sequence never hands out a value twice (a rolled-back transaction's value is never seen again).
-- The transaction-local setting modelstore.catalog_changed lists the sources a transaction changed
-- (',3,17,'; '*' after a TRUNCATE): a session that changed a source's statistics and has not committed
-- must not keep what it reads of that source (a rollback would undo it without a new version).

CREATE SEQUENCE modelstore.catalog_version_seq;

-- No foreign key: a source's cascade deletes its statistics, and the trigger then bumps the version of a
-- source that is being deleted (source ids are never reused, so a leftover row is harmless).
CREATE TABLE modelstore.statistics_versions (
    source_id  bigint PRIMARY KEY,
    version    bigint NOT NULL
);

-- The versions' writer: SECURITY DEFINER, so that roles that store statistics need no grant on the table.
CREATE FUNCTION modelstore._bump_catalog_versions(p_sources bigint[])
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO modelstore.statistics_versions AS v (source_id, version)
    SELECT i, nextval('modelstore.catalog_version_seq') FROM unnest(p_sources) AS i ORDER BY i
        ON CONFLICT (source_id) DO UPDATE SET version = EXCLUDED.version;
$$;

CREATE FUNCTION modelstore._bump_all_catalog_versions()
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE modelstore.statistics_versions SET version = nextval('modelstore.catalog_version_seq');
$$;

-- The trigger itself has no SET clause: a function's SET clause would undo, at its exit, the
-- transaction-local setting it records the changed sources in.
CREATE FUNCTION modelstore._statistics_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_done text := coalesce(pg_catalog.current_setting('modelstore.catalog_changed', true), '');
    v_ids  bigint[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF v_done <> '*' THEN
            PERFORM modelstore._bump_all_catalog_versions();
            PERFORM pg_catalog.set_config('modelstore.catalog_changed', '*', true);
        END IF;
        RETURN NULL;
    END IF;
    IF v_done = '*' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT pg_catalog.array_agg(DISTINCT r.source_id) INTO v_ids FROM new_rows AS r;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT pg_catalog.array_agg(DISTINCT r.source_id) INTO v_ids FROM old_rows AS r;
    ELSE
        SELECT pg_catalog.array_agg(DISTINCT u.source_id) INTO v_ids
          FROM (SELECT r.source_id FROM old_rows AS r UNION SELECT r.source_id FROM new_rows AS r) AS u;
    END IF;
    -- once per transaction and source: the first bump's value is the one other sessions see at commit
    SELECT pg_catalog.array_agg(i) INTO v_ids FROM pg_catalog.unnest(v_ids) AS i
     WHERE pg_catalog.strpos(v_done, ',' || i || ',') = 0;
    IF v_ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM modelstore._bump_catalog_versions(v_ids);
    PERFORM pg_catalog.set_config('modelstore.catalog_changed',
                                  CASE WHEN v_done = '' THEN ',' ELSE v_done END
                                  || pg_catalog.array_to_string(v_ids, ',') || ',', true);
    RETURN NULL;
END
$$;

CREATE TRIGGER statistics_version_insert AFTER INSERT ON modelstore.statistics
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION modelstore._statistics_changed();
CREATE TRIGGER statistics_version_delete AFTER DELETE ON modelstore.statistics
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION modelstore._statistics_changed();
CREATE TRIGGER statistics_version_update AFTER UPDATE ON modelstore.statistics
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION modelstore._statistics_changed();
CREATE TRIGGER statistics_version_truncate AFTER TRUNCATE ON modelstore.statistics
    FOR EACH STATEMENT EXECUTE FUNCTION modelstore._statistics_changed();

-- every source that has statistics now starts at a version (a session reads none before this migration)
INSERT INTO modelstore.statistics_versions (source_id, version)
SELECT s.source_id, nextval('modelstore.catalog_version_seq')
  FROM (SELECT DISTINCT source_id FROM modelstore.statistics) AS s;

-- plan_candidates no longer takes the windows and chain depth of the retired rules 2 and 3
-- (sql/planner.sql creates it again with the ten arguments every caller passes)
DROP FUNCTION IF EXISTS modelstore.plan_candidates(bigint, text, text, text, text, text[], boolean, numeric, numeric,
                                                   boolean, numeric[], numeric[], integer);
