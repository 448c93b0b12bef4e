-- modelstore catalog, version 13: what lets the planner read its candidates from an index in key order
-- (docs/planner.md, "Reading the candidates").

-- Every distinct column set of stored statistics, numbered once. A request's compatible column sets
-- (a superset of its columns; the same set for logistic chunks) are a handful of ids found in this small
-- table, so the candidates statement compares an integer per row instead of two text arrays.
CREATE TABLE modelstore.column_sets (
    set_id   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    columns  text[] NOT NULL UNIQUE
);

-- The id of a column set, numbering it on first use. SECURITY DEFINER: a role that may store
-- statistics (docs/security.md) registers a new set without a grant on this table.
CREATE FUNCTION modelstore.column_set_id(p_columns text[])
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id integer;
BEGIN
    SELECT set_id INTO v_id FROM modelstore.column_sets WHERE columns = p_columns;
    IF v_id IS NULL THEN
        -- DO UPDATE (a no-op) rather than DO NOTHING: a set another transaction numbered concurrently
        -- comes back here once that one commits, instead of no row
        INSERT INTO modelstore.column_sets (columns) VALUES (p_columns)
        ON CONFLICT (columns) DO UPDATE SET columns = EXCLUDED.columns
        RETURNING set_id INTO v_id;
    END IF;
    RETURN v_id;
END
$$;

-- The column set of a statistics row, on every path that writes one (INSERT … VALUES, INSERT … SELECT,
-- COPY, and an UPDATE of its columns): a trigger, so that no writer can forget it.
ALTER TABLE modelstore.statistics ADD COLUMN column_set integer REFERENCES modelstore.column_sets (set_id);

CREATE FUNCTION modelstore._statistics_column_set()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.column_set := modelstore.column_set_id(NEW.columns);
    RETURN NEW;
END
$$;

CREATE TRIGGER statistics_column_set
    BEFORE INSERT OR UPDATE OF columns ON modelstore.statistics
    FOR EACH ROW EXECUTE FUNCTION modelstore._statistics_column_set();

-- the rows stored before this version
UPDATE modelstore.statistics SET column_set = modelstore.column_set_id(columns);
ALTER TABLE modelstore.statistics ALTER COLUMN column_set SET NOT NULL;

-- The floats a row holds (what fetching it costs), stored: an index can then carry it.
ALTER TABLE modelstore.statistics ADD COLUMN n_values integer
    GENERATED ALWAYS AS (cardinality(moments) + coalesce(cardinality(mean), 0)) STORED;

-- The planner's candidates in key order, from the index alone: every column that selects them
-- (equality first, then the key the range condition is on) and what the planner reads of each. Only
-- columns a row never changes: capture's updates of n and null_rows stay heap-only (HOT).
-- One index by lower key, one by upper key: the ends of a request are looked up from both sides.
CREATE INDEX statistics_plan_lo ON modelstore.statistics
    (source_id, family, filter_sql, target, params_key, column_set, lo_key, hi_key) INCLUDE (stats_id, n_values);
CREATE INDEX statistics_plan_hi ON modelstore.statistics
    (source_id, family, filter_sql, target, params_key, column_set, hi_key, lo_key) INCLUDE (stats_id, n_values);

-- plan_candidates takes two more (optional) arguments (sql/planner.sql creates it again)
DROP FUNCTION IF EXISTS modelstore.plan_candidates(bigint, text, text, text, text, text[], boolean, numeric, numeric,
                                                   boolean);
