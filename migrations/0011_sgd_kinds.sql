-- The SGD-trained families (docs/continuous.md): their models are stored as named models like the others.
ALTER TABLE modelstore.fitted_models DROP CONSTRAINT fitted_models_kind_check;
ALTER TABLE modelstore.fitted_models ADD CONSTRAINT fitted_models_kind_check
    CHECK (kind IN ('linear', 'gaussian_nb', 'multinomial_nb', 'logistic', 'sgd_logistic', 'sgd_svm', 'sgd_linear'));

-- Proactive training (continuous-deployment paper §3.2, §4.1; docs/continuous.md): a deployment's feature
-- chunks, materialized under a storage budget (features NULL once evicted: the chunk is re-materialized
-- from its base rows, order_by in [lo, hi], when a sample picks it), and the scheduler's next run.
CREATE TABLE modelstore.feature_chunks (
    deployment_id  bigint  NOT NULL REFERENCES modelstore.deployments ON DELETE CASCADE,
    seq            integer NOT NULL,
    lo             text    NOT NULL,
    hi             text    NOT NULL,
    rows           integer NOT NULL CHECK (rows >= 1),
    feature_names  text[],
    features       float8[],  -- rows × features, row-major; NULL when evicted
    targets        jsonb,     -- NULL when evicted
    materialized   boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (deployment_id, seq),
    CHECK (materialized = (features IS NOT NULL))
);

ALTER TABLE modelstore.deployments ADD COLUMN next_run_at timestamptz;
