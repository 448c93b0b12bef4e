"""SGD-trained families (issue #17, docs/continuous.md): the optimizers against hand-computed steps, the
training against scikit-learn (the same trajectory step for step; convergence to the exact regularised
solution), warm start, the pipeline's online statistics, and the pipeline applied identically by the
three doors (Python predict, ML.PREDICT, modelstore.predict)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import psycopg
import pytest
from sklearn.linear_model import Lasso, LogisticRegression, Ridge, SGDClassifier, SGDRegressor

import modelstore
from modelstore.errors import InputError
from modelstore.models.optimizers import Optimizer, hyperparameters
from modelstore.models.pipeline import Pipeline, bucket
from modelstore.models.sgd import SGDModel


def params(optimizer="sgd", learning_rate=None, **kw):
    base = {**hyperparameters(optimizer, learning_rate), "l2": 0.0, "l1": 0.0, "epochs": 1, "batch_size": 1,
            "shuffle": False, "seed": 0, "hash_buckets": 0}
    base.update(kw)
    return base


def scaled_problem(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(scale=0.1, size=n)
    return X, y


def fresh_model(loss, p, d=3, classes=None):
    pipe = Pipeline([f"x{j}" for j in range(d)], [])
    return SGDModel("sgd_x", loss, p, pipe, classes)


# -- optimizers: one step by hand ----------------------------------------------------------------------------

THETA = np.array([0.5, -1.0])
GRAD = np.array([0.2, -0.4])


def test_plain_sgd_steps_by_hand():
    opt = Optimizer(hyperparameters("sgd", 0.1), 2)  # invscaling, power_t 0.5
    theta, rates = opt.step(THETA, GRAD)
    assert np.allclose(theta, [0.5 - 0.1 * 0.2, -1.0 + 0.1 * 0.4], rtol=0, atol=1e-15)
    theta, _ = opt.step(theta, GRAD)  # t = 2: η = 0.1/√2
    assert np.allclose(theta, [0.48 - 0.1 / math.sqrt(2) * 0.2, -0.96 + 0.1 / math.sqrt(2) * 0.4], atol=1e-15)
    assert np.allclose(rates, 0.1)


def test_adam_step_by_hand():
    opt = Optimizer(hyperparameters("adam", 0.01), 2)
    theta, _ = opt.step(THETA, GRAD)
    # t = 1: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g²: the step is η·g/(|g| + ε) ≈ η·sign(g)
    want = THETA - 0.01 * GRAD / (np.abs(GRAD) + 1e-8)
    assert np.allclose(theta, want, rtol=0, atol=1e-15)
    theta2, rates = opt.step(theta, np.array([0.1, 0.0]))
    m = 0.9 * 0.1 * GRAD + 0.1 * np.array([0.1, 0.0])
    v = 0.999 * 0.001 * GRAD ** 2 + 0.001 * np.array([0.01, 0.0])
    m_hat, v_hat = m / (1 - 0.9 ** 2), v / (1 - 0.999 ** 2)
    assert np.allclose(theta2, theta - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=0, atol=1e-15)
    assert np.allclose(rates, 0.01 / (np.sqrt(v_hat) + 1e-8))


def test_rmsprop_step_by_hand():
    opt = Optimizer(hyperparameters("rmsprop", 0.01), 2)
    theta, _ = opt.step(THETA, GRAD)
    sq = 0.1 * GRAD ** 2
    assert np.allclose(theta, THETA - 0.01 * GRAD / (np.sqrt(sq) + 1e-8), rtol=0, atol=1e-15)
    theta2, _ = opt.step(theta, GRAD)
    sq = 0.9 * sq + 0.1 * GRAD ** 2
    assert np.allclose(theta2, theta - 0.01 * GRAD / (np.sqrt(sq) + 1e-8), rtol=0, atol=1e-15)


def test_adadelta_step_by_hand():
    opt = Optimizer(hyperparameters("adadelta"), 2)
    theta, _ = opt.step(THETA, GRAD)
    sq = 0.05 * GRAD ** 2
    dx = -np.sqrt(0 + 1e-6) / np.sqrt(sq + 1e-6) * GRAD
    assert np.allclose(theta, THETA + dx, rtol=0, atol=1e-15)
    acc = 0.05 * dx ** 2
    theta2, _ = opt.step(theta, GRAD)
    sq = 0.95 * sq + 0.05 * GRAD ** 2
    dx2 = -np.sqrt(acc + 1e-6) / np.sqrt(sq + 1e-6) * GRAD
    assert np.allclose(theta2, theta + dx2, rtol=0, atol=1e-15)


def test_optimizer_state_round_trips():
    for name in ("sgd", "adam", "rmsprop", "adadelta"):
        a = Optimizer(hyperparameters(name), 2)
        a.step(THETA, GRAD)
        b = Optimizer(hyperparameters(name), 2, a.to_state())
        assert np.array_equal(a.step(THETA, GRAD)[0], b.step(THETA, GRAD)[0])


# -- training against scikit-learn -----------------------------------------------------------------------------

@pytest.mark.parametrize("loss,sk_loss", [("squared", None), ("log", "log_loss"), ("hinge", "hinge")])
def test_plain_sgd_is_sklearns_trajectory(loss, sk_loss):
    """Batch size 1, no shuffling, invscaling: the same updates as scikit-learn's plain_sgd, step for step."""
    X, y = scaled_problem()
    p = params("sgd", 0.01, l2=1e-3)
    if loss == "squared":
        model = fresh_model(loss, p)
        model.train(X, model._targets(y), epochs=5, batch_size=1, shuffle=False, seed=0)
        sk = SGDRegressor(alpha=1e-3, learning_rate="invscaling", eta0=0.01, power_t=0.5, max_iter=5, tol=None,
                          shuffle=False).fit(X, y)
        assert np.abs(model.coef_ - sk.coef_).max() < 1e-12
        assert abs(model.intercept_ - sk.intercept_[0]) < 1e-12
    else:
        labels = (y > 0.3).astype(int)
        model = fresh_model(loss, p, classes=[0, 1])
        model.train(X, model._targets(labels), epochs=5, batch_size=1, shuffle=False, seed=0)
        sk = SGDClassifier(loss=sk_loss, alpha=1e-3, learning_rate="invscaling", eta0=0.01, power_t=0.5, max_iter=5,
                           tol=None, shuffle=False).fit(X, labels)
        assert np.abs(model.coef_ - sk.coef_).max() < 1e-12
        assert np.abs(model.intercept_ - sk.intercept_).max() < 1e-12


@pytest.mark.parametrize("optimizer,rate,epochs,tol", [
    ("sgd", 0.1, 300, 1e-9), ("adam", 0.05, 1000, 1e-9), ("adadelta", None, 1000, 1e-9),
    # RMSprop with a constant rate ends in a cycle of about η around the optimum (its steps are ~η·sign g)
    ("rmsprop", 0.001, 3000, 1e-3)])
def test_converges_to_ridge(optimizer, rate, epochs, tol):
    """Mean ½(z − y)² + (λ/2)‖w‖² is ridge with α = nλ: every optimizer gets there on full batches."""
    X, y = scaled_problem()
    extra = {"schedule": "constant"} if optimizer == "sgd" else {}
    model = fresh_model("squared", params(optimizer, rate, l2=1e-2, **extra))
    model.train(X, model._targets(y), epochs=epochs, batch_size=len(X), shuffle=False, seed=0)
    exact = Ridge(alpha=len(X) * 1e-2).fit(X, y)
    assert np.abs(model.coef_ - exact.coef_).max() < tol
    assert abs(model.intercept_ - exact.intercept_) < tol


def test_minibatch_adam_near_ridge():
    """Shuffled mini-batches (the default training) land within the noise of the optimum."""
    X, y = scaled_problem()
    model = fresh_model("squared", params("adam", 0.01, l2=1e-2))
    model.train(X, model._targets(y), epochs=200, batch_size=32, shuffle=True, seed=0)
    exact = Ridge(alpha=len(X) * 1e-2).fit(X, y)
    assert np.abs(model.coef_ - exact.coef_).max() < 0.02


def test_logistic_converges_to_sklearn_logistic_regression():
    X, y = scaled_problem()
    labels = (y + np.random.default_rng(1).normal(scale=1.0, size=len(y)) > 0.3).astype(int)
    model = fresh_model("log", params("adam", 0.05, l2=1e-2), classes=[0, 1])
    model.train(X, model._targets(labels), epochs=600, batch_size=len(X), shuffle=False, seed=0)
    exact = LogisticRegression(C=1 / (len(X) * 1e-2), tol=1e-12, max_iter=10_000).fit(X, labels)
    assert np.abs(model.coef_ - exact.coef_).max() < 2e-3
    assert np.abs(model.intercept_ - exact.intercept_).max() < 2e-3


def test_hinge_reaches_sklearns_objective():
    """Hinge is not smooth: compare objective values (mine, from both solutions) rather than weights."""
    X, y = scaled_problem()
    labels = (y + np.random.default_rng(1).normal(scale=1.0, size=len(y)) > 0.3).astype(int)
    model = fresh_model("hinge", params("adam", 0.01, l2=1e-2), classes=[0, 1])
    t = model._targets(labels)
    model.train(X, t, epochs=300, batch_size=32, shuffle=True, seed=0)
    sk = SGDClassifier(loss="hinge", alpha=1e-2, max_iter=1000, tol=1e-9, random_state=0).fit(X, labels)
    ref = fresh_model("hinge", params(l2=1e-2), classes=[0, 1])
    ref.coef_, ref.intercept_ = sk.coef_.copy(), sk.intercept_.copy()
    assert model.objective(X, t) <= ref.objective(X, t) * 1.01


def test_l1_proximal_is_lasso():
    """Plain SGD on full batches with the proximal L1 step is ISTA: it converges to the lasso."""
    X, y = scaled_problem()
    X = np.c_[X, np.random.default_rng(2).normal(size=len(X))]  # a useless feature the lasso zeroes
    model = fresh_model("squared", params("sgd", 0.1, schedule="constant", l1=0.05), d=4)
    model.train(X, model._targets(y), epochs=2000, batch_size=len(X), shuffle=False, seed=0)
    exact = Lasso(alpha=0.05, tol=1e-12, max_iter=100_000).fit(X, y)
    assert np.abs(model.coef_ - exact.coef_).max() < 1e-8
    assert model.coef_[3] == 0.0 and exact.coef_[3] == 0.0


# -- in the database: fit, warm start, the three doors --------------------------------------------------------

@pytest.fixture
def store(dsn):
    with modelstore.Store(dsn) as s:
        s.conn.execute("SELECT setseed(0.5)")
        s.conn.execute("""
            CREATE TABLE public.trips (id bigint PRIMARY KEY, dist float8, hour int, wet boolean, carrier text,
                                       origin text, delay float8, late boolean)""")
        s.conn.execute("""
            INSERT INTO public.trips
            SELECT g, dist, hour, wet, carrier, origin,
                   d, d + 3 * (random() - 0.5) > 4
            FROM (SELECT g, dist, hour, wet, carrier, origin,
                         2 + 0.004 * coalesce(dist, 500) + 0.3 * hour + CASE WHEN wet THEN 3 ELSE 0 END
                           + CASE carrier WHEN 'UA' THEN 2 WHEN 'AA' THEN -1 ELSE 0 END + 2 * (random() - 0.5) AS d
                  FROM (SELECT g, CASE WHEN g % 17 = 0 THEN NULL ELSE 100 + 1500 * random() END AS dist,
                               (g * 7) % 24 AS hour, g % 5 = 0 AS wet,
                               CASE WHEN g % 23 = 0 THEN NULL ELSE (ARRAY['UA', 'AA', 'DL', 'B6'])[1 + g % 4] END
                                 AS carrier,
                               (ARRAY['JFK', 'LGA', 'EWR'])[1 + g % 3] AS origin
                        FROM generate_series(1, 600) g) r) s""")
        yield s


FEATURES = ["dist", "hour", "wet", "carrier", "origin"]


def rows_frame(conn, where="TRUE"):
    cur = conn.execute(f"SELECT id, {', '.join(FEATURES)}, delay, late FROM public.trips WHERE {where} ORDER BY id")
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


@pytest.mark.parametrize("kind,target,extra", [
    ("sgd_logistic", "late", {}), ("sgd_svm", "late", {"optimizer": "rmsprop"}),
    ("sgd_linear", "delay", {"hash_buckets": 8, "optimizer": "adadelta"}),
    ("sgd_linear", "delay", {"l1": 0.01, "optimizer": "sgd", "learning_rate": 0.05})])
def test_three_doors_agree(store, kind, target, extra):
    model = store.fit(kind, table="trips", target=target, features=FEATURES, order_by="id",
                      where="dist IS NULL OR dist < 1500", name="m", epochs=3, **extra)
    assert model.rows_used == len(rows_frame(store.conn, "dist IS NULL OR dist < 1500"))
    frame = rows_frame(store.conn)  # every row, the filtered-out ones too: predictions are for any row
    stored = store.model("m")
    py = stored.predict(frame[FEATURES])
    ml = store.query("SELECT * FROM ML.PREDICT(MODEL m, (SELECT * FROM trips)) ORDER BY id")
    sql_rows = store.conn.execute("SELECT modelstore.predict_class_row('m', to_jsonb(t)) FROM public.trips t "
                                  "ORDER BY id").fetchall()
    got_ml = ml[f"predicted_{target}"].to_numpy()
    if kind == "sgd_linear":
        got_sql = np.array([float(r[0]) for r in sql_rows])
        assert np.allclose(py, got_ml.astype(float), rtol=1e-12, atol=1e-12)
        assert np.allclose(py, got_sql, rtol=1e-12, atol=1e-12)
        z = stored.decision_function(frame[FEATURES])
        assert np.array_equal(z, py)
    else:
        assert list(py) == list(got_ml)
        assert [str(v).lower() for v in py] == [r[0] for r in sql_rows]
        # probabilities: Python vs ML.PREDICT vs modelstore.predict_proba
        proba = stored.predict_proba(frame[FEATURES])
        ml_p = np.array([[p[str(c)] for c in stored.classes_] for p in ml[f"predicted_{target}_probs"]])
        assert np.allclose(proba, ml_p, rtol=1e-12, atol=1e-15)
        sql_p = store.conn.execute(
            "SELECT array_agg(probability ORDER BY class_label) FROM public.trips t, "
            "modelstore.predict_proba_row('m', to_jsonb(t)) GROUP BY t.id ORDER BY t.id").fetchall()
        assert np.allclose(proba, np.array([r[0] for r in sql_p]), rtol=1e-12, atol=1e-15)


def test_training_matches_the_python_model_on_the_same_rows(store):
    """What the store trains is SGDModel.fit_frame on the rows it reads: the same weights bit for bit."""
    model = store.fit("sgd_logistic", table="trips", target="late", features=FEATURES, order_by="id", name="m",
                      epochs=2, seed=3)
    frame = rows_frame(store.conn)
    ref = SGDModel("sgd_logistic", "log", model.params, Pipeline(["dist", "hour", "wet"], ["carrier", "origin"]),
                   [False, True])
    ref.fit_frame(frame[FEATURES], frame["late"])
    assert np.array_equal(ref.coef_, model.coef_) and np.array_equal(ref.intercept_, model.intercept_)
    assert ref.feature_names_ == model.feature_names_


def test_online_statistics_merge_is_exact(store):
    """The scaler's statistics merged chunk by chunk are the statistics of all rows (numpy, population σ)."""
    frame = rows_frame(store.conn)
    pipe = Pipeline(["dist", "hour"], ["carrier"])
    for start in range(0, len(frame), 37):
        pipe.update(frame.iloc[start:start + 37])
    dist = frame["dist"].dropna().to_numpy(dtype=float)
    assert pipe.n[0] == len(dist) and pipe.missing[0] == frame["dist"].isna().sum()
    assert abs(pipe.mean[0] - dist.mean()) < 1e-12 * dist.mean()
    assert abs(pipe.scale()[0] - dist.std()) < 1e-10 * dist.std()
    assert pipe.categories["carrier"] == ["AA", "DL", "B6", "UA"]  # in the order first seen (id 1 is AA)
    X = pipe.transform(frame.iloc[:5])
    assert X.shape == (5, 2 + 4)
    assert bucket("carrier", "UA", 8) == int.from_bytes(__import__("hashlib").md5(b"carrier=UA").digest()[:3],
                                                         "big") % 8


def test_warm_start_continues(store):
    store.fit("sgd_linear", table="trips", target="delay", features=FEATURES, order_by="id", hi=300, name="v1",
              epochs=2)
    v1 = store.model("v1")
    v2 = store.fit("sgd_linear", table="trips", target="delay", features=FEATURES, order_by="id", lo=301, name="v2",
                   epochs=1, warm_start="v1")
    # by hand: v1's weights, statistics and Adam state, the new rows folded in, one epoch
    ref = v1.warm_copy()
    ref.params = dict(v2.params)
    frame = rows_frame(store.conn, "id >= 301")
    ref.fit_frame(frame[FEATURES], frame["delay"])
    assert np.array_equal(ref.coef_, v2.coef_)
    assert v2.steps == v1.steps + math.ceil(300 / 32)
    assert v2.pipeline.n[1] == 600  # the hour statistics cover both ranges
    assert v2.optimizer.t == v2.steps
    with pytest.raises(InputError, match="cannot continue"):
        store.fit("sgd_linear", table="trips", target="delay", features=FEATURES, order_by="id", name="v3",
                  optimizer="rmsprop", warm_start="v1")


def test_model_language_and_bad_input(store):
    model = store.query("""
        CREATE MODEL lang OPTIONS (model_type = 'sgd_logistic_reg', input_label_cols = ['late'], order_by = 'id',
                                   optimizer = 'rmsprop', learn_rate = 0.02, max_iterations = 2, l2_reg = 0.001)
        AS SELECT dist, hour, carrier, late FROM trips""")
    assert model.params["optimizer"] == "rmsprop" and model.params["learning_rate"] == 0.02
    assert model.params["epochs"] == 2 and model.params["l2"] == 0.001
    weights = store.query("SELECT * FROM ML.WEIGHTS(MODEL lang)")
    assert "carrier=UA" in set(weights.processed_input)
    with pytest.raises(InputError, match="optimizer must be one of"):
        store.fit("sgd_logistic", table="trips", target="late", features=FEATURES, order_by="id", optimizer="lbfgs")
    with pytest.raises(InputError, match="takes no option"):
        store.fit("linear", table="trips", target="delay", features=["dist"], order_by="id", optimizer="adam")
    with pytest.raises(InputError, match="at least two classes"):
        store.fit("sgd_logistic", table="trips", target="late", features=FEATURES, order_by="id",
                  where="delay > 1000 OR id = 1")
    with pytest.raises(modelstore.errors.ModelstoreError):
        store.fit("sgd_linear", table="trips", target="delay", features=FEATURES, order_by="id", where="id < 0")
    assert store.conn.execute("SELECT count(*) FROM modelstore.fitted_models").fetchone()[0] == 1


def test_float_array_door_imputes_and_refuses_text(store):
    model = store.fit("sgd_linear", table="trips", target="delay", features=["dist", "hour", "wet"], order_by="id",
                      name="num", epochs=2)
    for x in ([800.0, 5, True], [None, 5, False], [None, None, None]):
        got = store.conn.execute("SELECT modelstore.predict('num', %s::float8[])",
                                 [[None if v is None else float(v) for v in x]]).fetchone()[0]
        want = model.predict(pd.DataFrame([x], columns=["dist", "hour", "wet"], dtype=object))[0]
        assert abs(got - want) <= 1e-12 * abs(want)
    store.fit("sgd_svm", table="trips", target="late", features=FEATURES, order_by="id", name="txt", epochs=1)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="text features"):
        store.conn.execute("SELECT modelstore.predict('txt', ARRAY[1, 2, 3, 4, 5]::float8[])")


def test_deployment_refresh_warm_starts(store):
    """A deployment of an SGD kind: each refresh continues from the serving version (weights, pipeline
    statistics, optimizer state) over the window, scores the new rows first (prequential), records a version."""
    store.conn.execute("DELETE FROM public.trips WHERE id > 400")
    d = store.deploy("dep", "sgd_linear", table="trips", target="delay", features=FEATURES, order_by="id",
                     window=200, optimizer="adam", learning_rate=0.02, epochs=2)
    v1 = d.model
    assert d.version == 1 and v1.params["learning_rate"] == 0.02
    store.conn.execute("""INSERT INTO public.trips SELECT g + 400, dist, hour, wet, carrier, origin, delay, late
                          FROM public.trips t JOIN generate_series(1, 100) g ON t.id = g""")
    outcome = d.refresh()
    assert outcome.refreshed and d.version == 2
    frame = rows_frame(store.conn, "id > 300")
    ref = v1.warm_copy()
    ref.params = dict(v1.params)
    ref.fit_frame(frame[FEATURES], frame["delay"])
    assert np.array_equal(d.model.coef_, ref.coef_)
    assert d.model.optimizer.t == v1.optimizer.t + 2 * math.ceil(200 / 32)
    versions = d.versions()
    assert versions.scored_rows.iloc[0] == 100  # v1 scored the 100 new rows before the refresh absorbed them
    new = rows_frame(store.conn, "id > 400")
    want = float(np.mean((new["delay"].to_numpy(dtype=float) - v1.predict(new[FEATURES])) ** 2))
    assert abs(versions.prequential_loss.iloc[0] - want) < 1e-9 * want
    assert np.allclose(d.predict(new[FEATURES]), ref.predict(new[FEATURES]), rtol=1e-12)


# -- proactive training (§3.2, §3.3, §4.1) ---------------------------------------------------------------------

def test_proactive_refresh_by_hand(store):
    """One proactive refresh: chunks of the window, new chunks folded into the statistics, the oldest
    evicted beyond the budget, a sample (evicted ones re-materialized from their rows), one SGD step."""
    store.conn.execute("DELETE FROM public.trips WHERE id > 400")
    d = store.deploy("pro", "sgd_logistic", table="trips", target="late", features=FEATURES, order_by="id",
                     epochs=2, proactive={"chunk_rows": 50, "sample_chunks": 4, "budget_chunks": 5})
    v1 = d.model
    store.conn.execute("""INSERT INTO public.trips SELECT g + 400, dist, hour, wet, carrier, origin, delay, late
                          FROM public.trips t JOIN generate_series(1, 100) g ON t.id = g""")
    assert d.refresh().refreshed
    chunks = store.conn.execute("SELECT seq, lo, hi, rows, materialized FROM modelstore.feature_chunks "
                                "ORDER BY seq").fetchall()
    assert [c[3] for c in chunks] == [50] * 10  # 8 of the window, 2 new
    assert [c[4] for c in chunks] == [False] * 5 + [True] * 5  # budget 5: the oldest evicted
    info = d.events().query("kind == 'refresh'").detail.iloc[-1]["proactive"]
    picked = info["picked"]
    assert len(picked) == 4 and set(picked) <= set(range(1, 9))  # historical chunks only
    assert info["materialized"] == sum(1 for s in picked if s > 5) and info["mu"] == info["materialized"] / 4
    # by hand: statistics updated with the new rows, then one step over sample + new rows
    ref = v1.warm_copy()
    frame = rows_frame(store.conn)
    new = frame[frame.id > 400]
    new_parts = []
    for start in (0, 50):  # each new chunk is transformed with the statistics that include it (online)
        ref.pipeline.update(new.iloc[start:start + 50][FEATURES])
        ref.sync_features()
        new_parts.append(ref.pipeline.transform(new.iloc[start:start + 50][FEATURES]))
    window_X = v1.pipeline.transform(frame[frame.id <= 400][FEATURES])  # stored chunks: the deploy's statistics
    parts, ys = [], []
    for s in picked:
        rows = slice((s - 1) * 50, s * 50)
        # materialized chunks hold the deploy-time features; evicted ones are re-transformed now
        parts.append(window_X[rows] if s > 5 else ref.pipeline.transform(frame.iloc[rows][FEATURES]))
        ys += list(frame.iloc[rows]["late"])
    parts += new_parts
    ys += list(new["late"])
    ref.step(np.vstack(parts), ref._targets(ys))
    assert np.allclose(d.model.coef_, ref.coef_, rtol=1e-12, atol=1e-15)
    assert d.model.optimizer.t == v1.optimizer.t + 1


def test_mu_formulas_against_hand_computation():
    from fractions import Fraction

    from modelstore.deploy.materialization import dynamic_interval, harmonic, mu_n, mu_uniform, mu_window
    # uniform, N = 10, m = 4: (4 + 4/5 + … + 4/10) / 10
    want = (4 + sum(Fraction(4, n) for n in range(5, 11))) / 10
    assert abs(mu_uniform(10, 4) - float(want)) < 1e-15
    assert abs(sum(mu_n(n, 4) for n in range(1, 11)) / 10 - float(want)) < 1e-15
    # window, N = 20, m = 3, w = 8: (3 + 3/4 + … + 3/8 + 12 · 3/8) / 20
    want = (3 + sum(Fraction(3, n) for n in range(4, 9)) + 12 * Fraction(3, 8)) / 20
    assert abs(mu_window(20, 3, 8) - float(want)) < 1e-15
    assert abs(sum(mu_n(n, 3, 8) for n in range(1, 21)) / 20 - float(want)) < 1e-15
    assert mu_window(20, 8, 8) == 1.0 and mu_uniform(5, 9) == 1.0
    # the paper's example (§3.2.2): N = 12,000 chunks, m = 7,200 materialized → MU ≈ 0.91 by formula (4)
    assert abs(mu_uniform(12_000, 7_200, exact=False) - 0.91) < 0.005
    assert abs(mu_uniform(12_000, 7_200) - mu_uniform(12_000, 7_200, exact=False)) < 1e-3
    assert abs(harmonic(1000) - (math.log(1000) + 0.5772156649 + 1 / 2000 - 1 / 12e6)) < 1e-10  # γ to 10 digits
    # the scheduler (§4.1): T' = S · T · p_r · p_l
    assert dynamic_interval(2.0, 0.5, 100.0, 0.001) == 2.0 * 0.5 * 100.0 * 0.001
    with pytest.raises(modelstore.errors.DeploymentError, match="slack"):
        dynamic_interval(-1.0, 0.5, 100.0, 0.001)


@pytest.mark.parametrize("sampler", ["uniform", "window"])
def test_measured_mu_is_the_formulas(sampler):
    """One sample after every incoming chunk, the newest m materialized (the eviction rule): the measured
    average MU is within 0.05 of formulas (4) and (5)."""
    from modelstore.deploy.materialization import mu_uniform, mu_window
    from modelstore.deploy.proactive import sample
    rng = np.random.default_rng(7)
    N, m, s, w = 600, 150, 10, 300
    shares = []
    for n in range(1, N + 1):
        seqs = list(range(1, n + 1))
        pool = seqs if sampler == "uniform" else seqs[-w:]
        picked = sample(seqs, min(s, len(pool)), sampler, rng, w)
        shares.append(sum(1 for q in picked if q > n - m) / len(picked))
    want = mu_uniform(N, m) if sampler == "uniform" else mu_window(N, m, w)
    assert abs(np.mean(shares) - want) < 0.05
    assert abs(np.mean(shares) - want) < 0.01  # in fact much closer: 600 samples of 10


def test_sampler_distributions():
    from modelstore.deploy.proactive import sample
    from modelstore.errors import SamplingError
    rng = np.random.default_rng(11)
    seqs = list(range(1, 11))
    draws = 20_000
    for sampler, expected in [("uniform", np.full(10, 0.1)), ("time", np.arange(1, 11) / 55.0),
                              ("window", np.r_[np.zeros(6), np.full(4, 0.25)])]:
        counts = np.zeros(10)
        for _ in range(draws):
            counts[sample(seqs, 1, sampler, rng, 4)[0] - 1] += 1
        sd = np.sqrt(expected * (1 - expected) / draws)
        assert np.all(np.abs(counts / draws - expected) <= 5 * sd + 1e-12), (sampler, counts / draws)
    assert sample(seqs, 10, "uniform", rng) == seqs  # without replacement
    with pytest.raises(SamplingError, match="cannot sample 11 chunks out of 10"):
        sample(seqs, 11, "uniform", rng)
    with pytest.raises(SamplingError, match="out of 4"):
        sample(seqs, 5, "window", rng, 4)


def test_proactive_bad_input_and_skips(store):
    from modelstore.errors import DeploymentError, SamplingError
    common = dict(table="trips", target="late", features=FEATURES, order_by="id", epochs=1)
    with pytest.raises(SamplingError, match="at least one chunk"):
        store.deploy("b", "sgd_logistic", proactive={"budget_chunks": 0}, **common)
    with pytest.raises(SamplingError, match="sampler must be one of"):
        store.deploy("b", "sgd_logistic", proactive={"sampler": "stratified"}, **common)
    with pytest.raises(SamplingError, match="window_chunks"):
        store.deploy("b", "sgd_logistic", proactive={"sampler": "window"}, **common)
    with pytest.raises(DeploymentError, match="takes no option"):
        store.deploy("b", "sgd_logistic", proactive={"chunks": 3}, **common)
    with pytest.raises(DeploymentError, match="SGD-trained kinds"):
        store.deploy("b", "linear", table="trips", target="delay", features=["hour"], order_by="id",
                     proactive={})
    assert store.conn.execute("SELECT count(*) FROM modelstore.deployments").fetchone()[0] == 0
    # a sample with one class only is skipped and recorded; a chunk whose rows all have a NULL target adds none
    d = store.deploy("b", "sgd_logistic", proactive={"sample_chunks": 0, "chunk_rows": 10}, **common)
    before = d.model.coef_.copy()
    store.conn.execute("""INSERT INTO public.trips (id, dist, hour, wet, carrier, origin, delay, late)
                          SELECT 1000 + g, NULL, NULL, NULL, NULL, NULL, 1.0, true FROM generate_series(1, 5) g""")
    d.refresh()
    info = d.events().query("kind == 'refresh'").detail.iloc[-1]["proactive"]
    assert info["skipped"].startswith("the sample has one class only") and np.array_equal(d.model.coef_, before)
    store.conn.execute("""INSERT INTO public.trips (id, dist, hour, wet, carrier, origin, delay, late)
                          SELECT 2000 + g, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM generate_series(1, 5) g""")
    d.refresh()
    info = d.events().query("kind == 'refresh'").detail.iloc[-1]["proactive"]
    assert info["new_rows"] == 0 and info["skipped"] == "no rows to train on"


def test_scheduler_in_the_worker(store, dsn):
    """Static schedule: a proactive deployment with pending rows is not refreshed before next_run_at."""
    from modelstore.deploy.worker import Worker
    d = store.deploy("sched", "sgd_linear", table="trips", target="delay", features=FEATURES, order_by="id",
                     epochs=1, proactive={"schedule": "static", "interval": 3600, "chunk_rows": 100})
    store.conn.execute("INSERT INTO public.trips SELECT id + 1000, dist, hour, wet, carrier, origin, delay, late "
                       "FROM public.trips WHERE id <= 50")
    worker = Worker(store, dsn)
    assert worker.work_once() == 1  # never run yet: due
    due_in = store.conn.execute("SELECT extract(epoch FROM next_run_at - clock_timestamp()) FROM "
                                "modelstore.deployments").fetchone()[0]
    assert 3500 < due_in <= 3600
    store.conn.execute("INSERT INTO public.trips SELECT id + 2000, dist, hour, wet, carrier, origin, delay, late "
                       "FROM public.trips WHERE id <= 50")
    assert worker.work_once() == 0 and d.pending() > 0  # pending, but not due
    store.conn.execute("UPDATE modelstore.deployments SET next_run_at = clock_timestamp() - interval '1 second'")
    assert worker.work_once() == 1 and d.pending() == 0


def test_explain_and_evaluate(store):
    plan = store.explain("sgd_svm", table="trips", target="late", features=FEATURES, order_by="id", epochs=3)
    assert plan.strategy.startswith("SGD: one read of the rows") and plan.steps[0].op == "scan"
    model = store.fit("sgd_svm", table="trips", target="late", features=FEATURES, order_by="id", name="ev", epochs=2)
    got = store.query("SELECT * FROM ML.EVALUATE(MODEL ev, (SELECT * FROM trips WHERE id > 300))")
    frame = rows_frame(store.conn, "id > 300")
    want = float(np.mean(model.predict(frame[FEATURES]) == frame["late"].to_numpy()))
    assert abs(float(got["accuracy"].iloc[0]) - want) < 1e-12


def test_a_logistic_deployment_is_trained_by_sgd(store):
    d = store.deploy("lg", "logistic", table="trips", target="late", features=FEATURES, order_by="id", epochs=1)
    assert d.info["kind"] == "sgd_logistic" and d.model.loss == "log"
    assert store.models().set_index("name").loc["lg", "kind"] == "sgd_logistic"


def test_sql_weights_of_an_sgd_model(store):
    model = store.fit("sgd_logistic", table="trips", target="late", features=FEATURES, order_by="id", name="w",
                      epochs=1)
    rows = store.conn.execute("SELECT class_label, feature, weight FROM modelstore.weights('w')").fetchall()
    assert rows[0] == ("true", "(intercept)", model.intercept_[0])
    assert [r[1] for r in rows[1:]] == model.feature_names_
    assert [r[2] for r in rows[1:]] == list(model.coef_[0])


def test_worker_subprocess_runs_proactive_training(store, dsn):
    """``modelstore worker`` as a real subprocess: woken by commits, it runs a proactive refresh per batch
    (static schedule, interval 0) and records a version each time; stopped by PID (SIGTERM)."""
    from tests.test_worker import WorkerProcess
    store.conn.execute("DELETE FROM public.trips WHERE id > 400")
    d = store.deploy("live", "sgd_linear", table="trips", target="delay", features=FEATURES, order_by="id",
                     epochs=1, proactive={"chunk_rows": 25, "sample_chunks": 3, "budget_chunks": 8})
    worker = WorkerProcess(dsn, interval=1.0)
    try:
        for batch in range(2):
            lo = 401 + 50 * batch
            store.conn.execute("INSERT INTO public.trips SELECT id + %s, dist, hour, wet, carrier, origin, delay, "
                               "late FROM public.trips WHERE id BETWEEN 1 AND 50", [lo - 1])
            worker.wait_for(f"refresh live: v{batch + 2} active, recorded v{batch + 2}")
        assert d.version == 3 and d.pending() == 0
        chunks = store.conn.execute("SELECT count(*), count(*) FILTER (WHERE materialized) "
                                    "FROM modelstore.feature_chunks").fetchone()
        assert chunks == (16 + 4, 8)  # the window's 16 chunks and 2 × 2 new ones; the newest 8 materialized
        info = d.events().query("kind == 'refresh'").detail.iloc[-1]["proactive"]
        assert info["sampled"] == 3 and info["new_chunks"] == 2
    finally:
        worker.stop()
    assert worker.proc.returncode == 0


def test_dynamic_schedule_on_measured_predictions(store):
    """T′ = S·T·p_r·p_l with p_r and p_l measured on the predictions the model served between two runs
    (store.predict counts them; modelstore.served_predictions holds the counts): a model nobody asks is
    due again at once, a model that served predictions waits S·T·p_r·p_l, computed here from the
    catalog's counts and the run's recorded T."""
    from modelstore.deploy import served
    common = dict(table="trips", target="delay", features=FEATURES, order_by="id", epochs=1)
    for name in ("idle", "busy"):
        store.deploy(name, "sgd_linear", proactive={"schedule": "dynamic", "slack": 3.0, "chunk_rows": 100},
                     **common)
    store.conn.execute("INSERT INTO public.trips SELECT id + 1000, dist, hour, wet, carrier, origin, delay, late "
                       "FROM public.trips WHERE id <= 60")
    for name in ("idle", "busy"):  # the first run reads the counts: no earlier reading, no rate yet
        store.deployment(name).refresh()
        assert _last_proactive(store, name)["next_run_s"] == 0.0
    rows = pd.DataFrame([[800.0, 5, True, "UA", "JFK"], [None, 23, False, None, "EWR"]], columns=FEATURES)
    before = served.read(store.conn, "busy")
    for _ in range(40):
        assert len(store.deployment("busy").predict(rows)) == 2
    served.COUNTER.flush(store.conn)  # what the doors add at most once a second
    after = served.read(store.conn, "busy")
    assert after[0] - before[0] == 80 and after[1] > before[1]
    store.conn.execute("INSERT INTO public.trips SELECT id + 2000, dist, hour, wet, carrier, origin, delay, late "
                       "FROM public.trips WHERE id <= 60")
    for name in ("idle", "busy"):
        store.deployment(name).refresh()
    idle, busy = _last_proactive(store, "idle"), _last_proactive(store, "busy")
    assert idle["schedule"]["served"] == 0 and idle["next_run_s"] == 0.0
    sched = busy["schedule"]
    assert sched["served"] == 80 and sched["over_s"] > 0
    assert sched["prediction_rate"] == pytest.approx(80 / sched["over_s"], rel=1e-12)
    assert sched["prediction_latency_s"] == pytest.approx((after[1] - before[1]) / 80, rel=1e-9)
    want = 3.0 * sched["T_s"] * (80 / sched["over_s"]) * ((after[1] - before[1]) / 80)
    assert busy["next_run_s"] == pytest.approx(want, rel=1e-9) and busy["next_run_s"] > 0
    due_in = store.conn.execute("SELECT extract(epoch FROM next_run_at - clock_timestamp()) FROM "
                                "modelstore.deployments WHERE name = 'busy'").fetchone()[0]
    assert float(due_in) <= busy["next_run_s"]
    with pytest.raises(modelstore.errors.DeploymentError, match="takes no option"):
        store.deploy("x", "sgd_linear", proactive={"schedule": "dynamic", "prediction_rate": 5.0}, **common)


def _last_proactive(store, name):
    return store.deployment(name).events().query("kind == 'refresh'").detail.iloc[-1]["proactive"]


def test_static_schedule_every_n_chunks_in_the_worker(store, dsn):
    """schedule='static', every_chunks=2: the worker's loop leaves a proactive deployment alone until two
    chunks' worth of new rows (2 × chunk_rows, with a target) are pending, then refreshes it."""
    from modelstore.deploy.worker import Worker
    common = dict(table="trips", target="delay", features=FEATURES, order_by="id", epochs=1)
    with pytest.raises(modelstore.errors.DeploymentError, match="every_chunks must be a positive integer"):
        store.deploy("n", "sgd_linear", proactive={"every_chunks": 0}, **common)
    with pytest.raises(modelstore.errors.DeploymentError, match="static schedule"):
        store.deploy("n", "sgd_linear", proactive={"every_chunks": 2, "schedule": "dynamic"}, **common)
    d = store.deploy("n", "sgd_linear", proactive={"every_chunks": 2, "chunk_rows": 20, "sample_chunks": 2},
                     **common)
    worker = Worker(store, dsn)
    store.conn.execute("INSERT INTO public.trips SELECT id + 1000, dist, hour, wet, carrier, origin, delay, late "
                       "FROM public.trips WHERE id <= 30")
    # 30 rows and 5 more without a target: less than two chunks of 20
    store.conn.execute("INSERT INTO public.trips SELECT id + 1100, dist, hour, wet, carrier, origin, NULL, NULL "
                       "FROM public.trips WHERE id <= 15")
    assert worker.work_once() == 0 and d.pending() > 0 and d.version == 1
    store.conn.execute("INSERT INTO public.trips SELECT id + 1200, dist, hour, wet, carrier, origin, delay, late "
                       "FROM public.trips WHERE id <= 10")
    assert worker.work_once() == 1 and d.pending() == 0 and d.version == 2
    info = _last_proactive(store, "n")
    assert info["new_rows"] == 40 and info["new_chunks"] == 2
    assert worker.work_once() == 0  # nothing pending


def test_http_serving_predicts_with_the_pipeline(store):
    """``modelstore serve``'s predict (doors/serving.py) sends rows with text through the model's pipeline."""
    from modelstore.doors import serving
    model = store.fit("sgd_linear", table="trips", target="delay", features=FEATURES, order_by="id", name="http",
                      epochs=1)
    rows = [[800.0, 5, True, "UA", "JFK"], [None, 23, False, None, "EWR"]]
    got = serving.predict(store, "http", rows)["predictions"]
    want = model.predict(pd.DataFrame(rows, columns=FEATURES, dtype=object))
    assert np.allclose(got, want, rtol=1e-15, atol=0)
    assert list(model.feature_names_in_) == FEATURES


def test_training_to_convergence_is_scikit_learns_stopping_rule():
    """train(tol=…, n_iter_no_change=…) stops once the objective after a pass has failed n passes in a row
    to improve on the best by tol (scikit-learn's rule for SGDRegressor/SGDClassifier); checked against
    the objectives of the same passes made one at a time."""
    X, y = scaled_problem(n=300, seed=3)
    p = params("adam", 0.05, batch_size=16)
    model = fresh_model("squared", p)
    passes = model.train(X, y, epochs=200, batch_size=16, shuffle=False, seed=0, tol=1e-4, n_iter_no_change=3)
    by_hand = fresh_model("squared", p)
    best, stale, want = np.inf, 0, 0
    while want < 200:
        by_hand.train(X, y, epochs=1, batch_size=16, shuffle=False, seed=0)
        want += 1
        loss = by_hand.objective(X, y)
        stale = stale + 1 if loss > best - 1e-4 else 0
        best = min(best, loss)
        if stale >= 3:
            break
    assert passes == want and 3 < passes < 200
    assert np.array_equal(model.coef_, by_hand.coef_)
    assert fresh_model("squared", p).train(X, y, epochs=4, batch_size=16, shuffle=False, seed=0) == 4


def test_pipeline_reads_a_columnar_batch_as_it_reads_a_frame():
    """Pipeline.update/transform on a mapping of column → array (the streaming path, no DataFrame per
    chunk) give the same statistics and features as on a DataFrame, NULLs and new categories included."""
    frame = pd.DataFrame({"a": [1.0, None, 3.5, 2.0], "b": [10, 20, 30, 40], "c": ["x", None, "y", "x"]})
    batch = {"a": np.array([1.0, np.nan, 3.5, 2.0]), "b": np.array([10, 20, 30, 40]),
             "c": np.array(["x", None, "y", "x"], dtype=object)}
    by_frame, by_batch = Pipeline(["a", "b"], ["c"]), Pipeline(["a", "b"], ["c"])
    by_frame.update(frame)
    by_batch.update(batch)
    assert by_frame.to_state() == by_batch.to_state()
    assert np.array_equal(by_frame.transform(frame), by_batch.transform(batch))
    assert by_batch.categories["c"] == ["x", "y"] and by_batch.missing.tolist() == [1.0, 0.0]
