-- Idempotent objects, re-applied by `modelstore migrate` whenever this file changes (CREATE OR REPLACE only).

CREATE OR REPLACE VIEW modelstore.models AS
SELECT m.name,
       m.kind,
       format('%I.%I', s.schema_name, s.table_name) AS source,
       s.order_by,
       m.lo,
       m.hi,
       NULLIF(m.filter_sql, '') AS filter,
       m.target,
       m.features,
       m.params,
       m.rows_used,
       m.rows_skipped,
       m.stats_id,
       m.created_at,
       m.created_by
FROM modelstore.fitted_models AS m
JOIN modelstore.sources AS s USING (source_id);

COMMENT ON VIEW modelstore.models IS 'One row per named model: its descriptor, rows used and who built it.';
