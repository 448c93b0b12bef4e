-- modelstore catalog, version 2: the planner's cost model, calibrated against this database.
-- Applied once by modelstore.migrate (inside a transaction, under an advisory lock) and recorded in
-- modelstore.schema_version. Every object is schema-qualified; search_path is pinned by the runner.

-- One row per calibration (modelstore.costs.calibrate, `modelstore calibrate`, or automatically on
-- first use). The planner reads the latest row measured on the running server version; older rows
-- stay as a history of how the figures moved (new hardware, new PostgreSQL, new settings).
CREATE TABLE modelstore.cost_model (
    cost_model_id  bigserial PRIMARY KEY,
    measured_at    timestamptz NOT NULL,
    -- current_setting('server_version') when measured: a calibration describes one server build
    server_version text NOT NULL,
    -- 'calibrated': measured by modelstore.costs.calibrate; 'default': built-in figures;
    -- 'manual': written by an operator
    method         text NOT NULL CHECK (method IN ('calibrated', 'default', 'manual')),
    -- CostModel.to_json(): every parameter in milliseconds, plus how it was measured (docs/planner.md)
    params         jsonb NOT NULL CHECK (jsonb_typeof(params) = 'object'),
    measured_by    name NOT NULL DEFAULT current_user
);

-- "the latest calibration for this server version" is one index probe
CREATE INDEX cost_model_latest_idx ON modelstore.cost_model (server_version, measured_at DESC, cost_model_id DESC);
