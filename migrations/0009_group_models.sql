-- modelstore catalog, version 9: per-group models (issue #18; docs/serving.md, "Per-group models").
--
-- A model fitted with group_by = <column> is its ordinary fitted_models row (the global model: every
-- row of its range and filter) plus one row here per value of the column: that group's statistics
-- (from one grouped aggregate, never one scan per group) and the model solved from them with
-- shrinkage toward the global model (ridge toward w_global with penalty group_l2). A group with no
-- row here is served the global model. The rows go with their model (ON DELETE CASCADE).
ALTER TABLE modelstore.fitted_models ADD COLUMN IF NOT EXISTS group_by text;
ALTER TABLE modelstore.fitted_models ADD COLUMN IF NOT EXISTS group_l2 float8;

CREATE TABLE modelstore.group_models (
    model_id    bigint NOT NULL REFERENCES modelstore.fitted_models (model_id) ON DELETE CASCADE,
    group_key   text   NOT NULL,              -- the group column's value as text (value::text)
    rows_used   bigint NOT NULL,
    stats       jsonb  NOT NULL,              -- the group's statistics: Family.pack plus n and null_rows
    state       jsonb  NOT NULL,              -- the group's shrunk model, the family's to_state()
    -- linear models' parameters as native arrays: scoring in SQL reads them without parsing JSON
    coef        float8[],
    intercept   float8,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (model_id, group_key)
);

-- Grouped deployments: the group values a committed write touched, not yet in the model. Filled by
-- the table's modelstore_groups_* triggers (transition tables) in the writer's transaction; a refresh
-- re-aggregates only these groups (a write changes only its group's statistics). group_key NULL: every
-- group (a TRUNCATE).
CREATE TABLE modelstore.group_pending (
    deployment_id bigint NOT NULL REFERENCES modelstore.deployments (deployment_id) ON DELETE CASCADE,
    group_key     text,
    xid           xid8   NOT NULL
);
CREATE INDEX group_pending_idx ON modelstore.group_pending (deployment_id);
ALTER TABLE modelstore.deployments ADD COLUMN IF NOT EXISTS group_by text;
