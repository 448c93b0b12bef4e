-- modelstore catalog, version 1: sources, stored statistics with their descriptors, named models.
-- Applied once by modelstore.migrate (inside a transaction, under an advisory lock) and recorded in
-- modelstore.schema_version. Every object is schema-qualified; search_path is pinned by the runner.

CREATE TABLE modelstore.sources (
    source_id   bigserial PRIMARY KEY,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    order_by    text NOT NULL,
    -- how range bounds of this ordering column are stored: 'number', 'timestamp', 'timestamptz', 'date'
    order_kind  text NOT NULL CHECK (order_kind IN ('number', 'timestamp', 'timestamptz', 'date')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schema_name, table_name, order_by)
);

-- One row per stored summary: the sufficient statistics of the rows one descriptor selects.
-- The arrays' meaning depends on the family (docs/statistics.md):
--   linear:          mean = k means of [features…, target], moments = k×k comoment matrix
--   gaussian_nb:     counts = rows per class, mean = C×d class means, moments = C×d second central moments
--   multinomial_nb:  counts = rows per class, moments = C×d per-class feature sums
CREATE TABLE modelstore.statistics (
    stats_id     bigserial PRIMARY KEY,
    source_id    bigint NOT NULL REFERENCES modelstore.sources (source_id) ON DELETE CASCADE,
    family       text   NOT NULL CHECK (family IN ('linear', 'gaussian_nb', 'multinomial_nb')),
    -- the closed range [lo, hi] on the ordering column: display form and an exact numeric sort key
    lo           text    NOT NULL,
    hi           text    NOT NULL,
    lo_key       numeric NOT NULL,
    hi_key       numeric NOT NULL,
    -- the residual filter as normalized SQL ('' when none), so that equal filters compare equal
    filter_sql   text    NOT NULL DEFAULT '',
    -- the class column of a classifier; '' for the linear family, whose target is the last column
    target       text    NOT NULL DEFAULT '',
    columns      text[]  NOT NULL,
    n            bigint  NOT NULL CHECK (n >= 0),
    null_rows    bigint  NOT NULL CHECK (null_rows >= 0),
    classes      jsonb,
    counts       bigint[],
    mean         float8[],
    moments      float8[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   name        NOT NULL DEFAULT current_user,
    CHECK (lo_key <= hi_key)
);

-- one stored summary per descriptor: concurrent requests for the same one cannot duplicate it
CREATE UNIQUE INDEX statistics_descriptor_key
    ON modelstore.statistics (source_id, family, lo_key, hi_key, filter_sql, target, columns);
-- relevant-model lookups go by source, family and range
CREATE INDEX statistics_range_idx ON modelstore.statistics (source_id, family, filter_sql, lo_key, hi_key);

-- Named models: solved parameters, fit figures and the plan that built them.
CREATE TABLE modelstore.fitted_models (
    model_id    bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('linear', 'gaussian_nb', 'multinomial_nb')),
    source_id   bigint NOT NULL REFERENCES modelstore.sources (source_id) ON DELETE CASCADE,
    stats_id    bigint REFERENCES modelstore.statistics (stats_id) ON DELETE SET NULL,
    lo          text    NOT NULL,
    hi          text    NOT NULL,
    filter_sql  text    NOT NULL DEFAULT '',
    target      text    NOT NULL,
    features    text[]  NOT NULL,
    params      jsonb   NOT NULL DEFAULT '{}',
    rows_used   bigint  NOT NULL,
    rows_skipped bigint NOT NULL,
    -- the solved model (parameters and fit figures), enough to predict without the statistics
    state       jsonb   NOT NULL,
    -- how it was built: the executed plan's steps with estimated and actual cost
    plan        jsonb   NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name        NOT NULL DEFAULT current_user
);
CREATE INDEX fitted_models_stats_idx ON modelstore.fitted_models (stats_id);
