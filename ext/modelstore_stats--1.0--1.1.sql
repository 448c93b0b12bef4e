-- modelstore_stats 1.0 → 1.1: change capture keeps double-double statistics double-double
-- (docs/statistics.md, "Change capture").
\echo Use "ALTER EXTENSION modelstore_stats UPDATE TO '1.1'" to load this file. \quit

-- A stored linear summary after adding (sign 1) or removing (sign -1) the rows of a dd_moments result,
-- in double-double: [mean_hi[k], mean_lo[k], moments_hi[L], moments_lo[L]] in the stored layout.
CREATE FUNCTION dd_absorb(n bigint, mean float8[], mean_lo float8[], moments float8[], moments_lo float8[],
                          "full" boolean, sign integer, delta float8[]) RETURNS float8[]
    AS 'MODULE_PATHNAME', 'ms_dd_absorb' LANGUAGE C CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE;

-- The same for one class of a Gaussian Naive Bayes summary: its mean and per-feature M2, a dd_diag result.
CREATE FUNCTION dd_absorb_diag(n bigint, mean float8[], mean_lo float8[], m2 float8[], m2_lo float8[],
                               sign integer, delta float8[]) RETURNS float8[]
    AS 'MODULE_PATHNAME', 'ms_dd_absorb_diag' LANGUAGE C CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE;

-- dd_diag's unfinished state (change capture adds the states of segments up before finishing them).
CREATE AGGREGATE dd_diag_state(VARIADIC "any") (
    SFUNC = dd_diag_accum, STYPE = float8[], COMBINEFUNC = dd_combine, PARALLEL = SAFE
);

-- The sum of unfinished dd_moments or dd_diag states (the capture's per-segment states added up per summary).
CREATE AGGREGATE dd_state_sum(float8[]) (
    SFUNC = dd_combine, STYPE = float8[], COMBINEFUNC = dd_combine, PARALLEL = SAFE
);
