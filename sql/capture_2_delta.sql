-- Change capture — the delta: the statement's changed rows (its transition tables) as SQL text,
-- signed +1 new and −1 old, with their ordering keys and values (docs/freshness.md). The trigger
-- (capture_5_trigger.sql) and both paths read the changed rows only through these.

-- The signed changed rows as SQL text: sgn (+1 new, −1 old), k (the ordering key, p_key over alias t),
-- with p_group gk (a row's group key, p_group over alias t: per-group summaries, docs/serving.md) and the
-- listed columns as v1, v2, … (named, never whole rows: a whole-row value of a transition table with a
-- dropped column does not match the table's row type).
DROP FUNCTION IF EXISTS modelstore._delta_rows(text, text, text[]);
CREATE OR REPLACE FUNCTION modelstore._delta_rows(p_op text, p_key text, p_columns text[], p_group text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    list text := p_key || ' AS k' || coalesce(', ' || p_group || ' AS gk', '') || coalesce((SELECT string_agg(format(', t.%I AS v%s', c, i), '' ORDER BY i)
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

-- The changed rows with their values, as SQL text: sgn, k (the key, p_key), complete (no NULL in a used
-- column), x1 … xk (the columns as float8, booleans as 0/1) and, with a class column, label (jsonb).
-- Rows without an ordering value are in no range: left out. With p_group, gk (the group key) after k.
DROP FUNCTION IF EXISTS modelstore._delta_values(text, text, text[], text, boolean[]);
CREATE OR REPLACE FUNCTION modelstore._delta_values(p_op text, p_key text, p_columns text[], p_target text,
                                                    p_bools boolean[], p_group text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n_all integer := cardinality(p_columns) + CASE WHEN p_target <> '' THEN 1 ELSE 0 END;
BEGIN
    RETURN format('SELECT r.sgn, r.k%s, (%s) AS complete, %s%s FROM (%s) AS r WHERE r.k IS NOT NULL',
                  CASE WHEN p_group IS NOT NULL THEN ', r.gk' ELSE '' END,
                  (SELECT string_agg(format('r.v%s IS NOT NULL', i), ' AND ') FROM generate_series(1, n_all) AS i),
                  (SELECT string_agg(format('r.v%s%s::float8 AS x%s', i, CASE WHEN b THEN '::int' ELSE '' END, i),
                                     ', ' ORDER BY i)
                     FROM unnest(p_bools) WITH ORDINALITY AS u(b, i)),
                  CASE WHEN p_target <> '' THEN format(', to_jsonb(r.v%s) AS label', n_all) ELSE '' END,
                  modelstore._delta_rows(p_op, p_key,
                                         p_columns || CASE WHEN p_target <> '' THEN ARRAY[p_target] ELSE '{}' END,
                                         p_group));
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
