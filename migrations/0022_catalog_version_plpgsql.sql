-- modelstore catalog, version 22: the catalog versions' writers (migration 0019) in plpgsql. As SQL functions
-- with a SET clause they were planned again at every call — every statement that writes
-- modelstore.statistics calls one (a request's INSERT of its summary among them); plpgsql keeps the plan of
-- its statement for the session (as request_access does, sql/request.sql).
CREATE OR REPLACE FUNCTION modelstore._bump_catalog_versions(p_sources bigint[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO modelstore.statistics_versions AS v (source_id, version)
    SELECT i, nextval('modelstore.catalog_version_seq') FROM unnest(p_sources) AS i ORDER BY i
        ON CONFLICT (source_id) DO UPDATE SET version = EXCLUDED.version;
END
$$;

CREATE OR REPLACE FUNCTION modelstore._bump_all_catalog_versions()
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE modelstore.statistics_versions SET version = nextval('modelstore.catalog_version_seq');
END
$$;
