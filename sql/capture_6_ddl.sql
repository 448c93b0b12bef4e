-- Change capture — the DDL event trigger: capture turned off by ALTER TABLE forgets the table's
-- statistics at once (docs/freshness.md, "When capture is turned off").

-- ALTER TABLE … DISABLE TRIGGER on a captured table: its statistics are forgotten at once, so that
-- writes made while capture is off can never be hidden by enabling it again before the next request.
-- An event trigger needs a superuser: it is installed when the catalog's owner is one (docs/freshness.md).
CREATE OR REPLACE FUNCTION modelstore._capture_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel oid;
BEGIN
    FOR rel IN SELECT DISTINCT c.objid FROM pg_event_trigger_ddl_commands() AS c
                WHERE c.classid = 'pg_class'::regclass
                  AND EXISTS (SELECT 1 FROM modelstore.sources AS o WHERE o.relid = c.objid) LOOP
        IF (SELECT count(*) FROM pg_trigger AS g
             WHERE g.tgrelid = rel AND g.tgname LIKE 'modelstore\_capture\_%' AND g.tgenabled IN ('O', 'A')) < 4 THEN
            DELETE FROM modelstore.statistics AS s USING modelstore.sources AS o
             WHERE o.source_id = s.source_id AND o.relid = rel;
            DELETE FROM modelstore.stat_indexes AS i USING modelstore.sources AS o
             WHERE o.source_id = i.source_id AND o.relid = rel;
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF (SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = current_user) THEN
        DROP EVENT TRIGGER IF EXISTS modelstore_capture_ddl;
        CREATE EVENT TRIGGER modelstore_capture_ddl ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
            EXECUTE FUNCTION modelstore._capture_ddl();
    END IF;
END
$$;
