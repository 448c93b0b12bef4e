-- One round trip to answer a request from stored statistics (docs/planner.md, "Round trips"; issue #20).
--
-- request_access: the caller's rights on a table (what modelstore.catalog.freshness.check_access decides on);
-- Python's check_access calls it, and so does request_context, so the two never disagree.
-- request_context: everything the planner and the executor need about one request, in one call — the table
-- as the name resolves now, the access row, the source row, the statistics indexes that can serve it, the
-- index's chunk boundaries around the request's ends with the stored models ending there, the relevant set
-- (plan_candidates, unchanged), and the statistics of the stored models and index nodes a plan may read,
-- when there are at most p_max_stats models. With p_speculate, when the source may be written and no stored
-- summary has exactly the request's range, it first takes the source lock exactly as freshness.prepare_write
-- does (so that everything it reads, and the scans pipelined or sent after it, see one table:
-- docs/freshness.md); when an index serves the request it also leaves in two transaction-local settings the pieces of the two chunks holding the request's ends,
-- cut at every cut a plan may use there; the statement the caller pipelines after this call
-- (modelstore.execution.executor.piece_scan_query) aggregates those pieces. SECURITY INVOKER: it reads only what the caller may read
-- (the catalog's row-level security applies, docs/security.md), and no search_path is set so that an
-- unqualified table name resolves as it would in the caller's own statement.

CREATE OR REPLACE FUNCTION modelstore.request_access(p_oid oid, p_columns text[])
RETURNS TABLE (rls boolean, may_trigger boolean, n_triggers bigint, n_enabled bigint, isolation text,
               inherited boolean, role name, denied text[], n_members integer, foreign_members text[],
               is_partition boolean, key_columns text[], key_def text)
-- plpgsql: its statement's plan is kept for the session (a SQL function with a SET clause is planned again at
-- every call: 1.3 → 0.4 ms a request; docs/planner.md, "Round trips")
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_kind "char";
    v_members oid[];
    v_foreign oid[];
BEGIN
    -- an ordinary table is its own only capture member and has no partition key: the partition tree walk
    -- (modelstore._capture_members) and the key lookups answer exactly that, at 0.5 ms a request
    SELECT c.relkind INTO v_kind FROM pg_catalog.pg_class AS c WHERE c.oid = p_oid;
    IF v_kind = 'r' THEN
        v_members := ARRAY[p_oid];
        v_foreign := '{}';
    ELSE
        SELECT m.members, m.foreign_members INTO v_members, v_foreign
          FROM modelstore._capture_members(p_oid::regclass) AS m;
    END IF;
    RETURN QUERY
    SELECT pg_catalog.row_security_active(p_oid),
           pg_catalog.has_table_privilege(p_oid, 'TRIGGER'),
           -- enabled: fire in ordinary sessions ('O') or always ('A'); 'D' is disabled, 'R' replica-only
           t.n_triggers, t.n_enabled,
           pg_catalog.current_setting('transaction_isolation'),
           c.relhassubclass,
           current_user,
           ARRAY(SELECT u FROM unnest(p_columns) AS u WHERE NOT pg_catalog.has_column_privilege(p_oid, u, 'SELECT')),
           cardinality(v_members), v_foreign::regclass[]::text[],
           c.relispartition,
           -- the partition key's columns (NULL for an expression) and its definition
           CASE WHEN v_kind = 'p' THEN
               (SELECT array_agg(a.attname::text ORDER BY k.i) FROM pg_catalog.pg_partitioned_table AS pt
                  CROSS JOIN unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, i)
                  LEFT JOIN pg_catalog.pg_attribute AS a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum
                 WHERE pt.partrelid = p_oid) END,
           CASE WHEN v_kind = 'p' THEN pg_catalog.pg_get_partkeydef(p_oid) END
      FROM (VALUES (1)) AS one(x)
      LEFT JOIN pg_catalog.pg_class AS c ON c.oid = p_oid
     CROSS JOIN LATERAL (SELECT count(*) AS n_triggers, count(*) FILTER (WHERE g.tgenabled IN ('O', 'A')) AS n_enabled
                      FROM pg_catalog.pg_trigger AS g
                     WHERE g.tgrelid = ANY (v_members)
                       AND g.tgname = ANY (ARRAY['modelstore_capture_insert', 'modelstore_capture_update',
                                                 'modelstore_capture_delete', 'modelstore_capture_truncate'])) AS t;
END
$$;

COMMENT ON FUNCTION modelstore.request_access IS
    'The caller''s rights on a table for one request (modelstore.catalog.freshness.check_access).';

-- A whole key (modelstore.request.cuts.whole_key) of a timestamp column — microseconds since 1970-01-01 — as
-- the timestamp, and of a timestamptz column — since 1970-01-01 UTC — as the instant, exactly and whatever the
-- session's TimeZone: the partial-chunk pieces' statement (executor.piece_scan_query) compares the ordering
-- column itself with these, so that its range condition stays an index range scan. Whole days and the
-- microseconds left over are added separately: each product is exact in float8 (interval × float8), where
-- the microseconds alone are not past 2^53 (about the years 1685 and 2255). A day added to a timestamp is
-- 24 hours (no zone); the instant is that timestamp read as UTC. No SET clause; the pieces' statement
-- evaluates them on its settings once (initplans), and the index range scan's bounds are their values.
CREATE OR REPLACE FUNCTION modelstore.whole_key_timestamp(p_key bigint)
RETURNS timestamp
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT TIMESTAMP '1970-01-01' + (p_key / 86400000000) * INTERVAL '1 day'
           + (p_key % 86400000000) * INTERVAL '1 microsecond'
$$;

CREATE OR REPLACE FUNCTION modelstore.whole_key_timestamptz(p_key bigint)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT pg_catalog.timezone('UTC', modelstore.whole_key_timestamp(p_key))
$$;

-- request_context decomposes runs of chunks itself (modelstore.catalog.index.decompose, inlined)
DROP FUNCTION IF EXISTS modelstore.index_decompose(integer, integer);

-- Rows come back tagged by part:
--   'table'      info = {oid, schema, name, relkind, columns: [[name, type, category, signature], …]}
--                (no rows at all: no such table visible to the caller)
--   'access'     info = request_access's row                       (ordinary tables only, relkind 'r')
--   'source'     info = {source_id, relid, column_types}            (when the source is recorded)
--   'index'      info = [the stat_indexes row as index.find reads it], one per index holding the columns
--   'boundary'   info = [pos, lo_key, lo_side, lo]: the level-0 chunks around the request's ends (index.spans;
--                lo_key as text: a timestamp's key in seconds is not a float)
--   'near'       info = [stats_id, lo, hi, columns, n, null_rows, n_values]: models ending in those chunks
--   'candidates' info = plan_candidates' row                 (integer, date and timestamp ordering columns)
--   'stats'      id = stats_id, with the statistics' arrays         (at most p_max_stats of them)
--   'node'       id = index_id, info = [level, pos], with the node's arrays (every span's nodes)
--   'locked'     id = source_id: the source lock was taken (docs/freshness.md), before anything below was read
--   'pieces'     info = [cuts, windows]: the cut keys and the two [lo, hi) key windows the pieces lie in, as whole
--                keys (the catalog's keys times p_key_scale; also in the settings modelstore.piece_cuts and
--                modelstore.piece_windows)
--   'scratch'    the lock was taken and nothing stored or indexed can serve: the setting modelstore.scratch_scan
--                is 'on', and the from-scratch scan pipelined after the call reads the request's rows
DROP FUNCTION IF EXISTS modelstore.request_context(text, text, text, text[], text, text, text, text[], numeric,
                                                   numeric, numeric, smallint, numeric, smallint, boolean, integer);
-- (p_key_scale is new: the signature without it is dropped, or a call without it would be ambiguous)
DROP FUNCTION IF EXISTS modelstore.request_context(text, text, text, text[], text, text, text, text[], numeric,
                                                   numeric, numeric, smallint, numeric, smallint, boolean, integer,
                                                   boolean, integer);
CREATE OR REPLACE FUNCTION modelstore.request_context(
    p_schema        text,
    p_table         text,
    p_order_by      text,
    p_read_columns  text[],
    p_family        text,
    p_filter_sql    text,
    p_target        text,
    p_columns       text[],
    p_lo            numeric,
    p_hi            numeric,
    p_s_key         numeric,
    p_s_side        smallint,
    p_t_key         numeric,
    p_t_side        smallint,
    p_indexable     boolean,
    p_max_stats     integer,
    p_speculate     boolean DEFAULT false,
    p_max_pieces    integer DEFAULT 64,
    -- whole keys per catalog key (modelstore.request.cuts.WHOLE_KEY_SCALE): 1 for integer and date ordering
    -- columns, 1000000 for timestamps (the catalog keys them in seconds, the planner's arrays in microseconds)
    p_key_scale     integer DEFAULT 1)
RETURNS TABLE (part text, id bigint, info jsonb, family text, columns text[], n bigint, null_rows bigint,
               classes jsonb, counts bigint[], mean float8[], moments float8[], mean_lo float8[],
               moments_lo float8[])
LANGUAGE plpgsql VOLATILE
-- its statements are the same shape on every call: planning them once per session (generic plans) halves
-- the call's time (about 8 → 4 ms on the loaded 2-core machine); the settings it leaves are others
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_oid oid;
    v_schema text;
    v_name text;
    v_kind "char";
    v_source bigint;
    v_index record;
    v_a integer;
    v_b integer;
    v_around integer[];
    v_ids bigint[] := '{}';
    v_cand record;
    v_wlo numeric[];
    -- the cut just after the index's last value: on integer, date and timestamp columns (p_lo given) it is
    -- normalised to the cut before the next value, as modelstore.request.cuts.make_cut does
    v_end_side smallint := CASE WHEN p_lo IS NOT NULL THEN 0 ELSE 1 END;
    -- one step of the domain in the catalog's key: a value, a day, a microsecond (0.000001 of a second)
    v_step numeric := 1::numeric / p_key_scale;
    v_whi numeric[];
    v_acc record;
    v_locked boolean := false;
    v_cuts numeric[];
    v_pieces bigint[];
    v_windows bigint[];
    v_levels smallint[] := '{}';
    v_positions integer[] := '{}';
    v_first integer;
    v_last integer;
    v_level smallint;
    v_key numeric;
    v_side smallint;
    v_bound numeric;
    v_types jsonb;
BEGIN
    -- no pieces unless this call finds them (a pipelined piece scan then reads nothing)
    PERFORM pg_catalog.set_config('modelstore.piece_cuts', '', true),
            pg_catalog.set_config('modelstore.piece_windows', '', true),
            pg_catalog.set_config('modelstore.scratch_scan', '', true);
    -- the table, resolved as modelstore.request.source.resolve_table does
    IF p_schema IS NULL THEN
        SELECT c.oid, ns.nspname, c.relname, c.relkind INTO v_oid, v_schema, v_name, v_kind
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
         WHERE c.relname = p_table AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
           AND ns.nspname = ANY (pg_catalog.current_schemas(false))
         ORDER BY pg_catalog.array_position(pg_catalog.current_schemas(false), ns.nspname)
         LIMIT 1;
    ELSE
        SELECT c.oid, ns.nspname, c.relname, c.relkind INTO v_oid, v_schema, v_name, v_kind
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
         WHERE ns.nspname = p_schema AND c.relname = p_table AND c.relkind IN ('r', 'v', 'm', 'p', 'f');
    END IF;
    IF v_oid IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT 'table'::text, v_oid::bigint, pg_catalog.jsonb_build_object(
        'schema', v_schema, 'name', v_name, 'relkind', v_kind::text, 'columns',
        (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
                    a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory::text,
                    a.attnum || ':' || a.atttypid || ':' || a.atttypmod) ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = v_oid AND a.attnum > 0 AND NOT a.attisdropped)),
        NULL::text, NULL::text[], NULL::bigint, NULL::bigint, NULL::jsonb, NULL::bigint[], NULL::float8[],
        NULL::float8[], NULL::float8[], NULL::float8[];
    IF v_kind <> 'r' THEN
        RETURN;  -- partitioned, foreign, views: the caller's usual path
    END IF;
    -- the rights, on the columns that exist (the caller names the missing ones itself)
    SELECT * INTO v_acc FROM modelstore.request_access(v_oid, ARRAY(
          SELECT c FROM unnest(p_read_columns) AS c WHERE EXISTS (
              SELECT FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = v_oid AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped))) AS acc;
    RETURN QUERY SELECT 'access'::text, NULL::bigint, pg_catalog.to_jsonb(v_acc), NULL::text, NULL::text[],
        NULL::bigint, NULL::bigint, NULL::jsonb, NULL::bigint[], NULL::float8[], NULL::float8[], NULL::float8[],
        NULL::float8[];
    SELECT s.source_id INTO v_source FROM modelstore.sources AS s
     WHERE s.schema_name = v_schema AND s.table_name = v_name AND s.order_by = p_order_by;
    IF v_source IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT 'source'::text, s.source_id, pg_catalog.jsonb_build_object(
        'relid', s.relid::bigint, 'column_types', s.column_types, 'members', s.members IS NULL),
        NULL::text, NULL::text[], NULL::bigint, NULL::bigint, NULL::jsonb, NULL::bigint[], NULL::float8[], NULL::float8[],
        NULL::float8[], NULL::float8[]
      FROM modelstore.sources AS s WHERE s.source_id = v_source;

    -- The source lock, when the request's plan may scan rows or merge stored summaries (anything but one stored
    -- summary of exactly its range; with or without an index): taken before the index, the stored models and
    -- their statistics are read, as freshness.prepare_write takes it (the read columns' types recorded), and only where Python's checks would let the request store
    -- statistics (freshness.check_access: every column readable, no row-level security, no inheritance
    -- children, capture installed and enabled, READ COMMITTED) on a source that needs no validation first
    -- (freshness.source_is_current). Python checks all of it again on the rows returned; where it disagrees
    -- it rolls the transaction back.
    IF p_speculate AND p_lo IS NOT NULL
       AND cardinality(v_acc.denied) = 0 AND NOT v_acc.rls AND NOT coalesce(v_acc.inherited, false)
       AND NOT coalesce(v_acc.is_partition, false) AND cardinality(coalesce(v_acc.foreign_members, '{}')) = 0
       AND v_acc.n_enabled = 4 * v_acc.n_members AND v_acc.n_triggers = v_acc.n_enabled
       AND v_acc.isolation = 'read committed'
       AND EXISTS (
           SELECT FROM modelstore.sources AS s
            WHERE s.source_id = v_source AND s.relid = v_oid AND s.members IS NULL
              AND NOT EXISTS (
                  SELECT FROM pg_catalog.jsonb_each_text(coalesce(s.column_types, '{}')) AS r(name, sig)
                   WHERE NOT EXISTS (
                         SELECT FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = v_oid AND a.attname = r.name AND a.attnum > 0 AND NOT a.attisdropped
                            AND a.attnum || ':' || a.atttypid || ':' || a.atttypmod = r.sig)))
       -- a summary of exactly this range is one read: no lock, no scan (docs/freshness.md)
       AND NOT EXISTS (
           SELECT FROM modelstore.statistics AS s
            WHERE s.source_id = v_source AND s.family = p_family AND s.filter_sql = p_filter_sql
              AND s.target = p_target AND s.params_key = '' AND s.lo_key = p_s_key AND s.hi_key + v_step = p_t_key
              AND s.columns @> p_columns
              AND (s.null_rows = 0 OR s.columns <@ p_columns))
    THEN
        -- the row lock alone when the read columns' types are recorded already (the usual case: no new row
        -- version, no index entries, ~0.4 ms less a request); it conflicts with capture's FOR SHARE exactly as
        -- the UPDATE does (docs/freshness.md, "The source lock")
        v_types := (SELECT coalesce(pg_catalog.jsonb_object_agg(a.attname, a.attnum || ':' || a.atttypid || ':'
                                                                || a.atttypmod), '{}')
                      FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = v_oid AND a.attname = ANY (p_read_columns) AND a.attnum > 0
                       AND NOT a.attisdropped);
        PERFORM FROM modelstore.sources AS s
          WHERE s.source_id = v_source AND s.relid = v_oid AND s.members IS NULL AND s.column_types @> v_types
            FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            UPDATE modelstore.sources AS s
               SET relid = v_oid, members = NULL, stats_version = s.stats_version + 1,
                   column_types = s.column_types || v_types
             WHERE s.source_id = v_source;
        END IF;
        v_locked := true;
        RETURN QUERY SELECT 'locked'::text, v_source, NULL::jsonb, NULL::text, NULL::text[], NULL::bigint,
            NULL::bigint, NULL::jsonb, NULL::bigint[], NULL::float8[], NULL::float8[], NULL::float8[],
            NULL::float8[];
    END IF;

    -- the statistics index (index.find, index.spans) and the models ending near the request's ends
    -- (relevant.models_ending_near), their windows the chunks holding the ends (docs/planner.md)
    IF p_indexable AND p_filter_sql = '' THEN
        RETURN QUERY SELECT 'index'::text, i.index_id, pg_catalog.jsonb_build_array(
            i.index_id, i.source_id, i.family, i.target, i.columns, i.chunk_rows, i.n_chunks, i.levels,
            i.rows_indexed, i.null_rows, i.end_key, i.end_value),
            NULL::text, NULL::text[], NULL::bigint, NULL::bigint, NULL::jsonb, NULL::bigint[], NULL::float8[], NULL::float8[],
            NULL::float8[], NULL::float8[]
          FROM modelstore.stat_indexes AS i
         WHERE i.source_id = v_source AND i.family = p_family AND i.target = p_target AND i.columns @> p_columns
         ORDER BY cardinality(i.columns);
        SELECT i.* INTO v_index FROM modelstore.stat_indexes AS i
         WHERE i.source_id = v_source AND i.family = p_family AND i.target = p_target AND i.columns @> p_columns
           AND (cardinality(i.columns) = cardinality(p_columns) OR i.null_rows = 0)
         ORDER BY cardinality(i.columns) LIMIT 1;
        IF v_index.index_id IS NOT NULL THEN
            SELECT x.pos INTO v_a FROM modelstore.index_nodes AS x
             WHERE x.index_id = v_index.index_id AND x.level = 0 AND (x.lo_key, x.lo_side) <= (p_s_key, p_s_side)
             ORDER BY x.lo_key DESC, x.lo_side DESC LIMIT 1;
            SELECT x.pos INTO v_b FROM modelstore.index_nodes AS x
             WHERE x.index_id = v_index.index_id AND x.level = 0 AND (x.lo_key, x.lo_side) < (p_t_key, p_t_side)
             ORDER BY x.lo_key DESC, x.lo_side DESC LIMIT 1;
            RETURN QUERY SELECT 'boundary'::text, v_index.index_id, pg_catalog.jsonb_build_array(
                x.pos, x.lo_key::text, x.lo_side, x.lo),
                NULL::text, NULL::text[], NULL::bigint, NULL::bigint, NULL::jsonb, NULL::bigint[], NULL::float8[],
                NULL::float8[], NULL::float8[], NULL::float8[]
              FROM modelstore.index_nodes AS x
             WHERE x.index_id = v_index.index_id AND x.level = 0
               AND x.pos IN (v_a, v_a + 1, 0, v_b, v_b + 1);
            IF (p_s_key, p_s_side) < (v_index.end_key, v_end_side) AND v_b IS NOT NULL THEN
                IF (v_index.end_key, v_end_side) < (p_t_key, p_t_side) THEN
                    v_b := v_index.n_chunks;  -- the request runs past the index's end
                END IF;
                v_around := ARRAY(SELECT DISTINCT u FROM unnest(ARRAY[v_b, least(v_b + 1, v_index.n_chunks),
                                  coalesce(v_a, 0), CASE WHEN v_a IS NOT NULL
                                  THEN least(v_a + 1, v_index.n_chunks) END]) AS u WHERE u IS NOT NULL ORDER BY u);
                -- every node of every span between those boundaries (index.spans), with its statistics: the
                -- canonical decompositions (index.decompose) into arrays, then one primary-key probe each
                FOR i IN 1 .. cardinality(v_around) LOOP
                    FOR j IN i + 1 .. cardinality(v_around) LOOP
                        v_first := v_around[i];
                        v_last := v_around[j];
                        v_level := 0;
                        WHILE v_first < v_last LOOP
                            IF v_first & 1 = 1 THEN
                                v_levels := v_levels || v_level;
                                v_positions := v_positions || v_first;
                                v_first := v_first + 1;
                            END IF;
                            IF v_last & 1 = 1 THEN
                                v_last := v_last - 1;
                                v_levels := v_levels || v_level;
                                v_positions := v_positions || v_last;
                            END IF;
                            v_first := v_first >> 1;
                            v_last := v_last >> 1;
                            v_level := v_level + 1;
                        END LOOP;
                    END LOOP;
                END LOOP;
                RETURN QUERY SELECT 'node'::text, x.index_id, pg_catalog.jsonb_build_array(x.level, x.pos),
                    NULL::text, NULL::text[], x.n, x.null_rows, x.classes, x.counts, x.mean, x.moments,
                    x.mean_lo, x.moments_lo
                  FROM (SELECT DISTINCT u.level, u.pos FROM unnest(v_levels, v_positions) AS u(level, pos)) AS u
                  JOIN modelstore.index_nodes AS x
                    ON x.index_id = v_index.index_id AND x.level = u.level AND x.pos = u.pos;
                -- models with an end in the chunk holding either end of the request: from the boundary at or
                -- before it to the one at or after it (relevant.models_ending_near's windows)
                -- (each bound by one probe of index_nodes_chunk_start; the index's end cut lies after every boundary)
                v_wlo := ARRAY[NULL, NULL]::numeric[];
                v_whi := ARRAY[NULL, NULL]::numeric[];
                FOR i IN 1 .. 2 LOOP
                    v_key := CASE i WHEN 1 THEN p_s_key ELSE p_t_key END;
                    v_side := CASE i WHEN 1 THEN p_s_side ELSE p_t_side END;
                    IF (v_index.end_key, v_end_side) <= (v_key, v_side) THEN
                        v_wlo[i] := v_index.end_key;
                    ELSE
                        SELECT x.lo_key INTO v_bound FROM modelstore.index_nodes AS x
                         WHERE x.index_id = v_index.index_id AND x.level = 0 AND (x.lo_key, x.lo_side) <= (v_key, v_side)
                         ORDER BY x.lo_key DESC, x.lo_side DESC LIMIT 1;
                        v_wlo[i] := coalesce(v_bound, v_key);
                    END IF;
                    SELECT x.lo_key INTO v_bound FROM modelstore.index_nodes AS x
                     WHERE x.index_id = v_index.index_id AND x.level = 0 AND (x.lo_key, x.lo_side) >= (v_key, v_side)
                     ORDER BY x.lo_key, x.lo_side LIMIT 1;
                    IF v_bound IS NULL AND (v_index.end_key, v_end_side) >= (v_key, v_side) THEN
                        v_bound := v_index.end_key;
                    END IF;
                    v_whi[i] := coalesce(v_bound, v_key);
                END LOOP;
                -- per window, two index range probes (a low end in it, a high end in it), not one filter over
                -- the whole catalog
                v_ids := ARRAY(
                    SELECT DISTINCT e.stats_id
                      FROM unnest(v_wlo, v_whi) AS w(lo, hi)
                     CROSS JOIN LATERAL (
                        SELECT s.stats_id, s.target, s.params_key, s.columns, s.null_rows FROM modelstore.statistics AS s
                         WHERE s.source_id = v_source AND s.family = p_family AND s.filter_sql = p_filter_sql
                           AND s.lo_key BETWEEN w.lo AND w.hi
                        UNION ALL
                        SELECT s.stats_id, s.target, s.params_key, s.columns, s.null_rows FROM modelstore.statistics AS s
                         WHERE s.source_id = v_source AND s.family = p_family AND s.filter_sql = p_filter_sql
                           AND s.hi_key BETWEEN w.lo AND w.hi) AS e
                     WHERE e.target = p_target AND e.params_key = '' AND e.columns @> p_columns
                       AND (e.null_rows = 0 OR e.columns <@ p_columns)
                     ORDER BY e.stats_id);
                RETURN QUERY SELECT 'near'::text, s.stats_id, pg_catalog.jsonb_build_array(
                    s.stats_id, s.lo, s.hi, s.columns, s.n, s.null_rows,
                    cardinality(s.moments) + coalesce(cardinality(s.mean), 0)),
                    NULL::text, NULL::text[], NULL::bigint, NULL::bigint, NULL::jsonb, NULL::bigint[],
                    NULL::float8[], NULL::float8[], NULL::float8[], NULL::float8[]
                  FROM modelstore.statistics AS s WHERE s.stats_id = ANY (v_ids) ORDER BY s.stats_id;
                -- The pieces of the two chunks holding the request's ends, cut at every cut a plan may have
                -- there (the ends, the chunk boundaries, the ends of the models just returned; every cut "just
                -- before" a value, left as whole keys): each scan step a plan takes inside those chunks is a
                -- run of them. Only when the lock was taken, and the request starts and ends inside the index.
                IF v_locked AND v_a IS NOT NULL AND (p_t_key, p_t_side) <= (v_index.end_key, v_end_side) THEN
                    v_cuts := ARRAY(
                        SELECT DISTINCT c FROM (
                            SELECT unnest(ARRAY[p_s_key, p_t_key, v_wlo[1], v_whi[1], v_wlo[2], v_whi[2]])
                            UNION ALL
                            SELECT x FROM (SELECT s.lo_key, s.hi_key + v_step FROM modelstore.statistics AS s
                                            WHERE s.stats_id = ANY (v_ids)
                                            ORDER BY s.stats_id LIMIT p_max_pieces / 2) AS m(a, b)
                                  CROSS JOIN LATERAL unnest(ARRAY[m.a, m.b]) AS x) AS u(c)
                         WHERE c BETWEEN v_wlo[1] AND v_whi[1] OR c BETWEEN v_wlo[2] AND v_whi[2]
                         ORDER BY c);
                    v_pieces := ARRAY(SELECT (c * p_key_scale)::bigint FROM unnest(v_cuts) WITH ORDINALITY AS u(c, i)
                                       ORDER BY u.i);
                    v_windows := ARRAY[(v_wlo[1] * p_key_scale)::bigint, (v_whi[1] * p_key_scale)::bigint,
                                       (v_wlo[2] * p_key_scale)::bigint, (v_whi[2] * p_key_scale)::bigint];
                    PERFORM pg_catalog.set_config('modelstore.piece_cuts', v_pieces::text, true),
                            pg_catalog.set_config('modelstore.piece_windows', v_windows::text, true);
                    RETURN QUERY SELECT 'pieces'::text, NULL::bigint, pg_catalog.jsonb_build_array(
                        v_pieces, ARRAY[v_windows[1:2], v_windows[3:4]]),
                        NULL::text, NULL::text[], NULL::bigint, NULL::bigint, NULL::jsonb, NULL::bigint[],
                        NULL::float8[], NULL::float8[], NULL::float8[], NULL::float8[];
                END IF;
            END IF;
        END IF;
    END IF;

    -- the relevant set, when no index span answers (integer, date and timestamp ordering columns: p_lo is
    -- given) and the source holds few summaries of the family: with more, the planner's session cache asks
    -- modelstore.plan_catalog, which sends only what changed since the session's snapshot
    -- (docs/planner.md, "The session's catalog cache")
    IF p_lo IS NOT NULL AND v_around IS NULL
       AND (SELECT count(*) FROM (SELECT 1 FROM modelstore.statistics AS s
                                   WHERE s.source_id = v_source AND s.family = p_family
                                   LIMIT 2001) AS few) <= 2000 THEN
        SELECT * INTO v_cand FROM modelstore.plan_candidates(v_source, p_family, p_filter_sql, p_target, '',
                                                            p_columns, false, p_lo, p_hi, false, p_key_scale) AS pc;
        RETURN QUERY SELECT 'candidates'::text, NULL::bigint, pg_catalog.jsonb_build_array(
            v_cand.stats_ids, v_cand.lo_keys, v_cand.hi_keys, v_cand.n_values, v_cand.n_rows, v_cand.column_ix,
            v_cand.column_sets, v_cand.probes),
            NULL::text, NULL::text[], NULL::bigint, NULL::bigint, NULL::jsonb, NULL::bigint[], NULL::float8[],
            NULL::float8[], NULL::float8[], NULL::float8[];
        v_ids := v_cand.stats_ids;
        -- under the lock, nothing stored and no index span: the plan can only be the from-scratch scan, which
        -- the caller pipelined after this call (executor.scratch_scan_query) reads now, in the same round trip
        IF v_locked AND coalesce(cardinality(v_cand.stats_ids), 0) = 0 THEN
            PERFORM pg_catalog.set_config('modelstore.scratch_scan', 'on', true);
            RETURN QUERY SELECT 'scratch'::text, NULL::bigint, NULL::jsonb, NULL::text, NULL::text[], NULL::bigint,
                NULL::bigint, NULL::jsonb, NULL::bigint[], NULL::float8[], NULL::float8[], NULL::float8[],
                NULL::float8[];
        END IF;
    END IF;

    -- the statistics a plan may read, when they are few (more: the executor fetches what the plan uses)
    IF cardinality(v_ids) BETWEEN 1 AND p_max_stats THEN
        RETURN QUERY SELECT 'stats'::text, s.stats_id, NULL::jsonb, s.family, s.columns, s.n, s.null_rows,
            s.classes, s.counts, s.mean, s.moments, s.mean_lo, s.moments_lo
          FROM modelstore.statistics AS s WHERE s.stats_id = ANY (v_ids);
    END IF;
END
$$;

COMMENT ON FUNCTION modelstore.request_context IS
    'Everything planning and executing one request from stored statistics needs, in one call (docs/planner.md).';
