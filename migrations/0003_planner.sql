-- modelstore catalog, version 3: what the cost-based planner and logistic chunk models need.

-- Integer ordering columns are discrete: the range just after 10 starts at 11, so [1, 10] and
-- [11, 20] meet without a gap. The planner needs to know (docs/planner.md, "cuts").
ALTER TABLE modelstore.sources DROP CONSTRAINT sources_order_kind_check;
ALTER TABLE modelstore.sources ADD CONSTRAINT sources_order_kind_check
    CHECK (order_kind IN ('integer', 'number', 'timestamp', 'timestamptz', 'date'));

-- Logistic chunk models (mixture weights, paper §4) are stored statistics too:
--   classes = labels, counts = rows per class, mean = intercepts (K), moments = coefficients (K×d),
--   params_key = the training parameters they depend on ('l2=…'), extra = r_max, training accuracy.
ALTER TABLE modelstore.statistics DROP CONSTRAINT statistics_family_check;
ALTER TABLE modelstore.statistics ADD CONSTRAINT statistics_family_check
    CHECK (family IN ('linear', 'gaussian_nb', 'multinomial_nb', 'logistic'));
ALTER TABLE modelstore.statistics ADD COLUMN params_key text NOT NULL DEFAULT '';
ALTER TABLE modelstore.statistics ADD COLUMN extra jsonb;

DROP INDEX modelstore.statistics_descriptor_key;
CREATE UNIQUE INDEX statistics_descriptor_key
    ON modelstore.statistics (source_id, family, lo_key, hi_key, filter_sql, target, params_key, columns);

-- Algorithm 3 looks for stored ranges that intersect a range: a GiST index on the closed range
-- answers `&&` without reading the catalog's other rows.
CREATE INDEX statistics_range_gist ON modelstore.statistics
    USING gist (numrange(lo_key, hi_key, '[]'));

ALTER TABLE modelstore.fitted_models DROP CONSTRAINT fitted_models_kind_check;
ALTER TABLE modelstore.fitted_models ADD CONSTRAINT fitted_models_kind_check
    CHECK (kind IN ('linear', 'gaussian_nb', 'multinomial_nb', 'logistic'));

-- sources recorded before this migration called every numeric ordering column 'number'
UPDATE modelstore.sources AS s
SET order_kind = 'integer'
FROM pg_catalog.pg_namespace AS n
JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE s.order_kind = 'number' AND n.nspname = s.schema_name AND c.relname = s.table_name
  AND a.attname = s.order_by AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype);
