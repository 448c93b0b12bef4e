-- modelstore catalog, version 12: partitioned and sharded tables (docs/scale-out.md).

-- The members of a partitioned source's partition tree (the tables carrying its capture triggers, and
-- its foreign partitions) when its statistics were last made true; NULL for a table that is not
-- partitioned. ATTACH, DETACH and DROP PARTITION change the tree: the partition event trigger
-- (sql/capture_7_partitions.sql) applies the rows that entered or left and records the new tree; a
-- request that finds a tree other than the recorded one (a change the event trigger did not see)
-- drops the source's statistics before using any.
ALTER TABLE modelstore.sources ADD COLUMN members oid[];

-- Sharded sources (partitions that are postgres_fdw foreign tables): each shard's change counter, as it
-- was when a summary was computed. A summary is used only while every shard's counter still has the
-- value recorded here (docs/scale-out.md, "Freshness on shards").
CREATE TABLE modelstore.shard_versions (
    source_id  bigint NOT NULL REFERENCES modelstore.sources (source_id) ON DELETE CASCADE,
    relid      oid    NOT NULL,  -- the foreign partition on the coordinator
    version    bigint NOT NULL,  -- the shard's change counter for its table
    PRIMARY KEY (source_id, relid)
);
