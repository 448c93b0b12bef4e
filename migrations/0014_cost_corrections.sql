-- modelstore catalog, version 14: the cost model learns from executed plans (issue #20).
-- Applied once by modelstore.migrate (inside a transaction, under an advisory lock).

-- One row per (table, statistics engine, scan path): the robust correction fitted on the last executed
-- plans (modelstore.planner.costs.learning) and those plans' observations — at most WINDOW of them, so
-- the table stays bounded by the number of tables. table_name '' is the correction pooled over every
-- table. base_model names the calibration the figures correct: another calibration starts afresh.
CREATE TABLE modelstore.cost_corrections (
    table_name   text NOT NULL,
    engine       text NOT NULL CHECK (engine IN ('c', 'sql')),
    path         text NOT NULL CHECK (path IN ('index', 'seq', 'train')),
    base_model   text NOT NULL,
    -- {"agg", "read", "fixed": factors on the estimate's parts, "overhead_ms", "n": plans fitted}
    correction   jsonb NOT NULL CHECK (jsonb_typeof(correction) = 'object'),
    -- [[agg, read, fixed, actual_ms], …]: the calibrated parts of each plan and its actual time, oldest first
    observations jsonb NOT NULL CHECK (jsonb_typeof(observations) = 'array'),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, engine, path)
);
