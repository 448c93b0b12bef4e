-- modelstore catalog, version 4: the statistics index (Data Canopy style; docs/index.md).
--
-- An index summarises one source's rows in chunks of about chunk_rows rows along the ordering column
-- (level 0) and in a binary hierarchy above them: node (level L, pos p) is the sum of chunks
-- [p·2^L, (p+1)·2^L). Any run of whole chunks is the sum of at most 2·log2(n) nodes, so any range costs a
-- few stored rows plus at most two partial-chunk scans. Node ranges are kept as cuts (docs/planner.md):
-- (key, side) with side 0 = just before the value, 1 = just after it.

CREATE TABLE modelstore.stat_indexes (
    index_id     bigserial PRIMARY KEY,
    source_id    bigint  NOT NULL REFERENCES modelstore.sources (source_id) ON DELETE CASCADE,
    family       text    NOT NULL CHECK (family IN ('linear', 'gaussian_nb', 'multinomial_nb')),
    target       text    NOT NULL DEFAULT '',   -- the class column of a Naive Bayes index
    columns      text[]  NOT NULL,              -- the statistics' columns (linear: features…, target)
    chunk_rows   integer NOT NULL CHECK (chunk_rows >= 1),
    n_chunks     integer NOT NULL,
    levels       integer NOT NULL,
    rows_indexed bigint  NOT NULL,              -- rows with a non-NULL ordering value, covered by the chunks
    null_rows    bigint  NOT NULL,              -- of those, rows skipped for a NULL in a column
    end_key      numeric NOT NULL,              -- the index ends just after this ordering value
    end_value    text    NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    created_by   name        NOT NULL DEFAULT current_user,
    UNIQUE (source_id, family, target, columns)
);

-- One row per node. Linear nodes keep the comoment's upper triangle only (k(k+1)/2 values, row-major).
CREATE TABLE modelstore.index_nodes (
    index_id  bigint   NOT NULL REFERENCES modelstore.stat_indexes (index_id) ON DELETE CASCADE,
    level     smallint NOT NULL,
    pos       integer  NOT NULL,
    lo_key    numeric  NOT NULL,
    lo_side   smallint NOT NULL,
    hi_key    numeric  NOT NULL,
    hi_side   smallint NOT NULL,
    lo        text     NOT NULL,
    hi        text     NOT NULL,
    n         bigint   NOT NULL,
    null_rows bigint   NOT NULL,
    classes   jsonb,
    counts    bigint[],
    mean      float8[],
    moments   float8[] NOT NULL,
    PRIMARY KEY (index_id, level, pos)
);
-- the chunk that holds a value: the last level-0 node starting at or before it
CREATE INDEX index_nodes_chunk_start ON modelstore.index_nodes (index_id, level, lo_key, lo_side);
