-- Algorithm 3 of the paper (relevant models), server-side: one round trip per request.
--
-- The models relevant to a request are those whose range intersects it, closed transitively under
-- intersection (Definition 1). Their union is one interval — the request's "enhanced descriptor" — found
-- by widening the request's range by every compatible stored range that intersects it until it stops
-- growing; each widening is one probe of the GiST index on numrange(lo_key, hi_key, '[]').
-- Logistic models (forward edges only) need only the models contained in the request.
-- At most p_limit rows come back, those intersecting the request first (the caller flags truncation).

CREATE OR REPLACE FUNCTION modelstore.relevant_statistics(
    p_source_id   bigint,
    p_family      text,
    p_filter_sql  text,
    p_target      text,
    p_params_key  text,
    p_columns     text[],
    p_exact_columns boolean,
    p_lo          numeric,
    p_hi          numeric,
    p_contained_only boolean,
    p_limit       integer)
RETURNS TABLE (stats_id bigint, lo text, hi text, lo_key numeric, hi_key numeric, columns text[],
               n bigint, null_rows bigint, n_values integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_lo numeric := p_lo;
    v_hi numeric := p_hi;
    v_new_lo numeric;
    v_new_hi numeric;
BEGIN
    IF NOT p_contained_only THEN
        LOOP
            SELECT least(v_lo, min(s.lo_key)), greatest(v_hi, max(s.hi_key))
              INTO v_new_lo, v_new_hi
              FROM modelstore.statistics AS s
             WHERE numrange(s.lo_key, s.hi_key, '[]') && numrange(v_lo, v_hi, '[]')
               AND s.source_id = p_source_id AND s.family = p_family AND s.filter_sql = p_filter_sql
               AND s.target = p_target AND s.params_key = p_params_key
               AND s.columns @> p_columns AND NOT s.stale
               AND (CASE WHEN p_exact_columns THEN s.columns <@ p_columns
                         ELSE s.null_rows = 0 OR s.columns <@ p_columns END);
            EXIT WHEN v_new_lo = v_lo AND v_new_hi = v_hi;
            v_lo := v_new_lo;
            v_hi := v_new_hi;
        END LOOP;
    END IF;
    RETURN QUERY
        SELECT s.stats_id, s.lo, s.hi, s.lo_key, s.hi_key, s.columns, s.n, s.null_rows,
               (cardinality(s.moments) + coalesce(cardinality(s.mean), 0))::integer
          FROM modelstore.statistics AS s
         WHERE numrange(s.lo_key, s.hi_key, '[]') && numrange(v_lo, v_hi, '[]')
           AND s.source_id = p_source_id AND s.family = p_family AND s.filter_sql = p_filter_sql
           AND s.target = p_target AND s.params_key = p_params_key
           AND s.columns @> p_columns AND NOT s.stale
           AND (CASE WHEN p_exact_columns THEN s.columns <@ p_columns
                     ELSE s.null_rows = 0 OR s.columns <@ p_columns END)
           AND (NOT p_contained_only OR (s.lo_key >= p_lo AND s.hi_key <= p_hi))
         ORDER BY greatest(s.lo_key - p_hi, p_lo - s.hi_key, 0), s.hi_key - s.lo_key DESC, s.stats_id
         LIMIT p_limit;
END
$$;

COMMENT ON FUNCTION modelstore.relevant_statistics IS
    'Algorithm 3: stored statistics relevant to a request (its enhanced descriptor), for the planner.';

-- The planner's candidates as arrays (one row, sent in binary): the relevant set of the request, like
-- relevant_statistics, with no limit, in one statement. The request's compatible column sets are a few
-- ids of the small modelstore.column_sets (migration 0013), so that each stored row is selected by
-- integers on the btree statistics_plan_lo. The compatible stored ranges and the request itself are
-- read once in key order; a running maximum of the upper keys splits them into connected components —
-- a range starts a new component exactly when it does not intersect any range before it — and the
-- component holding the request is its enhanced descriptor (Definition 1's transitive closure). One
-- pass, no repeated probes.
--
-- Keys come back as int8 whole keys (modelstore.request.cuts.whole_key): the catalog's key times p_key_scale —
-- integer and date ordering columns as they are (1), timestamps in microseconds (1000000; the catalog keeps
-- seconds). The components are found on the catalog's keys, which any scale keeps in order.
-- (p_key_scale is new: the signature without it is dropped, or a call with ten arguments would be ambiguous)
DROP FUNCTION IF EXISTS modelstore.plan_candidates(bigint, text, text, text, text, text[], boolean, numeric, numeric,
                                                   boolean);
CREATE OR REPLACE FUNCTION modelstore.plan_candidates(
    p_source_id   bigint,
    p_family      text,
    p_filter_sql  text,
    p_target      text,
    p_params_key  text,
    p_columns     text[],
    p_exact_columns boolean,
    p_lo          numeric,
    p_hi          numeric,
    p_contained_only boolean,
    p_key_scale   integer DEFAULT 1,
    OUT stats_ids bigint[], OUT lo_keys bigint[], OUT hi_keys bigint[], OUT n_values integer[],
    OUT n_rows bigint[], OUT column_ix integer[], OUT column_sets jsonb, OUT probes integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET plan_cache_mode = force_generic_plan  -- planned once per session: planning the statements costs more than running them
AS $$
#variable_conflict use_column
BEGIN
    -- the relevant set: Definition 1's closure
        WITH sets AS (  -- the column sets that serve the request, and those equal to its own (as sets)
            SELECT array_agg(cs.set_id) AS serving,
                   coalesce(array_agg(cs.set_id) FILTER (WHERE cs.columns <@ p_columns), '{}') AS same
              FROM modelstore.column_sets AS cs
             WHERE cs.columns @> p_columns AND (NOT p_exact_columns OR cs.columns <@ p_columns)
        ), c AS (
            SELECT s.stats_id, s.lo_key, s.hi_key, s.column_set, s.n + s.null_rows AS n_rows, s.n_values
              FROM modelstore.statistics AS s
             WHERE s.source_id = p_source_id AND s.family = p_family AND s.filter_sql = p_filter_sql
               AND s.target = p_target AND s.params_key = p_params_key
               AND s.column_set = ANY ((SELECT sets.serving FROM sets)::integer[]) AND NOT s.stale
               AND (s.null_rows = 0 OR s.column_set = ANY ((SELECT sets.same FROM sets)::integer[]))
               AND (NOT p_contained_only OR (s.lo_key >= p_lo AND s.hi_key <= p_hi))
            UNION ALL
            SELECT NULL, p_lo, p_hi, NULL, NULL, NULL
        ), reach AS (  -- the highest key reached by the ranges before each one, in key order
            SELECT c.*, max(c.hi_key) OVER w AS before_hi
              FROM c
            WINDOW w AS (ORDER BY c.lo_key, c.hi_key, c.stats_id NULLS FIRST
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
        ), comp AS (   -- a component starts where a range meets none before it (closed ranges)
            SELECT r.*, count(*) FILTER (WHERE r.before_hi IS NULL OR r.lo_key > r.before_hi)
                            OVER (ORDER BY r.lo_key, r.hi_key, r.stats_id NULLS FIRST ROWS UNBOUNDED PRECEDING) AS grp
              FROM reach AS r
        ), m AS (
            SELECT x.stats_id, x.lo_key, x.hi_key, x.column_set, x.n_rows, x.n_values FROM comp AS x
             WHERE x.stats_id IS NOT NULL
               AND (p_contained_only OR x.grp = (SELECT q.grp FROM comp AS q WHERE q.stats_id IS NULL))
        ), used AS (   -- the distinct column sets (usually one), numbered from 0
            SELECT u.column_set, (row_number() OVER (ORDER BY u.column_set))::integer - 1 AS cix
              FROM (SELECT DISTINCT m.column_set FROM m) AS u
        )
        SELECT coalesce(array_agg(m.stats_id), '{}'), coalesce(array_agg((m.lo_key * p_key_scale)::bigint), '{}'),
               coalesce(array_agg((m.hi_key * p_key_scale)::bigint), '{}'), coalesce(array_agg(m.n_values), '{}'),
               coalesce(array_agg(m.n_rows), '{}'), coalesce(array_agg(used.cix), '{}'),
               (SELECT coalesce(jsonb_agg(to_jsonb(cs.columns) ORDER BY u.cix), '[]')
                  FROM used AS u JOIN modelstore.column_sets AS cs ON cs.set_id = u.column_set),
               1
          FROM m JOIN used ON used.column_set = m.column_set
          INTO stats_ids, lo_keys, hi_keys, n_values, n_rows, column_ix, column_sets, probes;
END
$$;

COMMENT ON FUNCTION modelstore.plan_candidates IS
    'Algorithm 3 for the planner: the relevant set (no limit) as arrays of ids, whole keys and sizes.';

-- The planner's session cache (docs/planner.md, "The session's catalog cache"; migration 0023): every
-- compatible stored summary of a (source, family, filter, class column, columns) key as arrays, and the
-- snapshot they were read under — the statement's own (a STABLE function runs every statement under its
-- caller's snapshot), with this transaction's id among those running when it has one, since the
-- transaction's later changes are not in the arrays. Given the snapshot the caller's arrays were read
-- under (p_known_snapshot, as role p_known_role), it returns
--   * status 'current': nothing of the source changed since (one probe of the change log's index);
--   * status 'delta': changed_ids, the summaries changed since, and the arrays hold those of them that are
--     compatible now — the caller drops changed_ids from its arrays and adds these;
--   * status 'full': every compatible summary — when the caller holds nothing, read as another role, its
--     snapshot is older than the log's compaction horizon or not older than this one (a REPEATABLE READ
--     transaction's), the log says "everything", or more than p_patch_limit summaries changed.
-- The changes since are the log rows of the source (or of every source: TRUNCATE) whose transaction the
-- known snapshot did not see and this one does (a row exists, for this statement, only if its transaction
-- committed or is this one). ``cacheable`` is false when this transaction changed the source and has not
-- committed (a rollback would undo the rows and their log): the caller uses what it gets once and keeps
-- what it held, which the log will bring up to date after the commit. No connected components here: the
-- caller splits the arrays into components itself (Definition 1's closure per request).
-- Keys are whole keys, the catalog's key times p_key_scale, as plan_candidates returns them.
-- (the signatures of migration 0019 and of the whole keys' change are dropped: a call would be ambiguous)
DROP FUNCTION IF EXISTS modelstore.plan_catalog(bigint, text, text, text, text, text[], bigint, text);
DROP FUNCTION IF EXISTS modelstore.plan_catalog(bigint, text, text, text, text, text[], bigint, text, integer);
CREATE OR REPLACE FUNCTION modelstore.plan_catalog(
    p_source_id   bigint,
    p_family      text,
    p_filter_sql  text,
    p_target      text,
    p_params_key  text,
    p_columns     text[],
    p_known_snapshot text,
    p_known_role  text,
    p_key_scale   integer,
    p_patch_limit integer,
    OUT snapshot text, OUT reader text, OUT cacheable boolean, OUT status text, OUT changed_ids bigint[],
    OUT stats_ids bigint[], OUT lo_keys bigint[], OUT hi_keys bigint[], OUT n_values integer[],
    OUT n_rows bigint[], OUT column_ix integer[], OUT column_sets jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET jit = off
SET plan_cache_mode = force_generic_plan  -- planned once per session, like plan_candidates
AS $$
#variable_conflict use_column
DECLARE
    v_logged jsonb := coalesce(nullif(current_setting('modelstore.catalog_changed', true), ''), '{}')::jsonb;
    v_now    pg_snapshot := pg_current_snapshot();
    v_own    xid8 := pg_current_xact_id_if_assigned();
    v_known  pg_snapshot;
    v_everything boolean;
BEGIN
    -- this transaction's id is left out of its own snapshots (its changes are visible to it): put it among the
    -- running ones, so that its changes after this statement are "not seen" by the arrays read now
    snapshot := CASE WHEN v_own IS NULL OR NOT pg_visible_in_snapshot(v_own, v_now) THEN v_now::text
                     ELSE (SELECT format('%s:%s:%s', least(pg_snapshot_xmin(v_now), v_own), pg_snapshot_xmax(v_now),
                                         string_agg(x::text, ',' ORDER BY x))
                             FROM (SELECT pg_snapshot_xip(v_now) UNION SELECT v_own) AS u(x)) END;
    reader := current_user;
    cacheable := NOT (jsonb_exists(v_logged, '*') OR jsonb_exists(v_logged, p_source_id::text));
    status := 'full';
    changed_ids := '{}';
    IF p_known_snapshot IS NOT NULL AND p_known_role = reader THEN
        v_known := p_known_snapshot::pg_snapshot;
        -- every transaction the known snapshot saw, this one sees (not so in an older REPEATABLE READ
        -- snapshot: the arrays would hold changes it must not see), and the log holds every row it lacks
        IF pg_snapshot_xmax(v_known) <= pg_snapshot_xmax(v_now)
           AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(v_now) AS r(x) WHERE pg_visible_in_snapshot(r.x, v_known))
           AND pg_snapshot_xmin(v_known) >= (SELECT h.horizon FROM modelstore.statistics_changes_horizon AS h) THEN
            WITH unseen AS (
                SELECT c.stats_ids FROM modelstore.statistics_changes AS c
                 WHERE c.source_id = p_source_id AND c.xid >= pg_snapshot_xmin(v_known)
                   AND NOT pg_visible_in_snapshot(c.xid, v_known)
                UNION ALL
                SELECT c.stats_ids FROM modelstore.statistics_changes AS c
                 WHERE c.source_id IS NULL AND c.xid >= pg_snapshot_xmin(v_known)
                   AND NOT pg_visible_in_snapshot(c.xid, v_known)
            )
            SELECT coalesce(bool_or(u.stats_ids IS NULL), false),
                   coalesce((SELECT array_agg(DISTINCT i ORDER BY i) FROM unseen AS w, unnest(w.stats_ids) AS i), '{}')
              FROM unseen AS u
              INTO v_everything, changed_ids;
            IF NOT v_everything AND cardinality(changed_ids) <= p_patch_limit THEN
                IF cardinality(changed_ids) = 0 THEN
                    status := 'current';
                    RETURN;
                END IF;
                status := 'delta';
                WITH sets AS (
                    SELECT array_agg(cs.set_id) AS serving,
                           coalesce(array_agg(cs.set_id) FILTER (WHERE cs.columns <@ p_columns), '{}') AS same
                      FROM modelstore.column_sets AS cs
                     WHERE cs.columns @> p_columns
                ), m AS (
                    SELECT s.stats_id, s.lo_key, s.hi_key, s.column_set, s.n + s.null_rows AS n_rows, s.n_values
                      FROM modelstore.statistics AS s
                     WHERE s.stats_id = ANY (changed_ids)
                       AND s.source_id = p_source_id AND s.family = p_family AND s.filter_sql = p_filter_sql
                       AND s.target = p_target AND s.params_key = p_params_key
                       AND s.column_set = ANY ((SELECT sets.serving FROM sets)::integer[]) AND NOT s.stale
                       AND (s.null_rows = 0 OR s.column_set = ANY ((SELECT sets.same FROM sets)::integer[]))
                ), used AS (
                    SELECT u.column_set, (row_number() OVER (ORDER BY u.column_set))::integer - 1 AS cix
                      FROM (SELECT DISTINCT m.column_set FROM m) AS u
                )
                SELECT coalesce(array_agg(m.stats_id), '{}'), coalesce(array_agg((m.lo_key * p_key_scale)::bigint), '{}'),
                       coalesce(array_agg((m.hi_key * p_key_scale)::bigint), '{}'), coalesce(array_agg(m.n_values), '{}'),
                       coalesce(array_agg(m.n_rows), '{}'), coalesce(array_agg(used.cix), '{}'),
                       (SELECT coalesce(jsonb_agg(to_jsonb(cs.columns) ORDER BY u.cix), '[]')
                          FROM used AS u JOIN modelstore.column_sets AS cs ON cs.set_id = u.column_set)
                  FROM m JOIN used ON used.column_set = m.column_set
                  INTO stats_ids, lo_keys, hi_keys, n_values, n_rows, column_ix, column_sets;
                RETURN;
            END IF;
            changed_ids := '{}';
        END IF;
    END IF;
    WITH sets AS (  -- the column sets that serve the request, and those equal to its own (as sets)
        SELECT array_agg(cs.set_id) AS serving,
               coalesce(array_agg(cs.set_id) FILTER (WHERE cs.columns <@ p_columns), '{}') AS same
          FROM modelstore.column_sets AS cs
         WHERE cs.columns @> p_columns
    ), m AS (
        SELECT s.stats_id, s.lo_key, s.hi_key, s.column_set, s.n + s.null_rows AS n_rows, s.n_values
          FROM modelstore.statistics AS s
         WHERE s.source_id = p_source_id AND s.family = p_family AND s.filter_sql = p_filter_sql
           AND s.target = p_target AND s.params_key = p_params_key
           AND s.column_set = ANY ((SELECT sets.serving FROM sets)::integer[]) AND NOT s.stale
           AND (s.null_rows = 0 OR s.column_set = ANY ((SELECT sets.same FROM sets)::integer[]))
    ), used AS (   -- the distinct column sets (usually one), numbered from 0
        SELECT u.column_set, (row_number() OVER (ORDER BY u.column_set))::integer - 1 AS cix
          FROM (SELECT DISTINCT m.column_set FROM m) AS u
    )
    SELECT coalesce(array_agg(m.stats_id), '{}'), coalesce(array_agg((m.lo_key * p_key_scale)::bigint), '{}'),
           coalesce(array_agg((m.hi_key * p_key_scale)::bigint), '{}'), coalesce(array_agg(m.n_values), '{}'),
           coalesce(array_agg(m.n_rows), '{}'), coalesce(array_agg(used.cix), '{}'),
           (SELECT coalesce(jsonb_agg(to_jsonb(cs.columns) ORDER BY u.cix), '[]')
              FROM used AS u JOIN modelstore.column_sets AS cs ON cs.set_id = u.column_set)
      FROM m JOIN used ON used.column_set = m.column_set
      INTO stats_ids, lo_keys, hi_keys, n_values, n_rows, column_ix, column_sets;
END
$$;

COMMENT ON FUNCTION modelstore.plan_catalog IS
    'The planner''s session cache: every compatible summary of a key as arrays with the snapshot they were read under, or what changed since the caller''s snapshot (the statistics change log, migration 0023).';
