-- modelstore catalog, version 7: living models (issue #16, docs/deployments.md).
-- Numbered 0007 to leave 0006 to the change-capture work under way at the same time.
--
-- A deployment is a named model that follows its table: the exact model of the committed rows in a
-- moving window. Its served parameters live in the ordinary fitted_models row of the same name (model_id),
-- so modelstore.predict, ML.PREDICT and ML.WEIGHTS score the active version with no change; the tables
-- below hold what moves: the window, the strategy, the versions, the changes waiting for a refresh,
-- the prequential figures and the events.

CREATE TABLE modelstore.deployments (
    deployment_id   bigserial PRIMARY KEY,
    name            text   NOT NULL UNIQUE,
    -- the serving row: dropping the model (DROP MODEL) ends the deployment
    model_id        bigint NOT NULL UNIQUE REFERENCES modelstore.fitted_models (model_id) ON DELETE CASCADE,
    kind            text   NOT NULL,
    relid           oid    NOT NULL,
    table_name      text   NOT NULL,          -- schema-qualified, quoted: what store.fit is given
    order_by        text   NOT NULL,
    target          text   NOT NULL,
    features        text[] NOT NULL,
    filter          text,                     -- the where= text as given (validated by store.fit)
    params          jsonb  NOT NULL DEFAULT '{}',
    -- the window: every row, the last window_rows rows, or [anchor − window_interval, newest row] where
    -- the anchor is the newest row's ordering value ('newest') or now() ('now')
    window_kind     text   NOT NULL CHECK (window_kind IN ('all', 'rows', 'interval')),
    window_rows     bigint CHECK (window_rows >= 1),
    window_interval interval,
    window_anchor   text   NOT NULL DEFAULT 'newest' CHECK (window_anchor IN ('newest', 'now')),
    -- which version is served: the newest exact model, the best prequential score, or a pinned version
    strategy        text   NOT NULL DEFAULT 'most_recent' CHECK (strategy IN ('most_recent', 'best_score', 'pinned')),
    pinned_version  integer,
    -- when a new exact model becomes a version: every change (both NULL), at most every record_every,
    -- or when a parameter moves by more than record_tolerance (relative)
    record_every    interval,
    record_tolerance float8,
    -- the validation gate: promote a version only when its prequential loss ≤ active's × (1 + gate_tolerance)
    gate            boolean NOT NULL DEFAULT false,
    gate_tolerance  float8  NOT NULL DEFAULT 0.0,
    latest_version  integer NOT NULL DEFAULT 0,
    active_version  integer,
    -- the statistics row of the current window stored by a refresh (deleted when the window moves on)
    window_stats_id bigint,
    window_stats_owned boolean NOT NULL DEFAULT false,
    lo              text,                     -- the window of the served model
    hi              text,
    -- the snapshot the last refresh read: a pending change visible in it is already in the model
    refreshed_snapshot pg_snapshot,
    refreshed_at    timestamptz,
    refreshes       bigint NOT NULL DEFAULT 0,
    drift_state     jsonb  NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      name        NOT NULL DEFAULT current_user
);
CREATE INDEX deployments_relid_idx ON modelstore.deployments (relid);

-- One row per version: what it was fitted on and why it was recorded.
CREATE TABLE modelstore.deployment_versions (
    deployment_id bigint  NOT NULL REFERENCES modelstore.deployments (deployment_id) ON DELETE CASCADE,
    version       integer NOT NULL,
    state         jsonb   NOT NULL,           -- the model's to_state(): enough to predict
    params        jsonb   NOT NULL,
    stats_id      bigint,                     -- the statistics it was solved from (may since be gone)
    plan          jsonb,
    rows_used     bigint  NOT NULL,
    rows_skipped  bigint  NOT NULL,
    lo            text    NOT NULL,
    hi            text    NOT NULL,
    reason        text    NOT NULL,
    metrics       jsonb   NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    name        NOT NULL DEFAULT current_user,
    PRIMARY KEY (deployment_id, version)
);

-- Committed writes not yet in a deployment's model: one row per (deployment, writing transaction),
-- inserted by the table's modelstore_deploy trigger in the writer's transaction (so a change is never
-- lost, whether or not a worker is listening) and deleted by the refresh whose snapshot sees it.
CREATE TABLE modelstore.deployment_pending (
    deployment_id bigint NOT NULL REFERENCES modelstore.deployments (deployment_id) ON DELETE CASCADE,
    xid           xid8   NOT NULL,
    queued_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, xid)
);

-- Prequential evaluation: each batch of new rows scored by a version before the model absorbs it.
-- loss_sum: squared errors (regression) or misclassifications (classifiers); abs_sum: absolute errors.
CREATE TABLE modelstore.deployment_metrics (
    metric_id     bigserial PRIMARY KEY,
    deployment_id bigint  NOT NULL REFERENCES modelstore.deployments (deployment_id) ON DELETE CASCADE,
    version       integer NOT NULL,
    active        boolean NOT NULL,           -- the version serving when the batch arrived
    batch_lo      text    NOT NULL,           -- the batch: ordering values in (batch_lo, batch_hi]
    batch_hi      text    NOT NULL,
    rows          bigint  NOT NULL,
    loss_sum      float8  NOT NULL,
    abs_sum       float8  NOT NULL,
    evaluated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployment_metrics_idx ON modelstore.deployment_metrics (deployment_id, evaluated_at);

-- What happened: refreshes (with the worker, time and plan), versions, rollbacks, drift, errors.
CREATE TABLE modelstore.deployment_events (
    event_id      bigserial PRIMARY KEY,
    deployment_id bigint NOT NULL REFERENCES modelstore.deployments (deployment_id) ON DELETE CASCADE,
    kind          text   NOT NULL,
    version       integer,
    detail        jsonb  NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    pid           integer NOT NULL DEFAULT pg_backend_pid()
);
CREATE INDEX deployment_events_idx ON modelstore.deployment_events (deployment_id, event_id);
