-- Change capture: stored statistics stay true while their table changes (docs/freshness.md).
--
-- Four statement-level AFTER triggers per table (INSERT, UPDATE, DELETE with transition tables, and
-- TRUNCATE) run modelstore.capture(), in the writer's transaction:
--   * unfiltered linear and Naive Bayes summaries (stored statistics and index nodes) that the changed
--     rows fall in absorb the signed delta exactly (sums centered at the stored mean, then the pairwise
--     update of paper §3: n' = n + m, mean' = c + S1/n', M' = M + S2 − S1·S1ᵀ/n');
--   * logistic chunk models the change touches are marked stale (they are not decomposable, §4);
--   * filtered summaries the change touches are deleted (rebuilt on demand): the trigger never
--     executes SQL text read from the catalog, only identifiers it checked against the table;
--   * TRUNCATE drops every summary of the table.
-- Changes outside every stored range cost one probe of the catalog.

-- mean' = c + S1 / n' (zeros when no row is left)
CREATE OR REPLACE FUNCTION modelstore._merged_mean(p_n bigint, p_center float8[], p_s1 float8[])
RETURNS float8[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_n = 0 THEN array_fill(0::float8, ARRAY[cardinality(p_s1)])
                ELSE ARRAY(SELECT coalesce(u.c, 0) + u.s / p_n
                           FROM unnest(p_center, p_s1) WITH ORDINALITY AS u(c, s, i) ORDER BY u.i) END
$$;

-- M' = M + S2 − S1·S1ᵀ / n' on a k×k comoment stored in full (statistics) or as its upper triangle
-- (index nodes); S2 comes as the upper triangle, row-major
CREATE OR REPLACE FUNCTION modelstore._merged_comoment(p_n bigint, p_moments float8[], p_s1 float8[],
                                                       p_s2 float8[], p_full boolean)
RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k integer := cardinality(p_s1);
    out float8[] := p_moments;
    t integer := 0;
    v float8;
BEGIN
    IF p_n = 0 THEN
        RETURN array_fill(0::float8, ARRAY[cardinality(p_moments)]);
    END IF;
    FOR i IN 1..k LOOP
        FOR j IN i..k LOOP
            t := t + 1;
            v := p_s2[t] - p_s1[i] * p_s1[j] / p_n;
            IF p_full THEN
                out[(i - 1) * k + j] := out[(i - 1) * k + j] + v;
                IF i <> j THEN
                    out[(j - 1) * k + i] := out[(j - 1) * k + i] + v;
                END IF;
            ELSE
                out[t] := out[t] + v;
            END IF;
        END LOOP;
    END LOOP;
    RETURN out;
END
$$;

-- A Naive Bayes summary with per-class deltas applied: [{label, m, c[], s1[], s2[]}, …]. New classes
-- are appended (readers sort classes), classes whose count reaches zero disappear.
CREATE OR REPLACE FUNCTION modelstore._merged_classes(p_family text, p_classes jsonb, p_counts bigint[],
                                                      p_mean float8[], p_moments float8[], p_d integer,
                                                      p_deltas jsonb,
                                                      OUT classes jsonb, OUT counts bigint[], OUT mean float8[],
                                                      OUT moments float8[])
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gaussian boolean := p_family = 'gaussian_nb';
    cls jsonb := coalesce(p_classes, '[]'::jsonb);
    cnt bigint[] := coalesce(p_counts, '{}'::bigint[]);
    mu float8[] := coalesce(p_mean, '{}'::float8[]);
    mm float8[] := coalesce(p_moments, '{}'::float8[]);
    e jsonb;
    label jsonb;
    idx integer;
    n_new bigint;
    pos integer;
    s1 float8;
    s2 float8;
    c float8;
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(p_deltas) LOOP
        label := e -> 'label';
        SELECT x.ord::integer INTO idx FROM jsonb_array_elements(cls) WITH ORDINALITY AS x(v, ord) WHERE x.v = label;
        IF idx IS NULL THEN
            -- a class the summary has not seen: integral numbers are stored as integers, as Python does
            IF jsonb_typeof(label) = 'number' AND (label #>> '{}')::numeric = trunc((label #>> '{}')::numeric) THEN
                label := to_jsonb(trunc((label #>> '{}')::numeric));
            END IF;
            cls := cls || jsonb_build_array(label);
            cnt := cnt || 0::bigint;
            IF gaussian THEN
                mu := mu || array_fill(0::float8, ARRAY[p_d]);
            END IF;
            mm := mm || array_fill(0::float8, ARRAY[p_d]);
            idx := jsonb_array_length(cls);
        END IF;
        n_new := cnt[idx] + (e ->> 'm')::bigint;
        FOR j IN 1..p_d LOOP
            pos := (idx - 1) * p_d + j;
            s1 := (e -> 's1' ->> (j - 1))::float8;
            IF NOT gaussian THEN
                mm[pos] := mm[pos] + s1;  -- multinomial: plain per-class feature sums
            ELSIF n_new = 0 THEN
                mu[pos] := 0;
                mm[pos] := 0;
            ELSE
                s2 := (e -> 's2' ->> (j - 1))::float8;
                c := (e -> 'c' ->> (j - 1))::float8;
                mu[pos] := c + s1 / n_new;
                mm[pos] := mm[pos] + s2 - s1 * s1 / n_new;
            END IF;
        END LOOP;
        cnt[idx] := n_new;
    END LOOP;
    -- keep the classes that still have rows
    SELECT coalesce(jsonb_agg(x.v ORDER BY x.ord), '[]'::jsonb),
           coalesce(array_agg(cnt[x.ord] ORDER BY x.ord), '{}'::bigint[])
      INTO classes, counts
      FROM jsonb_array_elements(cls) WITH ORDINALITY AS x(v, ord)
     WHERE cnt[x.ord] > 0;
    SELECT coalesce(array_agg(mm[(x.ord - 1) * p_d + j] ORDER BY x.ord, j), '{}'::float8[])
      INTO moments
      FROM generate_series(1, jsonb_array_length(cls)) AS x(ord), generate_series(1, p_d) AS j
     WHERE cnt[x.ord] > 0;
    IF gaussian THEN
        SELECT coalesce(array_agg(mu[(x.ord - 1) * p_d + j] ORDER BY x.ord, j), '{}'::float8[])
          INTO mean
          FROM generate_series(1, jsonb_array_length(cls)) AS x(ord), generate_series(1, p_d) AS j
         WHERE cnt[x.ord] > 0;
    ELSE
        mean := p_mean;
    END IF;
END
$$;

-- The signed changed rows as SQL text: sgn (+1 new, −1 old), k (the ordering key, p_key over alias t)
-- and the listed columns as v1, v2, … (named, never whole rows: a whole-row value of a transition table
-- with a dropped column does not match the table's row type).
CREATE OR REPLACE FUNCTION modelstore._delta_rows(p_op text, p_key text, p_columns text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH items AS (
        SELECT p_key || ' AS k' || coalesce((SELECT string_agg(format(', t.%I AS v%s', c, i), '' ORDER BY i)
                                             FROM unnest(p_columns) WITH ORDINALITY AS u(c, i)), '') AS list)
    SELECT CASE p_op
        WHEN 'INSERT' THEN format('SELECT 1 AS sgn, %s FROM modelstore_new AS t', list)
        WHEN 'DELETE' THEN format('SELECT -1 AS sgn, %s FROM modelstore_old AS t', list)
        ELSE format('SELECT 1 AS sgn, %1$s FROM modelstore_new AS t UNION ALL SELECT -1, %1$s FROM modelstore_old AS t',
                    list)
    END FROM items
$$;

-- The aggregate that turns signed changed rows into per-summary deltas, as SQL text. p_delta: the
-- signed rows (_delta_rows: the p_k value columns, then the class column when p_has_target);
-- p_join: the summaries they fall in (alias s), restricted to $1;
-- p_ids: the summary's key columns. Identifiers are quoted with %I; nothing else is variable.
CREATE OR REPLACE FUNCTION modelstore._delta_query(p_family text, p_delta text, p_join text, p_ids text,
                                                   p_k integer, p_bools boolean[], p_has_target boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k integer := p_k;
    xs text;
    complete text;
    centers text;
    c_arr text;
    s1_arr text;
    s2_arr text;
    inner_q text;
    ids_s text;
    ids_i text;
BEGIN
    SELECT string_agg(format('d.v%s IS NOT NULL', i), ' AND ') INTO complete
      FROM generate_series(1, k + CASE WHEN p_has_target THEN 1 ELSE 0 END) AS i;
    SELECT string_agg(format('CASE WHEN %s THEN d.v%s%s::float8 END AS x%s', complete, i,
                             CASE WHEN b THEN '::int' ELSE '' END, i), ', ' ORDER BY i)
      INTO xs FROM unnest(p_bools) WITH ORDINALITY AS u(b, i);
    -- p_ids: the summary's key columns, bare ('stats_id' or 'index_id, level, pos')
    ids_s := (SELECT string_agg('s.' || trim(x), ', ') FROM unnest(string_to_array(p_ids, ',')) AS x);
    ids_i := replace(ids_s, 's.', 'i.');
    IF p_family = 'linear' THEN
        inner_q := format('SELECT %s, s.n AS sn, s.mean AS smean, d.sgn, (%s) AS complete, %s FROM (%s) AS d %s',
                          ids_s, complete, xs, p_delta, p_join);
        SELECT string_agg(format('CASE WHEN i.sn > 0 THEN i.smean[%s] ELSE avg(i.x%s) OVER w END AS c%s', i, i, i),
                          ', ' ORDER BY i) INTO centers FROM generate_series(1, k) AS i;
        SELECT string_agg(format('coalesce(min(z.c%s), 0)', i), ', ' ORDER BY i),
               string_agg(format('coalesce(sum(z.sgn * (z.x%s - z.c%s)) FILTER (WHERE z.complete), 0)', i, i),
                          ', ' ORDER BY i)
          INTO c_arr, s1_arr FROM generate_series(1, k) AS i;
        SELECT string_agg(format('coalesce(sum(z.sgn * (z.x%s - z.c%s) * (z.x%s - z.c%s)) FILTER (WHERE z.complete), 0)',
                                 i, i, j, j), ', ' ORDER BY i, j)
          INTO s2_arr FROM generate_series(1, k) AS i, generate_series(1, k) AS j WHERE j >= i;
        RETURN format(
            'SELECT %s, coalesce(sum(z.sgn) FILTER (WHERE z.complete), 0)::bigint AS m, '
            'coalesce(sum(z.sgn) FILTER (WHERE NOT z.complete), 0)::bigint AS nulls, '
            'ARRAY[%s]::float8[] AS c, ARRAY[%s]::float8[] AS s1, ARRAY[%s]::float8[] AS s2 '
            'FROM (SELECT i.*, %s FROM (%s) AS i WINDOW w AS (PARTITION BY %s)) AS z GROUP BY %s',
            replace(ids_i, 'i.', 'z.'), c_arr, s1_arr, s2_arr, centers, inner_q, ids_i, replace(ids_i, 'i.', 'z.'));
    END IF;
    -- Naive Bayes: per summary and class (incomplete rows form the NULL label)
    inner_q := format('SELECT %s, s.counts AS scounts, s.mean AS smean, s.classes AS sclasses, d.sgn, '
                      'CASE WHEN %s THEN to_jsonb(d.v%s) END AS label, %s FROM (%s) AS d %s',
                      ids_s, complete, k + 1, xs, p_delta, p_join);
    SELECT string_agg(
               CASE WHEN p_family = 'multinomial_nb' THEN format('0::float8 AS c%s', i)
                    ELSE format('CASE WHEN y.idx IS NOT NULL AND y.scounts[y.idx] > 0 THEN y.smean[(y.idx - 1) * %s + %s] '
                                'ELSE avg(y.x%s) OVER w END AS c%s', k, i, i, i) END,
               ', ' ORDER BY i) INTO centers FROM generate_series(1, k) AS i;
    SELECT string_agg(format('coalesce(min(z.c%s), 0)', i), ', ' ORDER BY i),
           string_agg(format('coalesce(sum(z.sgn * (z.x%s - z.c%s)), 0)', i, i), ', ' ORDER BY i),
           string_agg(format('coalesce(sum(z.sgn * (z.x%s - z.c%s) * (z.x%s - z.c%s)), 0)', i, i, i, i), ', ' ORDER BY i)
      INTO c_arr, s1_arr, s2_arr FROM generate_series(1, k) AS i;
    RETURN format(
        'SELECT %1$s, coalesce(sum(g.m) FILTER (WHERE g.label IS NOT NULL), 0)::bigint AS m, '
        'coalesce(sum(g.m) FILTER (WHERE g.label IS NULL), 0)::bigint AS nulls, '
        'coalesce(jsonb_agg(jsonb_build_object(''label'', g.label, ''m'', g.m, ''c'', g.c, ''s1'', g.s1, ''s2'', g.s2)) '
        'FILTER (WHERE g.label IS NOT NULL), ''[]''::jsonb) AS deltas '
        'FROM (SELECT %2$s, z.label, sum(z.sgn) AS m, to_jsonb(ARRAY[%3$s]::float8[]) AS c, '
        'to_jsonb(ARRAY[%4$s]::float8[]) AS s1, to_jsonb(ARRAY[%5$s]::float8[]) AS s2 '
        'FROM (SELECT y.*, %6$s FROM (SELECT i.*, (SELECT e.ord::integer FROM jsonb_array_elements(i.sclasses) '
        'WITH ORDINALITY AS e(v, ord) WHERE e.v = i.label) AS idx FROM (%7$s) AS i) AS y '
        'WINDOW w AS (PARTITION BY %8$s, y.label)) AS z GROUP BY %2$s, z.label) AS g GROUP BY %9$s',
        replace(ids_i, 'i.', 'g.'), replace(ids_i, 'i.', 'z.'), c_arr, s1_arr, s2_arr, centers, inner_q,
        replace(ids_i, 'i.', 'y.'), replace(ids_i, 'i.', 'g.'));
END
$$;

-- Whether a summary's columns are still what it was computed on: every value column present and
-- numeric or boolean (bools: which are boolean, read as 0/1), the class column present and of a class type.
CREATE OR REPLACE FUNCTION modelstore._usable_columns(p_relid oid, p_columns text[], p_target text,
                                                      OUT ok boolean, OUT bools boolean[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT bool_and(a.attnum IS NOT NULL AND t.typcategory IN ('N', 'B'))
               AND (p_target = '' OR EXISTS (
                   SELECT 1 FROM pg_attribute AS a2 JOIN pg_type AS t2 ON t2.oid = a2.atttypid
                    WHERE a2.attrelid = p_relid AND a2.attname = p_target AND NOT a2.attisdropped
                      AND t2.typcategory IN ('N', 'B', 'S', 'E'))),
           array_agg(t.typcategory = 'B' ORDER BY c.i)
      FROM unnest(p_columns) WITH ORDINALITY AS c(name, i)
      LEFT JOIN pg_attribute AS a ON a.attrelid = p_relid AND a.attname = c.name AND NOT a.attisdropped
      LEFT JOIN pg_type AS t ON t.oid = a.atttypid
$$;

CREATE OR REPLACE FUNCTION modelstore.capture()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    src record;
    grp record;
    idx record;
    v_delta text;
    v_key text;
    v_type text;       -- how keys compare: 'numeric', or 'float8' for float ordering columns
    v_typid oid;
    v_lo text;
    v_hi text;
    v_ids bigint[];
    v_bools boolean[];
    v_ok boolean;
    v_member text;
    v_node_member text;
BEGIN
    -- FOR SHARE: writers share the source row; a request that stores new statistics updates it first
    -- (modelstore.freshness.lock_source), so the two wait for each other, and a REPEATABLE READ writer
    -- that cannot see statistics stored after its snapshot fails with a serialization error instead
    -- of leaving them stale.
    FOR src IN SELECT s.source_id, s.order_by FROM modelstore.sources AS s
               WHERE s.relid = TG_RELID ORDER BY s.source_id FOR SHARE LOOP
        IF TG_OP = 'TRUNCATE' THEN
            DELETE FROM modelstore.statistics WHERE source_id = src.source_id;
            DELETE FROM modelstore.stat_indexes WHERE source_id = src.source_id;
            CONTINUE;
        END IF;

        SELECT a.atttypid INTO v_typid FROM pg_attribute AS a
         WHERE a.attrelid = TG_RELID AND a.attname = src.order_by AND NOT a.attisdropped;
        v_type := CASE WHEN v_typid IN ('float4'::regtype, 'float8'::regtype) THEN 'float8' ELSE 'numeric' END;
        v_key := CASE
            WHEN v_typid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype)
                THEN format('t.%I::numeric', src.order_by)
            WHEN v_typid IN ('float4'::regtype, 'float8'::regtype) THEN format('t.%I::float8', src.order_by)
            WHEN v_typid = 'date'::regtype THEN format('(t.%I - date ''1970-01-01'')::numeric', src.order_by)
            WHEN v_typid IN ('timestamp'::regtype, 'timestamptz'::regtype)
                THEN format('extract(epoch FROM t.%I)', src.order_by)
        END;
        IF v_key IS NULL THEN
            -- the ordering column was dropped or changed to a type ranges cannot be kept on
            DELETE FROM modelstore.statistics WHERE source_id = src.source_id;
            DELETE FROM modelstore.stat_indexes WHERE source_id = src.source_id;
            CONTINUE;
        END IF;

        v_delta := modelstore._delta_rows(TG_OP, v_key, '{}');  -- signed keys only
        EXECUTE format('SELECT min(d.k)::text, max(d.k)::text FROM (%s) AS d', v_delta) INTO v_lo, v_hi;
        CONTINUE WHEN v_lo IS NULL;  -- no changed row has an ordering value

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

        v_member := format('d.k BETWEEN s.lo_key::%1$s AND s.hi_key::%1$s', v_type);
        v_node_member := format('(d.k > s.lo_key::%1$s OR (d.k = s.lo_key::%1$s AND s.lo_side = 0)) AND '
                                '(d.k < s.hi_key::%1$s OR (d.k = s.hi_key::%1$s AND s.hi_side = 1))', v_type);

        -- logistic chunk models the change touches: stale (§4 models do not absorb deltas)
        EXECUTE format('UPDATE modelstore.statistics AS s SET stale = true WHERE s.source_id = $1 '
                       'AND s.family = ''logistic'' AND NOT s.stale AND s.lo_key::%1$s <= $3::%1$s '
                       'AND s.hi_key::%1$s >= $2::%1$s AND EXISTS (SELECT 1 FROM (%2$s) AS d WHERE %3$s)',
                       v_type, v_delta, v_member)
            USING src.source_id, v_lo, v_hi;
        -- filtered summaries the change touches: deleted, rebuilt on demand
        EXECUTE format('DELETE FROM modelstore.statistics AS s WHERE s.source_id = $1 '
                       'AND s.family <> ''logistic'' AND s.filter_sql <> '''' AND s.lo_key::%1$s <= $3::%1$s '
                       'AND s.hi_key::%1$s >= $2::%1$s AND EXISTS (SELECT 1 FROM (%2$s) AS d WHERE %3$s)',
                       v_type, v_delta, v_member)
            USING src.source_id, v_lo, v_hi;

        -- unfiltered linear and Naive Bayes statistics: one aggregate per family and column set
        FOR grp IN EXECUTE format(
                'SELECT DISTINCT s.family, s.target, s.columns FROM modelstore.statistics AS s '
                'WHERE s.source_id = $1 AND s.family <> ''logistic'' AND s.filter_sql = '''' '
                'AND s.lo_key::%1$s <= $3::%1$s AND s.hi_key::%1$s >= $2::%1$s ORDER BY 1, 2, 3', v_type)
                USING src.source_id, v_lo, v_hi LOOP
            SELECT u.ok, u.bools INTO v_ok, v_bools FROM modelstore._usable_columns(TG_RELID, grp.columns, grp.target) AS u;
            -- lock the summaries in a fixed order before reading their means: concurrent writers
            -- then apply their deltas one after the other, each centered on the mean it updates
            EXECUTE format('SELECT array_agg(x.stats_id) FROM (SELECT s.stats_id FROM modelstore.statistics AS s '
                           'WHERE s.source_id = $1 AND s.family = $4 AND s.target = $5 AND s.columns = $6 '
                           'AND s.filter_sql = '''' AND s.lo_key::%1$s <= $3::%1$s AND s.hi_key::%1$s >= $2::%1$s '
                           'ORDER BY s.stats_id FOR UPDATE) AS x', v_type)
               INTO v_ids USING src.source_id, v_lo, v_hi, grp.family, grp.target, grp.columns;
            IF NOT v_ok THEN
                -- a column was dropped or changed type under the summaries: they no longer describe the table
                DELETE FROM modelstore.statistics WHERE stats_id = ANY (v_ids);
                CONTINUE;
            END IF;
            IF grp.family = 'linear' THEN
                EXECUTE format('UPDATE modelstore.statistics AS t SET n = t.n + a.m, null_rows = t.null_rows + a.nulls, '
                               'mean = modelstore._merged_mean(t.n + a.m, a.c, a.s1), '
                               'moments = modelstore._merged_comoment(t.n + a.m, t.moments, a.s1, a.s2, true) '
                               'FROM (%s) AS a WHERE t.stats_id = a.stats_id',
                               modelstore._delta_query('linear', modelstore._delta_rows(TG_OP, v_key, grp.columns),
                                   format('JOIN modelstore.statistics AS s ON %s WHERE s.stats_id = ANY ($1)', v_member),
                                   'stats_id', cardinality(grp.columns), v_bools, false))
                    USING v_ids;
            ELSE
                EXECUTE format('UPDATE modelstore.statistics AS t SET n = t.n + a.m, null_rows = t.null_rows + a.nulls, '
                               '(classes, counts, mean, moments) = (SELECT * FROM modelstore._merged_classes('
                               't.family, t.classes, t.counts, t.mean, t.moments, %s, a.deltas)) '
                               'FROM (%s) AS a WHERE t.stats_id = a.stats_id',
                               cardinality(grp.columns),
                               modelstore._delta_query(grp.family,
                                   modelstore._delta_rows(TG_OP, v_key, grp.columns || grp.target),
                                   format('JOIN modelstore.statistics AS s ON %s WHERE s.stats_id = ANY ($1)', v_member),
                                   'stats_id', cardinality(grp.columns), v_bools, true))
                    USING v_ids;
            END IF;
        END LOOP;

        -- statistics indexes: every node whose chunks hold a changed row (a chunk and its ancestors)
        FOR idx IN SELECT i.index_id, i.family, i.target, i.columns FROM modelstore.stat_indexes AS i
                    WHERE i.source_id = src.source_id ORDER BY i.index_id LOOP
            SELECT u.ok, u.bools INTO v_ok, v_bools FROM modelstore._usable_columns(TG_RELID, idx.columns, idx.target) AS u;
            IF NOT v_ok THEN
                DELETE FROM modelstore.stat_indexes WHERE index_id = idx.index_id;
                CONTINUE;
            END IF;
            EXECUTE format('SELECT 1 FROM modelstore.index_nodes AS s WHERE s.index_id = $1 '
                           'AND s.lo_key::%1$s <= $3::%1$s AND s.hi_key::%1$s >= $2::%1$s '
                           'ORDER BY s.level, s.pos FOR UPDATE', v_type)
               USING idx.index_id, v_lo, v_hi;
            IF idx.family = 'linear' THEN
                EXECUTE format('UPDATE modelstore.index_nodes AS t SET n = t.n + a.m, null_rows = t.null_rows + a.nulls, '
                               'mean = modelstore._merged_mean(t.n + a.m, a.c, a.s1), '
                               'moments = modelstore._merged_comoment(t.n + a.m, t.moments, a.s1, a.s2, false) '
                               'FROM (%s) AS a WHERE t.index_id = a.index_id AND t.level = a.level AND t.pos = a.pos',
                               modelstore._delta_query('linear', modelstore._delta_rows(TG_OP, v_key, idx.columns),
                                   format('JOIN modelstore.index_nodes AS s ON %s WHERE s.index_id = $1', v_node_member),
                                   'index_id, level, pos', cardinality(idx.columns), v_bools, false))
                    USING idx.index_id;
            ELSE
                EXECUTE format('UPDATE modelstore.index_nodes AS t SET n = t.n + a.m, null_rows = t.null_rows + a.nulls, '
                               '(classes, counts, mean, moments) = (SELECT * FROM modelstore._merged_classes('
                               '$2, t.classes, t.counts, t.mean, t.moments, %s, a.deltas)) '
                               'FROM (%s) AS a WHERE t.index_id = a.index_id AND t.level = a.level AND t.pos = a.pos',
                               cardinality(idx.columns),
                               modelstore._delta_query(idx.family,
                                   modelstore._delta_rows(TG_OP, v_key, idx.columns || idx.target),
                                   format('JOIN modelstore.index_nodes AS s ON %s WHERE s.index_id = $1', v_node_member),
                                   'index_id, level, pos', cardinality(idx.columns), v_bools, true))
                    USING idx.index_id, idx.family;
            END IF;
            -- the index's totals follow its root
            UPDATE modelstore.stat_indexes AS i SET rows_indexed = n.n + n.null_rows, null_rows = n.null_rows
              FROM modelstore.index_nodes AS n
             WHERE i.index_id = idx.index_id AND n.index_id = i.index_id AND n.level = i.levels - 1 AND n.pos = 0;
        END LOOP;
    END LOOP;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION modelstore.capture() IS
    'Change capture: keeps stored statistics true under INSERT, UPDATE, DELETE and TRUNCATE (docs/freshness.md).';

-- Install change capture on a table (its owner, or a role with the TRIGGER privilege). Returns true
-- when triggers were created, false when they were all there.
CREATE OR REPLACE FUNCTION modelstore.enable_capture(p_table regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    created boolean := false;
    def record;
BEGIN
    IF (SELECT c.relkind FROM pg_class AS c WHERE c.oid = p_table) <> 'r' THEN
        RAISE EXCEPTION 'modelstore keeps stored statistics fresh on ordinary tables only; % is not one', p_table
            USING ERRCODE = 'wrong_object_type';
    END IF;
    FOR def IN SELECT * FROM (VALUES
            ('modelstore_capture_insert', 'INSERT', 'REFERENCING NEW TABLE AS modelstore_new'),
            ('modelstore_capture_update', 'UPDATE', 'REFERENCING NEW TABLE AS modelstore_new OLD TABLE AS modelstore_old'),
            ('modelstore_capture_delete', 'DELETE', 'REFERENCING OLD TABLE AS modelstore_old'),
            ('modelstore_capture_truncate', 'TRUNCATE', '')) AS t(name, event, referencing) LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgrelid = p_table AND g.tgname = def.name);
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION modelstore.capture()',
                       def.name, def.event, p_table, def.referencing);
        created := true;
    END LOOP;
    RETURN created;
END
$$;

COMMENT ON FUNCTION modelstore.enable_capture(regclass) IS
    'Install the change-capture triggers that keep a table''s stored statistics fresh (docs/freshness.md).';
