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

-- Serving (issue #18, docs/serving.md "Predicting in the database"): the parameters modelstore.predict
-- reads, as native arrays beside the state they are taken from. Reading them from the state meant
-- decompressing it (a 10-feature linear model's state, with its covariance matrix, is TOASTed) and
-- parsing JSON numbers on every call: most of a call's cost. A trigger fills them in the same statement
-- that writes the state — a fit, a refresh, a rollback — so they are never stale; every session reads
-- the committed row, so a new version is what the next call in any session scores with.
--   w: coef (linear 1-D; logistic [row][j]), theta (gaussian_nb) or feature_log_prob (multinomial_nb) [c][j]
--   v: var (gaussian_nb); b: [intercept] (linear), intercept (logistic), class_prior or class_log_prior
-- NaN is stored as null in JSON and comes back as NaN; "inf"/"-inf" as ±Infinity.
ALTER TABLE modelstore.fitted_models ADD COLUMN IF NOT EXISTS serving_classes jsonb;
ALTER TABLE modelstore.fitted_models ADD COLUMN IF NOT EXISTS serving_w float8[];
ALTER TABLE modelstore.fitted_models ADD COLUMN IF NOT EXISTS serving_v float8[];
ALTER TABLE modelstore.fitted_models ADD COLUMN IF NOT EXISTS serving_b float8[];
-- gaussian_nb: Σ_j ln(2π var_cj) per class, summed in the order modelstore.predict summed it per call
-- (so the scores are the same to the last bit); NaN when a variance is 0; NULL when one is negative (the
-- call then computes it, and says what is wrong, as before)
ALTER TABLE modelstore.fitted_models ADD COLUMN IF NOT EXISTS serving_c float8[];

CREATE OR REPLACE FUNCTION modelstore._serving_floats(j jsonb) RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.array_replace(pg_catalog.translate(j::text, '[]', '{}')::float8[], NULL, 'NaN'::float8) $$;

CREATE OR REPLACE FUNCTION modelstore._serving_log_norms(v float8[]) RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    out float8[] := '{}';
    s float8;
BEGIN
    IF v IS NULL OR array_ndims(v) IS DISTINCT FROM 2 THEN
        RETURN NULL;
    END IF;
    FOR c IN 1 .. array_length(v, 1) LOOP
        s := 0;
        FOR j IN 1 .. array_length(v, 2) LOOP
            IF v[c][j] = 0 THEN
                s := 'NaN';
                EXIT;
            ELSIF v[c][j] < 0 THEN
                RETURN NULL;
            END IF;
            s := s + ln(2 * pi() * v[c][j]);
        END LOOP;
        out := out || s;
    END LOOP;
    RETURN out;
END
$$;

CREATE OR REPLACE FUNCTION modelstore._serving_state()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.serving_classes := NEW.state -> 'classes';
    NEW.serving_v := NULL;
    NEW.serving_c := NULL;
    IF coalesce((NEW.state ->> 'version')::integer, 1) > 1 THEN
        NEW.serving_w := NULL;  -- a state these functions cannot read: predict reads the state and says so
        NEW.serving_b := NULL;
    ELSIF NEW.kind = 'linear' THEN
        NEW.serving_w := modelstore._serving_floats(NEW.state -> 'coef');
        NEW.serving_b := modelstore._serving_floats(jsonb_build_array(NEW.state -> 'intercept'));
    ELSIF NEW.kind = 'logistic' THEN
        NEW.serving_w := modelstore._serving_floats(NEW.state -> 'coef');
        NEW.serving_b := modelstore._serving_floats(NEW.state -> 'intercept');
    ELSIF NEW.kind = 'gaussian_nb' THEN
        NEW.serving_w := modelstore._serving_floats(NEW.state -> 'theta');
        NEW.serving_v := modelstore._serving_floats(NEW.state -> 'var');
        NEW.serving_b := modelstore._serving_floats(NEW.state -> 'class_prior');
        NEW.serving_c := modelstore._serving_log_norms(NEW.serving_v);
    ELSIF NEW.kind = 'multinomial_nb' THEN
        NEW.serving_w := modelstore._serving_floats(NEW.state -> 'feature_log_prob');
        NEW.serving_b := modelstore._serving_floats(NEW.state -> 'class_log_prior');
    ELSE
        NEW.serving_w := NULL;
        NEW.serving_b := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER modelstore_serving_state BEFORE INSERT OR UPDATE OF kind, state ON modelstore.fitted_models
    FOR EACH ROW EXECUTE FUNCTION modelstore._serving_state();

UPDATE modelstore.fitted_models SET state = state;  -- the rows stored before this version

-- Model caches (docs/serving.md, "A session's model cache"): every change of a named model — a fit that
-- replaces it, a refresh, a rollback, DROP MODEL — notifies 'modelstore_models' with its name, delivered
-- at commit; a Store's cache forgets that model when the notification arrives.
CREATE OR REPLACE FUNCTION modelstore._model_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('modelstore_models', OLD.name);
    RETURN NULL;
END
$$;

CREATE TRIGGER modelstore_model_changed AFTER UPDATE OR DELETE ON modelstore.fitted_models
    FOR EACH ROW EXECUTE FUNCTION modelstore._model_changed();
