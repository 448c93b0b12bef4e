-- modelstore catalog, version 21: the models ending near a request's ends found by index probes on either end.
-- modelstore.request_context reads the stored summaries with an end in the chunks holding the request's ends
-- (docs/planner.md, "Round trips"); statistics_range_idx finds those whose low end lies there, this index those
-- whose high end does (before it, a generic plan read every summary of the catalog to find them).
CREATE INDEX statistics_range_hi_idx ON modelstore.statistics (source_id, family, filter_sql, hi_key, lo_key);
