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
-- relevant_statistics, with no limit, in one statement. The compatible stored ranges and the request
-- itself are read once in key order (the btree statistics_plan_key covers what is read); a running
-- maximum of the upper keys splits them into connected components — a range starts a new component
-- exactly when it does not intersect any range before it — and the component holding the request is
-- its enhanced descriptor (Definition 1's transitive closure). One pass, no repeated probes.
-- Keys come back as int8 — integer and date ordering columns only (their keys are whole numbers).
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
    OUT stats_ids bigint[], OUT lo_keys bigint[], OUT hi_keys bigint[], OUT n_values integer[],
    OUT n_rows bigint[], OUT column_ix integer[], OUT column_sets jsonb, OUT probes integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH c AS (
        SELECT s.stats_id, s.lo_key, s.hi_key, s.columns,
               s.n + s.null_rows AS n_rows,
               (cardinality(s.moments) + coalesce(cardinality(s.mean), 0))::integer AS n_values
          FROM modelstore.statistics AS s
         WHERE s.source_id = p_source_id AND s.family = p_family AND s.target = p_target
           AND s.params_key = p_params_key AND s.filter_sql = p_filter_sql
           AND s.columns @> p_columns AND NOT s.stale
           AND (CASE WHEN p_exact_columns THEN s.columns <@ p_columns
                     ELSE s.null_rows = 0 OR s.columns <@ p_columns END)
           AND (NOT p_contained_only OR (s.lo_key >= p_lo AND s.hi_key <= p_hi))
        UNION ALL
        SELECT NULL, p_lo, p_hi, NULL, NULL, NULL
    ), reach AS (  -- the highest key reached by the ranges before each one, in key order
        SELECT c.*, max(c.hi_key) OVER w AS before_hi
          FROM c
        WINDOW w AS (ORDER BY c.lo_key, c.hi_key, c.stats_id NULLS FIRST
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
    ), comp AS (   -- a component starts where a range meets none before it (keys are whole numbers)
        SELECT r.*, count(*) FILTER (WHERE r.before_hi IS NULL OR r.lo_key > r.before_hi)
                        OVER (ORDER BY r.lo_key, r.hi_key, r.stats_id NULLS FIRST ROWS UNBOUNDED PRECEDING) AS grp
          FROM reach AS r
    ), m AS (
        SELECT x.* FROM comp AS x
         WHERE x.stats_id IS NOT NULL
           AND (p_contained_only OR x.grp = (SELECT q.grp FROM comp AS q WHERE q.stats_id IS NULL))
    ), sets AS (   -- the distinct column sets (usually one), numbered from 0
        SELECT d.columns, (row_number() OVER (ORDER BY d.columns))::integer - 1 AS cix
          FROM (SELECT DISTINCT m.columns FROM m) AS d
    )
    SELECT coalesce(array_agg(m.stats_id), '{}'), coalesce(array_agg(m.lo_key::bigint), '{}'),
           coalesce(array_agg(m.hi_key::bigint), '{}'), coalesce(array_agg(m.n_values), '{}'),
           coalesce(array_agg(m.n_rows), '{}'), coalesce(array_agg(sets.cix), '{}'),
           (SELECT coalesce(jsonb_agg(to_jsonb(d.columns) ORDER BY d.cix), '[]') FROM sets AS d),
           1
      FROM m JOIN sets ON sets.columns = m.columns
$$;

COMMENT ON FUNCTION modelstore.plan_candidates IS
    'Algorithm 3 for the planner: the relevant set (no limit) as arrays of ids, integer keys and sizes.';
