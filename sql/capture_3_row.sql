-- Change capture — the row-by-row path: a few changed rows absorbed one at a time with cached plans
-- (docs/freshness.md, "How a delta is applied").

-- The small-change path of capture(): one changed row absorbed by the summaries it falls in, a few
-- statements whose plans PL/pgSQL caches, instead of planning the bulk query (which costs a few
-- milliseconds whatever the number of rows). p_index: an index's id (its nodes), or NULL for the
-- stored statistics p_ids. A single row's sums about itself are zero: c = x, S1 = S2 = 0, and
-- _absorbed_linear / _merged_classes move them to each summary's mean. Rows with a NULL in a used
-- column only count as null rows.
CREATE OR REPLACE FUNCTION modelstore._absorb_row(p_index bigint, p_levels integer, p_ids bigint[], p_family text,
                                                  p_type text, p_sgn integer, p_key text, p_complete boolean,
                                                  p_x float8[], p_label jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3  -- float8 → jsonb → float8 is exact (shortest round-trip output)
AS $$
DECLARE
    k integer := cardinality(p_x);
    zeros float8[] := array_fill(0::float8, ARRAY[k]);
    zero_pairs float8[] := array_fill(0::float8, ARRAY[k * (k + 1) / 2]);  -- S2: the upper triangle
    kn numeric := CASE WHEN p_type = 'numeric' THEN p_key::numeric END;
    kf float8 := CASE WHEN p_type = 'float8' THEN p_key::float8 END;
    multinomial boolean := p_family = 'multinomial_nb';
    deltas jsonb;
    ids bigint[];
    levels smallint[];
    positions integer[];
    leaf integer;
    -- double-double merges when the extension is installed; one row's dd_moments result: n = 1, mean = x
    dd boolean := p_family <> 'multinomial_nb' AND p_complete AND modelstore._capture_dd();
    one float8[] := CASE WHEN p_family = 'linear' THEN ARRAY[1, 0]::float8[] || p_x || zeros || zero_pairs || zero_pairs END;
BEGIN
    IF p_family = 'gaussian_nb' AND dd THEN
        -- one row's dd_diag result: n = 1, mean = x, zero moments
        deltas := jsonb_build_array(jsonb_build_object(
            'label', p_label, 'm', p_sgn,
            'plus', to_jsonb(CASE WHEN p_sgn > 0 THEN ARRAY[1, 0]::float8[] || p_x || zeros || zeros || zeros END),
            'minus', to_jsonb(CASE WHEN p_sgn < 0 THEN ARRAY[1, 0]::float8[] || p_x || zeros || zeros || zeros END)));
    ELSIF p_family <> 'linear' THEN
        deltas := jsonb_build_array(jsonb_build_object(
            'label', p_label, 'm', p_sgn, 'c', to_jsonb(CASE WHEN multinomial THEN zeros ELSE p_x END),
            -- multinomial keeps plain (signed) feature sums
            's1', to_jsonb(CASE WHEN multinomial THEN (SELECT array_agg(p_sgn * v ORDER BY i)
                                                      FROM unnest(p_x) WITH ORDINALITY AS u(v, i)) ELSE zeros END),
            's2', to_jsonb(zeros)));
    END IF;
    IF p_index IS NULL THEN
        SELECT array_agg(t.stats_id) INTO ids FROM modelstore.statistics AS t
         WHERE t.stats_id = ANY (p_ids)
           AND CASE WHEN p_type = 'float8' THEN kf BETWEEN t.lo_key::float8 AND t.hi_key::float8
                    ELSE kn BETWEEN t.lo_key AND t.hi_key END;
        IF NOT p_complete THEN
            UPDATE modelstore.statistics AS t SET null_rows = t.null_rows + p_sgn WHERE t.stats_id = ANY (ids);
        ELSIF p_family = 'linear' AND dd THEN
            -- double-double merge (the extension): the summary keeps its precision
            UPDATE modelstore.statistics AS t SET n = t.n + p_sgn, (mean, mean_lo, moments, moments_lo) = (SELECT * FROM
                       modelstore._absorbed_linear_dd(t.n, t.mean, t.mean_lo, t.moments, t.moments_lo, true,
                                                      CASE WHEN p_sgn > 0 THEN one END, CASE WHEN p_sgn < 0 THEN one END))
             WHERE t.stats_id = ANY (ids);
        ELSIF p_family = 'linear' THEN
            -- a float64 merge: double-double low parts no longer apply (docs/statistics.md, "Change capture")
            UPDATE modelstore.statistics AS t SET n = t.n + p_sgn, mean_lo = NULL, moments_lo = NULL, (mean, moments) = (SELECT * FROM
                       modelstore._absorbed_linear(t.n, t.mean, t.moments, p_sgn, p_x, zeros, zero_pairs, true))
             WHERE t.stats_id = ANY (ids);
        ELSIF dd THEN
            UPDATE modelstore.statistics AS t SET n = t.n + p_sgn,
                   (classes, counts, mean, mean_lo, moments, moments_lo) = (SELECT * FROM
                       modelstore._merged_classes_dd(t.classes, t.counts, t.mean, t.mean_lo, t.moments, t.moments_lo,
                                                     k, deltas))
             WHERE t.stats_id = ANY (ids);
        ELSE
            -- a float64 merge: double-double low parts no longer apply
            UPDATE modelstore.statistics AS t SET n = t.n + p_sgn, mean_lo = NULL, moments_lo = NULL,
                   (classes, counts, mean, moments) = (SELECT * FROM
                       modelstore._merged_classes(t.family, t.classes, t.counts, t.mean, t.moments, k, deltas))
             WHERE t.stats_id = ANY (ids);
        END IF;
        RETURN;
    END IF;
    -- index nodes: a node's range runs between two cuts, (key, side 0) just before key, (key, 1) just after
    IF p_type = 'numeric' THEN
        -- the chunk: the last one starting at or before the row (the btree on chunk starts), if the row
        -- lies before its end; then its ancestors, the chunk's position shifted right by the level
        SELECT t.pos INTO leaf FROM modelstore.index_nodes AS t
         WHERE t.index_id = p_index AND t.level = 0 AND (t.lo_key, t.lo_side) < (kn, 1)
           AND (kn < t.hi_key OR (kn = t.hi_key AND t.hi_side = 1))
         ORDER BY t.lo_key DESC, t.lo_side DESC LIMIT 1;
        SELECT array_agg(lv::smallint), array_agg(leaf >> lv) INTO levels, positions
          FROM generate_series(0, p_levels - 1) AS lv WHERE leaf IS NOT NULL;
    ELSE
        -- float keys compare as float8 (their numeric keys are the doubles' exact values): every node
        SELECT array_agg(t.level), array_agg(t.pos) INTO levels, positions FROM modelstore.index_nodes AS t
         WHERE t.index_id = p_index
           AND (kf > t.lo_key::float8 OR (kf = t.lo_key::float8 AND t.lo_side = 0))
           AND (kf < t.hi_key::float8 OR (kf = t.hi_key::float8 AND t.hi_side = 1));
    END IF;
    IF NOT p_complete THEN
        UPDATE modelstore.index_nodes AS t SET null_rows = t.null_rows + p_sgn
          FROM unnest(levels, positions) AS u(level, pos)  -- each node by its primary key
         WHERE t.index_id = p_index AND t.level = u.level AND t.pos = u.pos;
    ELSIF p_family = 'linear' AND dd THEN
        UPDATE modelstore.index_nodes AS t SET n = t.n + p_sgn, (mean, mean_lo, moments, moments_lo) = (SELECT * FROM
                   modelstore._absorbed_linear_dd(t.n, t.mean, t.mean_lo, t.moments, t.moments_lo, false,
                                                  CASE WHEN p_sgn > 0 THEN one END, CASE WHEN p_sgn < 0 THEN one END))
          FROM unnest(levels, positions) AS u(level, pos)  -- each node by its primary key
         WHERE t.index_id = p_index AND t.level = u.level AND t.pos = u.pos;
    ELSIF p_family = 'linear' THEN
        UPDATE modelstore.index_nodes AS t SET n = t.n + p_sgn, mean_lo = NULL, moments_lo = NULL, (mean, moments) = (SELECT * FROM
                   modelstore._absorbed_linear(t.n, t.mean, t.moments, p_sgn, p_x, zeros, zero_pairs, false))
          FROM unnest(levels, positions) AS u(level, pos)  -- each node by its primary key
         WHERE t.index_id = p_index AND t.level = u.level AND t.pos = u.pos;
    ELSIF dd THEN
        UPDATE modelstore.index_nodes AS t SET n = t.n + p_sgn,
               (classes, counts, mean, mean_lo, moments, moments_lo) = (SELECT * FROM
                   modelstore._merged_classes_dd(t.classes, t.counts, t.mean, t.mean_lo, t.moments, t.moments_lo, k,
                                                 deltas))
          FROM unnest(levels, positions) AS u(level, pos)  -- each node by its primary key
         WHERE t.index_id = p_index AND t.level = u.level AND t.pos = u.pos;
    ELSE
        UPDATE modelstore.index_nodes AS t SET n = t.n + p_sgn, mean_lo = NULL, moments_lo = NULL,
               (classes, counts, mean, moments) = (SELECT * FROM
                   modelstore._merged_classes(p_family, t.classes, t.counts, t.mean, t.moments, k, deltas))
          FROM unnest(levels, positions) AS u(level, pos)  -- each node by its primary key
         WHERE t.index_id = p_index AND t.level = u.level AND t.pos = u.pos;
    END IF;
END
$$;
