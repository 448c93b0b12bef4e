-- modelstore catalog, version 6: sql/capture.sql was split by concept into sql/capture_1_merge.sql …
-- sql/capture_6_ddl.sql (docs/freshness.md); what was one-time in it moves here.

-- Functions with the signatures of earlier versions of change capture, which the single script dropped
-- each time it was applied. CREATE OR REPLACE cannot remove them (another signature is another
-- function) and no idempotent script calls them, so they go once, before those scripts run. On a
-- catalog that never had them, nothing happens.
DROP FUNCTION IF EXISTS modelstore._merged_mean(bigint, float8[], float8[]);
DROP FUNCTION IF EXISTS modelstore._absorb_row(bigint, bigint[], text, text, integer, text, boolean, float8[], jsonb);
DROP FUNCTION IF EXISTS modelstore._merged_comoment(bigint, float8[], float8[], float8[], boolean);
DROP FUNCTION IF EXISTS modelstore._delta_query(text, text, text, text, integer, boolean[], boolean);
DROP FUNCTION IF EXISTS modelstore._delta_query(text, text, text, text, numeric, numeric, text[], text, boolean[], boolean);

-- The single script's record. Its functions are now the split scripts' (the same names and signatures,
-- replaced when those scripts run next, under their own names); the migrator would ignore the row, but
-- left in place it would claim a script that no longer exists.
DELETE FROM modelstore.schema_objects WHERE name = 'capture';
