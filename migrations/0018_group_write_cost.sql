-- modelstore catalog, version 18: a write costs a table with per-group summaries in proportion to the
-- groups it touches, not to the groups the set has (issue #18; docs/serving.md, "Under writes", and
-- docs/freshness.md).
--
-- Change capture (sql/capture_5_trigger.sql) finds the sets of per-group summaries a write meets through
-- modelstore.group_sets (one row per set) and, in each, the summaries of the groups the changed rows
-- belong to through the index below: it no longer reads every member of every set. The two partial
-- indexes after it let the write's other probes of the catalog (the summaries it deletes or marks stale,
-- the unfiltered summaries it updates) skip the per-group summaries, which they never concern.

-- a set's members for some group keys, among the summaries capture keeps per group (those whose set has
-- no filter of its own). The key comes second: a lookup of a list of keys (= ANY) descends once per key,
-- and a plan that would use only the set's columns and filter the keys (reading every member) is no
-- cheaper by the index's own measure.
CREATE INDEX statistics_group_member_idx ON modelstore.statistics
    (source_id, (extra ->> 'group_key'), family, lo_key, hi_key, (extra ->> 'group_by'))
    WHERE extra ->> 'base_filter' = '';

-- the summaries a write in their range deletes (filtered, not kept per group) or marks stale (logistic)
CREATE INDEX statistics_rebuilt_idx ON modelstore.statistics (source_id)
    WHERE (family = 'logistic' AND NOT stale)
       OR (family <> 'logistic' AND filter_sql <> ''
           AND (extra ->> 'group_by' IS NULL OR extra ->> 'base_filter' IS DISTINCT FROM ''));

-- the unfiltered summaries a write in their range absorbs it into
CREATE INDEX statistics_unfiltered_idx ON modelstore.statistics (source_id, family, lo_key, hi_key)
    WHERE filter_sql = '' AND family <> 'logistic';

-- capture now reaches a set only through its group_sets row: every set stored without one (none should
-- be: the fit writes both in one transaction) gets it, counted from its members
INSERT INTO modelstore.group_sets
SELECT s.source_id, s.family, s.target, s.columns, s.params_key, s.lo_key, s.hi_key, s.extra ->> 'group_by',
       s.extra ->> 'base_filter', count(*)
  FROM modelstore.statistics AS s
 WHERE s.extra ->> 'group_by' IS NOT NULL AND s.extra ->> 'base_filter' IS NOT NULL
 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
ON CONFLICT DO NOTHING;
