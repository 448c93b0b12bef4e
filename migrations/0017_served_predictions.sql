-- The dynamic scheduler's measured inputs (continuous-deployment paper §4.1, T′ = S·T·p_r·p_l;
-- docs/continuous.md): the predictions each model served through the Python and HTTP doors (counted in
-- each process and added here at most once a second), and the counts a proactive deployment read at
-- its last run, so that the next run's prediction rate and latency are the ones measured in between.
CREATE TABLE modelstore.served_predictions (
    model_name  text PRIMARY KEY,
    predictions bigint NOT NULL DEFAULT 0 CHECK (predictions >= 0),
    seconds     float8 NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

ALTER TABLE modelstore.deployments
    ADD COLUMN served_predictions bigint,
    ADD COLUMN served_seconds float8,
    ADD COLUMN served_read_at timestamptz;
