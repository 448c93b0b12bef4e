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

-- The number of groups of each set of per-group summaries (one grouped fit's: same source, family, range,
-- columns, group column and filter of its own; docs/serving.md, "Under writes"), kept once per set instead
-- of in every member's extra.groups: capture adds the groups a write starts and subtracts those it empties
-- with one UPDATE of this row (not one of every member: a new group among 1,000 cost ~60 ms), and writers
-- that start different new groups at once add up (the UPDATE reads the newest committed count), so the set
-- never looks incomplete for that. A grouped fit takes a set only when its members number `groups`.
CREATE TABLE modelstore.group_sets (
    source_id   bigint  NOT NULL REFERENCES modelstore.sources (source_id) ON DELETE CASCADE,
    family      text    NOT NULL,
    target      text    NOT NULL,
    columns     text[]  NOT NULL,
    params_key  text    NOT NULL,
    lo_key      numeric NOT NULL,
    hi_key      numeric NOT NULL,
    group_by    text    NOT NULL,
    base_filter text    NOT NULL,
    groups      bigint  NOT NULL,
    PRIMARY KEY (source_id, family, target, columns, params_key, lo_key, hi_key, group_by, base_filter)
);
-- the sets stored before this version, with the count their members carried
INSERT INTO modelstore.group_sets
SELECT s.source_id, s.family, s.target, s.columns, s.params_key, s.lo_key, s.hi_key, s.extra ->> 'group_by',
       s.extra ->> 'base_filter', max((s.extra ->> 'groups')::bigint)
  FROM modelstore.statistics AS s
 WHERE s.extra ->> 'group_by' IS NOT NULL AND s.extra ->> 'base_filter' IS NOT NULL
 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9;
ALTER TABLE modelstore.group_sets ENABLE ROW LEVEL SECURITY;
