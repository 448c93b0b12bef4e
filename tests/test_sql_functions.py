"""The SQL scoring functions of sql/predict.sql (modelstore.predict, predict_class, predict_proba, weights)
give what the Python models give, row by row, on a real PostgreSQL; they refuse bad input with errors
that name the problem, and a role that does not own the catalog can use them with the documented grants."""

from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

import modelstore
from modelstore.catalog import migrate
from tests.helpers import load_frame

N = 1500
X_FEATURES = ["x1", "x2", "x3"]
COUNT_FEATURES = ["c1", "c2", "c3"]


def make_frame(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3)) * [1.0, 2.0, 0.5] + [0.0, 5.0, -1.0]
    y = 2.0 + X @ [1.5, -0.7, 3.0] + rng.normal(0, 1.0, N)
    frame = pd.DataFrame(X, columns=X_FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["y"] = y
    noisy = y + rng.normal(0, 1.5, N)
    bins = np.digitize(noisy, np.quantile(noisy, [0.35, 0.7]))
    # labels that are not their class index, so that an index returned for a label shows
    frame["fruit"] = np.array(["cherry", "apple", "banana"])[bins]
    frame["side"] = np.where(noisy > np.median(noisy), "right", "left")
    frame["flag"] = noisy > np.quantile(noisy, 0.4)
    frame["code"] = np.array([11, 3, 7])[bins]
    frame["grade"] = np.array([2.5, 0.5, 1.5])[bins]
    lam = np.array([[1.0, 4.0, 2.0], [3.0, 1.0, 2.0], [2.0, 2.0, 5.0]])[bins]
    for j, name in enumerate(COUNT_FEATURES):
        frame[name] = rng.poisson(lam[:, j])
    return frame


# (name, kind, target, features, extra fit arguments): every kind, text / integer / float / boolean labels,
# two and three classes
MODELS = [
    ("lin", "linear", "y", X_FEATURES, {"lo": 1, "hi": 1000}),
    ("gnb_text", "gaussian_nb", "fruit", X_FEATURES, {}),
    ("gnb_float", "gaussian_nb", "grade", X_FEATURES, {"lo": 200, "hi": 1400}),
    ("gnb_bool", "gaussian_nb", "flag", X_FEATURES, {}),
    ("mnb_int", "multinomial_nb", "code", COUNT_FEATURES, {}),
    ("mnb_text", "multinomial_nb", "fruit", COUNT_FEATURES, {"alpha": 0.5}),
    ("lg_text2", "logistic", "side", X_FEATURES, {"chunk_rows": 500}),
    ("lg_bool", "logistic", "flag", X_FEATURES, {"chunk_rows": 750}),
    ("lg_int3", "logistic", "code", X_FEATURES, {"chunk_rows": 500}),
    ("lg_text3", "logistic", "fruit", X_FEATURES, {"chunk_rows": 1500}),
]
CLASSIFIERS = [m[0] for m in MODELS if m[1] != "linear"]
NUMERIC_LABELS = ["gnb_float", "gnb_bool", "mnb_int", "lg_bool", "lg_int3"]
TEXT_LABELS = ["gnb_text", "mnb_text", "lg_text2", "lg_text3"]


@pytest.fixture(scope="module")
def env(module_dsn):
    """The table, every model fitted through the Python API, and an autocommit connection for the SQL calls."""
    store = modelstore.connect(module_dsn)
    frame = make_frame()
    load_frame(store.conn, "obs", frame)
    models = {}
    for name, kind, target, features, extra in MODELS:
        extra = dict(extra)
        models[name] = store.fit(kind, table="obs", target=target, features=features, order_by="id",
                                 lo=extra.pop("lo", None), hi=extra.pop("hi", None), name=name, **extra)
    conn = psycopg.connect(module_dsn, autocommit=True)
    yield type("Env", (), {"store": store, "frame": frame, "models": models, "conn": conn, "dsn": module_dsn})
    conn.close()
    store.close()


def features_of(model) -> list[str]:
    return list(model.feature_names_in_)


def array_of(features) -> sql.Composable:
    return sql.SQL("ARRAY[{}]::float8[]").format(sql.SQL(", ").join(map(sql.Identifier, features)))


def scalar_per_row(conn, function: str, name: str, features, table: str = "obs") -> list:
    query = sql.SQL("SELECT modelstore.{}(%s, {}) FROM {} ORDER BY id").format(
        sql.Identifier(function), array_of(features), sql.Identifier(table))
    return [r[0] for r in conn.execute(query, [name]).fetchall()]


def proba_per_row(conn, name: str, features, table: str = "obs") -> tuple[list[list[str]], np.ndarray]:
    """predict_proba for every row: the class labels per row and the (rows × classes) probabilities."""
    query = sql.SQL(
        "SELECT t.id, p.class_label, p.probability FROM {} AS t "
        "CROSS JOIN LATERAL modelstore.predict_proba(%s, {}) WITH ORDINALITY AS p(class_label, probability, ord) "
        "ORDER BY t.id, p.ord").format(sql.Identifier(table), array_of(features))
    rows = conn.execute(query, [name]).fetchall()
    ids = sorted({r[0] for r in rows})
    k = len(rows) // len(ids)
    labels = [[r[1] for r in rows[i * k:(i + 1) * k]] for i in range(len(ids))]
    probs = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float).reshape(len(ids), k)
    return labels, probs


def label_text(value) -> str:
    """A Python class label as the SQL functions write it: text as is, numbers and booleans as JSON."""
    value = value.item() if isinstance(value, np.generic) else value
    return value if isinstance(value, str) else json.dumps(value)


def sql_error(conn, query, params=None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query, params)
    return info.value


# -- installation -----------------------------------------------------------------------------------


def test_predict_sql_is_an_idempotent_script_applied_by_migrate(env):
    assert "predict" in [s.name for s in migrate.idempotent_scripts()]
    script = next(s for s in migrate.idempotent_scripts() if s.name == "predict")
    recorded = env.conn.execute("SELECT checksum FROM modelstore.schema_objects WHERE name = 'predict'").fetchone()
    assert recorded == (script.checksum,)
    # STABLE (they read the catalog), STRICT (NULL model or array → NULL), caller's rights (no privilege leak);
    # every overload alike (the per-group forms take a group too)
    rows = env.conn.execute(
        "SELECT DISTINCT p.proname, p.provolatile, p.proisstrict, p.prosecdef FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'modelstore' AND p.proname IN ('predict', 'predict_class', 'predict_proba', 'weights') "
        "ORDER BY 1").fetchall()
    assert rows == [(name, "s", True, False) for name in ["predict", "predict_class", "predict_proba", "weights"]]


# -- agreement with the Python models ---------------------------------------------------------------


def test_linear_predict_equals_python(env):
    m = env.models["lin"]
    got = np.array(scalar_per_row(env.conn, "predict", "lin", X_FEATURES))
    X = env.frame[X_FEATURES].to_numpy()
    ref = m.predict(env.frame[X_FEATURES])
    # relative to the terms' magnitude: the sum may cancel, and numpy's dot sums in another order
    scale = abs(m.intercept_) + np.abs(X * m.coef_).sum(axis=1)
    assert got.shape == (N,)
    assert np.all(np.abs(got - ref) <= 1e-12 * scale)
    # predict_class of a regression is its prediction as text (float8 output: shortest exact digits)
    as_text = scalar_per_row(env.conn, "predict_class", "lin", X_FEATURES)
    assert [float(t) for t in as_text] == got.tolist()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_predict_class_equals_python(env, name):
    m = env.models[name]
    feats = features_of(m)
    got = scalar_per_row(env.conn, "predict_class", name, feats)
    expected = [label_text(v) for v in m.predict(env.frame[feats])]
    assert got == expected
    assert len(set(got)) >= 2  # the comparison covers more than one class


@pytest.mark.parametrize("name", NUMERIC_LABELS)
def test_predict_returns_numeric_labels(env, name):
    m = env.models[name]
    feats = features_of(m)
    got = scalar_per_row(env.conn, "predict", name, feats)
    expected = [float(v) for v in m.predict(env.frame[feats])]  # booleans as 0/1
    assert got == expected


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_predict_proba_equals_python(env, name):
    m = env.models[name]
    feats = features_of(m)
    labels, probs = proba_per_row(env.conn, name, feats)
    classes = [label_text(c) for c in m.classes_]
    assert all(row == classes for row in labels)  # one row per class, in classes_ order
    ref = m.predict_proba(env.frame[feats])
    # abs 1e-15: Python's binary logistic gives 1 − σ(z) where SQL computes σ(−z) (same to 1 ulp of 1)
    np.testing.assert_allclose(probs, ref, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_binary_logistic_probability_is_sigmoid_of_the_score_for_classes_1(env):
    m = env.models["lg_text2"]
    z = m.decision_function(env.frame[X_FEATURES])
    labels, probs = proba_per_row(env.conn, "lg_text2", X_FEATURES)
    assert labels[0] == ["left", "right"]
    np.testing.assert_allclose(probs[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-12)
    np.testing.assert_allclose(probs[:, 0], 1 / (1 + np.exp(z)), rtol=1e-12)  # accurate even when tiny


def test_an_array_with_another_lower_bound_gives_the_same(env):
    one = env.conn.execute("SELECT modelstore.predict('lin', ARRAY[0.5, 4, -1]::float8[])").fetchone()[0]
    zero = env.conn.execute("SELECT modelstore.predict('lin', '[0:2]={0.5,4,-1}'::float8[])").fetchone()[0]
    assert one == zero == pytest.approx(env.models["lin"].predict([[0.5, 4, -1]])[0], rel=1e-13)


# -- ties, extremes, non-finite model parameters ---------------------------------------------------


def test_ties_go_to_the_first_class_as_numpy_argmax(env):
    """Equal class counts and an all-zero count vector: 'a' and 'b' tie exactly; numpy picks the first."""
    tie = pd.DataFrame({"id": range(1, 11), "label": list("babababacc"),
                        "c1": [1, 2, 2, 1, 0, 3, 1, 1, 4, 0], "c2": [0, 1, 1, 0, 2, 1, 2, 3, 0, 1]})
    load_frame(env.store.conn, "tie", tie)
    m = env.store.fit("multinomial_nb", table="tie", target="label", features=["c1", "c2"], order_by="id", name="mnb_tie")
    assert m.predict([[0, 0]])[0] == "a"
    got = env.conn.execute("SELECT modelstore.predict_class('mnb_tie', ARRAY[0, 0]::float8[])").fetchone()[0]
    assert got == "a"
    probs = env.conn.execute("SELECT probability FROM modelstore.predict_proba('mnb_tie', ARRAY[0, 0]::float8[])").fetchall()
    assert probs[0] == probs[1] and probs[0][0] > probs[2][0]


def extreme_frame() -> pd.DataFrame:
    """Rows far outside the data: scores of ±10⁶…10¹⁰⁰ that overflow exp() unless normalised stably."""
    values = [1e3, -1e3, 1e6, -1e6, 1e50, -1e50, 1e100, -1e100]
    rng = np.random.default_rng(3)
    rows = [[v, 0.0, 0.0] for v in values] + [[0.0, v, 0.0] for v in values] + [[0.0, 0.0, v] for v in values]
    rows += rng.choice(values, size=(40, 3)).tolist()
    frame = pd.DataFrame(rows, columns=X_FEATURES)
    for j, name in enumerate(COUNT_FEATURES):  # multinomial NB counts: huge, but non-negative
        frame[name] = np.abs(frame[X_FEATURES[j]])
    frame.insert(0, "id", np.arange(1, len(frame) + 1))
    return frame


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_extreme_feature_values_give_probabilities_that_sum_to_one(env, name):
    frame = extreme_frame()
    load_frame(env.conn, "extreme", frame)
    m = env.models[name]
    feats = features_of(m)
    _, probs = proba_per_row(env.conn, name, feats, table="extreme")
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    classes = [label_text(c) for c in m.classes_]
    got = scalar_per_row(env.conn, "predict_class", name, feats, table="extreme")
    assert got == [label_text(v) for v in m.predict(frame[feats])]
    assert got == [classes[i] for i in probs.argmax(axis=1)]
    # numpy's own normalisation (jll − logsumexp) rounds at |jll|·eps here, hence the looser tolerance
    np.testing.assert_allclose(probs, m.predict_proba(frame[feats]), rtol=0, atol=1e-6)


def test_extreme_scores_of_a_regression_and_float8_overflow(env):
    m = env.models["lin"]
    got = env.conn.execute("SELECT modelstore.predict('lin', ARRAY[1e300, -1e300, 1e300]::float8[])").fetchone()[0]
    assert got == pytest.approx(m.predict([[1e300, -1e300, 1e300]])[0], rel=1e-12)
    # beyond float8 PostgreSQL refuses (numpy would say inf): the documented error, naming the function
    err = sql_error(env.conn, "SELECT modelstore.predict('lin', ARRAY[1e308, 0, 1e308]::float8[])")
    assert err.sqlstate == "22003" and "out of range" in str(err)
    assert "modelstore._scores" in (err.diag.context or "")


def test_infinite_log_probabilities_of_unsmoothed_multinomial_nb(env):
    """alpha = 0 leaves log P(x_j | c) = −inf (stored as "-inf"): SQL follows numpy, 0·(−inf) = NaN included."""
    sparse = pd.DataFrame({"id": range(1, 9), "label": list("aaaabbbb"),
                           "c1": [1, 2, 3, 1, 0, 1, 2, 1], "c2": [0, 0, 0, 0, 2, 1, 3, 2]})
    load_frame(env.store.conn, "sparse", sparse)
    m = env.store.fit("multinomial_nb", table="sparse", target="label", features=["c1", "c2"], order_by="id",
                      alpha=0.0, name="mnb_alpha0")
    weights = dict(((c, f), w) for c, f, w in env.conn.execute("SELECT * FROM modelstore.weights('mnb_alpha0')"))
    assert weights[("a", "c2")] == -math.inf == m.feature_log_prob_[0, 1]
    test_rows = pd.DataFrame({"id": [1, 2, 3], "c1": [1.0, 1.0, 0.0], "c2": [2.0, 0.0, 1.0]})
    load_frame(env.conn, "sparse_test", test_rows)
    _, probs = proba_per_row(env.conn, "mnb_alpha0", ["c1", "c2"], table="sparse_test")
    ref = m.predict_proba(test_rows[["c1", "c2"]])
    assert np.isnan(ref[1]).all()  # the row with c2 = 0: class a's score is 0·(−inf) = NaN in numpy
    np.testing.assert_allclose(probs, ref, rtol=1e-9, atol=1e-15, equal_nan=True)
    assert probs[0, 0] == 0.0 and probs[2, 0] == 0.0  # log P = −inf: probability exactly 0
    got = scalar_per_row(env.conn, "predict_class", "mnb_alpha0", ["c1", "c2"], table="sparse_test")
    assert got == list(m.predict(test_rows[["c1", "c2"]]))


# -- weights -----------------------------------------------------------------------------------------


def weights_of(conn, name) -> list[tuple]:
    return conn.execute("SELECT class_label, feature, weight FROM modelstore.weights(%s)", [name]).fetchall()


def test_weights_of_a_linear_model(env):
    m = env.models["lin"]
    assert weights_of(env.conn, "lin") == [(None, "(intercept)", m.intercept_)] + [
        (None, f, c) for f, c in zip(X_FEATURES, m.coef_.tolist())]


@pytest.mark.parametrize("name", ["lg_text2", "lg_bool", "lg_int3", "lg_text3"])
def test_weights_of_a_logistic_model(env, name):
    m = env.models[name]
    classes = [label_text(c) for c in m.classes_]
    rows_for = [classes[1]] if len(classes) == 2 else classes  # two classes: the log-odds of classes[1]
    expected = []
    for label, coef, intercept in zip(rows_for, m.coef_.tolist(), m.intercept_.tolist()):
        expected += [(label, "(intercept)", intercept)] + [(label, f, c) for f, c in zip(X_FEATURES, coef)]
    assert weights_of(env.conn, name) == expected


def test_weights_of_multinomial_nb_are_the_linear_form_of_its_score(env):
    m = env.models["mnb_int"]
    rows = weights_of(env.conn, "mnb_int")
    classes = [label_text(c) for c in m.classes_]
    expected = []
    for label, flp, prior in zip(classes, m.feature_log_prob_.tolist(), m.class_log_prior_.tolist()):
        expected += [(label, "(intercept)", prior)] + [(label, f, w) for f, w in zip(COUNT_FEATURES, flp)]
    assert rows == expected
    # documented meaning: score_c = (intercept) + Σ weight · x is the joint log-likelihood
    x = env.frame[COUNT_FEATURES].to_numpy()[:50]
    table = {(c, f): w for c, f, w in rows}
    scores = np.column_stack([table[(c, "(intercept)")] + x @ [table[(c, f)] for f in COUNT_FEATURES] for c in classes])
    np.testing.assert_allclose(scores, m.predict_joint_log_proba(x), rtol=1e-12)


def test_weights_of_gaussian_nb_are_prior_mean_and_variance(env):
    m = env.models["gnb_text"]
    expected = []
    for i, c in enumerate(m.classes_):
        expected.append((c, "(prior)", m.class_prior_[i]))
        for j, f in enumerate(X_FEATURES):
            expected += [(c, f, m.theta_[i, j]), (c, f"{f} (var)", m.var_[i, j])]
    assert weights_of(env.conn, "gnb_text") == expected


# -- NULLs and errors --------------------------------------------------------------------------------


def test_null_elements_give_null_results(env):
    one = env.conn.execute(
        "SELECT modelstore.predict('lin', ARRAY[1, NULL, 3]::float8[]), "
        "modelstore.predict_class('gnb_text', ARRAY[NULL, 1, 1]::float8[]), "
        "modelstore.predict('lg_int3', ARRAY[1, 1, NULL]::float8[]), "
        "modelstore.predict(NULL, ARRAY[1, 2, 3]::float8[]), modelstore.predict('lin', NULL)").fetchone()
    assert one == (None, None, None, None, None)
    # predict_proba keeps one row per class (so a LATERAL join keeps the input row), probability NULL
    rows = env.conn.execute("SELECT * FROM modelstore.predict_proba('lg_text3', ARRAY[1, NULL, 3]::float8[])").fetchall()
    assert rows == [("apple", None), ("banana", None), ("cherry", None)]
    assert env.conn.execute("SELECT count(*) FROM modelstore.weights(NULL)").fetchone()[0] == 0


def test_unknown_model_is_named(env):
    for query in ["SELECT modelstore.predict('no_such', ARRAY[1]::float8[])",
                  "SELECT modelstore.predict_class('no_such', ARRAY[1]::float8[])",
                  "SELECT * FROM modelstore.predict_proba('no_such', ARRAY[1]::float8[])",
                  "SELECT * FROM modelstore.weights('no_such')"]:
        err = sql_error(env.conn, query)
        assert err.sqlstate == "42704"  # undefined_object
        assert 'no model named "no_such"' in str(err)
        assert "modelstore.models" in err.diag.message_hint


def test_wrong_length_names_the_expected_features(env):
    err = sql_error(env.conn, "SELECT modelstore.predict('lin', ARRAY[1, 2]::float8[])")
    assert err.sqlstate == "22023"
    assert 'model "lin" takes 3 feature(s) (x1, x2, x3), got an array of 2' in str(err)
    err = sql_error(env.conn, "SELECT * FROM modelstore.predict_proba('mnb_int', ARRAY[1, 2, 3, 4]::float8[])")
    assert "takes 3 feature(s) (c1, c2, c3), got an array of 4" in str(err)
    err = sql_error(env.conn, "SELECT modelstore.predict_class('gnb_text', '{}'::float8[])")
    assert "got an array of 0" in str(err)
    err = sql_error(env.conn, "SELECT modelstore.predict('lin', ARRAY[[1, 2, 3]]::float8[])")
    assert err.sqlstate == "22023" and "one-dimensional features array, got one of 2 dimensions" in str(err)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_features_are_refused_by_name(env, bad):
    err = sql_error(env.conn, "SELECT modelstore.predict_class('gnb_text', ARRAY[1, %s::float8, 3])", [bad])
    assert err.sqlstate == "22023"
    assert f'feature "x2" of model "gnb_text" is {bad}' in str(err)


def test_predict_of_text_labels_points_to_predict_class(env):
    err = sql_error(env.conn, "SELECT modelstore.predict('lg_text3', ARRAY[1, 2, 3]::float8[])")
    assert err.sqlstate == "42804"
    assert "predicts text labels ('apple', 'banana', 'cherry')" in str(err)
    assert "modelstore.predict_class('lg_text3'" in err.diag.message_hint


def test_predict_proba_of_a_regression_is_refused(env):
    err = sql_error(env.conn, "SELECT * FROM modelstore.predict_proba('lin', ARRAY[1, 2, 3]::float8[])")
    assert err.sqlstate == "42809"
    assert 'model "lin" is a linear regression and has no class probabilities' in str(err)


# -- privileges --------------------------------------------------------------------------------------


def test_a_role_that_is_not_the_owner_scores_with_the_documented_grants(env):
    can = env.conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    if not can:
        pytest.skip("the test role may not create roles")
    role = f"ms_scorer_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    admin = env.conn
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
    try:
        admin.execute(sql.SQL("GRANT SELECT ON public.obs TO {}").format(ident))
        with psycopg.connect(env.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(ident))
            query = sql.SQL("SELECT modelstore.predict_class('lg_text3', {}) FROM obs ORDER BY id").format(
                array_of(X_FEATURES))
            err = sql_error(conn, query)
            assert err.sqlstate == "42501" and "schema modelstore" in str(err)  # no USAGE on the schema yet
            admin.execute(sql.SQL("GRANT USAGE ON SCHEMA modelstore TO {}").format(ident))
            err = sql_error(conn, query)
            assert err.sqlstate == "42501" and "fitted_models" in str(err)  # the catalog row is not readable
            # the documented minimum: these four columns of the catalog, nothing else
            admin.execute(sql.SQL("GRANT SELECT (name, kind, features, state, serving_classes, serving_w, serving_v, "
                                  "serving_b, serving_c) ON modelstore.fitted_models TO {}")
                          .format(ident))
            got = [r[0] for r in conn.execute(query).fetchall()]
            assert got == [label_text(v) for v in env.models["lg_text3"].predict(env.frame[X_FEATURES])]
            probs = conn.execute("SELECT probability FROM modelstore.predict_proba('gnb_float', ARRAY[0, 5, -1]::float8[])"
                                 ).fetchall()
            np.testing.assert_allclose([p[0] for p in probs],
                                       env.models["gnb_float"].predict_proba([[0, 5, -1]])[0], rtol=1e-9)
            assert weights_of(conn, "lin") == weights_of(admin, "lin")
            err = sql_error(conn, "SELECT plan FROM modelstore.fitted_models")
            assert err.sqlstate == "42501"  # the rest of the catalog stays closed
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        admin.execute(sql.SQL("DROP ROLE {}").format(ident))
