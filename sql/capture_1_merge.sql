-- Change capture — the merge: how a stored summary absorbs signed sums of changed rows
-- (paper §3's pairwise update; docs/freshness.md, "How a delta is applied"). Both the row-by-row path
-- (capture_3_row.sql) and the bulk path (capture_4_bulk.sql) end here, so the two paths give one result.

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

-- Whether change capture merges in double-double: the modelstore_stats extension (≥ 1.1, in schema
-- modelstore, where the migrations create it) is installed (docs/statistics.md, "Change capture").
CREATE OR REPLACE FUNCTION modelstore._capture_dd()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT to_regprocedure('modelstore.dd_absorb(bigint, float8[], float8[], float8[], float8[], boolean, integer, '
                           'float8[])') IS NOT NULL
$$;

-- A linear summary after absorbing changed rows in double-double: p_plus and p_minus are the dd_moments
-- results (finished states) of the complete rows added and removed (NULL: none), merged by the
-- extension's dd_absorb (Chan's pairwise update in double-double), first the added rows, then the removed
-- ones (every removed row is in the summary). A double-double summary keeps its precision; a float64
-- summary (NULL low parts: computed by the SQL aggregates) gets the correctly rounded result and stays
-- float64. PL/pgSQL: dd_absorb is resolved when called (the extension may be absent).
CREATE OR REPLACE FUNCTION modelstore._absorbed_linear_dd(p_n bigint, p_mean float8[], p_mean_lo float8[],
                                                          p_moments float8[], p_moments_lo float8[],
                                                          p_full boolean, p_plus float8[], p_minus float8[],
                                                          OUT mean float8[], OUT mean_lo float8[],
                                                          OUT moments float8[], OUT moments_lo float8[])
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    l integer := cardinality(p_moments);
    k integer;
    r float8[];
    n1 bigint := p_n + coalesce(p_plus[1], 0)::bigint;
    float64 boolean := p_mean_lo IS NULL AND p_n > 0;
BEGIN
    r := modelstore.dd_absorb(p_n, p_mean, p_mean_lo, p_moments, p_moments_lo, p_full, 1, p_plus);
    k := (cardinality(r) - 2 * l) / 2;
    IF p_minus IS NOT NULL THEN
        r := modelstore.dd_absorb(n1, r[1:k], r[k + 1:2 * k], r[2 * k + 1:2 * k + l], r[2 * k + l + 1:], p_full, -1,
                                  p_minus);
    END IF;
    mean := r[1:k];
    moments := r[2 * k + 1:2 * k + l];
    IF NOT float64 THEN
        mean_lo := r[k + 1:2 * k];
        moments_lo := r[2 * k + l + 1:];
    END IF;
END
$$;

-- A Gaussian Naive Bayes summary with per-class deltas merged in double-double: [{label, m, plus, minus}, …],
-- plus and minus the dd_diag results (finished states) of the class's complete rows added and removed
-- (NULL: none), merged per class by the extension's dd_absorb_diag, as _absorbed_linear_dd does for
-- linear summaries. New classes are appended, classes whose count reaches zero disappear (as in
-- _merged_classes). A float64 summary (NULL low parts) gets the rounded result and stays float64.
CREATE OR REPLACE FUNCTION modelstore._merged_classes_dd(p_classes jsonb, p_counts bigint[], p_mean float8[],
                                                         p_mean_lo float8[], p_moments float8[],
                                                         p_moments_lo float8[], p_d integer, p_deltas jsonb,
                                                         OUT classes jsonb, OUT counts bigint[], OUT mean float8[],
                                                         OUT mean_lo float8[], OUT moments float8[],
                                                         OUT moments_lo float8[])
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    float64 boolean := p_mean_lo IS NULL AND coalesce(cardinality(p_counts), 0) > 0;
    cls jsonb := coalesce(p_classes, '[]'::jsonb);
    cnt bigint[] := coalesce(p_counts, '{}'::bigint[]);
    mu float8[] := coalesce(p_mean, '{}'::float8[]);
    mm float8[] := coalesce(p_moments, '{}'::float8[]);
    mu_lo float8[] := coalesce(p_mean_lo, array_fill(0::float8, ARRAY[cardinality(mu)]));
    mm_lo float8[] := coalesce(p_moments_lo, array_fill(0::float8, ARRAY[cardinality(mm)]));
    e jsonb;
    label jsonb;
    idx integer;
    lo integer;
    hi integer;
    plus float8[];
    minus float8[];
    n1 bigint;
    r float8[];
    d integer := p_d;
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(p_deltas) LOOP
        label := e -> 'label';
        SELECT x.ord::integer INTO idx FROM jsonb_array_elements(cls) WITH ORDINALITY AS x(v, ord) WHERE x.v = label;
        IF idx IS NULL THEN
            IF jsonb_typeof(label) = 'number' AND (label #>> '{}')::numeric = trunc((label #>> '{}')::numeric) THEN
                label := to_jsonb(trunc((label #>> '{}')::numeric));
            END IF;
            cls := cls || jsonb_build_array(label);
            cnt := cnt || 0::bigint;
            mu := mu || array_fill(0::float8, ARRAY[d]);
            mm := mm || array_fill(0::float8, ARRAY[d]);
            mu_lo := mu_lo || array_fill(0::float8, ARRAY[d]);
            mm_lo := mm_lo || array_fill(0::float8, ARRAY[d]);
            idx := jsonb_array_length(cls);
        END IF;
        plus := CASE WHEN jsonb_typeof(e -> 'plus') = 'array'
                     THEN ARRAY(SELECT v::float8 FROM jsonb_array_elements_text(e -> 'plus') AS u(v)) END;
        minus := CASE WHEN jsonb_typeof(e -> 'minus') = 'array'
                      THEN ARRAY(SELECT v::float8 FROM jsonb_array_elements_text(e -> 'minus') AS u(v)) END;
        lo := (idx - 1) * d + 1;
        hi := idx * d;
        r := modelstore.dd_absorb_diag(cnt[idx], mu[lo:hi], mu_lo[lo:hi], mm[lo:hi], mm_lo[lo:hi], 1, plus);
        n1 := cnt[idx] + coalesce(plus[1], 0)::bigint;
        IF minus IS NOT NULL THEN
            r := modelstore.dd_absorb_diag(n1, r[1:d], r[d + 1:2 * d], r[2 * d + 1:3 * d], r[3 * d + 1:4 * d], -1,
                                           minus);
            n1 := n1 - minus[1]::bigint;
        END IF;
        mu := mu[1:lo - 1] || r[1:d] || mu[hi + 1:];
        mu_lo := mu_lo[1:lo - 1] || r[d + 1:2 * d] || mu_lo[hi + 1:];
        mm := mm[1:lo - 1] || r[2 * d + 1:3 * d] || mm[hi + 1:];
        mm_lo := mm_lo[1:lo - 1] || r[3 * d + 1:4 * d] || mm_lo[hi + 1:];
        cnt[idx] := n1;
    END LOOP;
    -- keep the classes that still have rows
    SELECT coalesce(jsonb_agg(x.v ORDER BY x.ord), '[]'::jsonb),
           coalesce(array_agg(cnt[x.ord] ORDER BY x.ord), '{}'::bigint[])
      INTO classes, counts
      FROM jsonb_array_elements(cls) WITH ORDINALITY AS x(v, ord)
     WHERE cnt[x.ord] > 0;
    SELECT coalesce(array_agg(mu[(x.ord - 1) * d + j] ORDER BY x.ord, j), '{}'::float8[]),
           coalesce(array_agg(mu_lo[(x.ord - 1) * d + j] ORDER BY x.ord, j), '{}'::float8[]),
           coalesce(array_agg(mm[(x.ord - 1) * d + j] ORDER BY x.ord, j), '{}'::float8[]),
           coalesce(array_agg(mm_lo[(x.ord - 1) * d + j] ORDER BY x.ord, j), '{}'::float8[])
      INTO mean, mean_lo, moments, moments_lo
      FROM generate_series(1, jsonb_array_length(cls)) AS x(ord), generate_series(1, d) AS j
     WHERE cnt[x.ord] > 0;
    IF float64 THEN
        mean_lo := NULL;
        moments_lo := NULL;
    END IF;
END
$$;
