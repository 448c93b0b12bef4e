-- Change capture: stored statistics stay true while their table changes (docs/freshness.md).
--
-- Four statement-level AFTER triggers per table (INSERT, UPDATE, DELETE with transition tables, and
-- TRUNCATE) run modelstore.capture(), in the writer's transaction:
--   * unfiltered linear and Naive Bayes summaries (stored statistics and index nodes) that the changed
--     rows fall in absorb the signed delta exactly (paper §3: sums of the changed rows about one center,
--     shifted to the stored mean, then n' = n + m, mean' = μ + S1/n', M' = M + S2 − S1·S1ᵀ/n');
--   * logistic chunk models the change touches are marked stale (they are not decomposable, §4);
--   * filtered summaries the change touches are deleted (rebuilt on demand): the trigger never
--     executes SQL text read from the catalog, only identifiers it checked against the table;
--   * TRUNCATE drops every summary of the table.
-- Changes outside every stored range cost one probe of the catalog.
--
-- Cost per changed row: each changed row is read once per column set, its sums and products computed
-- once, into the *segment* it falls in — between consecutive range ends of the stored summaries, or the
-- index chunk it belongs to — never once per summary. Summaries then add up their segments' sums, and
-- index nodes their chunks' (a chunk's ancestors are its position shifted right by the level).

DROP FUNCTION IF EXISTS modelstore._merged_mean(bigint, float8[], float8[]);
DROP FUNCTION IF EXISTS modelstore._absorb_row(bigint, bigint[], text, text, integer, text, boolean, float8[], jsonb);
DROP FUNCTION IF EXISTS modelstore._merged_comoment(bigint, float8[], float8[], float8[], boolean);
DROP FUNCTION IF EXISTS modelstore._delta_query(text, text, text, text, integer, boolean[], boolean);
DROP FUNCTION IF EXISTS modelstore._delta_query(text, text, text, text, numeric, numeric, text[], text, boolean[], boolean);

-- A linear summary (n rows, mean μ, comoment M, stored in full or as its upper triangle, row-major)
-- after absorbing m signed rows whose sums about the center c are S1 and S2 (upper triangle): the sums
-- are first moved to μ (S1 += m·δ, S2 += S1·δᵀ + δ·S1ᵀ + m·δ·δᵀ with δ = c − μ), then merged.
CREATE OR REPLACE FUNCTION modelstore._absorbed_linear(p_n bigint, p_mean float8[], p_moments float8[], p_m bigint,
                                                       p_c float8[], p_s1 float8[], p_s2 float8[], p_full boolean,
                                                       OUT mean float8[], OUT moments float8[])
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k integer := cardinality(p_s1);
    n_new bigint := p_n + p_m;
    d float8[] := array_fill(0::float8, ARRAY[k]);
    s1 float8[] := array_fill(0::float8, ARRAY[k]);
    mu float8;
    t integer := 0;
    v float8;
BEGIN
    IF n_new = 0 THEN
        mean := array_fill(0::float8, ARRAY[k]);
        moments := array_fill(0::float8, ARRAY[cardinality(p_moments)]);
        RETURN;
    END IF;
    mean := array_fill(0::float8, ARRAY[k]);
    -- an empty summary has no mean to keep: its sums stay about c
    moments := CASE WHEN p_n = 0 THEN array_fill(0::float8, ARRAY[cardinality(p_moments)]) ELSE p_moments END;
    FOR i IN 1..k LOOP
        mu := CASE WHEN p_n > 0 THEN coalesce(p_mean[i], 0) ELSE p_c[i] END;
        d[i] := p_c[i] - mu;
        s1[i] := p_s1[i] + p_m * d[i];
        mean[i] := mu + s1[i] / n_new;
    END LOOP;
    FOR i IN 1..k LOOP
        FOR j IN i..k LOOP
            t := t + 1;
            v := p_s2[t] + p_s1[i] * d[j] + d[i] * p_s1[j] + p_m * d[i] * d[j] - s1[i] * s1[j] / n_new;
            IF p_full THEN
                moments[(i - 1) * k + j] := moments[(i - 1) * k + j] + v;
                IF i <> j THEN
                    moments[(j - 1) * k + i] := moments[(j - 1) * k + i] + v;
                END IF;
            ELSE
                moments[t] := moments[t] + v;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- A Naive Bayes summary with per-class deltas applied: [{label, m, c[], s1[], s2[]}, …], sums about
-- the center c (Gaussian: moved to the class's stored mean first, as in _absorbed_linear; multinomial:
-- plain feature sums). New classes are appended (readers sort classes), classes whose count reaches
-- zero disappear.
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
    n_old bigint;
    n_new bigint;
    m bigint;
    dl float8;
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
        n_old := cnt[idx];
        m := (e ->> 'm')::bigint;
        n_new := n_old + m;
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
                IF n_old > 0 THEN  -- move the sums to the class's stored mean
                    dl := c - mu[pos];
                    s2 := s2 + 2 * dl * s1 + m * dl * dl;
                    s1 := s1 + m * dl;
                    c := mu[pos];
                END IF;
                mu[pos] := c + s1 / n_new;
                mm[pos] := mm[pos] + s2 - s1 * s1 / n_new;
            END IF;
        END LOOP;
        cnt[idx] := n_new;
    END LOOP;
    -- keep the classes that still have rows (usually all of them: then nothing is copied)
    IF 0 < ALL (cnt) THEN
        classes := cls;
        counts := cnt;
        moments := mm;
        mean := CASE WHEN gaussian THEN mu ELSE p_mean END;
        RETURN;
    END IF;
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
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list text := p_key || ' AS k' || coalesce((SELECT string_agg(format(', t.%I AS v%s', c, i), '' ORDER BY i)
                                               FROM unnest(p_columns) WITH ORDINALITY AS u(c, i)), '');
BEGIN
    RETURN CASE p_op
        WHEN 'INSERT' THEN format('SELECT 1 AS sgn, %s FROM modelstore_new AS t', list)
        WHEN 'DELETE' THEN format('SELECT -1 AS sgn, %s FROM modelstore_old AS t', list)
        ELSE format('SELECT 1 AS sgn, %1$s FROM modelstore_new AS t UNION ALL SELECT -1, %1$s FROM modelstore_old AS t',
                    list)
    END;
END
$$;

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
BEGIN
    IF p_family <> 'linear' THEN
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
        ELSIF p_family = 'linear' THEN
            UPDATE modelstore.statistics AS t SET n = t.n + p_sgn, (mean, moments) = (SELECT * FROM
                       modelstore._absorbed_linear(t.n, t.mean, t.moments, p_sgn, p_x, zeros, zero_pairs, true))
             WHERE t.stats_id = ANY (ids);
        ELSE
            UPDATE modelstore.statistics AS t SET n = t.n + p_sgn, (classes, counts, mean, moments) = (SELECT * FROM
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
    ELSIF p_family = 'linear' THEN
        UPDATE modelstore.index_nodes AS t SET n = t.n + p_sgn, (mean, moments) = (SELECT * FROM
                   modelstore._absorbed_linear(t.n, t.mean, t.moments, p_sgn, p_x, zeros, zero_pairs, false))
          FROM unnest(levels, positions) AS u(level, pos)  -- each node by its primary key
         WHERE t.index_id = p_index AND t.level = u.level AND t.pos = u.pos;
    ELSE
        UPDATE modelstore.index_nodes AS t SET n = t.n + p_sgn, (classes, counts, mean, moments) = (SELECT * FROM
                   modelstore._merged_classes(p_family, t.classes, t.counts, t.mean, t.moments, k, deltas))
          FROM unnest(levels, positions) AS u(level, pos)  -- each node by its primary key
         WHERE t.index_id = p_index AND t.level = u.level AND t.pos = u.pos;
    END IF;
END
$$;

-- The changed rows with their values, as SQL text: sgn, k (the key, p_key), complete (no NULL in a used
-- column), x1 … xk (the columns as float8, booleans as 0/1) and, with a class column, label (jsonb).
-- Rows without an ordering value are in no range: left out.
CREATE OR REPLACE FUNCTION modelstore._delta_values(p_op text, p_key text, p_columns text[], p_target text,
                                                    p_bools boolean[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n_all integer := cardinality(p_columns) + CASE WHEN p_target <> '' THEN 1 ELSE 0 END;
BEGIN
    RETURN format('SELECT r.sgn, r.k, (%s) AS complete, %s%s FROM (%s) AS r WHERE r.k IS NOT NULL',
                  (SELECT string_agg(format('r.v%s IS NOT NULL', i), ' AND ') FROM generate_series(1, n_all) AS i),
                  (SELECT string_agg(format('r.v%s%s::float8 AS x%s', i, CASE WHEN b THEN '::int' ELSE '' END, i),
                                     ', ' ORDER BY i)
                     FROM unnest(p_bools) WITH ORDINALITY AS u(b, i)),
                  CASE WHEN p_target <> '' THEN format(', to_jsonb(r.v%s) AS label', n_all) ELSE '' END,
                  modelstore._delta_rows(p_op, p_key,
                                         p_columns || CASE WHEN p_target <> '' THEN ARRAY[p_target] ELSE '{}' END));
END
$$;

-- The changed rows for the small-change path: sgn, k as text, complete, x (the values as float8[]) and
-- label (NULL without a class column).
CREATE OR REPLACE FUNCTION modelstore._delta_row_values(p_op text, p_key text, p_columns text[], p_target text,
                                                        p_bools boolean[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN format('SELECT d.sgn, d.k::text AS k, d.complete, ARRAY[%s]::float8[] AS x, %s AS label FROM (%s) AS d',
                  (SELECT string_agg(format('d.x%s', i), ', ' ORDER BY i)
                     FROM generate_series(1, cardinality(p_columns)) AS i),
                  CASE WHEN p_target <> '' THEN 'd.label' ELSE 'NULL::jsonb' END,
                  modelstore._delta_values(p_op, p_key, p_columns, p_target, p_bools));
END
$$;

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
CREATE OR REPLACE FUNCTION modelstore._maintenance_sql(p_family text, p_op text, p_key text, p_type text,
                                                       p_offset numeric, p_scale numeric, p_columns text[],
                                                       p_target text, p_bools boolean[], p_stats boolean,
                                                       p_index boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k integer := cardinality(p_columns);
    nb boolean := p_family <> 'linear';
    fast boolean := p_type = 'int8';
    lbl text := CASE WHEN p_family <> 'linear' THEN ', label' ELSE '' END;
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
    IF cardinality(s1_terms) + cardinality(s2_terms) > 1500 THEN
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
        modelstore._delta_values(p_op, p_key, p_columns, CASE WHEN nb THEN p_target ELSE '' END, p_bools),
        centers, scuts, icuts, sseg, leaf, CASE WHEN nb THEN ', CASE WHEN q.complete THEN q.label END AS label' ELSE '' END,
        centered, replace(lbl, ', ', ', z.'), sums,
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
    set_list := CASE WHEN nb THEN format('(classes, counts, mean, moments) = (SELECT * FROM modelstore._merged_classes('
                                         '%L, t.classes, t.counts, t.mean, t.moments, %s, a.deltas))', p_family, k)
                     ELSE '(mean, moments) = (SELECT * FROM modelstore._absorbed_linear(t.n, t.mean, t.moments, a.m, '
                          'a.c, a.s1, a.s2, %s))' END;
    IF p_stats THEN
        stats_update := format(
            'UPDATE modelstore.statistics AS t SET n = t.n + a.m, null_rows = t.null_rows + a.nulls, %s '
            'FROM (WITH t AS (SELECT s.stats_id%s, g.m, g.nulls, %s FROM g JOIN modelstore.statistics AS s '
            'ON s.stats_id = ANY ($1) AND %s), %s) AS a WHERE t.stats_id = a.stats_id',
            format(set_list, 'true'), replace(lbl, ', ', ', g.'), sum_names, stats_in,
            format(final, 'stats_id', replace(lbl, ', ', ', t.'), summed, s1_arr, s2_arr));
    END IF;
    IF p_index THEN
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

CREATE OR REPLACE FUNCTION modelstore.capture()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
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
        v_key := modelstore._key_expr(v_typid, format('t.%I', src.order_by));
        IF v_key IS NULL THEN
            -- the ordering column was dropped or changed to a type ranges cannot be kept on
            DELETE FROM modelstore.statistics WHERE source_id = src.source_id;
            DELETE FROM modelstore.stat_indexes WHERE source_id = src.source_id;
            CONTINUE;
        END IF;

        v_delta := modelstore._delta_rows(TG_OP, v_key, '{}');  -- signed keys only
        -- the change's extent: min and max in the column's own type (its order is the keys' order), only
        -- the two extremes turned into keys
        EXECUTE format('SELECT (%s)::text, (%s)::text, m.rows FROM (SELECT min(d.k) AS lo, max(d.k) AS hi, '
                       'count(d.k) AS rows FROM (%s) AS d) AS m',
                       modelstore._key_expr(v_typid, 'm.lo'), modelstore._key_expr(v_typid, 'm.hi'),
                       modelstore._delta_rows(TG_OP, format('t.%I', src.order_by), '{}'))
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
        IF EXISTS (SELECT 1 FROM modelstore.statistics AS s
                    WHERE s.source_id = src.source_id AND ((s.family = 'logistic' AND NOT s.stale)
                          OR (s.family <> 'logistic' AND s.filter_sql <> ''))) THEN
            v_keys := format('(SELECT array_agg(d.k ORDER BY d.k) FROM (%s) AS d WHERE d.k IS NOT NULL)', v_delta);
            EXECUTE format('UPDATE modelstore.statistics AS s SET stale = true WHERE s.source_id = $1 '
                           'AND s.family = ''logistic'' AND NOT s.stale AND s.lo_key::%1$s <= $3::%1$s '
                           'AND s.hi_key::%1$s >= $2::%1$s '
                           'AND modelstore._any_key_between(%2$s, s.lo_key::%1$s, s.hi_key::%1$s)', v_type, v_keys)
                USING src.source_id, v_lo, v_hi;
            EXECUTE format('DELETE FROM modelstore.statistics AS s WHERE s.source_id = $1 '
                           'AND s.family <> ''logistic'' AND s.filter_sql <> '''' AND s.lo_key::%1$s <= $3::%1$s '
                           'AND s.hi_key::%1$s >= $2::%1$s '
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
            SELECT u.ok, u.bools INTO v_ok, v_bools FROM modelstore._usable_columns(TG_RELID, cs.columns, cs.target) AS u;
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
                FOR r IN EXECUTE modelstore._delta_row_values(TG_OP, v_key, cs.columns, cs.target, v_bools) LOOP
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
                EXECUTE modelstore._maintenance_sql(cs.family, TG_OP, v_seg_key, v_seg_type, v_offset, v_scale,
                                                    cs.columns, cs.target, v_bools, cs.has_stats,
                                                    cs.index_id IS NOT NULL)
                    USING v_ids, cs.index_id, cs.levels, v_leaf_lo, v_leaf_hi;
            END IF;
            IF cs.index_id IS NOT NULL THEN
                -- the index's totals follow its root
                UPDATE modelstore.stat_indexes AS i SET rows_indexed = n.n + n.null_rows, null_rows = n.null_rows
                  FROM modelstore.index_nodes AS n
                 WHERE i.index_id = cs.index_id AND n.index_id = i.index_id AND n.level = i.levels - 1 AND n.pos = 0;
            END IF;
        END LOOP;
    END LOOP;
    RETURN NULL;
END
$$;

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

-- Install change capture on a table (its owner, or a role with the TRIGGER privilege), or turn it back
-- on: creates the triggers that are missing and enables those that are disabled (the owner only). When
-- capture was missing or off, whatever is stored for the table may have missed changes: it is forgotten.
-- The owner's triggers fire ALWAYS, in sessions with session_replication_role = replica too.
-- Returns true when something was created or enabled.
CREATE OR REPLACE FUNCTION modelstore.enable_capture(p_table regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed boolean := false;
    owner boolean;
    def record;
    state "char";
BEGIN
    IF (SELECT c.relkind FROM pg_class AS c WHERE c.oid = p_table) <> 'r' THEN
        RAISE EXCEPTION 'modelstore keeps stored statistics fresh on ordinary tables only; % is not one', p_table
            USING ERRCODE = 'wrong_object_type';
    END IF;
    owner := pg_catalog.pg_has_role((SELECT c.relowner FROM pg_class AS c WHERE c.oid = p_table), 'USAGE');
    FOR def IN SELECT * FROM (VALUES
            ('modelstore_capture_insert', 'INSERT', 'REFERENCING NEW TABLE AS modelstore_new'),
            ('modelstore_capture_update', 'UPDATE', 'REFERENCING NEW TABLE AS modelstore_new OLD TABLE AS modelstore_old'),
            ('modelstore_capture_delete', 'DELETE', 'REFERENCING OLD TABLE AS modelstore_old'),
            ('modelstore_capture_truncate', 'TRUNCATE', '')) AS t(name, event, referencing) LOOP
        SELECT g.tgenabled INTO state FROM pg_trigger AS g WHERE g.tgrelid = p_table AND g.tgname = def.name;
        IF state IS NULL THEN
            EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION modelstore.capture()',
                           def.name, def.event, p_table, def.referencing);
            changed := true;
        ELSIF state IN ('D', 'R') THEN  -- disabled, or firing in replica sessions only
            IF NOT owner THEN
                RAISE EXCEPTION 'change capture on % is disabled (trigger %); its owner can enable it with '
                                'SELECT modelstore.enable_capture(''%'')', p_table, def.name, p_table
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            changed := true;
        END IF;
        IF owner AND state IS DISTINCT FROM 'A' THEN
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', p_table, def.name);
        END IF;
    END LOOP;
    IF changed THEN
        PERFORM modelstore._forget_statistics(p_table);
    END IF;
    RETURN changed;
END
$$;

COMMENT ON FUNCTION modelstore.enable_capture(regclass) IS
    'Install (or enable again) the change-capture triggers that keep a table''s stored statistics fresh (docs/freshness.md).';

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
