"""The solvers of modelstore.models against independent references (no database needed).

Statistics are built by numpy (``from_rows``), merged and unmerged; the models solved from them must
equal statsmodels' OLS, scikit-learn's Ridge / GaussianNB / MultinomialNB fitted on the rows, and
NIST's certified Longley values (DESIGN §6: ≥ 10 digits on every plan path).
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge
from sklearn.naive_bayes import GaussianNB as SkGaussianNB
from sklearn.naive_bayes import MultinomialNB as SkMultinomialNB

from modelstore.errors import (
    InputError,
    NonFiniteValueError,
    RangeError,
    SingularMatrixError,
    UnknownColumnError,
)
from modelstore.models import GaussianNB, LinearRegression, MultinomialNB
from modelstore.stats import GaussianNBStats, LinearStats, MultinomialNBStats
from tests.data import longley

RTOL = 1e-9


def digits(estimate, certified) -> float:
    """Correct significant digits: min over entries of −log10(|est − cert| / |cert|)."""
    est, cert = np.asarray(estimate, dtype=float), np.asarray(certified, dtype=float)
    with np.errstate(divide="ignore"):
        return float(np.min(-np.log10(np.abs(est - cert) / np.abs(cert))))


def assert_close(actual, expected, rtol=RTOL, atol=0.0, what=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=rtol, atol=atol, err_msg=what)


def linear_stats(X, y, features=None, target="y"):
    features = features or [f"x{i}" for i in range(1, X.shape[1] + 1)]
    return LinearStats.from_rows([*features, target], np.column_stack([X, y]))


# -- NIST StRD Longley -----------------------------------------------------------------------------

LONGLEY = np.array(longley.feature_target_rows(), dtype=float)


def _longley_paths():
    cols = longley.COLUMNS
    whole = LinearStats.from_rows(cols, LONGLEY)
    halves = LinearStats.from_rows(cols, LONGLEY[:8]) + LinearStats.from_rows(cols, LONGLEY[8:])
    singles = sum((LinearStats.from_rows(cols, LONGLEY[i : i + 1]) for i in range(1, 16)),
                  LinearStats.from_rows(cols, LONGLEY[:1]))
    # whole − part: Longley is what is left of a longer series (1943–1966) after removing the years
    # around it: rows that continue each column's trend, with its scatter around the trend
    rng = np.random.default_rng(20240611)
    year = LONGLEY[:, 5]
    trend = np.polynomial.polynomial.polyfit(year, LONGLEY, 1)
    scatter = (LONGLEY - np.polynomial.polynomial.polyval(year, trend).T).std(axis=0)
    years = np.array([1943, 1944, 1945, 1946, 1963, 1964, 1965, 1966], dtype=float)
    extra = np.polynomial.polynomial.polyval(years, trend).T + scatter * rng.normal(size=(8, 7))
    extra[:, 5] = years
    extra = np.round(extra)
    extra_stats = LinearStats.from_rows(cols, extra)
    minus_extra = LinearStats.from_rows(cols, np.vstack([extra[:4], LONGLEY, extra[4:]])) - extra_stats
    # ... and after removing a repeated sub-range (a stored model subtracted from a bigger one)
    part = LinearStats.from_rows(cols, LONGLEY[4:12])
    minus_part = (whole + part) - part
    return {"scratch": whole, "halves": halves, "16 single rows": singles,
            "1943-1966 minus the other years": minus_extra, "whole - part": minus_part}


LONGLEY_PATHS = _longley_paths()


def test_longley_data_matches_statsmodels():
    data = sm.datasets.longley.load_pandas().data
    ours = pd.DataFrame(LONGLEY, columns=list(longley.COLUMNS))
    theirs = data[["GNPDEFL", "GNP", "UNEMP", "ARMED", "POP", "YEAR", "TOTEMP"]].to_numpy()
    np.testing.assert_array_equal(ours.to_numpy(), theirs)


def test_longley_certified_values_are_what_statsmodels_gets():
    # a sanity check of the transcription: statsmodels' pinv solution agrees to ~10 digits
    res = sm.OLS(LONGLEY[:, 6], sm.add_constant(LONGLEY[:, :6])).fit()
    assert digits(res.params, longley.CERTIFIED_PARAMS) > 9
    assert digits(res.bse, longley.CERTIFIED_BSE) > 9
    assert digits(res.rsquared, longley.CERTIFIED_RSQUARED) > 9


@pytest.mark.parametrize("path", list(LONGLEY_PATHS))
def test_longley_certified(path):
    model = LinearRegression.from_stats(LONGLEY_PATHS[path])
    got = {
        "params": digits(model.params, longley.CERTIFIED_PARAMS),
        "bse": digits(model.bse, longley.CERTIFIED_BSE),
        "residual_sd": digits(model.residual_std_error, longley.CERTIFIED_RESIDUAL_SD),
        "rsquared": digits(model.rsquared, longley.CERTIFIED_RSQUARED),
    }
    for key, value in longley.CERTIFIED_ANOVA.items():
        if key.startswith("df_"):
            assert getattr(model, key) == value
        else:
            got[key] = digits(getattr(model, key), value)
    print(path, {k: round(v, 2) for k, v in got.items()})
    assert got["params"] >= 10, got
    assert min(got.values()) >= 9, got
    assert model.n_obs == 16 and model.df_model == 6 and model.df_resid == 9


def test_longley_per_coefficient_digits():
    for path, stats in LONGLEY_PATHS.items():
        model = LinearRegression.from_stats(stats)
        per = [digits(e, c) for e, c in zip(model.params, longley.CERTIFIED_PARAMS)]
        assert min(per) >= 10, (path, per)


def _exact_solution(stats):
    """[b0, w…] solving the stored centered normal equations in rational arithmetic (no rounding)."""
    from fractions import Fraction

    C = [[Fraction(float(v)) for v in row] for row in stats.comoment]
    d = len(C) - 1
    rows = [C[i][:d] + [C[i][d]] for i in range(d)]
    for i in range(d):
        for j in range(i + 1, d):
            f = rows[j][i] / rows[i][i]
            rows[j] = [a - f * b for a, b in zip(rows[j], rows[i])]
    w = [Fraction(0)] * d
    for i in reversed(range(d)):
        w[i] = (rows[i][d] - sum(rows[i][k] * w[k] for k in range(i + 1, d))) / rows[i][i]
    mean = [Fraction(float(v)) for v in stats.mean]
    b0 = mean[d] - sum(wi * mi for wi, mi in zip(w, mean))
    return np.array([float(b0), *map(float, w)])


def test_solver_is_exact_for_the_stored_statistics():
    """The solver's own error is ~1e-15: what a path loses is lost in its statistics, not here.

    Subtracting rows unlike Longley's (10% larger, so Year spreads over centuries) costs the
    *statistics* digits (cancellation in C_whole − C_part); the solve of what is stored stays exact.
    """
    cols = longley.COLUMNS
    unlike = LONGLEY[:8] * 1.1 + 3
    paths = dict(LONGLEY_PATHS)
    paths["whole - unlike rows"] = (LinearStats.from_rows(cols, np.vstack([LONGLEY, unlike]))
                                    - LinearStats.from_rows(cols, unlike))
    for path, stats in paths.items():
        model = LinearRegression.from_stats(stats)
        assert digits(model.params, _exact_solution(stats)) >= 14, path


def test_longley_condition_number_matches_statsmodels():
    res = sm.OLS(LONGLEY[:, 6], sm.add_constant(LONGLEY[:, :6])).fit()
    model = LinearRegression.from_stats(LONGLEY_PATHS["scratch"])
    # both are σ_max/σ_min of the 16×7 design, ≈ 4.86e9: an SVD resolves σ_min to ~eps·κ
    assert digits(model.condition_number, res.condition_number) > 6


def test_longley_is_not_singular_but_its_duplicate_column_is():
    LinearRegression.from_stats(LONGLEY_PATHS["scratch"])
    X = np.column_stack([LONGLEY[:, :6], LONGLEY[:, 5] * 3 + 1])
    with pytest.raises(SingularMatrixError) as info:
        LinearRegression.from_stats(linear_stats(X, LONGLEY[:, 6]))
    assert info.value.collinear == ["x7"]
    assert "'x7' is a linear combination of 'x6'" in str(info.value)


# -- OLS against statsmodels ---------------------------------------------------------------------


def random_regression(seed, n, d, *, noise=1.0):
    rng = np.random.default_rng(seed)
    loc = rng.normal(0, 10, d)
    scale = np.exp(rng.uniform(-2, 3, d))
    X = loc + scale * rng.normal(size=(n, d))
    beta = rng.normal(0, 1, d) / scale
    y = 3.0 + X @ beta + noise * rng.normal(size=n)
    return X, y


def assert_matches_statsmodels(model, res, rtol=RTOL):
    assert_close(model.params, res.params, rtol, what="params")
    assert_close(model.bse, res.bse, rtol, what="bse")
    assert_close(model.tvalues, res.tvalues, rtol, what="tvalues")
    assert_close(model.pvalues, res.pvalues, rtol, atol=1e-14, what="pvalues")
    assert_close(model.cov_params(), res.cov_params(), rtol, atol=1e-12 * np.abs(res.cov_params()).max(), what="cov")
    assert_close(model.conf_int(), res.conf_int(), rtol, what="conf_int")
    assert_close(model.conf_int(0.1), res.conf_int(0.1), rtol, what="conf_int(0.1)")
    for key in ("rsquared", "rsquared_adj", "fvalue", "llf", "aic", "bic", "ssr", "ess", "centered_tss",
                "mse_resid", "mse_model", "condition_number"):
        assert_close(getattr(model, key), getattr(res, key), rtol, what=key)
    assert_close(model.f_pvalue, res.f_pvalue, rtol, atol=1e-14, what="f_pvalue")
    assert model.df_resid == res.df_resid and model.df_model == res.df_model and model.n_obs == res.nobs


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(12, 200), d=st.integers(1, 6))
def test_ols_equals_statsmodels(seed, n, d):
    X, y = random_regression(seed, n, d)
    model = LinearRegression.from_stats(linear_stats(X, y))
    res = sm.OLS(y, sm.add_constant(X, has_constant="add")).fit()
    assert_matches_statsmodels(model, res)
    assert_close(model.predict(X), res.fittedvalues, rtol=1e-9, atol=1e-9 * np.abs(y).max())


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(12, 120), d=st.integers(1, 5), cut=st.floats(0.2, 0.8))
def test_ols_from_merged_and_unmerged_stats(seed, n, d, cut):
    X, y = random_regression(seed, n, d)
    k = int(n * cut)
    Z = np.column_stack([X, y])
    cols = [*(f"x{i}" for i in range(1, d + 1)), "y"]
    a, b = LinearStats.from_rows(cols, Z[:k]), LinearStats.from_rows(cols, Z[k:])
    extra = LinearStats.from_rows(cols, Z[: max(k // 2, 1)] * 1.5 + 2)
    res = sm.OLS(y, sm.add_constant(X, has_constant="add")).fit()
    for stats in (a + b, (a + b + extra) - extra):
        assert_matches_statsmodels(LinearRegression.from_stats(stats), res, rtol=1e-8)


def test_ols_fixed_case_and_summary():
    X, y = random_regression(7, 50, 3)
    frame = pd.DataFrame(X, columns=["price", "promo", "week"])
    model = LinearRegression.from_stats(linear_stats(X, y, ["price", "promo", "week"], "revenue"), name="sales")
    res = sm.OLS(y, sm.add_constant(frame)).fit()
    table = model.summary()
    assert list(table.index) == ["intercept", "price", "promo", "week"]
    assert list(table.columns) == ["coef", "std_err", "t", "p_value", "ci_low", "ci_high"]
    assert_close(table["coef"], res.params)
    assert_close(table["std_err"], res.bse)
    assert_close(table[["ci_low", "ci_high"]], res.conf_int())
    assert model.target_ == "revenue" and model.name == "sales" and model.n_features_in_ == 3
    assert list(model.feature_names_in_) == ["price", "promo", "week"]
    assert model.coef_.shape == (3,) and isinstance(model.intercept_, float)
    assert_close(model.residual_std_error, math.sqrt(res.mse_resid))
    figures = model.fit_figures()
    json.dumps(figures, allow_nan=False)
    assert figures["n_obs"] == 50 and figures["df_resid"] == 46 and type(figures["rsquared"]) is float
    assert "sales" in repr(model) and "revenue ~ price, promo, week" in repr(model)
    assert_close(model.score(frame, y), res.rsquared)


def test_fit_from_arrays_is_from_stats():
    X, y = random_regression(3, 40, 2)
    a = LinearRegression().fit(pd.DataFrame(X, columns=["a", "b"]), pd.Series(y, name="t"))
    b = LinearRegression.from_stats(linear_stats(X, y, ["a", "b"], "t"))
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.target_ == "t"


def test_rows_skipped_and_n_obs():
    X, y = random_regression(1, 30, 2)
    stats = LinearStats.from_rows(["a", "b", "y"], np.column_stack([X, y]), null_rows=4)
    model = LinearRegression.from_stats(stats)
    assert model.rows_skipped == 4 and model.n_obs == 30


# -- ridge against scikit-learn ----------------------------------------------------------------------


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 150), d=st.integers(1, 6),
       l2=st.sampled_from([1e-6, 0.01, 0.3, 1.0, 10.0, 1e3]))
def test_ridge_equals_sklearn(seed, n, d, l2):
    # well-conditioned: with n ≤ d + 1 and a tiny l2 both solvers inherit ~1e-8 from the data's rounding
    n = max(n, d + 3)
    X, y = random_regression(seed, n, d)
    model = LinearRegression.from_stats(linear_stats(X, y), l2=l2)
    ref = Ridge(alpha=l2, fit_intercept=True, solver="cholesky").fit(X, y)
    assert_close(model.coef_, ref.coef_, what="coef")
    assert_close(model.intercept_, ref.intercept_, what="intercept")
    assert_close(model.predict(X), ref.predict(X), rtol=1e-9, atol=1e-9 * np.abs(y).max())


def _ridge_reference_cov(X, y, l2):
    """σ̂² (XᵀX + Λ)⁻¹ XᵀX (XᵀX + Λ)⁻¹ on the full design [1, X], Λ = diag(0, l2, …): independent of the centered form."""
    n, d = X.shape
    D = np.column_stack([np.ones(n), X])
    G = D.T @ D
    Lam = np.diag([0.0] + [l2] * d)
    beta = np.linalg.solve(G + Lam, D.T @ y)
    resid = y - D @ beta
    sigma2 = resid @ resid / (n - d - 1)
    H = np.linalg.inv(G + Lam)
    return beta, sigma2 * H @ G @ H, resid @ resid


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(10, 100), d=st.integers(1, 4),
       l2=st.sampled_from([1e-3, 0.5, 5.0, 100.0]))
def test_ridge_covariance_is_the_sandwich(seed, n, d, l2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2, d) + rng.normal(0, 1, d)
    y = 1 + X @ rng.normal(size=d) + rng.normal(size=n)
    beta, cov, ssr = _ridge_reference_cov(X, y, l2)
    model = LinearRegression.from_stats(linear_stats(X, y), l2=l2)
    assert_close(model.params, beta, rtol=1e-8)
    assert_close(model.cov_params(), cov, rtol=1e-7, atol=1e-12 * np.abs(cov).max())
    assert_close(model.ssr, ssr, rtol=1e-9)
    assert list(model.summary().columns) == ["coef", "std_err", "t", "p_value", "ci_low", "ci_high"]


def test_ridge_at_zero_is_ols_exactly_and_continuous():
    X, y = random_regression(11, 60, 4)
    stats = linear_stats(X, y)
    ols, zero = LinearRegression.from_stats(stats), LinearRegression.from_stats(stats, l2=0.0)
    np.testing.assert_array_equal(ols.coef_, zero.coef_)
    np.testing.assert_array_equal(ols.cov_params().to_numpy(), zero.cov_params().to_numpy())
    tiny = LinearRegression.from_stats(stats, l2=1e-10)
    assert_close(tiny.coef_, ols.coef_, rtol=1e-8)
    assert_close(tiny.cov_params(), ols.cov_params(), rtol=1e-7, atol=1e-14)
    res = sm.OLS(y, sm.add_constant(X)).fit()
    assert_matches_statsmodels(zero, res)


def test_ridge_handles_constant_collinear_and_wide_data():
    rng = np.random.default_rng(5)
    n = 20
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    X = np.column_stack([x1, x2, x1 + 2 * x2, np.full(n, 4.0), x1])
    y = 1 + x1 - x2 + rng.normal(size=n)
    model = LinearRegression.from_stats(linear_stats(X, y), l2=0.7)
    ref = Ridge(alpha=0.7).fit(X, y)
    assert_close(model.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    assert model.coef_[3] == 0.0
    assert_close(model.intercept_, ref.intercept_)
    # fewer rows than parameters: a ridge solution exists; std errors are undefined (df_resid ≤ 0)
    Xw = rng.normal(size=(4, 6))
    yw = rng.normal(size=4)
    wide = LinearRegression.from_stats(linear_stats(Xw, yw), l2=2.0)
    assert_close(wide.coef_, Ridge(alpha=2.0).fit(Xw, yw).coef_)
    assert wide.df_resid == -3
    assert np.isnan(wide.bse).all() and np.isnan(wide.pvalues).all()
    assert np.isnan(wide.rsquared_adj) and np.isnan(wide.fvalue)
    json.dumps(wide.fit_figures(), allow_nan=False)
    json.dumps(wide.to_state(), allow_nan=False)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "0.1", True, None])
def test_l2_is_validated(bad):
    stats = linear_stats(*random_regression(0, 10, 1))
    with pytest.raises(InputError, match="l2"):
        LinearRegression.from_stats(stats, l2=bad)


# -- singular XᵀX ---------------------------------------------------------------------------------


def _singular(X, y, features):
    with pytest.raises(SingularMatrixError) as info:
        LinearRegression.from_stats(linear_stats(X, y, features))
    return info.value


def test_duplicate_column_is_named():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    err = _singular(np.column_stack([X, X[:, 0]]), rng.normal(size=30), ["a", "b", "a_again"])
    assert err.collinear == ["a_again"]
    assert "'a_again' is a linear combination of 'a'" in str(err)
    assert "l2 > 0" in str(err)


def test_linear_combination_is_named():
    rng = np.random.default_rng(1)
    x1, x2, noise = rng.normal(size=(3, 40)) * [[1], [100], [0.01]]
    X = np.column_stack([x1, noise, x2, x1 + 2 * x2 + 5])
    err = _singular(X, rng.normal(size=40), ["x1", "noise", "x2", "x3"])
    assert err.collinear == ["x3"]
    assert "XᵀX is singular: 'x3' is a linear combination of 'x1', 'x2'; drop a column or pass l2 > 0" == str(err)


def test_constant_column_is_named():
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=25), np.full(25, 0.1), rng.normal(size=25)])
    err = _singular(X, rng.normal(size=25), ["x1", "x4", "x2"])
    assert err.collinear == ["x4"]
    assert "'x4' is constant" in str(err)


def test_several_problems_and_fewer_rows_than_parameters():
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=30)
    X = np.column_stack([x1, np.full(30, 7.0), 2 * x1])
    err = _singular(X, rng.normal(size=30), ["a", "c", "b"])
    assert set(err.collinear) == {"c", "b"}
    assert "'c' is constant" in str(err) and "'b' is a linear combination of 'a'" in str(err)
    err = _singular(rng.normal(size=(3, 4)), rng.normal(size=3), ["p", "q", "r", "s"])
    assert "3 rows cannot determine 5 parameters" in str(err)
    assert err.collinear == ["r", "s"]  # 3 centered rows span 2 dimensions: p and q are kept


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 6), data=st.data())
def test_any_linear_combination_is_found_and_explained(seed, d, data):
    rng = np.random.default_rng(seed)
    n = d + 3 + int(rng.integers(0, 50))
    X, y = random_regression(seed, n, d)
    deps = sorted(data.draw(st.sets(st.integers(0, d - 1), min_size=1, max_size=d)))
    coef = rng.uniform(0.5, 2.0, len(deps)) * rng.choice([-1, 1], len(deps))
    combo = X[:, deps] @ coef + rng.normal()
    where = data.draw(st.integers(max(deps) + 1, d))  # after the columns it depends on
    X = np.insert(X, where, combo, axis=1)
    names = [f"c{i}" for i in range(d + 1)]
    err = _singular(X, y, names)
    dep_names = [names[j if j < where else j + 1] for j in deps]
    assert err.collinear == [names[where]]
    assert f"{names[where]!r} is a linear combination of {', '.join(map(repr, dep_names))}" in str(err)
    # with a ridge penalty the same data is fine
    LinearRegression.from_stats(linear_stats(X, y, names), l2=0.1)


def test_ridge_penalty_too_small_for_collinear_columns():
    rng = np.random.default_rng(6)
    x = rng.normal(size=30)
    with pytest.raises(SingularMatrixError, match="increase l2") as info:
        LinearRegression.from_stats(linear_stats(np.column_stack([x, x]), rng.normal(size=30)), l2=1e-20)
    assert info.value.collinear == ["x2"]


def test_singular_from_subtraction_is_still_detected():
    rng = np.random.default_rng(4)
    x1, x2 = rng.normal(size=(2, 50))
    Z = np.column_stack([x1, x2, x1 - x2, rng.normal(size=50)])
    cols = ["x1", "x2", "x3", "y"]
    other = rng.normal(size=(20, 4)) * 3
    stats = LinearStats.from_rows(cols, np.vstack([Z, other])) - LinearStats.from_rows(cols, other)
    with pytest.raises(SingularMatrixError) as info:
        LinearRegression.from_stats(stats)
    assert info.value.collinear == ["x3"]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_bad_statistics():
    with pytest.raises(RangeError, match="no complete rows"):
        LinearRegression.from_stats(LinearStats(["a", "y"], null_rows=3))
    with pytest.raises(NonFiniteValueError, match="'a'"):
        LinearRegression.from_stats(LinearStats.from_rows(["a", "y"], [[1.0, 2.0], [np.inf, 1.0], [2.0, 0.0]]))
    with pytest.raises(InputError, match="LinearStats"):
        LinearRegression.from_stats(GaussianNBStats.from_rows(["a"], [[1.0]], [1]))


def test_intercept_only_model():
    y = np.array([1.0, 2.0, 4.0, 7.0])
    model = LinearRegression.from_stats(LinearStats.from_rows(["y"], y.reshape(-1, 1)))
    res = sm.OLS(y, np.ones(4)).fit()
    assert model.coef_.shape == (0,)
    assert_close(model.intercept_, y.mean())
    assert_close(model.bse, res.bse)
    assert_close(model.predict(np.zeros((2, 0))), [3.5, 3.5])


# -- prediction input ------------------------------------------------------------------------------


def test_predict_with_dataframe_by_name():
    X, y = random_regression(9, 40, 3)
    model = LinearRegression.from_stats(linear_stats(X, y, ["a", "b", "c"]))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    shuffled = frame[["c", "a", "b"]].assign(extra="text")
    np.testing.assert_array_equal(model.predict(shuffled), model.predict(X))
    with pytest.raises(UnknownColumnError, match=r"\['b'\]"):
        model.predict(frame.drop(columns="b"))
    with pytest.raises(InputError, match="2-D"):
        model.predict(X[0])
    with pytest.raises(InputError, match="3 columns"):
        model.predict(X[:, :2])
    with pytest.raises(NonFiniteValueError, match="'b'"):
        model.predict(frame.assign(b=np.nan))
    with pytest.raises(InputError, match="numeric"):
        model.predict(frame.assign(a="x"))


# -- Gaussian Naive Bayes against scikit-learn --------------------------------------------------------


def random_classes(seed, n, d, n_classes, labels="int"):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (n_classes, d))
    scales = np.exp(rng.uniform(-1, 1, (n_classes, d)))
    y_idx = rng.integers(0, n_classes, n)
    y_idx[: 2 * n_classes] = np.tile(np.arange(n_classes), 2)  # every class present, twice at least
    X = centers[y_idx] + scales[y_idx] * rng.normal(size=(n, d)) + rng.normal(0, 50, d)
    names = {"int": [10 * i - 5 for i in range(n_classes)], "str": [f"class {chr(97 + i)}" for i in range(n_classes)]}[labels]
    y = np.array(names)[y_idx]
    return X, y


def assert_gaussian_matches(model, ref, X_test):
    assert model.classes_.tolist() == ref.classes_.tolist()
    assert_close(model.class_count_, ref.class_count_, what="class_count_")
    assert_close(model.class_prior_, ref.class_prior_, what="class_prior_")
    assert_close(model.theta_, ref.theta_, what="theta_")
    assert_close(model.var_, ref.var_, what="var_")
    assert_close(model.epsilon_, ref.epsilon_, what="epsilon_")
    assert_close(model.predict_proba(X_test), ref.predict_proba(X_test), rtol=1e-9, atol=1e-12, what="proba")
    assert_close(model.predict_joint_log_proba(X_test), ref.predict_joint_log_proba(X_test), what="jll")
    assert model.predict(X_test).tolist() == ref.predict(X_test).tolist()


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(8, 150), d=st.integers(1, 5), n_classes=st.integers(1, 4),
       var_smoothing=st.sampled_from([0.0, 1e-9, 1e-4, 0.1, 2.0]), labels=st.sampled_from(["int", "str"]))
def test_gaussian_nb_equals_sklearn(seed, n, d, n_classes, var_smoothing, labels):
    X, y = random_classes(seed, n, d, n_classes, labels)
    features = [f"f{i}" for i in range(d)]
    X_test = X + np.random.default_rng(seed + 1).normal(0, 1, X.shape)
    ref = SkGaussianNB(var_smoothing=var_smoothing).fit(X, y)
    k = n // 2
    whole = GaussianNBStats.from_rows(features, X, y)
    merged = GaussianNBStats.from_rows(features, X[:k], y[:k]) + GaussianNBStats.from_rows(features, X[k:], y[k:])
    # rows from the same population, added then removed (the statistics index's unmerge)
    extra = GaussianNBStats.from_rows(features, X[::-1] + np.random.default_rng(seed + 2).normal(0, 1, X.shape), y[::-1])
    for stats in (whole, merged, (whole + extra) - extra):
        model = GaussianNB.from_stats(stats, var_smoothing=var_smoothing)
        assert_gaussian_matches(model, ref, X_test)
        assert model.n_features_in_ == d and model.feature_names_in_.tolist() == features
        assert model.rows_used == n and model.rows_skipped == 0


def test_gaussian_nb_fixed_case():
    X, y = random_classes(42, 60, 3, 3, "str")
    ref = SkGaussianNB().fit(X, y)
    stats = GaussianNBStats.from_rows(["a", "b", "c"], X, y, null_rows=2)
    model = GaussianNB.from_stats(stats, name="g")
    assert_gaussian_matches(model, ref, X)
    assert model.rows_skipped == 2 and model.name == "g"
    assert_close(model.epsilon_, 1e-9 * np.var(X, axis=0).max())
    assert_close(model.predict_log_proba(X), ref.predict_log_proba(X), rtol=1e-9, atol=1e-9)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])[["c", "b", "a"]]
    assert model.predict(frame).tolist() == ref.predict(X).tolist()
    assert model.score(X, y) == ref.score(X, y)
    assert "GaussianNB 'g'" in repr(model)
    fitted = GaussianNB().fit(pd.DataFrame(X, columns=["a", "b", "c"]), y)
    np.testing.assert_array_equal(fitted.theta_, model.theta_)


def test_gaussian_nb_single_class_like_sklearn():
    X = np.random.default_rng(0).normal(size=(10, 2))
    y = np.array(["only"] * 10)
    ref = SkGaussianNB().fit(X, y)
    model = GaussianNB.from_stats(GaussianNBStats.from_rows(["a", "b"], X, y))
    assert_gaussian_matches(model, ref, X)
    assert (model.predict_proba(X) == 1).all()


@pytest.mark.parametrize("bad", [-1e-9, math.nan, math.inf, "1e-9", None])
def test_var_smoothing_is_validated(bad):
    stats = GaussianNBStats.from_rows(["a"], [[1.0], [2.0]], [0, 1])
    with pytest.raises(InputError, match="var_smoothing"):
        GaussianNB.from_stats(stats, var_smoothing=bad)


# -- Multinomial Naive Bayes against scikit-learn ----------------------------------------------------


def random_counts(seed, n, d, n_classes):
    rng = np.random.default_rng(seed)
    rates = rng.gamma(1.0, 3.0, (n_classes, d))
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)
    X = rng.poisson(rates[y]).astype(float)
    return X, y


def assert_multinomial_matches(model, ref, X_test):
    assert model.classes_.tolist() == ref.classes_.tolist()
    assert_close(model.class_count_, ref.class_count_, what="class_count_")
    assert_close(model.feature_count_, ref.feature_count_, what="feature_count_")
    assert_close(model.class_log_prior_, ref.class_log_prior_, what="class_log_prior_")
    np.testing.assert_allclose(model.feature_log_prob_, ref.feature_log_prob_, rtol=RTOL, err_msg="feature_log_prob_")
    assert_close(model.predict_proba(X_test), ref.predict_proba(X_test), rtol=1e-9, atol=1e-12, what="proba")
    assert model.predict(X_test).tolist() == ref.predict(X_test).tolist()


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 150), d=st.integers(1, 6), n_classes=st.integers(1, 4),
       alpha=st.sampled_from([1.0, 0.5, 0.01, 1e-12, 3.0]))
def test_multinomial_nb_equals_sklearn(seed, n, d, n_classes, alpha):
    X, y = random_counts(seed, n, d, n_classes)
    features = [f"w{i}" for i in range(d)]
    ref = SkMultinomialNB(alpha=alpha).fit(X, y)
    X_test = np.random.default_rng(seed + 1).poisson(2.0, (20, d)).astype(float)
    k = n // 2
    whole = MultinomialNBStats.from_rows(features, X, y)
    merged = MultinomialNBStats.from_rows(features, X[:k], y[:k]) + MultinomialNBStats.from_rows(features, X[k:], y[k:])
    for stats in (whole, merged, (whole + whole) - whole):
        assert_multinomial_matches(MultinomialNB.from_stats(stats, alpha=alpha), ref, X_test)


def test_multinomial_nb_alpha_zero_and_per_feature_alpha():
    X, y = random_counts(8, 80, 4, 3)
    X = X + 1  # every count positive, so alpha = 0 is finite
    stats = MultinomialNBStats.from_rows(["a", "b", "c", "d"], X, y)
    ref = SkMultinomialNB(alpha=0.0).fit(X, y)  # force_alpha=True: alpha stays 0
    assert_multinomial_matches(MultinomialNB.from_stats(stats, alpha=0), ref, X)
    per = [0.1, 1.0, 2.0, 0.0]
    assert_multinomial_matches(MultinomialNB.from_stats(stats, alpha=per), SkMultinomialNB(alpha=np.array(per)).fit(X, y), X)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ref = SkMultinomialNB(alpha=0.0, force_alpha=False).fit(X, y)
    with pytest.warns(UserWarning, match="alpha too small"):
        model = MultinomialNB.from_stats(stats, alpha=0.0, force_alpha=False)
    assert_multinomial_matches(model, ref, X)
    ref = SkMultinomialNB(fit_prior=False).fit(X, y)
    assert_multinomial_matches(MultinomialNB.from_stats(stats, fit_prior=False), ref, X)
    ref = SkMultinomialNB(class_prior=[0.2, 0.3, 0.5]).fit(X, y)
    assert_multinomial_matches(MultinomialNB.from_stats(stats, class_prior=[0.2, 0.3, 0.5]), ref, X)


def test_multinomial_nb_zero_count_with_alpha_zero_is_minus_inf_like_sklearn():
    X = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    y = np.array([0, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = SkMultinomialNB(alpha=0.0).fit(X, y)
    model = MultinomialNB.from_stats(MultinomialNBStats.from_rows(["a", "b"], X, y), alpha=0.0)
    np.testing.assert_array_equal(model.feature_log_prob_, ref.feature_log_prob_)
    assert np.isneginf(model.feature_log_prob_[0, 1])


def test_multinomial_nb_single_class_and_labels():
    X, _ = random_counts(1, 12, 3, 1)
    y = np.array(["spam"] * 12)
    ref = SkMultinomialNB().fit(X, y)
    model = MultinomialNB.from_stats(MultinomialNBStats.from_rows(["a", "b", "c"], X, y))
    assert_multinomial_matches(model, ref, X)
    assert model.predict(X[:2]).tolist() == ["spam", "spam"]


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf, "1", [1.0, -1.0], [[1.0]]])
def test_alpha_is_validated(bad):
    stats = MultinomialNBStats.from_rows(["a", "b"], [[1.0, 2.0], [0.0, 1.0]], [0, 1])
    with pytest.raises(InputError, match="alpha"):
        MultinomialNB.from_stats(stats, alpha=bad)


def test_alpha_per_feature_must_match_features():
    stats = MultinomialNBStats.from_rows(["a", "b"], [[1.0, 2.0], [0.0, 1.0]], [0, 1])
    with pytest.raises(InputError, match="one per feature"):
        MultinomialNB.from_stats(stats, alpha=[1.0, 1.0, 1.0])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_naive_bayes_bad_statistics():
    with pytest.raises(RangeError, match="no complete rows"):
        GaussianNB.from_stats(GaussianNBStats(["a"], null_rows=2))
    with pytest.raises(RangeError, match="no complete rows"):
        MultinomialNB.from_stats(MultinomialNBStats(["a"]))
    with pytest.raises(InputError, match="non-negative"):
        MultinomialNB.from_stats(MultinomialNBStats.from_rows(["a", "b"], [[1.0, -2.0], [0.0, 1.0]], [0, 1]))
    with pytest.raises(InputError, match="GaussianNBStats"):
        GaussianNB.from_stats(MultinomialNBStats.from_rows(["a"], [[1.0]], [0]))
    with pytest.raises(NonFiniteValueError):
        GaussianNB.from_stats(GaussianNBStats.from_rows(["a"], [[1.0], [np.nan]], [0, 1]))


# -- catalog state round trip ----------------------------------------------------------------------


def _round_trip(model):
    text = json.dumps(model.to_state(), allow_nan=False)
    return type(model).from_state(json.loads(text))


def test_linear_state_round_trip():
    X, y = random_regression(21, 35, 3)
    for l2 in (0.0, 2.5):
        model = LinearRegression.from_stats(linear_stats(X, y, ["a", "b", "c"], "t"), l2=l2, name="m1")
        back = _round_trip(model)
        np.testing.assert_array_equal(back.coef_, model.coef_)
        assert back.intercept_ == model.intercept_ and back.l2 == l2 and back.name == "m1" and back.target_ == "t"
        pd.testing.assert_frame_equal(back.summary(), model.summary())
        pd.testing.assert_frame_equal(back.cov_params(), model.cov_params())
        assert back.fit_figures() == model.fit_figures()
        np.testing.assert_array_equal(back.predict(X), model.predict(X))
        assert repr(back) == repr(model)


def test_linear_state_round_trip_with_undefined_figures():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(3, 4)), rng.normal(size=3)
    model = LinearRegression.from_stats(linear_stats(X, y), l2=1.0)
    back = _round_trip(model)
    pd.testing.assert_frame_equal(back.summary(), model.summary())
    assert back.fit_figures() == model.fit_figures()


def test_naive_bayes_state_round_trip():
    X, y = random_classes(5, 40, 3, 3, "str")
    g = GaussianNB.from_stats(GaussianNBStats.from_rows(["a", "b", "c"], X, y), var_smoothing=1e-3, name="g")
    back = _round_trip(g)
    for attr in ("classes_", "class_count_", "class_prior_", "theta_", "var_", "feature_names_in_"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(g, attr))
    assert back.epsilon_ == g.epsilon_ and back.var_smoothing == 1e-3 and back.name == "g"
    np.testing.assert_array_equal(back.predict_proba(X), g.predict_proba(X))

    Xc, yc = random_counts(6, 40, 3, 2)
    for alpha in (1.0, [0.5, 0.0, 2.0]):
        m = MultinomialNB.from_stats(MultinomialNBStats.from_rows(["a", "b", "c"], Xc, yc), alpha=alpha)
        back = _round_trip(m)
        for attr in ("classes_", "class_count_", "feature_count_", "class_log_prior_", "feature_log_prob_"):
            np.testing.assert_array_equal(getattr(back, attr), getattr(m, attr))
        assert back.classes_.dtype == m.classes_.dtype
        np.testing.assert_array_equal(back.predict(Xc), m.predict(Xc))


def test_state_of_the_wrong_kind_is_refused():
    g = GaussianNB.from_stats(GaussianNBStats.from_rows(["a"], [[1.0], [2.0], [3.0]], [0, 1, 1]))
    with pytest.raises(InputError, match="linear"):
        LinearRegression.from_state(g.to_state())
    with pytest.raises(InputError, match="multinomial_nb"):
        MultinomialNB.from_state(g.to_state())
