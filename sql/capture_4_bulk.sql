-- Change capture — the bulk path: more changed rows applied in one statement per column set, summed
-- into segments (docs/freshness.md, "How a delta is applied").
--
-- Cost per changed row: each changed row is read once per column set, its sums and products computed
-- once, into the *segment* it falls in — between consecutive range ends of the stored summaries, or the
-- index chunk it belongs to — never once per summary. Summaries then add up their segments' sums, and
-- index nodes their chunks' (a chunk's ancestors are its position shifted right by the level).

-- Where a cut of the ordering axis lies among int8 keys (the fast path of _maintenance_sql): the first
-- key at or after it. A cut (key, side 0) lies just before key, (key, side 1) just after it; keys are
-- (value − offset)·scale, so "row ≥ cut" becomes "row key ≥ position". Positions beyond int8 are
-- clamped, which is exact while every changed row's key lies strictly inside the int8 range.
-- One expression, no SET clause: PostgreSQL inlines it (it runs once per chunk of an index per change,
-- inside capture(), whose search_path is pinned).
CREATE OR REPLACE FUNCTION modelstore._cut_position(p_key numeric, p_side smallint, p_offset numeric, p_scale numeric)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT greatest(least(CASE WHEN p_side = 0 THEN ceil((p_key - p_offset) * p_scale)
                               ELSE floor((p_key - p_offset) * p_scale) + 1 END,
                          9223372036854775807), -9223372036854775808)::bigint
$$;

-- Element-wise sums of float8 arrays of one length (the wide column sets of _maintenance_sql).
CREATE OR REPLACE FUNCTION modelstore._vector_add(p_a float8[], p_b float8[])
RETURNS float8[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT array_agg(u.a + u.b ORDER BY u.i) FROM unnest(p_a, p_b) WITH ORDINALITY AS u(a, b, i)
$$;

CREATE OR REPLACE AGGREGATE modelstore._vector_sum(float8[]) (SFUNC = modelstore._vector_add, STYPE = float8[]);

-- The statement that applies a change to one column set (family, class column, columns) of a table,
-- as SQL text (the caller runs it inside the trigger, where the transition tables are visible): each
-- changed row is read once, its sums about one center computed once, into the group of rows that lie
-- between the same two range ends of the stored statistics ($1: their stats_ids, locked by the caller)
-- and in the same chunk of the index ($2: its index_id, $3: its levels, $4 … $5: the chunks the change
-- can touch). Stored statistics add up their
-- groups; an index node adds up the chunks below it (a chunk's ancestor at level L is its position
-- shifted right by L). Sums reach each summary as
--   linear:       m, nulls, c (the center), s1, s2 (upper triangle, row-major) — sums about c;
--   Naive Bayes:  m, nulls, deltas [{label, m, c, s1, s2}] (per class; multinomial: c = 0, plain sums)
-- and _absorbed_linear / _merged_classes merge them. p_key is the changed rows' ordering key over alias
-- t, compared as p_type: 'int8' (integer, date and timestamp columns: key = (value − p_offset)·p_scale,
-- cuts placed by _cut_position; binary search over fixed-width arrays), else 'float8' or 'numeric'
-- (cuts compared with their sides). Identifiers are quoted with %I; literals with %L.
-- p_dd (the modelstore_stats extension is installed): linear and Gaussian Naive Bayes summaries absorb the
-- change in double-double instead: per group the dd_moments (dd_diag) states of the added and of the
-- removed rows, added up per summary (dd_state_sum) and merged by _absorbed_linear_dd (_merged_classes_dd).
-- p_group (per-group summaries, docs/serving.md "Under writes"): the changed rows' group key over alias t
-- (the group column ::text, as the grouped aggregate keys them); rows are then also grouped by their key,
-- and a stored summary ($1, stats only) takes the rows whose key is its extra ->> 'group_key'. With p_index
-- instead (and p_stats false): the index's per-group nodes (modelstore.index_group_nodes, migration 0015;
-- docs/index.md "Per-group nodes"), each (level, pos, group) node taking its own group's rows; p_insert: the
-- statement that first creates, empty, the group nodes the change's new rows need (ON CONFLICT DO NOTHING), so
-- that the update finds every node it adds to.
DROP FUNCTION IF EXISTS modelstore._maintenance_sql(text, text, text, text, numeric, numeric, text[], text, boolean[],
                                                    boolean, boolean, boolean, text);
DROP FUNCTION IF EXISTS modelstore._maintenance_sql(text, text, text, text, numeric, numeric, text[], text, boolean[],
                                                    boolean, boolean);
DROP FUNCTION IF EXISTS modelstore._maintenance_sql(text, text, text, text, numeric, numeric, text[], text, boolean[],
                                                    boolean, boolean, boolean);
CREATE OR REPLACE FUNCTION modelstore._maintenance_sql(p_family text, p_op text, p_key text, p_type text,
                                                       p_offset numeric, p_scale numeric, p_columns text[],
                                                       p_target text, p_bools boolean[], p_stats boolean,
                                                       p_index boolean, p_dd boolean DEFAULT false,
                                                       p_group text DEFAULT NULL, p_insert boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k integer := cardinality(p_columns);
    nb boolean := p_family <> 'linear';
    -- multinomial keeps plain float64 sums (exact for the integer counts it is for)
    dd boolean := p_dd AND p_family <> 'multinomial_nb';
    fast boolean := p_type = 'int8';
    lbl text := CASE WHEN p_family <> 'linear' THEN ', label' ELSE '' END;
    glbl text := CASE WHEN p_family <> 'linear' THEN ', label' ELSE '' END
                 || CASE WHEN p_group IS NOT NULL THEN ', gk' ELSE '' END;  -- what rows are grouped by besides their segment
    centers text;
    centered text;
    sums text;
    sum_names text;
    summed text;
    s1_arr text;
    s2_arr text;
    s1_terms text[];
    s2_terms text[];
    scuts text := format('SELECT ''{}''::%s[] AS skeys', p_type);
    sseg text := '0';
    icuts text := format('SELECT ''{}''::%s[] AS ikeys', p_type);
    leaf text := '-1';
    stats_in text;
    common text;
    final text;
    set_list text;
    stats_update text;
    index_update text;
BEGIN
    -- one center for every summary, any changed row (the shifted-data sums: each summary's sums are moved
    -- to its stored mean before they are merged); multinomial keeps plain sums
    SELECT string_agg(CASE WHEN p_family = 'multinomial_nb' THEN format('0::float8 AS c%s', i)
                           ELSE format('coalesce(f.x%s, 0) AS c%s', i, i) END, ', ' ORDER BY i)
             || CASE WHEN p_family = 'multinomial_nb' THEN ''
                     ELSE ' FROM (SELECT) AS one LEFT JOIN LATERAL (SELECT * FROM d WHERE d.complete LIMIT 1) AS f ON true' END,
           -- per row, once: y = x − c and the signed w = sgn·y
           string_agg(format('q.x%1$s - c.c%1$s AS y%1$s, q.sgn * (q.x%1$s - c.c%1$s) AS w%1$s', i), ', ' ORDER BY i)
      INTO centers, centered FROM generate_series(1, k) AS i;
    -- the sums each changed row adds to its group (complete rows only): a column each, or, when that
    -- many columns would pass PostgreSQL's 1,664 target-list entries (linear over ~55 columns), two arrays
    -- added up element by element (_vector_sum)
    IF nb THEN
        SELECT array_agg(format('sum(z.w%s) FILTER (WHERE z.complete)', i) ORDER BY i),
               array_agg(format('sum(z.w%1$s * z.y%1$s) FILTER (WHERE z.complete)', i) ORDER BY i)
          INTO s1_terms, s2_terms FROM generate_series(1, k) AS i;
    ELSE
        SELECT array_agg(format('sum(z.w%s) FILTER (WHERE z.complete)', i) ORDER BY i)
          INTO s1_terms FROM generate_series(1, k) AS i;
        SELECT array_agg(format('sum(z.w%s * z.y%s) FILTER (WHERE z.complete)', i, j) ORDER BY i, j)
          INTO s2_terms FROM generate_series(1, k) AS i, generate_series(1, k) AS j WHERE j >= i;
    END IF;
    IF dd THEN
        -- double-double: the raw values go to the C aggregate (x − c rounded would lose the low parts)
        SELECT centered || ', ' || string_agg(format('q.x%s', i), ', ' ORDER BY i),
               format('modelstore.%1$s(%2$s) FILTER (WHERE z.complete AND z.sgn > 0) AS st_p, '
                      'modelstore.%1$s(%2$s) FILTER (WHERE z.complete AND z.sgn < 0) AS st_m',
                      CASE WHEN nb THEN 'dd_diag_state' ELSE 'dd_moments_state' END,
                      string_agg(format('z.x%s', i), ', ' ORDER BY i))
          INTO centered, sums FROM generate_series(1, k) AS i;
        sum_names := 'g.st_p, g.st_m';
        summed := 'modelstore.dd_state_sum(t.st_p) AS st_p, modelstore.dd_state_sum(t.st_m) AS st_m';
        s1_arr := 'modelstore.dd_final(a.st_p)';
        s2_arr := 'modelstore.dd_final(a.st_m)';
    ELSIF cardinality(s1_terms) + cardinality(s2_terms) > 1500 THEN
        sums := format('ARRAY[%s]::float8[] AS s1v, ARRAY[%s]::float8[] AS s2v',
                       (SELECT string_agg(format('coalesce(%s, 0)', e), ', ' ORDER BY i)
                          FROM unnest(s1_terms) WITH ORDINALITY AS u(e, i)),
                       (SELECT string_agg(format('coalesce(%s, 0)', e), ', ' ORDER BY i)
                          FROM unnest(s2_terms) WITH ORDINALITY AS u(e, i)));
        sum_names := 'g.s1v, g.s2v';
        summed := 'modelstore._vector_sum(t.s1v) AS s1v, modelstore._vector_sum(t.s2v) AS s2v';
        s1_arr := 'a.s1v';
        s2_arr := 'a.s2v';
    ELSE
        SELECT string_agg(format('%s AS s1_%s', e, i), ', ' ORDER BY i),
               string_agg(format('g.s1_%s', i), ', ' ORDER BY i),
               string_agg(format('sum(t.s1_%1$s) AS s1_%1$s', i), ', ' ORDER BY i),
               format('ARRAY[%s]::float8[]', string_agg(format('coalesce(a.s1_%s, 0)', i), ', ' ORDER BY i))
          INTO sums, sum_names, summed, s1_arr FROM unnest(s1_terms) WITH ORDINALITY AS u(e, i);
        SELECT sums || ', ' || string_agg(format('%s AS s2_%s', e, i), ', ' ORDER BY i),
               sum_names || ', ' || string_agg(format('g.s2_%s', i), ', ' ORDER BY i),
               summed || ', ' || string_agg(format('sum(t.s2_%1$s) AS s2_%1$s', i), ', ' ORDER BY i),
               format('ARRAY[%s]::float8[]', string_agg(format('coalesce(a.s2_%s, 0)', i), ', ' ORDER BY i))
          INTO sums, sum_names, summed, s2_arr FROM unnest(s2_terms) WITH ORDINALITY AS u(e, i);
    END IF;
    IF p_stats THEN
        -- rows between the same two consecutive range ends lie in the same summaries; the group's
        -- representative row (its least key) tells which
        IF fast THEN
            scuts := format('SELECT coalesce(array_agg(DISTINCT e.key ORDER BY e.key), ''{}'') AS skeys '
                            'FROM modelstore.statistics AS s CROSS JOIN LATERAL (VALUES '
                            '(modelstore._cut_position(s.lo_key, 0::smallint, %1$L, %2$L)), '
                            '(modelstore._cut_position(s.hi_key, 1::smallint, %1$L, %2$L))) AS e(key) '
                            'WHERE s.stats_id = ANY ($1)', p_offset, p_scale);
            sseg := 'q.sb';
            stats_in := format('g.rep >= modelstore._cut_position(s.lo_key, 0::smallint, %1$L, %2$L) '
                               'AND g.rep < modelstore._cut_position(s.hi_key, 1::smallint, %1$L, %2$L)',
                               p_offset, p_scale);
        ELSE
            scuts := format('SELECT coalesce(array_agg(DISTINCT e.key ORDER BY e.key), ''{}'') AS skeys '
                            'FROM modelstore.statistics AS s CROSS JOIN LATERAL (VALUES (s.lo_key::%1$s), '
                            '(s.hi_key::%1$s)) AS e(key) WHERE s.stats_id = ANY ($1)', p_type);
            -- rows on a range end form their own group
            sseg := '2 * q.sb + CASE WHEN q.sb > 0 AND q.skeys[q.sb] = q.k THEN 0 ELSE 1 END';
            stats_in := format('g.rep BETWEEN s.lo_key::%1$s AND s.hi_key::%1$s', p_type);
        END IF;
        IF p_group IS NOT NULL THEN  -- a group's summary takes its group's rows only (a NULL group: none)
            stats_in := stats_in || ' AND s.extra ->> ''group_key'' = g.gk';
        END IF;
    END IF;
    IF p_index THEN
        -- a row's chunk is the number of chunk starts at or before it, less one, if it lies before the
        -- index's end
        IF fast THEN
            icuts := format('SELECT coalesce(array_agg(modelstore._cut_position(n.lo_key, n.lo_side, %1$L, %2$L) '
                            'ORDER BY n.pos), ''{}'') AS ikeys, (array_agg(modelstore._cut_position(n.hi_key, '
                            'n.hi_side, %1$L, %2$L) ORDER BY n.pos DESC))[1] AS iend', p_offset, p_scale);
            leaf := 'CASE WHEN q.k < q.iend AND q.ib > 0 THEN $4 + q.ib - 1 ELSE -1 END';
        ELSE
            icuts := format('SELECT coalesce(array_agg(n.lo_key::%1$s ORDER BY n.pos), ''{}'') AS ikeys, '
                            'coalesce(array_agg(n.lo_side ORDER BY n.pos), ''{}'') AS isides, '
                            '(array_agg(n.hi_key::%1$s ORDER BY n.pos DESC))[1] AS iend, '
                            '(array_agg(n.hi_side ORDER BY n.pos DESC))[1] AS iend_side', p_type);
            -- a start (key, side 1) lies just after key: a row on key belongs to the chunk before
            leaf := 'CASE WHEN (q.k < q.iend OR (q.k = q.iend AND q.iend_side = 1)) AND q.ib > 0 '
                    'THEN $4 + q.ib - CASE WHEN q.ikeys[q.ib] = q.k AND q.isides[q.ib] = 1 THEN 2 ELSE 1 END '
                    'ELSE -1 END';
        END IF;
        -- only the chunks the change can touch, $4 … $5 (the caller found them): positions count from $4
        icuts := icuts || ' FROM modelstore.index_nodes AS n WHERE n.index_id = $2 AND n.level = 0 AND n.pos BETWEEN $4 AND $5';
    END IF;
    -- OFFSET 0 keeps a subquery from being flattened: its columns are computed once per row, not once
    -- per use in the aggregates above
    common := format(
        'WITH d AS (%1$s), '
        'c AS (SELECT %2$s), scuts AS (%3$s), icuts AS (%4$s), '
        'z AS (SELECT %5$s AS sseg, %6$s AS leaf, q.k, q.sgn, q.complete%7$s, %8$s '
        'FROM (SELECT d.*, scuts.*, icuts.*, width_bucket(d.k, scuts.skeys) AS sb, width_bucket(d.k, icuts.ikeys) AS ib '
        'FROM d CROSS JOIN scuts CROSS JOIN icuts OFFSET 0) AS q CROSS JOIN c OFFSET 0), '
        'g AS (SELECT z.sseg, z.leaf%9$s, min(z.k) AS rep, coalesce(sum(z.sgn) FILTER (WHERE z.complete), 0) AS m, '
        'coalesce(sum(z.sgn) FILTER (WHERE NOT z.complete), 0) AS nulls, %10$s FROM z GROUP BY z.sseg, z.leaf%9$s), '
        'cc AS (SELECT ARRAY[%11$s]::float8[] AS arr FROM c)',
        modelstore._delta_values(p_op, p_key, p_columns, CASE WHEN nb THEN p_target ELSE '' END, p_bools, p_group),
        centers, scuts, icuts, sseg, leaf, CASE WHEN nb THEN ', CASE WHEN q.complete THEN q.label END AS label' ELSE '' END
                                           || CASE WHEN p_group IS NOT NULL THEN ', q.gk' ELSE '' END,
        centered, replace(glbl, ', ', ', z.'), sums,
        (SELECT string_agg(format('c.c%s', i), ', ' ORDER BY i) FROM generate_series(1, k) AS i));
    -- a summary's sums from its groups (t: one row per summary and group), then as the merge wants them
    final := 'a AS (SELECT %1$s%2$s, sum(t.m) AS m, sum(t.nulls) AS nulls, %3$s FROM t GROUP BY %1$s%2$s) '
             || CASE WHEN nb THEN
                    'SELECT %1$s, coalesce(sum(a.m) FILTER (WHERE a.label IS NOT NULL), 0)::bigint AS m, '
                    'coalesce(sum(a.nulls) FILTER (WHERE a.label IS NULL), 0)::bigint AS nulls, '
                    'coalesce(jsonb_agg(jsonb_build_object(''label'', a.label, ''m'', a.m, ''c'', to_jsonb(cc.arr), '
                    '''s1'', to_jsonb(%4$s), ''s2'', to_jsonb(%5$s))) '
                    'FILTER (WHERE a.label IS NOT NULL), ''[]''::jsonb) AS deltas FROM a CROSS JOIN cc GROUP BY %1$s'
                ELSE
                    'SELECT %1$s, a.m::bigint AS m, a.nulls::bigint AS nulls, cc.arr AS c, '
                    '%4$s AS s1, %5$s AS s2 FROM a CROSS JOIN cc' END;
    IF dd AND nb THEN  -- a Naive Bayes delta's two sums are the added and the removed rows' dd_diag results
        final := replace(replace(final, '''s1''', '''plus'''), '''s2''', '''minus''');
    END IF;
    set_list := CASE WHEN nb AND dd THEN format('(classes, counts, mean, mean_lo, moments, moments_lo) = (SELECT * FROM '
                                                'modelstore._merged_classes_dd(t.classes, t.counts, t.mean, t.mean_lo, '
                                                't.moments, t.moments_lo, %s, a.deltas))', k)
                     WHEN nb THEN format('mean_lo = NULL, moments_lo = NULL, (classes, counts, mean, moments) = (SELECT * '
                                         'FROM modelstore._merged_classes(%L, t.classes, t.counts, t.mean, t.moments, '
                                         '%s, a.deltas))', p_family, k)
                     -- the merge is float64: a double-double summary's low parts no longer apply (they are
                     -- dropped, and the summary is float64 from now on: docs/statistics.md, "Change capture")
                     WHEN dd THEN '(mean, mean_lo, moments, moments_lo) = (SELECT * FROM modelstore._absorbed_linear_dd('
                                    't.n, t.mean, t.mean_lo, t.moments, t.moments_lo, %s, a.s1, a.s2))'
                     ELSE 'mean_lo = NULL, moments_lo = NULL, (mean, moments) = (SELECT * FROM modelstore._absorbed_linear(t.n, t.mean, t.moments, a.m, '
                          'a.c, a.s1, a.s2, %s))' END;
    IF p_stats THEN
        stats_update := format(
            'UPDATE modelstore.statistics AS t SET n = t.n + a.m, null_rows = t.null_rows + a.nulls, %s '
            'FROM (WITH t AS (SELECT s.stats_id%s, g.m, g.nulls, %s FROM g JOIN modelstore.statistics AS s '
            'ON s.stats_id = ANY ($1) AND %s), %s) AS a WHERE t.stats_id = a.stats_id',
            format(set_list, 'true'), replace(lbl, ', ', ', g.'), sum_names, stats_in,
            format(final, 'stats_id', replace(lbl, ', ', ', t.'), summed, s1_arr, s2_arr));
    END IF;
    IF p_index AND p_group IS NOT NULL THEN
        -- the per-group nodes: rows grouped by chunk and group key; a chunk's ancestors as for the index
        IF p_insert THEN
            RETURN common || format(
                ' INSERT INTO modelstore.index_group_nodes (index_id, level, pos, group_key, n, null_rows, classes, '
                'counts, mean, moments) SELECT DISTINCT $2::bigint, lv.level::smallint, g.leaf >> lv.level, g.gk, 0, 0, %s '
                'FROM g CROSS JOIN generate_series(0, $3 - 1) AS lv(level) '
                'WHERE g.leaf >= 0 AND g.gk IS NOT NULL AND (g.m > 0 OR g.nulls > 0) ON CONFLICT DO NOTHING',
                CASE WHEN nb THEN '''[]''::jsonb, ''{}''::bigint[], ''{}''::float8[], ''{}''::float8[]'
                     ELSE format('NULL::jsonb, NULL::bigint[], array_fill(0::float8, ARRAY[%s]), '
                                 'array_fill(0::float8, ARRAY[%s])', k, k * (k + 1) / 2) END);
        END IF;
        index_update := format(
            'UPDATE modelstore.index_group_nodes AS t SET n = t.n + a.m, null_rows = t.null_rows + a.nulls, %s '
            'FROM (WITH t AS (SELECT $2::bigint AS index_id, lv.level::smallint AS level, g.leaf >> lv.level AS pos, '
            'g.gk%s, g.m, g.nulls, %s FROM g CROSS JOIN generate_series(0, $3 - 1) AS lv(level) '
            'WHERE g.leaf >= 0 AND g.gk IS NOT NULL), %s) AS a '
            'WHERE t.index_id = a.index_id AND t.level = a.level AND t.pos = a.pos AND t.group_key = a.gk',
            format(set_list, 'false'), replace(lbl, ', ', ', g.'), sum_names,
            format(final, 'index_id, level, pos, gk', replace(lbl, ', ', ', t.'), summed, s1_arr, s2_arr));
    ELSIF p_index THEN
        index_update := format(
            'UPDATE modelstore.index_nodes AS t SET n = t.n + a.m, null_rows = t.null_rows + a.nulls, %s '
            'FROM (WITH t AS (SELECT $2::bigint AS index_id, lv.level::smallint AS level, g.leaf >> lv.level AS pos%s, '
            'g.m, g.nulls, %s FROM g CROSS JOIN generate_series(0, $3 - 1) AS lv(level) WHERE g.leaf >= 0), %s) AS a '
            'WHERE t.index_id = a.index_id AND t.level = a.level AND t.pos = a.pos',
            format(set_list, 'false'), replace(lbl, ', ', ', g.'), sum_names,
            format(final, 'index_id, level, pos', replace(lbl, ', ', ', t.'), summed, s1_arr, s2_arr));
    END IF;
    -- both: the statistics' update runs as a data-modifying CTE (always to completion)
    RETURN common || CASE WHEN p_stats AND p_index THEN format(', stats AS (%s) %s', stats_update, index_update)
                          ELSE ' ' || coalesce(stats_update, index_update) END;
END
$$;
