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
