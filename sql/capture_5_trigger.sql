-- Change capture — the trigger's entry: stored statistics stay true while their table changes
-- (docs/freshness.md).
--
-- Four statement-level AFTER triggers per table (INSERT, UPDATE, DELETE with transition tables, and
-- TRUNCATE) run modelstore.capture(), in the writer's transaction:
--   * unfiltered linear and Naive Bayes summaries (stored statistics and index nodes) that the changed
--     rows fall in absorb the signed delta exactly (paper §3: sums of the changed rows about one center,
--     shifted to the stored mean, then n' = n + m, mean' = μ + S1/n', M' = M + S2 − S1·S1ᵀ/n');
--   * logistic chunk models the change touches are marked stale (they are not decomposable, §4);
--   * filtered summaries the change touches are deleted (rebuilt on demand): the trigger never
--     executes SQL text read from the catalog, only identifiers it checked against the table — except
--     a grouped fit's per-group summaries without a filter of their own (filter "column = key"), which
--     absorb the change per group (the changed rows grouped by column::text; docs/serving.md);
--   * TRUNCATE drops every summary of the table.
-- Changes outside every stored range cost one probe of the catalog.
--
-- This file holds modelstore.capture() and the helpers it dispatches with (keys, column checks), and
-- enable_capture / _forget_statistics, which install capture and forget what it may have missed. The
-- merge, the delta, the row-by-row and the bulk paths are sql/capture_1 … capture_4, the DDL event
-- trigger sql/capture_6 (docs/freshness.md). The scripts apply in file-name order, callees first.

-- Whether a summary's columns are still what it was computed on: every value column present and
-- numeric or boolean (bools: which are boolean, read as 0/1), the class column present and of a class type.
CREATE OR REPLACE FUNCTION modelstore._usable_columns(p_relid oid, p_columns text[], p_target text,
                                                      OUT ok boolean, OUT bools boolean[])
LANGUAGE plpgsql STABLE  -- plpgsql, not sql: its query plan is cached for the session (it runs per change)
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT bool_and(a.attnum IS NOT NULL AND t.typcategory IN ('N', 'B'))
               AND (p_target = '' OR EXISTS (
                   SELECT 1 FROM pg_attribute AS a2 JOIN pg_type AS t2 ON t2.oid = a2.atttypid
                    WHERE a2.attrelid = p_relid AND a2.attname = p_target AND NOT a2.attisdropped
                      AND t2.typcategory IN ('N', 'B', 'S', 'E'))),
           array_agg(t.typcategory = 'B' ORDER BY c.i)
      INTO ok, bools
      FROM unnest(p_columns) WITH ORDINALITY AS c(name, i)
      LEFT JOIN pg_attribute AS a ON a.attrelid = p_relid AND a.attname = c.name AND NOT a.attisdropped
      LEFT JOIN pg_type AS t ON t.oid = a.atttypid;
END
$$;

-- Whether a sorted array of keys holds one in [lo, hi]: width_bucket counts the keys at or below lo;
-- lo itself is one of them, or the next key up is at most hi.
CREATE OR REPLACE FUNCTION modelstore._any_key_between(p_keys anycompatiblearray, p_lo anycompatible,
                                                       p_hi anycompatible)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(p_lo <= p_hi AND ((w.b > 0 AND p_keys[w.b] = p_lo) OR p_keys[w.b + 1] <= p_hi), false)
      FROM (SELECT width_bucket(p_lo, p_keys)) AS w(b)
$$;

-- An ordering value as the catalog's key, as SQL text over the value expression p_value: numeric for
-- integers, numerics and dates (days since 1970; infinite dates are the numeric infinities), float8 for
-- floats, seconds since 1970 for timestamps; NULL for a type ranges cannot be kept on.
CREATE OR REPLACE FUNCTION modelstore._key_expr(p_typid oid, p_value text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_typid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype)
            THEN format('%s::numeric', p_value)
        WHEN p_typid IN ('float4'::regtype, 'float8'::regtype) THEN format('%s::float8', p_value)
        WHEN p_typid = 'date'::regtype
            THEN format('CASE WHEN %1$s = ''infinity'' THEN ''Infinity''::numeric WHEN %1$s = ''-infinity'' '
                        'THEN ''-Infinity''::numeric ELSE (%1$s - date ''1970-01-01'')::numeric END', p_value)
        WHEN p_typid IN ('timestamp'::regtype, 'timestamptz'::regtype) THEN format('extract(epoch FROM %s)', p_value)
    END
$$;

-- The members of a set of per-group summaries (one grouped fit's, with no filter of its own; docs/serving.md,
-- "Under writes") for the group keys p_keys, locked in stats_id order (as every writer locks): their ids and
-- keys. Each key is one probe of statistics_group_member_idx (migration 0018) and each member one of the
-- primary key, whatever the planner believes of the catalog's sizes: a lateral subquery kept apart
-- (OFFSET 0) runs once per outer row, its equalities on the index's columns are the probe. (Asked for a
-- list of keys with = ANY, the planner, which expects few members per set, would rather read every member
-- of the set and filter the keys.)
CREATE OR REPLACE FUNCTION modelstore._group_members(p_source bigint, p_family text, p_target text, p_columns text[],
                                                     p_params text, p_lo numeric, p_hi numeric, p_group_by text,
                                                     p_keys text[], OUT ids bigint[], OUT keys text[])
LANGUAGE plpgsql  -- plpgsql: its plans are cached for the session (it runs per change)
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    ids := ARRAY(SELECT m.stats_id FROM unnest(p_keys) AS u(key) CROSS JOIN LATERAL (
                     SELECT t.stats_id FROM modelstore.statistics AS t
                      WHERE t.source_id = p_source AND t.extra ->> 'group_key' = u.key AND t.family = p_family
                        AND t.lo_key = p_lo AND t.hi_key = p_hi AND t.extra ->> 'group_by' = p_group_by
                        AND t.extra ->> 'base_filter' = '' OFFSET 0) AS m
                  ORDER BY 1);
    -- the lock by primary key alone (no other condition inside, where the planner could prefer another
    -- index), then the row as locked checked again: a concurrent writer may have deleted or changed it
    SELECT array_agg(m.stats_id ORDER BY u.i), array_agg(m.extra ->> 'group_key' ORDER BY u.i) INTO ids, keys
      FROM unnest(ids) WITH ORDINALITY AS u(id, i) CROSS JOIN LATERAL (
          SELECT s.* FROM modelstore.statistics AS s WHERE s.stats_id = u.id OFFSET 0 FOR UPDATE) AS m
     WHERE m.source_id = p_source AND m.family = p_family AND m.lo_key = p_lo AND m.hi_key = p_hi
       AND m.extra ->> 'group_by' = p_group_by AND m.extra ->> 'base_filter' = '' AND m.target = p_target
       AND m.params_key = p_params AND m.columns = p_columns AND m.filter_sql <> '';
END
$$;

-- The body is written once and made into two functions (so that both run the same code):
--   * modelstore.capture(), the trigger: the changed rows are its transition tables (which a function it
--     called could not see), the sources those of the written table and of every partitioned table it is
--     a partition of — a write to a partition fires its own triggers only, a write through the parent
--     the parent's only (docs/scale-out.md);
--   * modelstore._capture_apply(p_relid, p_op, p_sources): the same for rows that enter or leave a
--     partitioned table with ATTACH or DETACH PARTITION (sql/capture_7_partitions.sql), read from
--     temporary views named modelstore_new / modelstore_old over the partition.
-- In the body p_relid is the table written (its columns are checked), p_op the statement, p_sources the
-- tables whose sources absorb the change.
DO $do$
DECLARE
    body text := $body$
DECLARE
    src record;
    cs record;         -- a column set: its stored statistics and its index
    v_delta text;
    v_key text;
    v_type text;       -- how keys compare: 'numeric', or 'float8' for float ordering columns
    v_typid oid;
    v_lo text;
    v_hi text;
    v_ids bigint[];
    v_bools boolean[];
    v_ok boolean;
    v_keys text;       -- the changed rows' sorted ordering keys, as a subquery
    v_rows bigint;     -- changed rows with an ordering value
    v_small boolean;   -- absorb them one by one
    v_setting text;
    r record;
    v_seg_type text;   -- how _maintenance_sql compares keys: 'int8', 'float8' or 'numeric'
    v_seg_key text;
    v_offset numeric;
    v_scale numeric;
    v_leaf_lo integer; -- the index chunks a change can touch
    v_leaf_hi integer;
    v_level integer;
    gs record;         -- a set of per-group summaries (one grouped fit's): same descriptor, one group column
    v_gkey text;       -- a changed row's group key, over alias t: the group column as text
    v_gint boolean;    -- the group column is an integer (its keys are written as numbers in filters)
    v_gtext boolean;   -- … a string or enum (keys written as string literals)
    v_new text[];      -- group keys the change brings into a set's range that the set has no summary for
    v_sib record;
    v_lit text;
    v_gids bigint[];
    v_gkeys text[];    -- the group keys of v_gids, in the same order
    v_touched text[];  -- the group keys of the changed rows in a set's range
    v_gone bigint;
    v_added bigint;    -- new groups' summaries this write started
    v_igroup text;     -- the group column of an index with per-group nodes
BEGIN
    -- FOR SHARE: writers share the source row; a request that stores new statistics updates it first
    -- (modelstore.freshness.lock_source), so the two wait for each other, and a REPEATABLE READ writer
    -- that cannot see statistics stored after its snapshot fails with a serialization error instead
    -- of leaving them stale.
    FOR src IN SELECT s.source_id, s.order_by FROM modelstore.sources AS s
               WHERE s.relid = ANY (p_sources) ORDER BY s.source_id FOR SHARE LOOP
        IF p_op = 'TRUNCATE' THEN
            DELETE FROM modelstore.statistics WHERE source_id = src.source_id;
            DELETE FROM modelstore.stat_indexes WHERE source_id = src.source_id;
            CONTINUE;
        END IF;

        SELECT a.atttypid INTO v_typid FROM pg_attribute AS a
         WHERE a.attrelid = p_relid AND a.attname = src.order_by AND NOT a.attisdropped;
        v_type := CASE WHEN v_typid IN ('float4'::regtype, 'float8'::regtype) THEN 'float8' ELSE 'numeric' END;
        v_key := modelstore._key_expr(v_typid, format('t.%I', src.order_by));
        IF v_key IS NULL THEN
            -- the ordering column was dropped or changed to a type ranges cannot be kept on
            DELETE FROM modelstore.statistics WHERE source_id = src.source_id;
            DELETE FROM modelstore.stat_indexes WHERE source_id = src.source_id;
            CONTINUE;
        END IF;

        v_delta := modelstore._delta_rows(p_op, v_key, '{}');  -- signed keys only
        -- the change's extent: min and max in the column's own type (its order is the keys' order), only
        -- the two extremes turned into keys
        EXECUTE format('SELECT (%s)::text, (%s)::text, m.rows FROM (SELECT min(d.k) AS lo, max(d.k) AS hi, '
                       'count(d.k) AS rows FROM (%s) AS d) AS m',
                       modelstore._key_expr(v_typid, 'm.lo'), modelstore._key_expr(v_typid, 'm.hi'),
                       modelstore._delta_rows(p_op, format('t.%I', src.order_by), '{}'))
           INTO v_lo, v_hi, v_rows;
        CONTINUE WHEN v_lo IS NULL;  -- no changed row has an ordering value

        -- a few changed rows are absorbed one by one (cached plans), more in one pass per column set;
        -- the setting modelstore.capture_bulk_rows (SET it per session) moves the threshold (docs/freshness.md)
        v_setting := current_setting('modelstore.capture_bulk_rows', true);
        v_small := v_rows < CASE WHEN v_setting ~ '^[0-9]{1,9}$' THEN v_setting::integer ELSE 4 END;

        -- how the per-row pass places rows among the summaries' range ends: as int8 keys when the column
        -- allows and every changed key lies strictly inside int8 (binary search over fixed-width
        -- arrays), else as the ordering key itself
        v_seg_type := v_type;
        v_seg_key := v_key;
        v_offset := 0;
        v_scale := 1;
        IF v_typid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
           AND v_lo::numeric > -9223372036854775808 AND v_hi::numeric < 9223372036854775807 THEN
            v_seg_type := 'int8';
            v_seg_key := format('t.%I::int8', src.order_by);
        ELSIF v_typid = 'date'::regtype AND v_lo::numeric > '-Infinity' AND v_hi::numeric < 'Infinity' THEN
            v_seg_type := 'int8';
            v_seg_key := format('(t.%I - date ''1970-01-01'')::int8', src.order_by);
        ELSIF v_typid IN ('timestamp'::regtype, 'timestamptz'::regtype)
              AND v_lo::numeric > '-Infinity' AND v_hi::numeric < 'Infinity' THEN
            -- microseconds since 2000-01-01: every finite timestamp fits in int8
            v_seg_type := 'int8';
            v_offset := 946684800;
            v_scale := 1000000;
            v_seg_key := format('((extract(epoch FROM t.%I) - 946684800) * 1000000)::int8', src.order_by);
        END IF;

        -- the cheap exit: the change lies outside every stored range (appends past the end)
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM modelstore.statistics AS s
             WHERE s.source_id = src.source_id
               AND (CASE WHEN v_type = 'float8' THEN s.lo_key::float8 <= v_hi::float8 AND s.hi_key::float8 >= v_lo::float8
                         ELSE s.lo_key <= v_hi::numeric AND s.hi_key >= v_lo::numeric END))
          AND NOT EXISTS (
            SELECT 1 FROM modelstore.stat_indexes AS i JOIN modelstore.index_nodes AS n
                ON n.index_id = i.index_id AND n.level = i.levels - 1
             WHERE i.source_id = src.source_id
               -- node ranges are cuts: (hi_key, side 0) ends just before hi_key
               AND (CASE WHEN v_type = 'float8'
                         THEN (n.lo_key::float8 < v_hi::float8 OR (n.lo_key::float8 = v_hi::float8 AND n.lo_side = 0))
                              AND (n.hi_key::float8 > v_lo::float8 OR (n.hi_key::float8 = v_lo::float8 AND n.hi_side = 1))
                         ELSE (n.lo_key < v_hi::numeric OR (n.lo_key = v_hi::numeric AND n.lo_side = 0))
                              AND (n.hi_key > v_lo::numeric OR (n.hi_key = v_lo::numeric AND n.hi_side = 1)) END));

        -- logistic chunk models the change touches: stale (§4 models do not absorb deltas); filtered
        -- summaries the change touches: deleted, rebuilt on demand. A summary is touched when a changed
        -- key lies in its range: the sorted keys are gathered once (an InitPlan), each range is a
        -- binary search (_any_key_between).
        -- (the condition is the partial index statistics_rebuilt_idx's, migration 0018: per-group summaries,
        -- kept exact below, are not read here)
        IF EXISTS (SELECT 1 FROM modelstore.statistics AS s
                    WHERE s.source_id = src.source_id AND ((s.family = 'logistic' AND NOT s.stale)
                          OR (s.family <> 'logistic' AND s.filter_sql <> ''
                              AND (s.extra ->> 'group_by' IS NULL OR s.extra ->> 'base_filter' IS DISTINCT FROM '')))) THEN
            v_keys := format('(SELECT array_agg(d.k ORDER BY d.k) FROM (%s) AS d WHERE d.k IS NOT NULL)', v_delta);
            EXECUTE format('UPDATE modelstore.statistics AS s SET stale = true WHERE s.source_id = $1 '
                           'AND s.family = ''logistic'' AND NOT s.stale AND s.lo_key::%1$s <= $3::%1$s '
                           'AND s.hi_key::%1$s >= $2::%1$s '
                           'AND modelstore._any_key_between(%2$s, s.lo_key::%1$s, s.hi_key::%1$s)', v_type, v_keys)
                USING src.source_id, v_lo, v_hi;
            -- (per-group summaries with no filter of their own are kept exact below, not deleted)
            EXECUTE format('DELETE FROM modelstore.statistics AS s WHERE s.source_id = $1 '
                           'AND s.family <> ''logistic'' AND s.filter_sql <> '''' AND s.lo_key::%1$s <= $3::%1$s '
                           'AND s.hi_key::%1$s >= $2::%1$s '
                           'AND (s.extra ->> ''group_by'' IS NULL OR s.extra ->> ''base_filter'' IS DISTINCT FROM '''') '
                           'AND modelstore._any_key_between(%2$s, s.lo_key::%1$s, s.hi_key::%1$s)', v_type, v_keys)
                USING src.source_id, v_lo, v_hi;
        END IF;

        -- unfiltered linear and Naive Bayes summaries, one column set (family, class column, columns) at a
        -- time: its stored statistics whose ranges meet the change, and its statistics index
        FOR cs IN EXECUTE format(
                'SELECT x.family, x.target, x.columns, bool_or(x.index_id IS NULL) AS has_stats, '
                'max(x.index_id) AS index_id, max(x.levels) AS levels FROM ('
                'SELECT DISTINCT s.family, s.target, s.columns, NULL::bigint AS index_id, NULL::integer AS levels '
                'FROM modelstore.statistics AS s WHERE s.source_id = $1 AND s.family <> ''logistic'' '
                'AND s.filter_sql = '''' AND s.lo_key::%1$s <= $3::%1$s AND s.hi_key::%1$s >= $2::%1$s '
                'UNION ALL SELECT i.family, i.target, i.columns, i.index_id, i.levels FROM modelstore.stat_indexes AS i '
                'JOIN modelstore.index_nodes AS n ON n.index_id = i.index_id AND n.level = i.levels - 1 AND n.pos = 0 '
                'WHERE i.source_id = $1 AND n.lo_key::%1$s <= $3::%1$s AND n.hi_key::%1$s >= $2::%1$s) AS x '
                'GROUP BY x.family, x.target, x.columns ORDER BY 1, 2, 3', v_type)
                USING src.source_id, v_lo, v_hi LOOP
            SELECT u.ok, u.bools INTO v_ok, v_bools FROM modelstore._usable_columns(p_relid, cs.columns, cs.target) AS u;
            -- lock what changes in a fixed order (statistics by id, then the index's nodes by level and
            -- position) before reading the means: concurrent writers then apply their deltas one after
            -- the other, each moved to the mean it updates
            v_ids := NULL;
            IF cs.has_stats THEN
                EXECUTE format('SELECT array_agg(x.stats_id) FROM (SELECT s.stats_id FROM modelstore.statistics AS s '
                               'WHERE s.source_id = $1 AND s.family = $4 AND s.target = $5 AND s.columns = $6 '
                               'AND s.filter_sql = '''' AND s.lo_key::%1$s <= $3::%1$s AND s.hi_key::%1$s >= $2::%1$s '
                               'ORDER BY s.stats_id FOR UPDATE) AS x', v_type)
                   INTO v_ids USING src.source_id, v_lo, v_hi, cs.family, cs.target, cs.columns;
            END IF;
            IF NOT v_ok THEN
                -- a column was dropped or changed type under the summaries: they no longer describe the table
                DELETE FROM modelstore.statistics WHERE stats_id = ANY (v_ids);
                DELETE FROM modelstore.stat_indexes WHERE index_id = cs.index_id;
                CONTINUE;
            END IF;
            IF cs.index_id IS NOT NULL THEN
                -- the chunks the change can touch, [v_leaf_lo, v_leaf_hi]: those holding its least and
                -- greatest keys (the btree on chunk starts; float keys compare as float8: every chunk)
                IF v_type = 'numeric' THEN
                    SELECT coalesce((SELECT n.pos FROM modelstore.index_nodes AS n
                                      WHERE n.index_id = cs.index_id AND n.level = 0
                                        AND (n.lo_key, n.lo_side) < (v_lo::numeric, 1)
                                      ORDER BY n.lo_key DESC, n.lo_side DESC LIMIT 1), 0),
                           coalesce((SELECT n.pos FROM modelstore.index_nodes AS n
                                      WHERE n.index_id = cs.index_id AND n.level = 0
                                        AND (n.lo_key, n.lo_side) < (v_hi::numeric, 1)
                                      ORDER BY n.lo_key DESC, n.lo_side DESC LIMIT 1), 0)
                      INTO v_leaf_lo, v_leaf_hi;
                ELSE
                    v_leaf_lo := 0;
                    SELECT i.n_chunks - 1 INTO v_leaf_hi FROM modelstore.stat_indexes AS i WHERE i.index_id = cs.index_id;
                END IF;
                -- those chunks and their ancestors, a range of positions per level (primary-key scans)
                FOR v_level IN 0 .. cs.levels - 1 LOOP
                    PERFORM 1 FROM modelstore.index_nodes AS n
                     WHERE n.index_id = cs.index_id AND n.level = v_level
                       AND n.pos BETWEEN v_leaf_lo >> v_level AND v_leaf_hi >> v_level
                     ORDER BY n.pos FOR UPDATE;
                END LOOP;
            END IF;
            IF v_small THEN
                FOR r IN EXECUTE modelstore._delta_row_values(p_op, v_key, cs.columns, cs.target, v_bools) LOOP
                    IF cs.has_stats THEN
                        PERFORM modelstore._absorb_row(NULL, NULL, v_ids, cs.family, v_type, r.sgn, r.k, r.complete,
                                                       r.x, r.label);
                    END IF;
                    IF cs.index_id IS NOT NULL THEN
                        PERFORM modelstore._absorb_row(cs.index_id, cs.levels, NULL, cs.family, v_type, r.sgn, r.k,
                                                       r.complete, r.x, r.label);
                    END IF;
                END LOOP;
            ELSE
                EXECUTE modelstore._maintenance_sql(cs.family, p_op, v_seg_key, v_seg_type, v_offset, v_scale,
                                                    cs.columns, cs.target, v_bools, cs.has_stats,
                                                    cs.index_id IS NOT NULL, modelstore._capture_dd())
                    USING v_ids, cs.index_id, cs.levels, v_leaf_lo, v_leaf_hi;
            END IF;
            IF cs.index_id IS NOT NULL THEN
                -- the index's per-group nodes (docs/index.md, "Per-group nodes"): the change per chunk and
                -- group, always in one statement (the row-by-row path has no group key), under the index's
                -- node locks taken above; nodes a new group needs are created empty first, emptied ones go
                SELECT i.group_by INTO v_igroup FROM modelstore.stat_indexes AS i WHERE i.index_id = cs.index_id;
                IF v_igroup IS NOT NULL AND NOT EXISTS (
                        SELECT 1 FROM pg_attribute AS a WHERE a.attrelid = p_relid AND a.attname = v_igroup
                           AND a.attnum > 0 AND NOT a.attisdropped) THEN
                    -- the group column was dropped: the index keeps its chunks, not its group nodes
                    DELETE FROM modelstore.index_group_nodes AS g WHERE g.index_id = cs.index_id;
                    UPDATE modelstore.stat_indexes AS i SET group_by = NULL WHERE i.index_id = cs.index_id;
                ELSIF v_igroup IS NOT NULL THEN
                    v_gkey := format('(t.%I)::text', v_igroup);
                    EXECUTE modelstore._maintenance_sql(cs.family, p_op, v_seg_key, v_seg_type, v_offset, v_scale,
                                                        cs.columns, cs.target, v_bools, false, true,
                                                        modelstore._capture_dd(), v_gkey, true)
                        USING v_ids, cs.index_id, cs.levels, v_leaf_lo, v_leaf_hi;
                    EXECUTE modelstore._maintenance_sql(cs.family, p_op, v_seg_key, v_seg_type, v_offset, v_scale,
                                                        cs.columns, cs.target, v_bools, false, true,
                                                        modelstore._capture_dd(), v_gkey)
                        USING v_ids, cs.index_id, cs.levels, v_leaf_lo, v_leaf_hi;
                    -- (only the touched groups' nodes over the touched chunks are read: primary-key scans)
                    EXECUTE format('SELECT array_agg(DISTINCT d.gk) FROM (%s) AS d WHERE d.gk IS NOT NULL',
                                   modelstore._delta_rows(p_op, v_key, '{}', v_gkey)) INTO v_touched;
                    DELETE FROM modelstore.index_group_nodes AS g USING generate_series(0, cs.levels - 1) AS lv(level)
                     WHERE g.index_id = cs.index_id AND g.level = lv.level
                       AND g.pos BETWEEN v_leaf_lo >> lv.level AND v_leaf_hi >> lv.level
                       AND g.group_key = ANY (v_touched) AND g.n = 0 AND g.null_rows = 0;
                END IF;
            END IF;
            IF cs.index_id IS NOT NULL THEN
                -- the index's totals follow its root
                UPDATE modelstore.stat_indexes AS i SET rows_indexed = n.n + n.null_rows, null_rows = n.null_rows
                  FROM modelstore.index_nodes AS n
                 WHERE i.index_id = cs.index_id AND n.index_id = i.index_id AND n.level = i.levels - 1 AND n.pos = 0;
            END IF;
        END LOOP;

        -- per-group summaries (a grouped fit's, with no filter besides "column = key"; docs/serving.md,
        -- "Under writes"), one set at a time: the change applied per group (the changed rows grouped by
        -- column::text, the key the grouped aggregate gives each row), each group's summary taking its own
        -- group's rows. A row of a group value the set has no summary for starts that group's summary from
        -- empty (its filter is a sibling's with the key's literal in place of the sibling's), a group left
        -- with no row goes, and the set's count follows: the set stays complete and exact, as a scan would
        -- give it. What this reads is in proportion to the groups the change touches, not to the set's
        -- (migration 0018): the sets through their rows in group_sets, the touched groups' summaries
        -- through statistics_group_member_idx; a few changed rows are absorbed one by one with cached plans
        -- (_absorb_row), more in one statement per set (_maintenance_sql's p_group).
        FOR gs IN EXECUTE format(
                'SELECT g.family, g.target, g.columns, g.params_key, g.lo_key, g.hi_key, g.group_by '
                'FROM modelstore.group_sets AS g WHERE g.source_id = $1 AND g.family <> ''logistic'' '
                'AND g.base_filter = '''' AND g.lo_key::%1$s <= $3::%1$s AND g.hi_key::%1$s >= $2::%1$s '
                'ORDER BY 1, 2, 3, 4, 5, 6, 7', v_type)
                USING src.source_id, v_lo, v_hi LOOP
            SELECT u.ok, u.bools INTO v_ok, v_bools FROM modelstore._usable_columns(p_relid, gs.columns, gs.target) AS u;
            v_gint := NULL;
            v_gtext := NULL;
            SELECT a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype), t.typcategory IN ('S', 'E')
              INTO v_gint, v_gtext
              FROM pg_attribute AS a JOIN pg_type AS t ON t.oid = a.atttypid
             WHERE a.attrelid = p_relid AND a.attname = gs.group_by AND NOT a.attisdropped;
            IF NOT v_ok OR NOT coalesce(v_gint OR v_gtext, false) THEN
                -- a column, or the group column, was dropped or changed type: the set no longer describes the table
                DELETE FROM modelstore.statistics AS s
                 WHERE s.source_id = src.source_id AND s.family = gs.family AND s.lo_key = gs.lo_key
                   AND s.hi_key = gs.hi_key AND s.extra ->> 'group_by' = gs.group_by AND s.extra ->> 'base_filter' = ''
                   AND s.target = gs.target AND s.params_key = gs.params_key AND s.columns = gs.columns
                   AND s.filter_sql <> '';
                DELETE FROM modelstore.group_sets AS g
                 WHERE g.source_id = src.source_id AND g.family = gs.family AND g.target = gs.target
                   AND g.columns = gs.columns AND g.params_key = gs.params_key AND g.lo_key = gs.lo_key
                   AND g.hi_key = gs.hi_key AND g.group_by = gs.group_by AND g.base_filter = '';
                CONTINUE;
            END IF;
            v_gkey := format('(t.%I)::text', gs.group_by);
            -- the groups the change touches in the set's range (all of its rows: new and old), and those
            -- that new rows bring (the set may have no summary for some of them yet)
            EXECUTE format('SELECT array_agg(DISTINCT d.gk ORDER BY d.gk), '
                           'array_agg(DISTINCT d.gk ORDER BY d.gk) FILTER (WHERE d.sgn > 0) '
                           'FROM (%s) AS d WHERE d.gk IS NOT NULL AND d.k IS NOT NULL '
                           'AND d.k::%2$s >= $1::%2$s AND d.k::%2$s <= $2::%2$s',
                           modelstore._delta_rows(p_op, v_key, '{}', v_gkey), v_type)
               INTO v_touched, v_new USING gs.lo_key, gs.hi_key;
            CONTINUE WHEN v_touched IS NULL;  -- no changed row of any group lies in the set's range
            v_added := 0;
            -- only the touched groups' summaries are read, locked and updated (in stats_id order, as every writer)
            SELECT m.ids, m.keys INTO v_gids, v_gkeys FROM modelstore._group_members(
                src.source_id, gs.family, gs.target, gs.columns, gs.params_key, gs.lo_key, gs.hi_key, gs.group_by,
                v_touched) AS m;
            -- (EXCEPT: hashed, where <> ALL would compare every pair)
            v_new := ARRAY(SELECT unnest(v_new) EXCEPT SELECT unnest(v_gkeys));
            IF cardinality(v_new) > 0 THEN
                -- a sibling: any member of the set (none left: the set is gone, nothing to keep)
                SELECT s.stats_id, s.filter_sql, s.extra ->> 'group_key' AS key INTO v_sib
                  FROM modelstore.statistics AS s
                 WHERE s.source_id = src.source_id AND s.family = gs.family AND s.lo_key = gs.lo_key
                   AND s.hi_key = gs.hi_key AND s.extra ->> 'group_by' = gs.group_by AND s.extra ->> 'base_filter' = ''
                   AND s.target = gs.target AND s.params_key = gs.params_key AND s.columns = gs.columns
                   AND s.filter_sql <> ''
                 LIMIT 1;
                CONTINUE WHEN v_sib.stats_id IS NULL;
                v_lit := CASE WHEN v_gint THEN v_sib.key ELSE '''' || replace(v_sib.key, '''', '''''') || '''' END;
                IF right(v_sib.filter_sql, length(v_lit)) IS DISTINCT FROM v_lit
                   OR right(left(v_sib.filter_sql, -length(v_lit)), 3) IS DISTINCT FROM ' = ' THEN
                    -- not the filter this code writes: the set cannot be completed, so it goes (rebuilt on demand)
                    DELETE FROM modelstore.statistics AS s
                     WHERE s.source_id = src.source_id AND s.family = gs.family AND s.lo_key = gs.lo_key
                       AND s.hi_key = gs.hi_key AND s.extra ->> 'group_by' = gs.group_by
                       AND s.extra ->> 'base_filter' = '' AND s.target = gs.target AND s.params_key = gs.params_key
                       AND s.columns = gs.columns AND s.filter_sql <> '';
                    CONTINUE;
                END IF;
                INSERT INTO modelstore.statistics AS t
                    (source_id, family, lo, hi, lo_key, hi_key, filter_sql, target, params_key, columns, n,
                     null_rows, classes, counts, mean, moments, extra, read_columns, created_by)
                SELECT s.source_id, s.family, s.lo, s.hi, s.lo_key, s.hi_key,
                       left(s.filter_sql, -length(v_lit))
                           || CASE WHEN v_gint THEN nk ELSE '''' || replace(nk, '''', '''''') || '''' END,
                       s.target, s.params_key, s.columns, 0, 0,
                       CASE WHEN s.family <> 'linear' THEN '[]'::jsonb END,
                       CASE WHEN s.family <> 'linear' THEN '{}'::bigint[] END,
                       CASE WHEN s.family = 'linear' THEN array_fill(0::float8, ARRAY[cardinality(s.mean)])
                            ELSE '{}'::float8[] END,
                       CASE WHEN s.family = 'linear' THEN array_fill(0::float8, ARRAY[cardinality(s.moments)])
                            ELSE '{}'::float8[] END,
                       jsonb_set(s.extra, '{group_key}', to_jsonb(nk)), s.read_columns, s.created_by
                  FROM modelstore.statistics AS s CROSS JOIN unnest(v_new) AS nk
                 WHERE s.stats_id = v_sib.stats_id
                ON CONFLICT DO NOTHING;
                GET DIAGNOSTICS v_added = ROW_COUNT;  -- not those another writer started first
                -- every touched group's summary again, locked: a concurrent writer that started the same new
                -- group first made this INSERT wait and do nothing; this statement sees its committed row
                SELECT m.ids, m.keys INTO v_gids, v_gkeys FROM modelstore._group_members(
                    src.source_id, gs.family, gs.target, gs.columns, gs.params_key, gs.lo_key, gs.hi_key, gs.group_by,
                    v_touched) AS m;
            END IF;
            IF v_small THEN
                -- one changed row at a time into its own group's summary (which checks the row's key
                -- against its range)
                FOR r IN EXECUTE modelstore._delta_row_values(p_op, v_key, gs.columns, gs.target, v_bools, v_gkey) LOOP
                    CONTINUE WHEN r.gk IS NULL OR NOT r.gk = ANY (v_gkeys);
                    PERFORM modelstore._absorb_row(NULL, NULL, ARRAY[v_gids[array_position(v_gkeys, r.gk)]],
                                                   gs.family, v_type, r.sgn, r.k, r.complete, r.x, r.label);
                END LOOP;
            ELSE
                EXECUTE modelstore._maintenance_sql(gs.family, p_op, v_seg_key, v_seg_type, v_offset, v_scale,
                                                    gs.columns, gs.target, v_bools, true, false,
                                                    modelstore._capture_dd(), v_gkey)
                    USING v_gids, NULL::bigint, NULL::integer, NULL::integer, NULL::integer;
            END IF;
            -- a group with no row left is no group (the grouped aggregate would not give it)
            DELETE FROM modelstore.statistics AS s WHERE s.stats_id = ANY (v_gids) AND s.n = 0 AND s.null_rows = 0;
            GET DIAGNOSTICS v_gone = ROW_COUNT;
            IF v_added > 0 OR v_gone > 0 THEN
                -- the set's groups changed: its count follows, one row (migration 0015; a grouped fit takes a
                -- set only whole). Added to, not recounted: a writer that started other new groups at the same
                -- time has its own groups counted when it commits (this UPDATE waits for it, then adds to its count)
                UPDATE modelstore.group_sets AS g SET groups = g.groups + v_added - v_gone
                 WHERE g.source_id = src.source_id AND g.family = gs.family AND g.target = gs.target
                   AND g.columns = gs.columns AND g.params_key = gs.params_key AND g.lo_key = gs.lo_key
                   AND g.hi_key = gs.hi_key AND g.group_by = gs.group_by AND g.base_filter = '';
            END IF;
        END LOOP;
    END LOOP;
END
$body$;
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION modelstore.capture()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3  -- float8 → jsonb → float8 (Naive Bayes deltas) is exact
AS %L$f$,
        format($b$DECLARE
    p_relid oid := TG_RELID;
    p_op text := TG_OP;
    p_sources oid[] := TG_RELID || ARRAY(SELECT a.relid FROM pg_catalog.pg_partition_ancestors(TG_RELID) AS a
                                          WHERE a.relid <> TG_RELID);
BEGIN
%s;
RETURN NULL;
END$b$, body));
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION modelstore._capture_apply(p_relid oid, p_op text, p_sources oid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3  -- float8 → jsonb → float8 (Naive Bayes deltas) is exact
AS %L$f$, body);
END
$do$;

COMMENT ON FUNCTION modelstore.capture() IS
    'Change capture: keeps stored statistics true under INSERT, UPDATE, DELETE and TRUNCATE (docs/freshness.md).';

-- Forget what is stored for a table (its statistics and indexes; named models stay), when capture may
-- have missed changes. SECURITY DEFINER so that row-level security on the catalog hides nothing from the
-- deletion; only for a session whose login role may install capture on the table (inside this
-- function current_user is the catalog's owner).
CREATE OR REPLACE FUNCTION modelstore._forget_statistics(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_catalog.has_table_privilege(session_user, p_table, 'TRIGGER') THEN
        RAISE EXCEPTION 'permission denied to reset the stored statistics of %', p_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM modelstore.statistics AS s USING modelstore.sources AS o
     WHERE o.source_id = s.source_id AND o.relid = p_table;
    DELETE FROM modelstore.stat_indexes AS i USING modelstore.sources AS o
     WHERE o.source_id = i.source_id AND o.relid = p_table;
END
$$;

-- The tables that carry a source's capture triggers: the table itself, and for a partitioned table every
-- member of its partition tree that can hold triggers (partitioned tables and their ordinary partitions;
-- docs/scale-out.md). A foreign partition cannot: it is listed in foreign_members.
-- (plpgsql: its statements' plans are kept for the session, where a SQL function with a SET clause is planned
-- again at every call — 0.5 → 0.2 ms, and every request calls it through request_access)
CREATE OR REPLACE FUNCTION modelstore._capture_members(p_table regclass, OUT members oid[], OUT foreign_members oid[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    members := ARRAY(SELECT m.relid FROM (SELECT p_table::oid AS relid UNION SELECT t.relid FROM pg_partition_tree(p_table) AS t) AS m
                       JOIN pg_class AS c ON c.oid = m.relid WHERE c.relkind IN ('r', 'p') ORDER BY m.relid);
    foreign_members := ARRAY(SELECT t.relid FROM pg_partition_tree(p_table) AS t
                               JOIN pg_class AS c ON c.oid = t.relid WHERE c.relkind = 'f' ORDER BY t.relid);
END
$$;

-- The four capture triggers on one table (p_table: the source it serves, named in errors); true when
-- one was created or enabled.
CREATE OR REPLACE FUNCTION modelstore._capture_triggers(p_member oid, p_table regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed boolean := false;
    owner boolean := pg_catalog.pg_has_role((SELECT c.relowner FROM pg_class AS c WHERE c.oid = p_member), 'USAGE');
    def record;
    state "char";
BEGIN
    FOR def IN SELECT * FROM (VALUES
            ('modelstore_capture_insert', 'INSERT', 'REFERENCING NEW TABLE AS modelstore_new'),
            ('modelstore_capture_update', 'UPDATE', 'REFERENCING NEW TABLE AS modelstore_new OLD TABLE AS modelstore_old'),
            ('modelstore_capture_delete', 'DELETE', 'REFERENCING OLD TABLE AS modelstore_old'),
            ('modelstore_capture_truncate', 'TRUNCATE', '')) AS t(name, event, referencing) LOOP
        SELECT g.tgenabled INTO state FROM pg_trigger AS g WHERE g.tgrelid = p_member AND g.tgname = def.name;
        IF state IS NULL THEN
            EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION modelstore.capture()',
                           def.name, def.event, p_member::regclass, def.referencing);
            changed := true;
        ELSIF state IN ('D', 'R') THEN  -- disabled, or firing in replica sessions only
            IF NOT owner THEN
                RAISE EXCEPTION 'change capture on % is disabled (trigger %); its owner can enable it with '
                                'SELECT modelstore.enable_capture(''%'')', p_member::regclass, def.name, p_table
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            changed := true;
        END IF;
        IF owner AND state IS DISTINCT FROM 'A' THEN
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', p_member::regclass, def.name);
        END IF;
    END LOOP;
    RETURN changed;
END
$$;

-- Install change capture on a table (its owner, or a role with the TRIGGER privilege), or turn it back
-- on: creates the triggers that are missing and enables those that are disabled (the owner only). When
-- capture was missing or off, whatever is stored for the table may have missed changes: it is forgotten.
-- The owner's triggers fire ALWAYS, in sessions with session_replication_role = replica too.
-- A partitioned table gets them on every member of its partition tree (_capture_members) but its
-- foreign partitions.
-- Returns true when something was created or enabled.
CREATE OR REPLACE FUNCTION modelstore.enable_capture(p_table regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed boolean := false;
    member oid;
    tree record;
BEGIN
    IF (SELECT c.relkind FROM pg_class AS c WHERE c.oid = p_table) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'modelstore keeps stored statistics fresh on ordinary and partitioned tables only; % is neither',
                        p_table
            USING ERRCODE = 'wrong_object_type';
    END IF;
    SELECT * INTO tree FROM modelstore._capture_members(p_table);
    -- foreign partitions (shards) cannot carry triggers: their statistics are validated by the shards'
    -- change counters instead (modelstore.catalog.shards; docs/scale-out.md)
    FOREACH member IN ARRAY tree.members LOOP
        changed := modelstore._capture_triggers(member, p_table) OR changed;
    END LOOP;
    IF changed THEN
        PERFORM modelstore._forget_statistics(p_table);
    END IF;
    RETURN changed;
END
$$;

COMMENT ON FUNCTION modelstore.enable_capture(regclass) IS
    'Install (or enable again) the change-capture triggers that keep a table''s stored statistics fresh (docs/freshness.md).';
