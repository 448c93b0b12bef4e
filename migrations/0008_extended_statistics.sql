-- modelstore catalog: double-double statistics (issue #15; docs/statistics.md, "The C aggregate").
-- Statistics computed by the modelstore_stats extension are stored as hi + lo: mean and moments keep the
-- float64 values (hi, correctly rounded, what every reader that ignores the low parts sees), mean_lo and
-- moments_lo the low parts in the same layout. NULL low parts: float64 statistics (the SQL aggregates',
-- every row stored before this version, and summaries change capture has merged deltas into).
ALTER TABLE modelstore.statistics ADD COLUMN IF NOT EXISTS mean_lo float8[];
ALTER TABLE modelstore.statistics ADD COLUMN IF NOT EXISTS moments_lo float8[];
ALTER TABLE modelstore.index_nodes ADD COLUMN IF NOT EXISTS mean_lo float8[];
ALTER TABLE modelstore.index_nodes ADD COLUMN IF NOT EXISTS moments_lo float8[];
