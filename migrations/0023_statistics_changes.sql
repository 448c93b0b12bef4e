-- modelstore catalog, version 23: an append-only log of the changes to each source's stored statistics
-- replaces the per-source catalog version of migration 0019 (issue #20; docs/planner.md, "The session's
-- catalog cache").
--
-- The version row had two costs. Its writer's upsert locked the source's row until commit, so concurrent
-- transactions changing statistics of one source (change capture of writes to disjoint ranges of a table, a
-- fit's summary while another session's capture runs) waited for each other from their first change to
-- their commit. And a changed version told a session only *that* something changed: it read every summary
-- of the catalog key again (0.7–1 s at 100,000 summaries). The log says *what* changed, by *which*
-- transaction: each statement that changes modelstore.statistics appends one row per source it touched,
-- with the ids of the summaries it inserted, deleted or updated (NULL: everything of the source, e.g.
-- TRUNCATE) and its transaction id. Appending takes no lock another writer waits on. A session remembers
-- the snapshot under which it read its arrays; the log rows of the source whose transactions that snapshot
-- did not see name exactly the summaries to read again (modelstore.plan_catalog, sql/planner.sql).
--
-- Nothing is converted: a version only ever meant something to a session's memory, and a session that
-- holds nothing reads everything once.

CREATE TABLE modelstore.statistics_changes (
    change_id  bigint GENERATED ALWAYS AS IDENTITY,
    source_id  bigint,            -- NULL: every source (TRUNCATE of modelstore.statistics)
    stats_ids  bigint[],          -- NULL: every summary of the source
    xid        xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()  -- the top-level transaction's
);
-- the probe: a source's rows from a snapshot's xmin on (NULL sources are found by the same index)
CREATE INDEX statistics_changes_probe ON modelstore.statistics_changes (source_id, xid);

-- The compaction horizon: every log row whose xid is below `horizon` has been deleted (or may be), so a
-- session whose snapshot's xmin is below it reads everything again. `next_horizon` is the oldest running
-- transaction when the last compaction ran: the next one deletes below it, so a cache read since the
-- last compaction survives the next one (docs/planner.md, "Compaction"). One row.
CREATE TABLE modelstore.statistics_changes_horizon (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    horizon       xid8 NOT NULL,
    next_horizon  xid8 NOT NULL,
    compacted_at  timestamptz
);
INSERT INTO modelstore.statistics_changes_horizon (horizon, next_horizon)
VALUES ('0'::xid8, pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()));

-- Deletes the log rows no cache can need any more (those below the horizon recorded by the previous run)
-- and records the oldest running transaction as the next horizon. SECURITY DEFINER: the trigger calls it
-- for any role that writes statistics. Skips (returns NULL) while another compaction holds the horizon.
CREATE FUNCTION modelstore.compact_statistics_changes()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_next    xid8;
    -- the oldest transaction running now: the snapshot's xmin leaves this transaction's own id out
    v_oldest  xid8 := least(pg_snapshot_xmin(pg_current_snapshot()), pg_current_xact_id_if_assigned());
    v_deleted bigint;
BEGIN
    SELECT h.next_horizon INTO v_next FROM modelstore.statistics_changes_horizon AS h FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- the horizon first (in the same transaction as the deletion: a reader sees both or neither)
    UPDATE modelstore.statistics_changes_horizon
       SET horizon = greatest(horizon, v_next), next_horizon = greatest(next_horizon, v_oldest),
           compacted_at = now();
    DELETE FROM modelstore.statistics_changes AS c WHERE c.xid < v_next;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END
$$;

COMMENT ON FUNCTION modelstore.compact_statistics_changes() IS
    'Delete the statistics change log rows no session cache can need (docs/planner.md, "The session''s catalog cache").';

-- The log's writer: SECURITY DEFINER, so that roles that store statistics need no grant on the log. Every
-- 1,024th row compacts the log (under READ COMMITTED only: a REPEATABLE READ writer's deletion could
-- conflict with a compaction committed after its snapshot).
CREATE FUNCTION modelstore._log_statistics_changes(p_source bigint, p_ids bigint[])
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_change bigint;
BEGIN
    INSERT INTO modelstore.statistics_changes (source_id, stats_ids) VALUES (p_source, p_ids)
    RETURNING change_id INTO v_change;
    IF v_change % 1024 = 0 AND current_setting('transaction_isolation') = 'read committed' THEN
        PERFORM modelstore.compact_statistics_changes();
    END IF;
END
$$;

-- The statement trigger (the triggers of migration 0019 call it: INSERT, COPY, UPDATE, DELETE, a source's
-- cascade, TRUNCATE). No SET clause: a function's SET clause would undo, at its exit, the transaction-local
-- setting it records what it logged in.
--
-- modelstore.catalog_changed (jsonb, transaction-local, undone with a rolled-back savepoint like the rows it
-- describes) maps each source this transaction changed to the ids it logged for it ('{1,5}'), or to null once
-- it logged "everything"; the key "*" after a TRUNCATE. A statement logs only ids its transaction has not
-- logged yet — capture's row-by-row statements update the same few summaries again and again — and past
-- MAX_IDS (1,000) ids of a source, one row meaning "everything" instead: the log stays small, and a session
-- reads the source whole, which costs less than patching thousands of rows one by one.
-- plan_catalog reads the setting too: a transaction that changed a source keeps nothing it reads of it.
CREATE OR REPLACE FUNCTION modelstore._statistics_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_logged jsonb := coalesce(nullif(pg_catalog.current_setting('modelstore.catalog_changed', true), ''),
                               '{}')::jsonb;
    v_sources bigint[];
    v_id_sets text[];  -- per source, its ids as an array literal
    v_key    text;
    v_ids    bigint[];
    v_prev   bigint[];
    v_wrote  boolean := false;
BEGIN
    IF pg_catalog.jsonb_exists(v_logged, '*') THEN
        RETURN NULL;  -- this transaction truncated the statistics: "everything" of every source is logged
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM modelstore._log_statistics_changes(NULL, NULL);
        PERFORM pg_catalog.set_config('modelstore.catalog_changed', '{"*": null}', true);
        RETURN NULL;
    END IF;
    -- (a transition table is named only in the branch of the operation that has it)
    IF TG_OP = 'INSERT' THEN
        SELECT pg_catalog.array_agg(g.source_id), pg_catalog.array_agg(g.ids::text) INTO v_sources, v_id_sets
          FROM (SELECT r.source_id, pg_catalog.array_agg(DISTINCT r.stats_id) AS ids
                  FROM new_rows AS r GROUP BY r.source_id) AS g;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT pg_catalog.array_agg(g.source_id), pg_catalog.array_agg(g.ids::text) INTO v_sources, v_id_sets
          FROM (SELECT r.source_id, pg_catalog.array_agg(DISTINCT r.stats_id) AS ids
                  FROM old_rows AS r GROUP BY r.source_id) AS g;
    ELSE
        SELECT pg_catalog.array_agg(g.source_id), pg_catalog.array_agg(g.ids::text) INTO v_sources, v_id_sets
          FROM (SELECT u.source_id, pg_catalog.array_agg(DISTINCT u.stats_id) AS ids
                  FROM (SELECT r.source_id, r.stats_id FROM old_rows AS r
                        UNION ALL
                        SELECT r.source_id, r.stats_id FROM new_rows AS r) AS u
                 GROUP BY u.source_id) AS g;
    END IF;
    FOR i IN 1 .. coalesce(pg_catalog.cardinality(v_sources), 0) LOOP
        v_key := v_sources[i]::text;
        v_ids := v_id_sets[i]::bigint[];
        v_prev := '{}';
        IF pg_catalog.jsonb_exists(v_logged, v_key) THEN
            CONTINUE WHEN pg_catalog.jsonb_typeof(pg_catalog.jsonb_object_field(v_logged, v_key)) = 'null';
            v_prev := pg_catalog.jsonb_object_field_text(v_logged, v_key)::bigint[];
            IF pg_catalog.cardinality(v_ids) <= 1000 THEN
                v_ids := ARRAY(SELECT x FROM pg_catalog.unnest(v_ids) AS x WHERE x <> ALL (v_prev));
                CONTINUE WHEN pg_catalog.cardinality(v_ids) = 0;  -- logged already by this transaction
            END IF;
        END IF;
        IF pg_catalog.cardinality(v_prev) + pg_catalog.cardinality(v_ids) > 1000 THEN  -- MAX_IDS
            PERFORM modelstore._log_statistics_changes(v_sources[i], NULL);
            v_logged := pg_catalog.jsonb_concat(v_logged, pg_catalog.jsonb_build_object(v_key, NULL::text));
        ELSE
            PERFORM modelstore._log_statistics_changes(v_sources[i], v_ids);
            v_logged := pg_catalog.jsonb_concat(
                v_logged, pg_catalog.jsonb_build_object(v_key, pg_catalog.array_cat(v_prev, v_ids)::text));
        END IF;
        v_wrote := true;
    END LOOP;
    IF v_wrote THEN
        PERFORM pg_catalog.set_config('modelstore.catalog_changed', v_logged::text, true);
    END IF;
    RETURN NULL;
END
$$;

ALTER TRIGGER statistics_version_insert ON modelstore.statistics RENAME TO statistics_changes_insert;
ALTER TRIGGER statistics_version_delete ON modelstore.statistics RENAME TO statistics_changes_delete;
ALTER TRIGGER statistics_version_update ON modelstore.statistics RENAME TO statistics_changes_update;
ALTER TRIGGER statistics_version_truncate ON modelstore.statistics RENAME TO statistics_changes_truncate;

DROP FUNCTION modelstore._bump_catalog_versions(bigint[]);
DROP FUNCTION modelstore._bump_all_catalog_versions();
DROP TABLE modelstore.statistics_versions;
DROP SEQUENCE modelstore.catalog_version_seq;

-- plan_catalog takes the snapshot the caller's arrays were read under instead of a version, and returns
-- what changed since (sql/planner.sql creates it again)
DROP FUNCTION IF EXISTS modelstore.plan_catalog(bigint, text, text, text, text, text[], bigint, text);
DROP FUNCTION IF EXISTS modelstore.plan_catalog(bigint, text, text, text, text, text[], bigint, text, integer);
