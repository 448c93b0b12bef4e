"""The model language (BigQuery ML syntax) against a real PostgreSQL: every statement form, WHERE clauses
as descriptors, predictions and metrics computed in the database against scikit-learn / statsmodels on
the same rows, errors with positions, and hostile input that must never run as SQL."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn import metrics
from sklearn.linear_model import LinearRegression as SkLinear

import modelstore
from modelstore.planner.costs import CostModel
from tests.helpers import catalog_counts, load_frame

N = 3000
FEATURES = ["x1", "x2", "x3"]


pytestmark = pytest.mark.store(cost_model=CostModel.default())  # tests/fixtures.py


@pytest.fixture(scope="module")
def store(store):
    """The shared store with the table ``obs``; ``store.frame`` holds its rows."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(N, 3))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["y"] = 1.5 + X @ [2.0, -1.0, 0.5] + rng.normal(0, 0.5, N)
    frame["cls"] = (0.3 + X @ [1.2, -0.8, 0.4] + rng.logistic(size=N) > 0).astype(int)
    frame["colour"] = np.array(["red", "green", "blue"])[(X @ [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
                                                          + rng.gumbel(size=(N, 3))).argmax(axis=1)]
    frame["region"] = np.where(rng.random(N) < 0.5, "EU", "US")
    frame["counts1"] = rng.poisson(3, N)
    frame["counts2"] = rng.poisson(5, N)
    frame["ts"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(frame.id - 1, unit="h")
    frame["pos"] = frame.id / 7.0  # a double precision ordering column
    load_frame(store.conn, "obs", frame)
    store.conn.execute("ALTER TABLE obs ADD PRIMARY KEY (id)")
    store.conn.execute("ALTER TABLE obs ADD COLUMN day date")
    store.conn.execute("UPDATE obs SET day = ts::date")
    store.conn.execute("ALTER TABLE obs ADD COLUMN amount numeric")
    store.conn.execute("UPDATE obs SET amount = id::numeric / 4")
    store.conn.execute("ANALYZE obs")
    store.frame = frame.assign(day=frame.ts.dt.date, amount=frame.id / 4)
    return store


LINEAR = ("CREATE OR REPLACE MODEL {name} OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], "
          "order_by = 'id') AS SELECT x1, x2, x3, y FROM obs WHERE {where}")


def create_linear(store, where, name="lin"):
    return store.query(LINEAR.format(name=name, where=where))


# -- CREATE MODEL: the WHERE clause as a descriptor ---------------------------------------------------


@pytest.mark.parametrize("where, lo, hi, residual, mask", [
    ("id BETWEEN 101 AND 900", 101, 900, "", lambda f: f.id.between(101, 900)),
    ("id >= 101 AND id <= 900", 101, 900, "", lambda f: f.id.between(101, 900)),
    ("id > 100 AND id < 901", 101, 900, "", lambda f: f.id.between(101, 900)),
    ("900 >= id AND 101 <= id", 101, 900, "", lambda f: f.id.between(101, 900)),
    ("ID BETWEEN 1 AND 2000 AND id > 500 AND Region = 'EU'", 501, 2000, "region = 'EU'",
     lambda f: f.id.between(501, 2000) & (f.region == "EU")),
    ("(id BETWEEN 101 AND 900) AND (x1 > 0 OR x2 > 0)", 101, 900, "x1 > 0 OR x2 > 0",
     lambda f: f.id.between(101, 900) & ((f.x1 > 0) | (f.x2 > 0))),
    ("id < 10 OR id > 2990", 1, N, "id < 10 OR id > 2990", lambda f: (f.id < 10) | (f.id > 2990)),
    # sqlglot's normalisation rewrites NOT id > 100 as id <= 100, but only after the range was taken
    ("NOT id > 100", 1, N, "id <= 100", lambda f: ~(f.id > 100)),
])
def test_where_clause_becomes_range_and_residual_filter(store, where, lo, hi, residual, mask):
    m = create_linear(store, where)
    d = m.descriptor
    assert (d.range.lo, d.range.hi) == (lo, hi)
    assert d.filter_sql == residual
    sel = store.frame[mask(store.frame)]
    ref = SkLinear().fit(sel[FEATURES], sel.y)
    assert m.n_obs == len(sel)
    np.testing.assert_allclose(m.coef_, ref.coef_, rtol=1e-9)


def test_timestamp_date_and_float_ordering_columns(store):
    f = store.frame
    m = store.query("CREATE OR REPLACE MODEL t1 OPTIONS (model_type='linear_reg', input_label_cols=['y'], order_by='ts') "
                    "AS SELECT x1, x2, y FROM obs WHERE ts >= TIMESTAMP '2024-01-02 00:00:00' AND ts < '2024-01-20'")
    sel = f[(f.ts >= "2024-01-02") & (f.ts < "2024-01-20")]
    assert m.n_obs == len(sel)
    assert m.descriptor.range.hi == dt.datetime(2024, 1, 19, 23, 59, 59, 999999)  # strict bound: − 1 µs
    m = store.query("CREATE OR REPLACE MODEL t2 OPTIONS (model_type='linear_reg', input_label_cols=['y'], order_by='day') "
                    "AS SELECT x1, x2, y FROM obs WHERE day > DATE '2024-01-05' AND day <= '2024-02-01'")
    sel = f[(f.day > dt.date(2024, 1, 5)) & (f.day <= dt.date(2024, 2, 1))]
    assert m.n_obs == len(sel) and m.descriptor.range.lo == dt.date(2024, 1, 6)
    m = store.query("CREATE OR REPLACE MODEL t3 OPTIONS (model_type='linear_reg', input_label_cols=['y'], order_by='pos') "
                    "AS SELECT x1, x2, y FROM obs WHERE pos > 10.0 AND pos < 200")
    sel = f[(f.pos > 10.0) & (f.pos < 200)]
    assert m.n_obs == len(sel)  # the strict bounds became the next doubles: the same rows
    np.testing.assert_allclose(m.coef_, SkLinear().fit(sel[["x1", "x2"]], sel.y).coef_, rtol=1e-9)
    with pytest.raises(modelstore.RangeError, match="strict bound on the numeric ordering column"):
        store.query("CREATE MODEL t4 OPTIONS (model_type='linear_reg', input_label_cols=['y'], order_by='amount') "
                    "AS SELECT x1, y FROM obs WHERE amount > 10")


def test_equal_filters_written_differently_share_stored_statistics(store):
    first = create_linear(store, "region = 'EU' AND id BETWEEN 1001 AND 1500", name="share_a")
    again = create_linear(store, "id <= 1500 AND 'EU' = region AND (id >= 1001)", name="share_b")
    assert again.descriptor == first.descriptor
    assert [s.op for s in again.plan.plan.steps] == ["stored"]
    assert again.plan.rows_scanned == 0
    np.testing.assert_array_equal(again.coef_, first.coef_)


def test_same_model_from_python_language_and_cli(store, module_dsn):
    by_python = store.fit("linear", table="obs", target="y", features=FEATURES, order_by="id", lo=201, hi=2200,
                          where="region = 'US'", name="door_python")
    by_language = create_linear(store, "id BETWEEN 201 AND 2200 AND region = 'US'", name="door_language")
    statement = LINEAR.format(name="door_cli", where="region = 'US' AND id >= 201 AND id <= 2200")
    proc = subprocess.run([sys.executable, "-m", "modelstore", "--dsn", module_dsn, "query", statement],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "door_cli (linear)" in proc.stdout
    by_cli = store.model("door_cli")
    for m in (by_language, by_cli):
        np.testing.assert_array_equal(m.coef_, by_python.coef_)
        assert m.intercept_ == by_python.intercept_


# -- ML functions: computed next to the data, equal to the references ----------------------------------


def test_predict_linear_matches_the_model_and_runs_in_the_database(store):
    m = create_linear(store, "id <= 2000", name="lin_pred")
    out = store.query("SELECT id, predicted_y FROM ML.PREDICT(MODEL lin_pred, (SELECT id, x1, x2, x3 FROM obs "
                      "WHERE id > 2000)) ORDER BY id")
    f = store.frame[store.frame.id > 2000]
    np.testing.assert_allclose(out.predicted_y, m.predict(f[FEATURES]), rtol=1e-12, atol=1e-12)
    assert list(out.id) == list(f.id)
    # an aggregate over ML.PREDICT: one row comes back, the predictions never left PostgreSQL
    agg = store.query("SELECT count(*) AS n, avg(p.predicted_y) AS mean FROM ML.PREDICT(MODEL lin_pred, TABLE obs) AS p")
    assert len(agg) == 1 and agg.n[0] == N
    assert agg["mean"][0] == pytest.approx(m.predict(store.frame[FEATURES]).mean(), rel=1e-12)


@pytest.mark.parametrize("model_type, label, extra", [
    ("logistic_reg", "cls", ", chunk_rows = 600"),
    ("logistic_reg", "colour", ", chunk_rows = 600"),
    ("naive_bayes", "cls", ""),
    ("naive_bayes", "colour", ""),
])
def test_predict_classifiers_match_predict_proba(store, model_type, label, extra):
    name = f"c_{model_type}_{label}"
    m = store.query(f"CREATE OR REPLACE MODEL {name} OPTIONS (model_type = '{model_type}', input_label_cols = ['{label}']"
                    f"{extra}) AS SELECT x1, x2, x3, {label} FROM obs WHERE id <= 2400")
    out = store.query(f"SELECT * FROM ML.PREDICT(MODEL {name}, (SELECT id, x1, x2, x3 FROM obs WHERE id > 2400 "
                      f"ORDER BY id)) ORDER BY id")
    f = store.frame[store.frame.id > 2400]
    assert list(out[f"predicted_{label}"]) == list(m.predict(f[FEATURES]))
    probs = np.array([[p[str(c)] for c in m.classes_] for p in out[f"predicted_{label}_probs"]])
    np.testing.assert_allclose(probs, m.predict_proba(f[FEATURES]), rtol=1e-9, atol=1e-15)


def test_predict_multinomial_nb_and_extreme_inputs(store):
    m = store.query("CREATE OR REPLACE MODEL mnb OPTIONS (model_type='multinomial_nb', input_label_cols=['colour']) "
                    "AS SELECT counts1, counts2, colour FROM obs")
    out = store.query("SELECT * FROM ML.PREDICT(MODEL mnb, (SELECT id, counts1, counts2 FROM obs)) ORDER BY id")
    assert list(out.predicted_colour) == list(m.predict(store.frame[["counts1", "counts2"]]))
    # huge inputs: no overflow or underflow error, probabilities still sum to 1
    lg = store.query("CREATE OR REPLACE MODEL lg_big OPTIONS (model_type='logistic_reg', input_label_cols=['cls'], "
                     "chunk_rows=1000) AS SELECT x1, x2, x3, cls FROM obs")
    big = store.query("SELECT * FROM ML.PREDICT(MODEL lg_big, (SELECT 1e6 AS x1, -1e6 AS x2, 1e6 AS x3 UNION ALL "
                      "SELECT -1e6, 1e6, -1e6))")
    sums = [sum(p.values()) for p in big.predicted_cls_probs]
    np.testing.assert_allclose(sums, 1.0, rtol=1e-12)
    assert list(big.predicted_cls) == list(lg.predict(np.array([[1e6, -1e6, 1e6], [-1e6, 1e6, -1e6]])))


def test_evaluate_regression_against_scikit_learn(store):
    m = create_linear(store, "id <= 2000", name="lin_eval")
    f = store.frame[store.frame.id > 2000]
    out = store.query("SELECT * FROM ML.EVALUATE(MODEL lin_eval, (SELECT x1, x2, x3, y FROM obs WHERE id > 2000))")
    p = m.predict(f[FEATURES])
    assert out["rows"][0] == len(f)
    assert out.mean_absolute_error[0] == pytest.approx(metrics.mean_absolute_error(f.y, p), rel=1e-9)
    assert out.mean_squared_error[0] == pytest.approx(metrics.mean_squared_error(f.y, p), rel=1e-9)
    assert out.r2_score[0] == pytest.approx(metrics.r2_score(f.y, p), rel=1e-9)
    assert out.explained_variance[0] == pytest.approx(metrics.explained_variance_score(f.y, p), rel=1e-9)
    # without input rows: the model's own training rows
    train = store.query("SELECT r2_score, `rows` FROM ML.EVALUATE(MODEL lin_eval)")
    assert train["rows"][0] == 2000 and train.r2_score[0] == pytest.approx(m.rsquared, rel=1e-9)


@pytest.mark.parametrize("label, average", [("cls", "binary"), ("colour", "macro")])
def test_evaluate_classification_against_scikit_learn(store, label, average):
    name = f"nb_eval_{label}"
    m = store.query(f"CREATE OR REPLACE MODEL {name} OPTIONS (model_type='naive_bayes', input_label_cols=['{label}']) "
                    f"AS SELECT x1, x2, x3, {label} FROM obs WHERE id <= 2000")
    f = store.frame[store.frame.id > 2000]
    out = store.query(f"SELECT * FROM ML.EVALUATE(MODEL {name}, (SELECT x1, x2, x3, {label} FROM obs WHERE id > 2000))")
    pred, proba = m.predict(f[FEATURES]), m.predict_proba(f[FEATURES])
    kw = {"average": average} if average == "macro" else {"pos_label": m.classes_[1]}
    assert out.accuracy[0] == pytest.approx(metrics.accuracy_score(f[label], pred), rel=1e-12)
    assert out.precision[0] == pytest.approx(metrics.precision_score(f[label], pred, **kw), rel=1e-12)
    assert out.recall[0] == pytest.approx(metrics.recall_score(f[label], pred, **kw), rel=1e-12)
    assert out.f1_score[0] == pytest.approx(metrics.f1_score(f[label], pred, **kw), rel=1e-12)
    assert out.log_loss[0] == pytest.approx(metrics.log_loss(f[label], proba, labels=m.classes_), rel=1e-9)


def test_weights_and_advanced_weights_against_statsmodels(store):
    create_linear(store, "id BETWEEN 1 AND 1500", name="lin_w")
    f = store.frame[store.frame.id <= 1500]
    ols = sm.OLS(f.y, sm.add_constant(f[FEATURES])).fit()
    w = store.query("SELECT * FROM ML.WEIGHTS(MODEL lin_w)").set_index("processed_input").weight
    adv = store.query("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL lin_w) WHERE processed_input <> 'x2' "
                      "ORDER BY processed_input").set_index("processed_input")
    assert list(adv.index) == ["__INTERCEPT__", "x1", "x3"]
    for ours, theirs in (("__INTERCEPT__", "const"), ("x1", "x1"), ("x3", "x3")):
        assert w[ours] == pytest.approx(ols.params[theirs], rel=1e-9)
        assert adv.standard_error[ours] == pytest.approx(ols.bse[theirs], rel=1e-9)
        assert adv.t_value[ours] == pytest.approx(ols.tvalues[theirs], rel=1e-9)
        assert adv.p_value[ours] == pytest.approx(ols.pvalues[theirs], rel=1e-6, abs=1e-300)
    nb = store.query("SELECT * FROM ML.WEIGHTS(MODEL nb_eval_colour) WHERE class_label = 'red' ORDER BY processed_input")
    model = store.model("nb_eval_colour")
    k = list(model.classes_).index("red")
    np.testing.assert_allclose(nb["mean"], model.theta_[k], rtol=1e-12)
    np.testing.assert_allclose(nb["variance"], model.var_[k], rtol=1e-12)
    with pytest.raises(modelstore.LanguageError, match="ADVANCED_WEIGHTS.*linear_reg"):
        store.query("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL nb_eval_colour)")


def test_training_info_lists_the_plan(store):
    create_linear(store, "id BETWEEN 1 AND 1000", name="ti_a")
    m = create_linear(store, "id BETWEEN 1 AND 1200", name="ti_b")
    info = store.query("SELECT * FROM ML.TRAINING_INFO(MODEL ti_b) ORDER BY step")
    assert len(info) == len(m.plan.results)
    assert list(info.operation) == [r.step.label() for r in m.plan.results]
    assert list(info.actual_rows) == [r.rows for r in m.plan.results]
    assert info.rows_scanned[0] == m.plan.rows_scanned == 200
    assert info.strategy[0] == m.plan.plan.strategy


def test_explain_show_drop(store):
    before = catalog_counts(store.conn)
    plan = store.query("EXPLAIN " + LINEAR.format(name="never_built", where="id BETWEEN 5 AND 50"))
    assert list(plan.columns) == ["QUERY PLAN"] and plan["QUERY PLAN"][0].startswith("Plan for linear")
    assert catalog_counts(store.conn) == before
    one_row = store.query("EXPLAIN " + LINEAR.format(name="x", where="id = 77")).attrs["plan"]
    assert (one_row.descriptor.range.lo, one_row.descriptor.range.hi) == (77, 77)
    create_linear(store, "id <= 100", name="to_drop")
    assert "to_drop" in set(store.query("SHOW MODELS").name)
    assert store.query("DROP MODEL to_drop").dropped[0]
    assert not store.query("DROP MODEL IF EXISTS to_drop").dropped[0]
    with pytest.raises(modelstore.ModelNotFoundError):
        store.query("DROP MODEL to_drop")
    assert "to_drop" not in set(store.query("SHOW MODELS").name)


def test_create_without_replace_refuses_an_existing_name(store):
    create_linear(store, "id <= 100", name="once")
    before = catalog_counts(store.conn)
    with pytest.raises(modelstore.InputError, match="once"):
        store.query(LINEAR.format(name="once", where="id <= 200").replace("CREATE OR REPLACE", "CREATE"))
    assert catalog_counts(store.conn) == before


def test_order_by_defaults_to_the_primary_key_and_star_selects_the_other_columns(store):
    m = store.query("CREATE OR REPLACE MODEL pk OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
                    "AS SELECT x1, y FROM obs WHERE id <= 500")
    assert m.descriptor.source.order_by == "id" and m.n_obs == 500
    with pytest.raises(modelstore.LanguageError, match="not numbers"):
        store.query("CREATE MODEL star OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT * FROM obs")


# -- errors name the position and the problem ----------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("SELECT * FROM ML.WEIGHTS(MODEL lin", r"line 1, column \d+: Expecting \)"),
    ("CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y'], colour='x') AS SELECT x1, y FROM obs",
     r"line 1, column \d+: unknown option 'colour'"),
    ("CREATE MODEL m OPTIONS (model_type='forest') AS SELECT x1, y FROM obs", r"model_type 'forest' is not one of"),
    ("CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y'])\nAS SELECT x1,\n  nope, y FROM obs",
     r"line 3, column 3: column 'nope' does not exist"),
    ("CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM obs GROUP BY x1",
     "GROUP is not supported"),
    ("CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT x1 + 1, y FROM obs",
     "plain columns"),
    ("CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['z']) AS SELECT x1, y FROM obs",
     "label column 'z'"),
    ("CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM obs "
     "WHERE id > 10 AND id < 5", "range on 'id' is empty"),
    ("SELECT * FROM ML.PREDICT(MODEL lin_pred, (SELECT x1 FROM obs))", r"lack column\(s\) \['x2', 'x3'\]"),
    ("SELECT * FROM ML.PREDICT(MODEL no_such_model, TABLE obs)", "no model named 'no_such_model'"),
    ("UPDATE obs SET y = 0", "UPDATE is not a model-language statement"),
    ("EXPLAIN SELECT 1", "EXPLAIN is followed by CREATE MODEL"),
    ("SHOW TABLES", "SHOW MODELS only"),
    ("   ", "non-empty"),
])
def test_errors_name_position_and_problem(store, text, message):
    before = catalog_counts(store.conn)
    with pytest.raises(modelstore.InputError, match=message):
        store.query(text)
    assert catalog_counts(store.conn) == before


# -- hostile input: quotes, semicolons and comments are data, never SQL --------------------------------


HOSTILE = [
    # identifiers
    "CREATE MODEL `m\"; DROP TABLE obs; --` OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
    "AS SELECT x1, y FROM obs WHERE id <= 50",
    "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM `obs\"; DROP TABLE obs; --`",
    "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y'], order_by='id; DROP TABLE obs') "
    "AS SELECT x1, y FROM obs",
    "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y); DROP TABLE obs; --']) AS SELECT x1, y FROM obs",
    "SELECT * FROM ML.PREDICT(MODEL `x'); DROP TABLE obs; --`, TABLE obs)",
    # literals
    "CREATE MODEL m2 OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM obs "
    "WHERE region = 'EU''; DROP TABLE obs; --' OR id < 30",
    "CREATE MODEL m3 OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM obs "
    "WHERE id BETWEEN '1; DROP TABLE obs' AND 5",
    # comments and semicolons in every position
    "CREATE /* ; DROP TABLE obs; */ MODEL m4 OPTIONS (model_type='linear_reg', -- ; DROP TABLE obs\n"
    "input_label_cols=['y']) AS SELECT x1, y FROM obs WHERE id <= 40 /* ; DELETE FROM obs */",
    "SELECT * FROM ML.PREDICT(MODEL lin_pred, (SELECT x1, x2, x3 FROM obs /* ; DROP TABLE obs */ WHERE id < 3))",
    "SELECT * FROM ML.WEIGHTS(MODEL lin_pred); DROP TABLE obs",
    "DROP MODEL IF EXISTS nothing; DELETE FROM obs",
    # writes hidden inside an input query
    "SELECT * FROM ML.PREDICT(MODEL lin_pred, (SELECT x1, x2, x3, nextval('obs_seq') FROM obs))",
    "SELECT * FROM ML.PREDICT(MODEL lin_pred, (SELECT x1, x2, x3, set_config('search_path', 'evil', false) FROM obs))",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_input_is_never_executed(store, text):
    store.conn.execute("CREATE SEQUENCE IF NOT EXISTS obs_seq")
    seq_before = store.conn.execute("SELECT last_value FROM obs_seq").fetchone()[0]
    rows_before = store.conn.execute("SELECT count(*), sum(y) FROM obs").fetchone()
    tables_before = store.conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r'").fetchone()[0]
    models_before = set(store.query("SHOW MODELS").name)
    try:
        store.query(text)
    except modelstore.ModelstoreError:
        pass
    except Exception as exc:  # the database refused it (e.g. a write in a READ ONLY transaction)
        assert "read-only" in str(exc) or "does not exist" in str(exc), exc
    assert store.conn.execute("SELECT count(*), sum(y) FROM obs").fetchone() == rows_before
    assert store.conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r'").fetchone()[0] == tables_before
    assert store.conn.execute("SELECT last_value FROM obs_seq").fetchone()[0] == seq_before
    assert store.conn.execute("SHOW search_path").fetchone()[0] != "evil"
    created = set(store.query("SHOW MODELS").name) - models_before
    assert created <= {'m"; DROP TABLE obs; --', "m2", "m4"}  # names are data; nothing else appears
    if created:
        store.query("; ".join(f"DROP MODEL `{n}`" for n in created if "`" not in n))


def test_hostile_model_name_round_trips_as_data(store):
    name = "it's; a \"name\" -- /* x */"
    store.query("CREATE OR REPLACE MODEL `" + name + "` OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
                "AS SELECT x1, y FROM obs WHERE id <= 60")
    assert name in set(store.query("SHOW MODELS").name)
    w = store.query("SELECT * FROM ML.WEIGHTS(MODEL `" + name + "`)")
    assert len(w) == 2
    assert store.query("DROP MODEL `" + name + "`").dropped[0]


# -- the command line ---------------------------------------------------------------------------------


def test_cli_query_file_and_explain(store, module_dsn, tmp_path):
    script = tmp_path / "session.sql"
    script.write_text(LINEAR.format(name="cli_file", where="id BETWEEN 1 AND 700") + ";\n"
                      "SELECT processed_input, weight FROM ML.WEIGHTS(MODEL cli_file) ORDER BY processed_input;\n"
                      "SHOW MODELS;\n")
    cli = [sys.executable, "-m", "modelstore", "--dsn", module_dsn]
    proc = subprocess.run([*cli, "query", "-f", str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "__INTERCEPT__" in proc.stdout and "cli_file" in proc.stdout
    proc = subprocess.run([*cli, "explain", LINEAR.format(name="x", where="id BETWEEN 1 AND 700")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "stored #" in proc.stdout and "[1, 700]" in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run([*cli, "query", "SELECT * FROM ML.WEIGHTS(MODEL nope)"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "no model named 'nope'" in proc.stderr
    assert math.isfinite(store.model("cli_file").intercept_)
