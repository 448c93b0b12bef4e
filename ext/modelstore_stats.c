/*
 * modelstore_stats: the sufficient statistics of linear regression and Gaussian Naive Bayes
 * (Gupta & Koudas, "Model Materialization for Efficient In-Database Machine Learning", §3.1:
 * n, the means and the comoment matrix of [features…, target]) in ONE transition call per row,
 * accumulated in double-double arithmetic.
 *
 * Why: the SQL path spends one avg per column and one regr_sxy per pair of columns, k(k+1)/2
 * transition calls per row, and float64 sums lose the digits that ill-conditioned designs
 * (NIST StRD Wampler, Filip) need.
 *
 * Representation (docs/statistics.md, "The C aggregate"): a value is an unevaluated sum hi + lo of
 * two doubles with |lo| <= ulp(hi)/2, 106 significant bits. Per row the aggregate shifts every
 * value by K (the first complete row of the state, so that sums of squares do not cancel against
 * the mean: the error of a comoment then scales with the spread, not with the offset), forms
 * d = x - K exactly (TwoSum), and adds d_i and d_i·d_j (exact product by fma, plus the cross terms
 * of the low parts) into renormalised double-double accumulators. The error of every sum is at
 * most about n·u²·Σ|terms| (u = 2⁻⁵³), ~1e-25 relative for 10⁷ rows; the float64 sums of the
 * SQL path have n·u ≈ 1e-9 in the worst case.
 *
 * The state is a plain float8[] (see the layout below), updated in place when called as an
 * aggregate (AggCheckCallContext, as PostgreSQL's own float8_accum does); the combine function
 * moves one state to the other's shift exactly in double-double (Chan, Golub & LeVeque 1979's
 * pairwise update) and adds. Both are PARALLEL SAFE.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_MODULE_MAGIC;

/*
 * State layout (float8[], one dimension, no NULLs):
 *   [0] mode: 1 = full comoment matrix, 2 = its diagonal only
 *   [1] k, the number of arguments
 *   [2] n, complete rows
 *   [3] rows skipped because an argument was NULL
 *   [4 .. 4+k)            K, the shift (the first complete row)
 *   then S_hi[k], S_lo[k]  S_i = Σ (x_i − K_i)
 *   then P_hi[m], P_lo[m]  P_ij = Σ (x_i − K_i)(x_j − K_j); m = k(k+1)/2 (i <= j, row-major) in
 *                          mode 1, m = k (i = j) in mode 2
 * High and low parts are kept in separate runs so that the per-row loop over the pairs is a
 * straight loop over contiguous arrays, which the compiler turns into SIMD instructions.
 *
 * Between renormalisations (every RENORM rows, and before combine and final) the low parts only
 * collect the rounding errors of the high parts (TwoSum) and the low parts of the products: each
 * is at most u·|hi|, so RENORM of them cannot spoil the low part's own ~53 bits.
 */
#define RENORM 256
#define MODE_FULL 1
#define MODE_DIAG 2
#define HDR 4
#define MAX_ARGS 1000

typedef struct
{
	double		hi;
	double		lo;
} dd;

static inline dd
two_sum(double a, double b)
{
	dd			r;
	double		bb;

	r.hi = a + b;
	bb = r.hi - a;
	r.lo = (a - (r.hi - bb)) + (b - bb);
	return r;
}

static inline dd
fast_two_sum(double a, double b)	/* requires |a| >= |b| or a == 0 */
{
	dd			r;

	r.hi = a + b;
	r.lo = b - (r.hi - a);
	return r;
}

static inline dd
dd_add(dd a, dd b)
{
	dd			s = two_sum(a.hi, b.hi);
	dd			t = two_sum(a.lo, b.lo);

	s.lo += t.hi;
	s = fast_two_sum(s.hi, s.lo);
	s.lo += t.lo;
	return fast_two_sum(s.hi, s.lo);
}

static inline dd
dd_mul(dd a, dd b)
{
	double		p = a.hi * b.hi;
	double		e = fma(a.hi, b.hi, -p);

	e += a.hi * b.lo + a.lo * b.hi;
	return fast_two_sum(p, e);
}

static inline dd
dd_mul_d(dd a, double b)
{
	double		p = a.hi * b;
	double		e = fma(a.hi, b, -p);

	e += a.lo * b;
	return fast_two_sum(p, e);
}

static inline dd
dd_div_d(dd a, double b)
{
	double		q1 = a.hi / b;
	dd			r = dd_add(a, dd_mul_d((dd) {-q1, 0.0}, b));
	double		q2 = r.hi / b;
	dd			q;

	r = dd_add(r, dd_mul_d((dd) {-q2, 0.0}, b));
	q = fast_two_sum(q1, q2);
	return dd_add(q, (dd) {r.hi / b, 0.0});
}

static inline dd
dd_neg(dd a)
{
	return (dd) {-a.hi, -a.lo};
}

/* (hi, lo) := TwoSum(hi, lo) over a run: |lo| <= ulp(hi)/2 again. */
static void
renormalize(double *restrict hi, double *restrict lo, int len)
{
	int			i;

	for (i = 0; i < len; i++)
	{
		dd			r = two_sum(hi[i], lo[i]);

		hi[i] = r.hi;
		lo[i] = r.lo;
	}
}

static inline int
terms(int mode, int k)
{
	return mode == MODE_FULL ? k * (k + 1) / 2 : k;
}

static inline int
state_len(int mode, int k)
{
	return HDR + 3 * k + 2 * terms(mode, k);
}

static ArrayType *
new_state(int mode, int k)
{
	int			len = state_len(mode, k);
	ArrayType  *a;
	double	   *v;

	{
		Size		nbytes = ARR_OVERHEAD_NONULLS(1) + sizeof(float8) * len;

		a = (ArrayType *) palloc0(nbytes);
		SET_VARSIZE(a, nbytes);
		a->ndim = 1;
		a->dataoffset = 0;
		a->elemtype = FLOAT8OID;
		*ARR_DIMS(a) = len;
		*ARR_LBOUND(a) = 1;
	}
	v = (double *) ARR_DATA_PTR(a);
	v[0] = mode;
	v[1] = k;
	return a;
}

/* The state's values, after checking that it is one (a hand-written or foreign array is refused). */
static double *
state_values(ArrayType *a, const char *caller)
{
	double	   *v;
	int			len;

	if (ARR_NDIM(a) != 1 || ARR_HASNULL(a) || ARR_ELEMTYPE(a) != FLOAT8OID)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("%s: not a modelstore_stats state (expected a one-dimensional float8[] without NULLs)",
							   caller)));
	len = ARR_DIMS(a)[0];
	v = (double *) ARR_DATA_PTR(a);
	if (len < HDR || (v[0] != MODE_FULL && v[0] != MODE_DIAG) || v[1] < 1 || v[1] > MAX_ARGS
		|| len != state_len((int) v[0], (int) v[1]))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("%s: not a modelstore_stats state (length %d does not match its header)",
							   caller, len)));
	return v;
}

/*
 * (hi, lo)[j] += a · (dh + dl)[j] for j < len, a = ah + al (a = 1 when ah is NULL: plain sums).
 * The product ah·dh[j] is split exactly by fma; the cross terms of the low parts (ah·dl, al·dh)
 * are below u·|product| and go straight to lo, al·dl (below u²) is dropped. TwoSum moves the
 * rounding error of the high sum to lo. A straight loop over contiguous arrays: vectorised.
 */
static inline void
add_products(double *restrict hi, double *restrict lo, const double *restrict dh, const double *restrict dl,
			 const double *ah, const double *al, int len)
{
	int			j;

	if (ah == NULL)
	{
		for (j = 0; j < len; j++)
		{
			double		p = dh[j];
			double		s = hi[j] + p;
			double		bb = s - hi[j];

			lo[j] += ((hi[j] - (s - bb)) + (p - bb)) + dl[j];
			hi[j] = s;
		}
		return;
	}
	{
		double		a = *ah,
					b = *al;

		for (j = 0; j < len; j++)
		{
			double		p = a * dh[j];
			double		e = fma(a, dh[j], -p) + (a * dl[j] + b * dh[j]);
			double		s = hi[j] + p;
			double		bb = s - hi[j];

			lo[j] += ((hi[j] - (s - bb)) + (p - bb)) + e;
			hi[j] = s;
		}
	}
}

/* (hi, lo)[j] += (dh + dl)[j]² for j < len: the diagonal only (Gaussian Naive Bayes). */
static inline void
add_squares(double *restrict hi, double *restrict lo, const double *restrict dh, const double *restrict dl, int len)
{
	int			j;

	for (j = 0; j < len; j++)
	{
		double		p = dh[j] * dh[j];
		double		e = fma(dh[j], dh[j], -p) + 2.0 * dh[j] * dl[j];
		double		s = hi[j] + p;
		double		bb = s - hi[j];

		lo[j] += ((hi[j] - (s - bb)) + (p - bb)) + e;
		hi[j] = s;
	}
}

static Datum
accum(FunctionCallInfo fcinfo, int mode)
{
	MemoryContext aggcontext;
	ArrayType  *state;
	double	   *v;
	double	   *K;
	double	   *S;
	double	   *P;
	int			k = PG_NARGS() - 1;
	int			i,
				t;
	double		dh[MAX_ARGS];
	double		dl[MAX_ARGS];

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("modelstore_stats transition functions can only be called as aggregates")));
	if (k < 1 || k > MAX_ARGS)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("modelstore_stats aggregates take 1 to %d float8 arguments, got %d", MAX_ARGS, k)));

	/* The arguments' types are fixed for the query: check them once (VARIADIC "any" takes anything). */
	if (fcinfo->flinfo->fn_extra == NULL)
	{
		if (get_fn_expr_variadic(fcinfo->flinfo))
			ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							errmsg("modelstore_stats aggregates take their values as separate arguments, not as VARIADIC array")));
		for (i = 1; i <= k; i++)
		{
			Oid			typ = get_fn_expr_argtype(fcinfo->flinfo, i);

			if (typ != FLOAT8OID)
				ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
								errmsg("modelstore_stats aggregates take float8 values; argument %d is %s (cast it with ::float8)",
									   i, format_type_be(typ))));
		}
		fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, 1);
	}

	if (PG_ARGISNULL(0))
	{
		MemoryContext old = MemoryContextSwitchTo(aggcontext);

		state = new_state(mode, k);
		MemoryContextSwitchTo(old);
	}
	else
		state = PG_GETARG_ARRAYTYPE_P(0);	/* our own, in the aggregate context: updated in place */
	v = (double *) ARR_DATA_PTR(state);

	/* a row with a NULL is counted and skipped (listwise deletion, as the SQL path does) */
	for (i = 1; i <= k; i++)
	{
		if (PG_ARGISNULL(i))
		{
			v[3] += 1;
			PG_RETURN_ARRAYTYPE_P(state);
		}
	}

	K = v + HDR;
	S = K + k;
	P = S + 2 * k;
	if (v[2] == 0)
	{
		/* the first complete row is the shift: its own d is exactly 0 */
		for (i = 0; i < k; i++)
			K[i] = PG_GETARG_FLOAT8(i + 1);
	}
	for (i = 0; i < k; i++)
	{
		/* d = x − K exactly, as hi + lo. NaN/±Inf flow into this column's sums (the caller names it). */
		dd			d = two_sum(PG_GETARG_FLOAT8(i + 1), -K[i]);

		dh[i] = d.hi;
		dl[i] = d.lo;
	}
	add_products(S, S + k, dh, dl, NULL, NULL, k);
	if (mode == MODE_FULL)
	{
		double	   *Ph = P,
				   *Pl = P + terms(mode, k);

		for (i = 0, t = 0; i < k; t += k - i, i++)
			add_products(Ph + t, Pl + t, dh + i, dl + i, &dh[i], &dl[i], k - i);
	}
	else
		add_squares(P, P + k, dh, dl, k);
	v[2] += 1;
	if (((int64) v[2]) % RENORM == 0)
		renormalize(S, S + k, k);
	if (((int64) v[2]) % RENORM == 0)
		renormalize(P, P + terms(mode, k), terms(mode, k));
	PG_RETURN_ARRAYTYPE_P(state);
}

PG_FUNCTION_INFO_V1(ms_dd_moments_accum);
Datum
ms_dd_moments_accum(PG_FUNCTION_ARGS)
{
	return accum(fcinfo, MODE_FULL);
}

PG_FUNCTION_INFO_V1(ms_dd_diag_accum);
Datum
ms_dd_diag_accum(PG_FUNCTION_ARGS)
{
	return accum(fcinfo, MODE_DIAG);
}

/*
 * combine(a, b): b's sums moved to a's shift, then added. With δ = K_b − K_a (exact, TwoSum):
 *   S' = S_b + n_b δ,   P'_ij = P_b,ij + S_b,i δ_j + δ_i S_b,j + n_b δ_i δ_j
 * (Chan, Golub & LeVeque's pairwise update written on shifted sums), all in double-double.
 */
PG_FUNCTION_INFO_V1(ms_dd_combine);
Datum
ms_dd_combine(PG_FUNCTION_ARGS)
{
	ArrayType  *a_arr;
	ArrayType  *b_arr = PG_GETARG_ARRAYTYPE_P(1);
	double	   *a;
	double	   *b = state_values(b_arr, "modelstore_stats combine");
	int			mode = (int) b[0],
				k = (int) b[1],
				m = terms(mode, k);
	int			i,
				j,
				t;
	double		nb = b[2];
	double	   *Ka,
			   *Sa,
			   *Pa,
			   *Kb,
			   *Sb,
			   *Pb;

	if (AggCheckCallContext(fcinfo, NULL))
		a_arr = PG_GETARG_ARRAYTYPE_P(0);	/* the aggregate's own state: updated in place */
	else
		a_arr = PG_GETARG_ARRAYTYPE_P_COPY(0);
	a = state_values(a_arr, "modelstore_stats combine");
	if ((int) a[0] != mode || (int) a[1] != k)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("modelstore_stats combine: states over different shapes (mode %d, k %d vs mode %d, k %d)",
							   (int) a[0], (int) a[1], mode, k)));
	Ka = a + HDR;
	Sa = Ka + k;
	Pa = Sa + 2 * k;
	Kb = b + HDR;
	Sb = Kb + k;
	Pb = Sb + 2 * k;
	/* b's low parts may hold up to RENORM unnormalised errors: normalise a copy when it is not ours */
	{
		int			len = state_len(mode, k);
		double	   *copy = palloc(sizeof(double) * len);

		memcpy(copy, b, sizeof(double) * len);
		b = copy;
		Kb = b + HDR;
		Sb = Kb + k;
		Pb = Sb + 2 * k;
		renormalize(Sb, Sb + k, k);
		renormalize(Pb, Pb + m, m);
	}
	renormalize(Sa, Sa + k, k);
	renormalize(Pa, Pa + m, m);
	a[3] += b[3];
	if (nb == 0)
		PG_RETURN_ARRAYTYPE_P(a_arr);
	if (a[2] == 0)
	{
		memcpy(Ka, Kb, sizeof(double) * (k + 2 * k + 2 * terms(mode, k)));
		a[2] = nb;
		PG_RETURN_ARRAYTYPE_P(a_arr);
	}
	{
		dd			delta[MAX_ARGS];
		dd			sb[MAX_ARGS];

		for (i = 0; i < k; i++)
		{
			delta[i] = two_sum(Kb[i], -Ka[i]);
			sb[i] = (dd) {Sb[i], Sb[k + i]};
		}
		t = 0;
		for (i = 0; i < k; i++)
		{
			for (j = i; j < (mode == MODE_FULL ? k : i + 1); j++, t++)
			{
				dd			p = {Pb[t], Pb[m + t]};
				dd			r;

				p = dd_add(p, dd_mul(sb[i], delta[j]));
				p = dd_add(p, dd_mul(delta[i], sb[j]));
				p = dd_add(p, dd_mul_d(dd_mul(delta[i], delta[j]), nb));
				r = dd_add((dd) {Pa[t], Pa[m + t]}, p);
				Pa[t] = r.hi;
				Pa[m + t] = r.lo;
			}
		}
		for (i = 0; i < k; i++)
		{
			dd			s = dd_add(sb[i], dd_mul_d(delta[i], nb));

			s = dd_add((dd) {Sa[i], Sa[k + i]}, s);
			Sa[i] = s.hi;
			Sa[k + i] = s.lo;
		}
	}
	a[2] += nb;
	PG_RETURN_ARRAYTYPE_P(a_arr);
}

/*
 * final: [n, null_rows, mean_hi[k], mean_lo[k], C_hi[m], C_lo[m]] with mean_i = K_i + S_i / n and
 * C_ij = P_ij − S_i S_j / n, in double-double. With no complete row the means and moments are 0.
 */
PG_FUNCTION_INFO_V1(ms_dd_final);
Datum
ms_dd_final(PG_FUNCTION_ARGS)
{
	ArrayType  *st = PG_GETARG_ARRAYTYPE_P(0);
	double	   *v = state_values(st, "modelstore_stats final");
	double	   *copy;
	int			mode = (int) v[0],
				k = (int) v[1],
				m = terms(mode, k);
	double		n = v[2];
	double	   *K = v + HDR;
	double	   *S = K + k;
	double	   *P = S + 2 * k;
	int			len = 2 + 2 * k + 2 * m;
	Datum	   *out = palloc(sizeof(Datum) * len);
	int			i,
				j,
				t;

	/* the state may be the aggregate's own (final functions must not modify it): normalise a copy */
	copy = palloc(sizeof(double) * state_len(mode, k));
	memcpy(copy, v, sizeof(double) * state_len(mode, k));
	K = copy + HDR;
	S = K + k;
	P = S + 2 * k;
	renormalize(S, S + k, k);
	renormalize(P, P + m, m);
	out[0] = Float8GetDatum(n);
	out[1] = Float8GetDatum(v[3]);
	for (i = 2; i < len; i++)
		out[i] = Float8GetDatum(0.0);
	if (n > 0)
	{
		dd			mu[MAX_ARGS];	/* S_i / n */

		for (i = 0; i < k; i++)
		{
			dd			mean;

			mu[i] = dd_div_d((dd) {S[i], S[k + i]}, n);
			mean = dd_add((dd) {K[i], 0.0}, mu[i]);
			out[2 + i] = Float8GetDatum(mean.hi);
			out[2 + k + i] = Float8GetDatum(mean.lo);
		}
		t = 0;
		for (i = 0; i < k; i++)
		{
			for (j = i; j < (mode == MODE_FULL ? k : i + 1); j++, t++)
			{
				/* P_ij − S_i · (S_j / n) */
				dd			c = dd_add((dd) {P[t], P[m + t]},
									   dd_neg(dd_mul((dd) {S[i], S[k + i]}, mu[j])));

				out[2 + 2 * k + t] = Float8GetDatum(c.hi);
				out[2 + 2 * k + m + t] = Float8GetDatum(c.lo);
			}
		}
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(out, len, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* The values of a float8[] argument that must hold exactly len values without NULLs. */
static double *
float8_values(ArrayType *a, int len, const char *what)
{
	if (ARR_NDIM(a) > 1 || ARR_HASNULL(a) || ARR_ELEMTYPE(a) != FLOAT8OID
		|| (len > 0 && (ARR_NDIM(a) != 1 || ARR_DIMS(a)[0] != len)))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("modelstore_stats dd_absorb: %s must be a float8[] of %d values without NULLs",
							   what, len)));
	return (double *) ARR_DATA_PTR(a);
}

#define LAYOUT_FULL 1		/* the comoment as a k×k matrix, row-major */
#define LAYOUT_TRIANGLE 2	/* its upper triangle, row-major */
#define LAYOUT_DIAG 3		/* its diagonal only (Gaussian Naive Bayes' per-class M2) */

/*
 * A stored summary (n_a rows, mean and comoment as hi + lo in `layout`) after adding (sign = +1) or
 * removing (sign = −1) the rows whose finished statistics are dv ([n_b, null_rows, mean_hi[k],
 * mean_lo[k], C_hi[m], C_lo[m]], m = k(k+1)/2, or k for LAYOUT_DIAG; NULL: no rows). Chan, Golub &
 * LeVeque's pairwise update in double-double:
 *   +:  δ = μ_b − μ_a,  μ = μ_a + δ·n_b/n,  C = C_a + C_b + δδᵀ·n_a·n_b/n         (n = n_a + n_b)
 *   −:  μ_r = μ + (μ − μ_b)·n_b/n_r,  δ = μ_b − μ_r,  C_r = C − C_b − δδᵀ·n_r·n_b/n  (n_r = n − n_b)
 * Returns [mean_hi[k], mean_lo[k], moments_hi[L], moments_lo[L]] in the stored layout.
 */
static ArrayType *
absorb(int64 n_a, const double *mh, const double *ml, const double *ch, const double *cl, int k, int layout,
	   int sign, const double *dv)
{
	int			m = layout == LAYOUT_DIAG ? k : k * (k + 1) / 2;
	int			L = layout == LAYOUT_FULL ? k * k : m;
	int			i,
				j,
				t;
	double		nb = dv ? dv[0] : 0;
	double		na = (double) n_a;
	Datum	   *out = palloc(sizeof(Datum) * (2 * k + 2 * L));
	dd			mu[MAX_ARGS],
				delta[MAX_ARGS];

	for (i = 0; i < k; i++)
		mu[i] = (dd) {mh ? mh[i] : 0.0, ml ? ml[i] : 0.0};
#define STORED(i, j, tt) ((dd) {ch[layout == LAYOUT_FULL ? (i) * k + (j) : (tt)], \
								cl ? cl[layout == LAYOUT_FULL ? (i) * k + (j) : (tt)] : 0.0})
#define PUT(i, j, tt, v) do { \
		dd _v = (v); \
		if (layout == LAYOUT_FULL) { \
			out[2 * k + (i) * k + (j)] = out[2 * k + (j) * k + (i)] = Float8GetDatum(_v.hi); \
			out[2 * k + L + (i) * k + (j)] = out[2 * k + L + (j) * k + (i)] = Float8GetDatum(_v.lo); \
		} else { \
			out[2 * k + (tt)] = Float8GetDatum(_v.hi); \
			out[2 * k + L + (tt)] = Float8GetDatum(_v.lo); \
		} } while (0)
/* the pairs (i, j) of the layout, t counting them as the delta lists them */
#define FOR_PAIRS for (i = 0, t = 0; i < k; i++) for (j = i; j < (layout == LAYOUT_DIAG ? i + 1 : k); j++, t++)

	if (nb == 0)
	{
		/* nothing to merge: the summary as it is (with zero low parts where it had none) */
		for (i = 0; i < k; i++)
		{
			out[i] = Float8GetDatum(mu[i].hi);
			out[k + i] = Float8GetDatum(mu[i].lo);
		}
		FOR_PAIRS
			PUT(i, j, t, STORED(i, j, t));
	}
	else if (sign > 0 && n_a == 0)
	{
		/* an empty summary takes the delta's statistics */
		for (i = 0; i < k; i++)
		{
			out[i] = Float8GetDatum(dv[2 + i]);
			out[k + i] = Float8GetDatum(dv[2 + k + i]);
		}
		FOR_PAIRS
			PUT(i, j, t, ((dd) {dv[2 + 2 * k + t], dv[2 + 2 * k + m + t]}));
	}
	else if (sign < 0 && n_a - (int64) nb <= 0)
	{
		if (n_a - (int64) nb < 0)
			ereport(ERROR, (errcode(ERRCODE_DATA_EXCEPTION),
							errmsg("modelstore_stats dd_absorb: cannot remove %.0f rows from a summary of %lld",
								   nb, (long long) n_a)));
		for (i = 0; i < 2 * k + 2 * L; i++)
			out[i] = Float8GetDatum(0.0);
	}
	else
	{
		double		n = sign > 0 ? na + nb : na;	/* the whole of the pair */
		double		nr = sign > 0 ? na : na - nb;	/* the part that is not the delta */

		for (i = 0; i < k; i++)
		{
			dd			mub = {dv[2 + i], dv[2 + k + i]};
			dd			r;

			if (sign > 0)
			{
				delta[i] = dd_add(mub, dd_neg(mu[i]));
				r = dd_add(mu[i], dd_div_d(dd_mul_d(delta[i], nb), n));
			}
			else
			{
				r = dd_add(mu[i], dd_div_d(dd_mul_d(dd_add(mu[i], dd_neg(mub)), nb), nr));
				delta[i] = dd_add(mub, dd_neg(r));
			}
			out[i] = Float8GetDatum(r.hi);
			out[k + i] = Float8GetDatum(r.lo);
		}
		FOR_PAIRS
		{
			dd			cb = {dv[2 + 2 * k + t], dv[2 + 2 * k + m + t]};
			dd			outer = dd_div_d(dd_mul_d(dd_mul_d(dd_mul(delta[i], delta[j]), nr), nb), n);
			dd			c = STORED(i, j, t);

			if (sign > 0)
				c = dd_add(dd_add(c, cb), outer);
			else
				c = dd_add(dd_add(c, dd_neg(cb)), dd_neg(outer));
			PUT(i, j, t, c);
		}
	}
#undef STORED
#undef PUT
#undef FOR_PAIRS
	return construct_array(out, 2 * k + 2 * L, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/* The arguments both entry points share: n (0), mean (1), mean_lo (2), moments (3), moments_lo (4). */
static ArrayType *
absorb_call(FunctionCallInfo fcinfo, int layout, int sign_arg, int delta_arg)
{
	int64		n_a;
	ArrayType  *mom_arr;
	int			sign,
				k,
				m,
				L;
	const double *mh = NULL,
			   *ml = NULL,
			   *cl = NULL,
			   *dv = NULL;
	const double *ch;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(3) || PG_ARGISNULL(sign_arg))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("modelstore_stats dd_absorb: n, moments, layout and sign must not be NULL")));
	n_a = PG_GETARG_INT64(0);
	sign = PG_GETARG_INT32(sign_arg);
	if (sign != 1 && sign != -1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("modelstore_stats dd_absorb: sign must be 1 or -1, got %d", sign)));
	mom_arr = PG_GETARG_ARRAYTYPE_P(3);
	L = ArrayGetNItems(ARR_NDIM(mom_arr), ARR_DIMS(mom_arr));
	for (k = 1; k <= MAX_ARGS; k++)
	{
		int			want = layout == LAYOUT_FULL ? k * k : layout == LAYOUT_TRIANGLE ? k * (k + 1) / 2 : k;

		if (want >= L)
			break;
	}
	m = layout == LAYOUT_DIAG ? k : k * (k + 1) / 2;
	if ((layout == LAYOUT_FULL ? k * k : m) != L)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("modelstore_stats dd_absorb: %d moments do not fit the layout", L)));
	ch = float8_values(mom_arr, L, "moments");
	if (!PG_ARGISNULL(4))
		cl = float8_values(PG_GETARG_ARRAYTYPE_P(4), L, "moments_lo");
	if (n_a != 0)
	{
		if (PG_ARGISNULL(1))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("modelstore_stats dd_absorb: a summary of %lld rows without a mean",
								   (long long) n_a)));
		mh = float8_values(PG_GETARG_ARRAYTYPE_P(1), k, "mean");
		if (!PG_ARGISNULL(2))
			ml = float8_values(PG_GETARG_ARRAYTYPE_P(2), k, "mean_lo");
	}
	if (!PG_ARGISNULL(delta_arg))
		dv = float8_values(PG_GETARG_ARRAYTYPE_P(delta_arg), 2 + 2 * k + 2 * m,
						   "delta (a finished statistics array over the summary's columns)");
	return absorb(n_a, mh, ml, ch, cl, k, layout, sign, dv);
}

/*
 * dd_absorb(n, mean, mean_lo, moments, moments_lo, full, sign, delta): a stored linear summary (the
 * comoment k×k when full, else its upper triangle) after adding or removing the rows of a dd_moments
 * result. Change capture keeps stored double-double statistics double-double with it
 * (docs/statistics.md, "Change capture"); NULL low parts (a float64 summary) count as zero.
 */
PG_FUNCTION_INFO_V1(ms_dd_absorb);
Datum
ms_dd_absorb(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(5))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("modelstore_stats dd_absorb: full must not be NULL")));
	PG_RETURN_ARRAYTYPE_P(absorb_call(fcinfo, PG_GETARG_BOOL(5) ? LAYOUT_FULL : LAYOUT_TRIANGLE, 6, 7));
}

/*
 * dd_absorb_diag(n, mean, mean_lo, m2, m2_lo, sign, delta): the same for one class of a Gaussian Naive
 * Bayes summary (the per-feature M2, a dd_diag result as delta).
 */
PG_FUNCTION_INFO_V1(ms_dd_absorb_diag);
Datum
ms_dd_absorb_diag(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(absorb_call(fcinfo, LAYOUT_DIAG, 5, 6));
}
