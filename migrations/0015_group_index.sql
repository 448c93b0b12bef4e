-- modelstore catalog, version 15: per-group nodes of the statistics index (issue #18; docs/index.md,
-- "Per-group nodes", and docs/serving.md).
--
-- An index built with group_by = <column> also keeps, for every node (level, pos) of its hierarchy, one
-- summary per value of the column among the node's rows: the statistics of the rows of that node whose
-- column::text is group_key (the key the grouped aggregate gives each row; rows whose group is NULL are in
-- no group's node). A node holds only the groups that have rows in it. A grouped fit over a range then
-- takes each group's statistics from the canonical nodes of the range's whole chunks plus one grouped scan
-- of the partial chunks at its ends, and change capture keeps these nodes exact as it keeps the index's own
-- (sql/capture_5_trigger.sql). The node's range is the index node's of the same (level, pos).
ALTER TABLE modelstore.stat_indexes ADD COLUMN IF NOT EXISTS group_by text;

CREATE TABLE modelstore.index_group_nodes (
    index_id   bigint   NOT NULL REFERENCES modelstore.stat_indexes (index_id) ON DELETE CASCADE,
    level      smallint NOT NULL,
    pos        integer  NOT NULL,
    group_key  text     NOT NULL,
    n          bigint   NOT NULL,
    null_rows  bigint   NOT NULL,
    classes    jsonb,
    counts     bigint[],
    mean       float8[],
    moments    float8[] NOT NULL,
    mean_lo    float8[],
    moments_lo float8[],
    PRIMARY KEY (index_id, level, pos, group_key)
);
-- row-level security as for index_nodes (sql/security.sql: a role sees a group node when it sees its index)
ALTER TABLE modelstore.index_group_nodes ENABLE ROW LEVEL SECURITY;
