"""The logistic mixture (paper §4, Algorithms 1–2, Theorem 1) against scikit-learn and scipy; no database.

- a chunk model is the minimiser of F(w, b) = mean log-loss + λ‖w‖² (checked with scipy.optimize on F);
- the size-weighted mixture of p chunk models stays within Theorem 1's bound of the model trained on
  all rows with the same objective, and its accuracy within the DESIGN §7 targets of that model;
- chunks are cut without splitting ties (property tests), states round-trip exactly through JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from modelstore.errors import InputError, NonFiniteValueError, UnknownColumnError
from modelstore.models.logistic import (
    DEFAULT_L2,
    ChunkModel,
    LogisticMixture,
    fit_mixture,
    split_chunks,
    train_chunk,
    train_chunks,
)

FEATURES = ["a", "b", "c", "d", "e"]


def synthetic(seed: int, n: int, *, d: int = 5, k: int = 2):
    """Correlated features with offsets and a nonlinear dependence; labels from a (multinomial) logit."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    cov = A @ A.T / d + 0.5 * np.eye(d)
    X = rng.normal(size=(n, d)) @ np.linalg.cholesky(cov).T + rng.normal(0, 1, d)
    X[:, -1] += 0.5 * X[:, 0] * X[:, 1]
    W = rng.normal(0, 1, (1 if k == 2 else k, d))
    z = X @ W.T + rng.normal(0, 0.5, W.shape[0])
    if k == 2:
        y = (rng.random(n) < scipy.special.expit(z[:, 0])).astype(int)
    else:
        y = np.argmax(z + rng.gumbel(size=z.shape), axis=1)  # a draw from softmax(z)
    return X, y


def full_fit(X, y, l2):
    """scikit-learn's model of F on all rows: C = 1 / (2·λ·n)."""
    return LogisticRegression(C=1 / (2 * l2 * len(y)), tol=1e-10, max_iter=10_000).fit(X, y)


def params(coef, intercept) -> np.ndarray:
    """[coef | intercept] with multinomial intercepts centred (the loss cannot see a common shift)."""
    coef, intercept = np.asarray(coef), np.asarray(intercept, dtype=float)
    if coef.shape[0] > 1:
        intercept = intercept - intercept.mean()
    return np.column_stack([coef, intercept])


# -- the objective ----------------------------------------------------------------------------------


def objective(theta, X, codes, l2, k):
    """F(w, b) = (1/m) Σ L + λ‖w‖² and its gradient, written independently of scikit-learn."""
    m, d = X.shape
    rows = 1 if k == 2 else k
    W, b = theta[: rows * d].reshape(rows, d), theta[rows * d:]
    Z = X @ W.T + b
    if k == 2:
        z = Z[:, 0]
        loss = np.mean(np.logaddexp(0, z) - codes * z)
        R = (scipy.special.expit(z) - codes)[:, None]
    else:
        loss = np.mean(scipy.special.logsumexp(Z, axis=1) - Z[np.arange(m), codes])
        R = scipy.special.softmax(Z, axis=1)
        R[np.arange(m), codes] -= 1
    value = loss + l2 * np.sum(W * W)
    grad = np.concatenate([(R.T @ X / m + 2 * l2 * W).ravel(), R.mean(axis=0)])
    return value, grad


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("l2", [1e-4, 1e-2, 0.3])
def test_c_reproduces_the_minimiser_of_the_stated_objective(k, l2):
    X, y = synthetic(7, 400, d=3, k=k)
    rows = 1 if k == 2 else k
    res = scipy.optimize.minimize(
        objective, np.zeros(rows * 4), args=(X, y, l2, k), jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 10_000}
    )
    expected = params(res.x[: rows * 3].reshape(rows, 3), res.x[rows * 3:])
    chunk = train_chunk(X, y, l2=l2, classes=range(k))
    got = params(chunk.coef, chunk.intercept)
    np.testing.assert_allclose(got, expected, atol=1e-6 * max(1.0, np.abs(expected).max()))
    assert objective(np.concatenate([chunk.coef.ravel(), chunk.intercept]), X, y, l2, k)[0] <= res.fun + 1e-12
    # and scikit-learn on the raw (uncentred) rows with that C gives the same model
    ref = full_fit(X, y, l2)
    np.testing.assert_allclose(got, params(ref.coef_, ref.intercept_), atol=1e-6 * max(1.0, np.abs(expected).max()))


def test_intercept_is_not_penalised():
    # a large offset in y's odds is taken by the intercept at full size, even with a large λ
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 1))
    y = (rng.random(2000) < 0.95).astype(int)
    chunk = train_chunk(X, y, l2=10.0, classes=[0, 1])
    assert abs(chunk.coef[0, 0]) < 1e-3
    assert chunk.intercept[0] == pytest.approx(math.log(y.mean() / (1 - y.mean())), abs=1e-3)


def badly_scaled(n=5000):
    """Features of scales 10⁶, 1 and 10⁻³ around an offset of 1000."""
    rng = np.random.default_rng(1)
    scales = np.array([1e6, 1.0, 1e-3])
    X = 1000 + rng.normal(size=(n, 3)) * scales
    y = (rng.random(n) < scipy.special.expit((X - 1000) @ (np.array([1, -1, 1]) / scales))).astype(int)
    return X, y


def test_badly_scaled_features_still_reach_the_minimum():
    # lbfgs stops short here (its tolerance is on the raw gradient); the fallback reaches the minimum
    X, y = badly_scaled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chunk = train_chunk(X, y, l2=1e-4, classes=[0, 1])
    _, grad = objective(np.r_[chunk.coef[0], chunk.intercept], X, y, 1e-4, 2)
    assert np.all(np.abs(grad[:3] / X.std(axis=0)) < 1e-6) and abs(grad[3]) < 1e-6


def test_an_unreachable_minimum_warns_naming_the_chunk():
    # at l2 = 1e-8 the Hessian's condition number is ~1e18: no float64 solver gets there
    X, y = badly_scaled()
    with pytest.warns(UserWarning, match=r"the chunk \[1, 5000\] .*rescaling"):
        train_chunk(X, y, l2=1e-8, classes=[0, 1], lo=1, hi=5000)


# -- mixture against the full fit (Theorem 1, DESIGN §7) -------------------------------------------


@pytest.mark.parametrize("k", [2, 3])
def test_mixture_is_within_theorem1_and_accuracy_targets(k):
    l2 = DEFAULT_L2
    gaps, train_gaps, lines = [], [], []
    for seed in range(3):
        X, y = synthetic(seed, 30_000, k=k)
        X_test, y_test, X, y = X[20_000:], y[20_000:], X[:20_000], y[:20_000]
        full = full_fit(X, y, l2)
        w_full = params(full.coef_, full.intercept_)
        for l in (1000, 2500, 5000):
            chunks = train_chunks(np.arange(len(y)), X, y, chunk_rows=l, l2=l2, classes=range(k))
            mix = LogisticMixture.from_chunks(chunks, FEATURES)
            assert mix.n_chunks == len(y) // l and sum(mix.chunk_rows) == len(y)
            bound = mix.theorem1_bound(0.05)
            dist_coef = float(np.linalg.norm(mix.coef_ - full.coef_))
            dist_all = float(np.linalg.norm(params(mix.coef_, mix.intercept_) - w_full))
            assert dist_coef <= bound and dist_all <= bound
            gap = 100 * (full.score(X_test, y_test) - mix.score(X_test, y_test))
            train_gap = 100 * (full.score(X, y) - mix.score(X, y))
            gaps.append(gap)
            train_gaps.append(train_gap)
            lines.append(
                f"k={k} seed={seed} l={l:5d} p={mix.n_chunks:2d}: ‖w_μ−w‖ coef {dist_coef:.4f}, with intercept "
                f"{dist_all:.4f}, bound {bound:.0f} (R={mix.bound_inputs['R']:.2f}); accuracy gap test {gap:+.2f} pt, "
                f"train {train_gap:+.2f} pt"
            )
    print("\n" + "\n".join(lines))
    print(f"k={k}: test accuracy gap mean {np.mean(gaps):+.3f} pt, worst {max(gaps):+.3f} pt; "
          f"train mean {np.mean(train_gaps):+.3f} pt, worst {max(train_gaps):+.3f} pt")
    # DESIGN §7: accuracy gap to a full fit ≤ 0.5 pt mean, ≤ 2 pt worst
    assert np.mean(gaps) <= 0.5 and max(gaps) <= 2.0
    assert np.mean(train_gaps) <= 0.5 and max(train_gaps) <= 2.0


@pytest.mark.parametrize("k", [2, 3])
def test_mixture_of_one_chunk_is_the_full_fit(k):
    X, y = synthetic(11, 3000, k=k)
    mix = fit_mixture(pd.DataFrame(X, columns=FEATURES), y, chunk_rows=10_000)
    assert mix.n_chunks == 1 and mix.chunk_rows == [3000]
    full = full_fit(X, y, DEFAULT_L2)
    # equal to the solvers' tolerance (scikit-learn on the uncentred rows is the less accurate of the two)
    np.testing.assert_allclose(params(mix.coef_, mix.intercept_), params(full.coef_, full.intercept_), rtol=1e-6, atol=1e-6)
    assert mix.theorem1_bound() > 0
    # averaging one chunk leaves its model bit for bit
    chunk = train_chunk(X, y, l2=DEFAULT_L2, classes=range(k))
    one = LogisticMixture.from_chunks([chunk], FEATURES)
    assert np.array_equal(one.coef_, chunk.coef) and np.array_equal(one.intercept_, chunk.intercept)
    assert (one.predict(X) == full.predict(X)).mean() > 0.999


def test_weights_are_the_chunk_sizes():
    X, y = synthetic(5, 4000, k=3)
    small = train_chunk(X[:1000], y[:1000], classes=[0, 1, 2], lo=0, hi=999)
    large = train_chunk(X[1000:], y[1000:], classes=[0, 1, 2], lo=1000, hi=3999)
    mix = LogisticMixture.from_chunks([small, large], FEATURES, name="weighted")
    np.testing.assert_allclose(mix.coef_, 0.25 * small.coef + 0.75 * large.coef, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(mix.intercept_, 0.25 * small.intercept + 0.75 * large.intercept, rtol=1e-15, atol=1e-15)
    assert not np.allclose(mix.coef_, (small.coef + large.coef) / 2)
    assert mix.chunk_rows == [1000, 3000] and mix.rows_used == 4000 and mix.n_chunks == 2
    assert mix.chunk_ranges == [(0, 999), (1000, 3999)]
    assert mix.class_count_.tolist() == np.bincount(y).tolist()
    assert mix.bound_inputs == {"R": max(small.r_max, large.r_max), "l2": DEFAULT_L2, "p": 2, "l": 2000.0, "rows": 4000}
    assert small.r_max == pytest.approx(np.linalg.norm(X[:1000], axis=1).max())
    assert small.accuracy == pytest.approx(np.mean(np.argmax(X[:1000] @ small.coef.T + small.intercept, axis=1) == y[:1000]))


def test_theorem1_bound_formula():
    X, y = synthetic(2, 3000)
    chunks = train_chunks(np.arange(3000), X, y, chunk_rows=1000, l2=0.01)
    mix = LogisticMixture.from_chunks(chunks, FEATURES)
    R, lam, p, l, n = (mix.bound_inputs[k] for k in ("R", "l2", "p", "l", "rows"))
    assert (p, l, n, lam) == (3, 1000.0, 3000, 0.01)
    expected = R * math.sqrt(2) / lam * (1 / math.sqrt(l) + 1 / math.sqrt(n)) + 2 * math.sqrt(2) * R / (
        lam * math.sqrt(p * l)
    ) * math.sqrt(math.log(1 / 0.1))
    assert mix.theorem1_bound(0.1) == pytest.approx(expected, rel=1e-14)
    assert mix.theorem1_bound(0.01) > mix.theorem1_bound(0.1)
    for bad in (0, 1, -0.5, 1.5, True, "0.05", math.nan):
        with pytest.raises(InputError, match="delta"):
            mix.theorem1_bound(bad)


# -- bad input --------------------------------------------------------------------------------------


def test_a_class_missing_from_a_chunk_is_named():
    X, y = synthetic(4, 300, k=3)
    labels = np.array(["apple", "banana", "cherry"])[y]
    rows = labels != "cherry"
    with pytest.raises(InputError) as info:
        train_chunk(X[rows], labels[rows], classes=["apple", "banana", "cherry"], lo=100, hi=199)
    message = str(info.value)
    assert "'cherry'" in message and "[100, 199]" in message and "chunk size" in message
    assert "'apple'" in message  # the request's classes are listed


def test_train_chunks_reports_the_range_of_the_chunk_without_a_class():
    X, y = synthetic(4, 3000)
    y[2000:] = 0  # the last chunk has no row of class 1
    order = np.arange(10_000, 13_000)
    with pytest.raises(InputError, match=r"\[12000, 12999\].*\[1\]"):
        train_chunks(order, X, y, chunk_rows=1000, classes=[0, 1])


def test_bad_chunks_are_refused():
    X, y = synthetic(4, 50)
    with pytest.raises(InputError, match="at least 2 rows"):
        train_chunk(X[:1], y[:1], classes=[0, 1])
    X_nan = X.copy()
    X_nan[3, 2] = np.nan
    with pytest.raises(NonFiniteValueError, match="x3"):
        train_chunk(X_nan, y, classes=[0, 1])
    X_inf = pd.DataFrame(X, columns=FEATURES)
    X_inf.loc[0, "d"] = np.inf
    with pytest.raises(NonFiniteValueError, match="'d'"):
        train_chunk(X_inf, y, classes=[0, 1])
    for bad in (0, 0.0, -1e-3, math.inf, math.nan, True, "0.1"):
        with pytest.raises(InputError, match="l2"):
            train_chunk(X, y, l2=bad, classes=[0, 1])
    with pytest.raises(InputError, match="at least two classes"):
        train_chunk(X, np.zeros(50, int), classes=[0])
    with pytest.raises(InputError, match="label 7"):
        train_chunk(X, np.where(y == 1, 7, 0), classes=[0, 1])
    with pytest.raises(InputError, match="NULL"):
        train_chunk(X, np.array([None, *y[1:]], dtype=object), classes=[0, 1])
    with pytest.raises(InputError, match="rows"):
        train_chunk(X, y[:-1], classes=[0, 1])
    with pytest.raises(InputError, match="2-D"):
        train_chunk(X[:, 0], y, classes=[0, 1])


def test_from_chunks_checks_that_the_chunks_agree():
    X, y = synthetic(6, 2000, k=3)
    a = train_chunk(X[:1000], y[:1000], classes=[0, 1, 2], lo=1, hi=1000)
    b = train_chunk(X[1000:], y[1000:], classes=[0, 1, 2], lo=1001, hi=2000)
    with pytest.raises(InputError, match="at least one"):
        LogisticMixture.from_chunks([], FEATURES)
    with pytest.raises(InputError, match="classes"):
        LogisticMixture.from_chunks([a, train_chunk(X[1000:], np.minimum(y[1000:], 1), classes=[0, 1])], FEATURES)
    with pytest.raises(InputError, match="l2"):
        LogisticMixture.from_chunks([a, train_chunk(X[1000:], y[1000:], l2=0.5, classes=[0, 1, 2])], FEATURES)
    with pytest.raises(InputError, match="number of features"):
        LogisticMixture.from_chunks([a, train_chunk(X[1000:, :4], y[1000:], classes=[0, 1, 2])], FEATURES)
    with pytest.raises(InputError, match="5 feature"):
        LogisticMixture.from_chunks([a, b], FEATURES[:4])
    with pytest.raises(InputError, match="distinct"):
        LogisticMixture.from_chunks([a, b], ["a", "a", "b", "c", "d"])
    with pytest.raises(InputError, match="ChunkModel"):
        LogisticMixture.from_chunks([a, b.to_state()], FEATURES)


# -- labels, prediction, reporting ------------------------------------------------------------------


def sklearn_twin(mix: LogisticMixture) -> LogisticRegression:
    """A scikit-learn LogisticRegression holding the mixture's parameters."""
    twin = LogisticRegression()
    twin.classes_ = mix.classes_
    twin.coef_ = mix.coef_
    twin.intercept_ = mix.intercept_
    twin.n_features_in_ = mix.n_features_in_
    return twin


@pytest.mark.parametrize("k,labels", [(2, "bool"), (2, "str"), (3, "str"), (3, "int")])
def test_predictions_match_scikit_learn_semantics(k, labels):
    X, y = synthetic(8, 4000, k=k)
    names = {"bool": np.array([False, True]), "str": np.array(["high", "low", "mid"]), "int": np.array([-5, 3, 40])}[labels]
    names = names[:k]
    y_lab = names[y]
    mix = fit_mixture(X, y_lab, chunk_rows=1000, name="m")
    assert mix.classes_.tolist() == sorted(names.tolist())
    assert mix.coef_.shape == ((1 if k == 2 else k), 5) and mix.intercept_.shape == ((1 if k == 2 else k),)
    twin = sklearn_twin(mix)
    X_new = synthetic(9, 500, k=k)[0]
    np.testing.assert_allclose(mix.predict_proba(X_new), twin.predict_proba(X_new), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mix.decision_function(X_new), twin.decision_function(X_new), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mix.predict_log_proba(X_new), np.log(twin.predict_proba(X_new)), rtol=1e-9, atol=1e-12)
    assert (mix.predict(X_new) == twin.predict(X_new)).all()
    assert mix.predict(X_new).dtype == names.dtype or labels == "str"
    assert mix.training_accuracy_ == pytest.approx(mix.score(X, y_lab))
    assert mix.training_accuracy_ > 0.6


def test_predict_log_proba_does_not_overflow():
    X, y = synthetic(8, 2000)
    mix = fit_mixture(X, y, chunk_rows=1000)
    far = np.full((2, 5), 1e6) * np.array([[1], [-1]])
    lp = mix.predict_log_proba(far)
    assert np.isfinite(lp).all() and np.allclose(np.exp(lp).sum(axis=1), 1)


def test_predict_on_a_dataframe_matches_columns_by_name():
    X, y = synthetic(10, 3000, k=3)
    mix = fit_mixture(pd.DataFrame(X, columns=FEATURES), y, chunk_rows=1000)
    X_new = synthetic(12, 200, k=3)[0]
    frame = pd.DataFrame(X_new, columns=FEATURES)
    shuffled = frame[["d", "b", "e", "a", "c"]].assign(extra="ignored")
    assert mix.feature_names_in_.tolist() == FEATURES and mix.n_features_in_ == 5
    np.testing.assert_array_equal(mix.predict_proba(shuffled), mix.predict_proba(X_new))
    np.testing.assert_array_equal(mix.predict(shuffled), mix.predict(X_new))
    assert mix.score(shuffled, mix.predict(X_new)) == 1.0
    with pytest.raises(UnknownColumnError, match="'c'"):
        mix.predict(frame.drop(columns="c"))
    with pytest.raises(InputError, match="5 columns"):
        mix.predict(X_new[:, :4])


def test_summary_and_repr():
    X, y = synthetic(13, 3000, k=3)
    mix = fit_mixture(pd.DataFrame(X, columns=FEATURES), np.array(["x", "y", "z"])[y], chunk_rows=1000, name="sales_q1")
    s = mix.summary()
    assert s.index.tolist() == ["intercept", *FEATURES] and s.columns.tolist() == ["x", "y", "z"]
    np.testing.assert_array_equal(s.loc[FEATURES].to_numpy(), mix.coef_.T)
    np.testing.assert_array_equal(s.loc["intercept"].to_numpy(), mix.intercept_)
    text = repr(mix)
    assert "'sales_q1'" in text and "3 chunk(s)" in text and "n=3000" in text and "accuracy=" in text
    binary = fit_mixture(X, (y == 0), chunk_rows=1000)
    assert binary.summary().columns.tolist() == ["coef"]
    assert binary.summary()["coef"].tolist() == [binary.intercept_[0], *binary.coef_[0]]
    assert repr(LogisticMixture()) == f"LogisticMixture(l2={DEFAULT_L2!r}, name=None)"
    assert "ChunkModel [0, 999]" in repr(train_chunks(np.arange(3000), X, y, chunk_rows=1000)[0])


# -- state ------------------------------------------------------------------------------------------


def roundtrip(state: dict) -> dict:
    return json.loads(json.dumps(state, allow_nan=False))


@pytest.mark.parametrize(
    "lo,hi",
    [
        (1, 1000),
        (0.5, 1e300),
        ("2024-01-01", "2024-01-31"),
        (Decimal("1.10"), Decimal("99.90")),
        (dt.date(2024, 1, 1), dt.date(2024, 2, 1)),
        (dt.datetime(2024, 1, 1, 8, 30), dt.datetime(2024, 1, 1, 9, 0, 0, 123456)),
        (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2024, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        (None, None),
    ],
)
def test_chunk_state_round_trip_is_exact(lo, hi):
    X, y = synthetic(14, 500, k=3)
    chunk = train_chunk(X, np.array(["b", "a", "c"])[y], classes={"a", "b", "c"}, lo=lo, hi=hi)
    back = ChunkModel.from_state(roundtrip(chunk.to_state()))
    assert back == chunk
    assert type(back.lo) is type(chunk.lo) and back.lo == lo and back.hi == hi
    assert np.array_equal(back.coef, chunk.coef) and back.coef.shape == (3, 5)
    assert back.classes == ("a", "b", "c") and back.class_counts == tuple(np.bincount(y)[[1, 0, 2]])
    assert back.r_max == chunk.r_max and back.accuracy == chunk.accuracy and back.l2 == chunk.l2


def test_chunk_model_is_immutable_and_compares_by_value():
    X, y = synthetic(15, 500)
    chunk = train_chunk(X, y.astype(bool), classes=[True, False], lo=np.int64(3), hi=np.int64(9))
    assert chunk.classes == (False, True) and type(chunk.lo) is int
    with pytest.raises(AttributeError):
        chunk.n = 3
    with pytest.raises(ValueError):
        chunk.coef[0, 0] = 1.0
    again = train_chunk(X, y.astype(bool), classes=[False, True], lo=3, hi=9)
    assert chunk == again and chunk != train_chunk(X, y.astype(bool), classes=[False, True], lo=3, hi=10)
    back = ChunkModel.from_state(roundtrip(chunk.to_state()))
    assert back == chunk and back.classes == (False, True) and back.coef.shape == (1, 5)
    with pytest.raises(InputError):
        ChunkModel.from_state({"kind": "linear"})
    with pytest.raises(InputError, match="newer"):
        ChunkModel.from_state({**chunk.to_state(), "version": 99})


def test_numpy_datetime_bounds_become_datetimes():
    X, y = synthetic(16, 2000)
    order = np.datetime64("2024-01-01T00:00", "ns") + np.arange(2000) * np.timedelta64(1, "m")
    chunks = train_chunks(order, X, y, chunk_rows=1000)
    assert chunks[0].lo == dt.datetime(2024, 1, 1) and chunks[1].hi == dt.datetime(2024, 1, 2, 9, 19)
    assert ChunkModel.from_state(roundtrip(chunks[1].to_state())) == chunks[1]


@pytest.mark.parametrize("k", [2, 3])
def test_mixture_state_round_trip_is_exact(k):
    X, y = synthetic(17, 3000, k=k)
    order = [dt.date(2024, 1, 1) + dt.timedelta(days=i // 10) for i in range(3000)]
    chunks = train_chunks(order, X, np.array(["p", "q", "r"])[y], chunk_rows=1000)
    mix = LogisticMixture.from_chunks(chunks, FEATURES, name="daily")
    mix.rows_skipped = 4
    mix.training_accuracy_ = mix.score(X, np.array(["p", "q", "r"])[y])
    back = LogisticMixture.from_state(roundtrip(mix.to_state()))
    for attr in ("coef_", "intercept_", "classes_", "feature_names_in_", "class_count_"):
        assert np.array_equal(getattr(back, attr), getattr(mix, attr)), attr
    for attr in ("l2", "name", "n_chunks", "chunk_rows", "chunk_ranges", "chunk_accuracy", "rows_used",
                 "rows_skipped", "training_accuracy_", "n_features_in_", "bound_inputs", "r_max_"):
        assert getattr(back, attr) == getattr(mix, attr), attr
    assert back.theorem1_bound() == mix.theorem1_bound()
    assert back.chunk_ranges[0] == (dt.date(2024, 1, 1), dt.date(2024, 1, 1) + dt.timedelta(days=99))
    assert np.array_equal(back.predict_proba(X), mix.predict_proba(X))
    assert repr(back) == repr(mix)
    with pytest.raises(InputError):
        LogisticMixture.from_state({"kind": "linear"})


# -- cutting gaps into chunks -----------------------------------------------------------------------


def round_half_up(a: int, b: int) -> int:
    return math.floor(a / b + 0.5)


def check_partition(slices, n):
    assert [s.step for s in slices] == [None] * len(slices)
    assert all(s.stop > s.start for s in slices)
    assert (slices[0].start if slices else 0) == 0 and (slices[-1].stop if slices else 0) == n
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))


@given(values=st.lists(st.integers(0, 40), max_size=400).map(sorted), l=st.integers(1, 80))
def test_split_chunks_never_splits_a_tie(values, l):
    slices = split_chunks(values, l)
    n = len(values)
    check_partition(slices, n)
    for a, b in zip(slices, slices[1:]):
        assert values[a.stop - 1] < values[b.start]  # [lo, hi] ranges are disjoint
    if n:
        assert len(slices) <= max(1, round_half_up(n, l))
        assert min(s.stop - s.start for s in slices) >= min(n, l // 2)


@given(n=st.integers(0, 3000), l=st.integers(1, 700), offset=st.integers(-10**6, 10**6))
def test_split_chunks_without_ties_is_balanced(n, l, offset):
    slices = split_chunks(np.arange(n) * 3 + offset, l)
    check_partition(slices, n)
    if n == 0:
        assert slices == []
        return
    p = max(1, round_half_up(n, l))
    sizes = [s.stop - s.start for s in slices]
    assert len(slices) == p
    assert set(sizes) <= {n // p, -(-n // p)}
    if n >= l:
        assert all(0.75 * l - 1 <= size <= 1.5 * l + 1 for size in sizes)


def test_split_chunks_examples_and_types():
    assert split_chunks([1, 2, 3, 4, 5, 6], 2) == [slice(0, 2), slice(2, 4), slice(4, 6)]
    # p = 3: the first cut (2) moves to the end of the run of 1s (3); the 3 rows left make the other 2 chunks
    assert split_chunks([1, 1, 1, 2, 3, 4], 2) == [slice(0, 3), slice(3, 5), slice(5, 6)]
    assert split_chunks([1, 1, 1, 1, 1, 2], 4) == [slice(0, 6)]  # a tail under l/2 rows joins the run
    assert split_chunks([1, 1, 1, 1, 1, 2], 2) == [slice(0, 5), slice(5, 6)]
    assert split_chunks([5], 1000) == [slice(0, 1)]
    assert split_chunks([], 10) == []
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i // 3) for i in range(12)]
    assert split_chunks(days, 4) == [slice(0, 6), slice(6, 9), slice(9, 12)]  # the cut at 4 moves to 6
    assert split_chunks(pd.Series([0.5, 0.5, 1.5, 2.5]), 2) == [slice(0, 2), slice(2, 4)]
    stamps = pd.date_range("2024-01-01", periods=10, freq="h").to_numpy()
    assert split_chunks(stamps, 5) == [slice(0, 5), slice(5, 10)]
    assert split_chunks([Decimal("1.5"), Decimal("2.5"), Decimal("2.5")], 1) == [slice(0, 1), slice(1, 3)]


def test_split_chunks_bad_input():
    with pytest.raises(InputError, match="sorted"):
        split_chunks([3, 1, 2], 1)
    with pytest.raises(InputError, match="sorted"):
        split_chunks(np.array([3.0, 1.0]), 1)
    with pytest.raises(InputError, match="NULL"):
        split_chunks(np.array([1.0, np.nan]), 1)
    with pytest.raises(InputError, match="comparable"):
        split_chunks([1, None, 3], 1)
    for bad in (0, -5, 2.5, True, "10"):
        with pytest.raises(InputError, match="chunk_rows"):
            split_chunks([1, 2, 3], bad)


def test_train_chunks_follows_the_ordering_and_the_ties():
    X, y = synthetic(18, 2500)
    order = np.repeat(np.arange(500), 5)  # five rows per ordering value
    chunks = train_chunks(order, X, y, chunk_rows=1000)  # p = 3: cuts at 833 and 1668 move to 835 and 1670
    assert [c.n for c in chunks] == [835, 835, 830]
    assert [(c.lo, c.hi) for c in chunks] == [(0, 166), (167, 333), (334, 499)]
    assert all(type(c.lo) is int for c in chunks)
    with pytest.raises(InputError, match="one entry per row"):
        train_chunks(order[:-1], X, y, chunk_rows=1000)
