-- modelstore_stats 1.1: aggregates computing n, means and comoments in double-double (docs/statistics.md).
\echo Use "CREATE EXTENSION modelstore_stats" to load this file. \quit

-- The state is a plain float8[] (not internal), updated in place inside the aggregate's memory
-- context: parallel workers ship it to the leader without serial functions, and Citus can push the
-- aggregate down to shards and combine the partial states.

CREATE FUNCTION dd_moments_accum(float8[], VARIADIC "any") RETURNS float8[]
    AS 'MODULE_PATHNAME', 'ms_dd_moments_accum' LANGUAGE C CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION dd_diag_accum(float8[], VARIADIC "any") RETURNS float8[]
    AS 'MODULE_PATHNAME', 'ms_dd_diag_accum' LANGUAGE C CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION dd_combine(float8[], float8[]) RETURNS float8[]
    AS 'MODULE_PATHNAME', 'ms_dd_combine' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION dd_final(float8[]) RETURNS float8[]
    AS 'MODULE_PATHNAME', 'ms_dd_final' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

-- dd_moments(x_1, …, x_k): [n, null_rows, mean_hi[k], mean_lo[k], C_hi[k(k+1)/2], C_lo[k(k+1)/2]],
-- C the comoment matrix's upper triangle, row-major. Rows with a NULL argument are counted, not used.
CREATE AGGREGATE dd_moments(VARIADIC "any") (
    SFUNC = dd_moments_accum, STYPE = float8[], FINALFUNC = dd_final, COMBINEFUNC = dd_combine,
    PARALLEL = SAFE
);

-- dd_diag(x_1, …, x_k): the same with only the diagonal of C (per-column M2): Gaussian Naive Bayes.
CREATE AGGREGATE dd_diag(VARIADIC "any") (
    SFUNC = dd_diag_accum, STYPE = float8[], FINALFUNC = dd_final, COMBINEFUNC = dd_combine,
    PARALLEL = SAFE
);

-- The raw state, unfinished (tests check combine(a, b) against the aggregate over both).
CREATE AGGREGATE dd_moments_state(VARIADIC "any") (
    SFUNC = dd_moments_accum, STYPE = float8[], COMBINEFUNC = dd_combine, PARALLEL = SAFE
);

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
