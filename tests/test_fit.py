"""Fits through PostgreSQL equal independent references on the same rows (statsmodels, scikit-learn),
and a request covered by stored statistics touches no base row."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import Ridge
from sklearn.naive_bayes import GaussianNB as SkGaussianNB
from sklearn.naive_bayes import MultinomialNB as SkMultinomialNB

import modelstore
from tests.helpers import catalog_counts, load_frame, rel_err, table_reads

N = 3000
FEATURES = ["x1", "x2", "x3", "x4"]


def make_frame(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 4)) * [1.0, 3.0, 0.5, 10.0] + [0.0, 50.0, -2.0, 1e3]
    X[:, 2] += 0.6 * X[:, 0]  # interdependent features, as in the paper's data
    y = 3.0 + X @ [1.5, -0.7, 2.0, 0.01] + rng.normal(0, 1.0, N)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["ts"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(N), unit="h")
    frame["y"] = y
    frame["region"] = rng.choice(["EU", "US", "APAC"], N)
    frame["cls"] = np.digitize(y + rng.normal(0, 2, N), np.quantile(y, [0.3, 0.7]))
    frame["c1"], frame["c2"], frame["c3"] = (rng.poisson(lam, N) for lam in (2.0, 5.0, 1.0))
    return frame


@pytest.fixture(scope="module")
def frame():
    return make_frame()


@pytest.fixture(scope="module")
def store(store, frame):
    """The shared store (tests/fixtures.py) with the table ``obs`` (``frame``)."""
    load_frame(store.conn, "obs", frame)
    return store


def rows(frame, lo, hi, where=None):
    sel = frame[(frame.id >= lo) & (frame.id <= hi)]
    return sel if where is None else sel[where(sel)]


def test_linear_equals_statsmodels(store, frame):
    m = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=101, hi=2500)
    sel = rows(frame, 101, 2500)
    ref = sm.OLS(sel.y.to_numpy(), sm.add_constant(sel[FEATURES].to_numpy())).fit()
    assert rel_err(np.r_[m.intercept_, m.coef_], ref.params) < 1e-9
    assert rel_err(m.bse, ref.bse) < 1e-9
    assert rel_err(m.tvalues, ref.tvalues) < 1e-9
    for ours, theirs in [(m.rsquared, ref.rsquared), (m.rsquared_adj, ref.rsquared_adj), (m.aic, ref.aic),
                         (m.bic, ref.bic), (m.llf, ref.llf), (m.fvalue, ref.fvalue), (m.ssr, ref.ssr),
                         (m.condition_number, ref.condition_number)]:
        assert rel_err(ours, theirs) < 1e-9
    assert rel_err(m.cov_params().to_numpy(), ref.cov_params()) < 1e-9
    assert m.n_obs == len(sel) == 2400 and m.rows_skipped == 0
    summary = m.summary()
    assert list(summary.index) == ["intercept", *FEATURES]
    assert rel_err(summary["p_value"].to_numpy(), ref.pvalues) < 1e-6  # p-values near 0 are tiny
    assert m.plan.rows_scanned == 2400 and m.plan.plan.scans


@pytest.mark.parametrize("l2", [0.1, 10.0, 1000.0])
def test_ridge_equals_sklearn(store, frame, l2):
    m = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1, hi=N, l2=l2)
    ref = Ridge(alpha=l2, solver="cholesky", tol=1e-12).fit(frame[FEATURES].to_numpy(), frame.y.to_numpy())
    assert rel_err(m.coef_, ref.coef_) < 1e-9
    assert rel_err(m.intercept_, ref.intercept_) < 1e-9


def test_gaussian_nb_equals_sklearn(store, frame):
    m = store.fit("gaussian_nb", table="obs", target="cls", features=FEATURES, order_by="id", lo=1, hi=2000)
    sel = rows(frame, 1, 2000)
    ref = SkGaussianNB().fit(sel[FEATURES].to_numpy(), sel.cls.to_numpy())
    assert list(m.classes_) == list(ref.classes_)
    for attr in ("theta_", "var_", "class_prior_", "class_count_"):
        assert rel_err(getattr(m, attr), getattr(ref, attr)) < 1e-9, attr
    X = frame[FEATURES].to_numpy()
    assert np.max(np.abs(m.predict_proba(X) - ref.predict_proba(X))) < 1e-9
    assert (m.predict(X) == ref.predict(X)).all()


@pytest.mark.parametrize("alpha", [1.0, 0.1])
def test_multinomial_nb_equals_sklearn(store, frame, alpha):
    feats = ["c1", "c2", "c3"]
    m = store.fit("multinomial_nb", table="obs", target="region", features=feats, order_by="id", lo=500, hi=N,
                  alpha=alpha)
    sel = rows(frame, 500, N)
    ref = SkMultinomialNB(alpha=alpha).fit(sel[feats].to_numpy(), sel.region.to_numpy())
    assert list(m.classes_) == list(ref.classes_)
    assert rel_err(m.feature_log_prob_, ref.feature_log_prob_) < 1e-9
    assert rel_err(m.class_log_prior_, ref.class_log_prior_) < 1e-9
    X = frame[feats].to_numpy()
    assert np.max(np.abs(m.predict_proba(X) - ref.predict_proba(X))) < 1e-9
    assert (m.predict(X) == ref.predict(X)).all()


def test_covered_request_touches_no_base_row(store, frame, module_dsn):
    import psycopg

    first = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1001, hi=2000)
    assert first.plan.rows_scanned == 1000
    with psycopg.connect(module_dsn, autocommit=True) as observer:
        before = table_reads(store.conn, observer, "obs")
        same = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1001, hi=2000)
        subset = store.fit("linear", table="obs", target="y", features=["x3", "x1"], order_by="id", lo=1001, hi=2000)
        ridge = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1001, hi=2000, l2=5.0)
        after = table_reads(store.conn, observer, "obs")
    assert after == before, "a covered request read base rows"
    for m in (same, subset, ridge):
        assert m.plan.rows_scanned == 0
        assert m.plan.stats_used == [first.plan.stored_stats_id]
    sel = rows(frame, 1001, 2000)
    ref = sm.OLS(sel.y.to_numpy(), sm.add_constant(sel[["x3", "x1"]].to_numpy())).fit()
    assert rel_err(np.r_[subset.intercept_, subset.coef_], ref.params) < 1e-9
    assert rel_err(ridge.coef_, Ridge(alpha=5.0).fit(sel[FEATURES], sel.y).coef_) < 1e-9
    assert np.array_equal(same.coef_, first.coef_)


def test_equal_filters_share_statistics(store, frame):
    a = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1, hi=N,
                  where="region = 'EU' AND x1 > 0")
    b = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1, hi=N,
                  where="(0 < X1) and Region='EU'  -- same filter")
    assert a.plan.rows_scanned > 0 and b.plan.rows_scanned == 0
    assert b.plan.stats_used == [a.plan.stored_stats_id]
    sel = rows(frame, 1, N, lambda s: (s.region == "EU") & (s.x1 > 0))
    ref = sm.OLS(sel.y.to_numpy(), sm.add_constant(sel[FEATURES].to_numpy())).fit()
    assert a.n_obs == len(sel) and rel_err(np.r_[b.intercept_, b.coef_], ref.params) < 1e-9
    other = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1, hi=N,
                      where="region = 'US' AND x1 > 0")
    assert other.plan.rows_scanned > 0  # a different filter is not served


def test_timestamp_ranges(store, frame):
    lo, hi = dt.datetime(2024, 1, 3), dt.datetime(2024, 2, 1, 12)
    m = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="ts", lo=lo, hi=hi)
    sel = frame[(frame.ts >= lo) & (frame.ts <= hi)]
    assert m.n_obs == len(sel)
    again = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="ts",
                      lo="2024-01-03", hi="2024-02-01T12:00:00")
    assert again.plan.rows_scanned == 0 and np.array_equal(again.coef_, m.coef_)


def test_default_range_is_whole_table(store, frame):
    m = store.fit("gaussian_nb", table="obs", target="region", features=["x1", "x2"], order_by="id")
    assert m.rows_used == N
    assert (m.descriptor.range.lo, m.descriptor.range.hi) == (1, N)


def test_nulls_are_skipped_and_reported(store):
    frame = pd.DataFrame({"id": np.arange(1, 11), "a": [1.0, 2, 3, None, 5, 6, 7, 8, 9, 10],
                          "b": [0.5, 1, 0, 2, None, 1, 3, 1, 0, 2],
                          "y": [1.0, 2.5, 2.9, 4.1, 5.2, 5.8, 7.5, 8.1, 8.7, 10.4]})
    load_frame(store.conn, "sparse", frame)
    m = store.fit("linear", table="sparse", target="y", features=["a", "b"], order_by="id", lo=1, hi=10)
    assert (m.n_obs, m.rows_skipped) == (8, 2)
    ref = sm.OLS(frame.dropna().y, sm.add_constant(frame.dropna()[["a", "b"]])).fit()
    assert rel_err(np.r_[m.intercept_, m.coef_], ref.params.to_numpy()) < 1e-9
    # the stored statistics skipped rows whose 'b' was NULL: they cannot serve a model without 'b'
    sub = store.fit("linear", table="sparse", target="y", features=["a"], order_by="id", lo=1, hi=10)
    assert sub.plan.rows_scanned == 10 and (sub.n_obs, sub.rows_skipped) == (9, 1)


def test_stored_model_round_trip(store, frame):
    m = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1, hi=777, name="first_777")
    loaded = store.model("first_777")
    X = frame[FEATURES].to_numpy()[:50]
    assert np.array_equal(loaded.predict(X), m.predict(X))
    assert loaded.plan.rows_scanned == m.plan.rows_scanned == 777
    assert str(loaded.plan).splitlines()[:2] == str(m.plan).splitlines()[:2]
    assert loaded.descriptor == m.descriptor
    listed = store.models()
    row = listed[listed.name == "first_777"].iloc[0]
    assert (row.kind, row.source, row.lo, row.hi, row.rows_used) == ("linear", "public.obs", "1", "777", 777)
    with pytest.raises(modelstore.InputError, match="already exists"):
        store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1, hi=10, name="first_777")
    replaced = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=1, hi=10,
                         name="first_777", replace=True)
    assert store.model("first_777").n_obs == replaced.n_obs == 10
    assert store.drop("first_777") and not store.drop("first_777", missing_ok=True)
    with pytest.raises(modelstore.ModelNotFoundError):
        store.model("first_777")


def test_materialize_off_writes_nothing(module_dsn, store):
    before = catalog_counts(store.conn)
    with modelstore.connect(module_dsn, materialize=False) as other:
        m = other.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=3, hi=333)
    assert m.n_obs == 331 and m.plan.stored_stats_id is None
    assert catalog_counts(store.conn) == before
