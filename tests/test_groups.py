"""Per-group models (issue #18, docs/serving.md "Per-group models"): group by group against numpy and
scikit-learn on each group's own rows, the shrinkage against a hand computation of
(XᵀX + λI)⁻¹(Xᵀy + λ w_global) on the raw rows, unseen groups served the global model, one grouped
aggregate for every group, and grouped deployments kept exact with a write touching only its group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest
from sklearn.naive_bayes import GaussianNB, MultinomialNB

import modelstore
from modelstore.errors import InputError, UnknownColumnError
from tests.helpers import load_frame, rel_err, table_reads
from tests.reference import ols

TOL = 1e-9
GROUPS = ["AA", "B6", "DL", "UA", "tiny"]


@pytest.fixture
def store(dsn):
    rng = np.random.default_rng(18)
    rows = []
    for g, name in enumerate(GROUPS):
        n = 3 if name == "tiny" else 150 + 40 * g
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        y = (1.0 + g) + (0.5 - 0.3 * g) * x1 + (2.0 + 0.1 * g) * x2 + 0.2 * rng.normal(size=n)
        label = (x1 + 0.3 * g * x2 + 0.3 * rng.normal(size=n) > 0).astype(int) + (x2 > 1.0)
        rows.append(pd.DataFrame({"carrier": name, "x1": x1, "x2": x2, "y": y, "label": label}))
    frame = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=3).reset_index(drop=True)
    frame.insert(0, "id", np.arange(1, len(frame) + 1))
    with modelstore.Store(dsn) as s:
        load_frame(s.conn, "flights", frame)
        s.conn.execute("ALTER TABLE public.flights ADD PRIMARY KEY (id)")
        yield s


def table(conn) -> pd.DataFrame:
    cur = conn.execute("SELECT id, carrier, x1, x2, y, label FROM public.flights ORDER BY id")
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def shrunk_by_hand(X, y, w_global, lam):
    """(XᵀX + λI)⁻¹(Xᵀy + λ w_global) with X's column of ones: the formula, on the raw rows."""
    A = np.column_stack([np.ones(len(X)), X])
    return np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ y + lam * w_global)


def test_linear_per_group_equals_numpy_and_shrinkage_formula(store):
    m = store.fit("linear", table="flights", target="y", features=["x1", "x2"], order_by="id", group_by="carrier",
                  group_l2=0.0, name="by_carrier_ols")
    df = table(store.conn)
    assert sorted(m.models) == sorted(GROUPS)
    for name in GROUPS:
        rows = df[df.carrier == name]
        want = ols(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy())
        got = m.models[name]
        assert rel_err(np.r_[got.intercept_, got.coef_], want) < TOL, name
        assert m.rows[name] == len(rows)
    w_global = ols(df[["x1", "x2"]].to_numpy(), df.y.to_numpy())
    assert rel_err(np.r_[m.intercept_, m.coef_], w_global) < TOL

    for lam in (0.5, 25.0):
        shrunk = store.fit("linear", table="flights", target="y", features=["x1", "x2"], order_by="id",
                           group_by="carrier", group_l2=lam, name=f"by_carrier_{int(lam * 10)}")
        for name in GROUPS:
            rows = df[df.carrier == name]
            want = shrunk_by_hand(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy(), w_global, lam)
            got = shrunk.models[name]
            assert rel_err(np.r_[got.intercept_, got.coef_], want) < TOL, (name, lam)
    # a three-row group is pulled toward the global model, and more so with a larger λ
    tiny = df[df.carrier == "tiny"]
    own = np.linalg.lstsq(np.column_stack([np.ones(3), tiny[["x1", "x2"]]]), tiny.y, rcond=None)[0]
    strong = store.model("by_carrier_250").models["tiny"]
    assert np.linalg.norm(np.r_[strong.intercept_, strong.coef_] - w_global) < np.linalg.norm(own - w_global)


def test_predict_by_group_and_unseen_group(store):
    m = store.fit("linear", table="flights", target="y", features=["x1", "x2"], order_by="id", group_by="carrier",
                  group_l2=2.0, name="lin_g")
    X = np.array([[0.1, 0.2], [0.3, -0.4], [1.0, 1.0], [-0.5, 0.5]])
    groups = ["AA", "UA", "nobody", "AA"]
    got = m.predict(X, groups=groups)
    for i, g in enumerate(groups):
        model = m.models.get(g)
        want = (m.intercept_ + X[i] @ m.coef_) if model is None else model.intercept_ + X[i] @ model.coef_
        assert abs(got[i] - want) <= 1e-12 * max(1.0, abs(want))
    assert np.allclose(m.predict(X), m.intercept_ + X @ m.coef_, rtol=0, atol=1e-12)  # no groups: global
    # the catalog round trip gives the same per-group models, and SQL scores with them
    again = store.model("lin_g")
    assert np.array_equal(again.predict(X, groups=groups), got)
    for i, g in enumerate(groups):
        sql_value = store.conn.execute("SELECT modelstore.predict('lin_g', %s, %s)", [g, X[i].tolist()]).fetchone()[0]
        assert abs(sql_value - got[i]) <= 1e-12 * max(1.0, abs(got[i]))
    with pytest.raises(InputError, match="groups has 2"):
        m.predict(X, groups=["AA", "UA"])


def test_gaussian_nb_per_group(store):
    m = store.fit("gaussian_nb", table="flights", target="label", features=["x1", "x2"], order_by="id",
                  group_by="carrier", group_l2=0.0, name="nb_g0")
    df = table(store.conn)
    for name in GROUPS:
        rows = df[df.carrier == name]
        ref = GaussianNB().fit(rows[["x1", "x2"]].to_numpy(), rows.label.to_numpy())
        got = m.models[name]
        assert list(got.classes_) == list(ref.classes_)
        assert rel_err(got.theta_, ref.theta_) < TOL and rel_err(got.var_, ref.var_) < TOL, name
        assert rel_err(got.class_prior_, ref.class_prior_) < TOL
    # the analogue with λ > 0: λ pseudo-rows of the global per-class statistics, by hand
    lam = 10.0
    s = store.fit("gaussian_nb", table="flights", target="label", features=["x1", "x2"], order_by="id",
                  group_by="carrier", group_l2=lam, name="nb_g10")
    assert m.group_plan["groups"] == "scan" and s.group_plan["groups"] == "stored"  # the first fit's summaries
    # one group's rows alone, from its stored per-class statistics: scikit-learn on that group's rows
    ua = store.fit("gaussian_nb", table="flights", target="label", features=["x1", "x2"], order_by="id",
                   where="carrier = 'UA'", name="nb_ua")
    rows = df[df.carrier == "UA"]
    ref = GaussianNB().fit(rows[["x1", "x2"]].to_numpy(), rows.label.to_numpy())
    assert ua.plan.rows_scanned == 0 and list(ua.classes_) == list(ref.classes_)
    assert rel_err(ua.theta_, ref.theta_) < TOL and rel_err(ua.var_, ref.var_) < TOL
    X, y = df[["x1", "x2"]].to_numpy(), df.label.to_numpy()
    classes = np.unique(y)
    for name in GROUPS:
        rows = df[df.carrier == name]
        Xg, yg = rows[["x1", "x2"]].to_numpy(), rows.label.to_numpy()
        counts, means, m2 = [], [], []
        for c in classes:
            a, Xa = (yg == c).sum(), Xg[yg == c]
            b, Xb = lam * (y == c).sum() / len(y), X[y == c]
            mu_a = Xa.mean(axis=0) if a else np.zeros(2)
            mu_b = Xb.mean(axis=0)
            mu = (a * mu_a + b * mu_b) / (a + b)
            # weighted second moment about the merged mean: the group's rows weight 1, the global rows b/n_c
            m2.append(((Xa - mu) ** 2).sum(axis=0) + b / len(Xb) * ((Xb - mu) ** 2).sum(axis=0))
            counts.append(a + b)
            means.append(mu)
        counts, means, m2 = np.array(counts), np.array(means), np.array(m2)
        total = counts.sum()
        pooled_mean = (counts[:, None] * means).sum(axis=0) / total
        pooled = (m2.sum(axis=0) + (counts[:, None] * (means - pooled_mean) ** 2).sum(axis=0)) / total
        var = m2 / counts[:, None] + 1e-9 * pooled.max()
        got = s.models[name]
        assert rel_err(got.theta_, means) < TOL and rel_err(got.var_, var) < TOL, name
        assert rel_err(got.class_prior_, counts / total) < TOL
    Xq = np.array([[0.2, -0.1], [1.5, 1.2]])
    got = s.predict(Xq, groups=["DL", "never seen"])
    assert got[0] == s.models["DL"].predict(Xq[:1])[0] and got[1] == s.global_model.predict(Xq[1:])[0]
    for i, g in enumerate(["DL", "never seen"]):
        sql_value = store.conn.execute("SELECT modelstore.predict('nb_g10', %s, %s)", [g, Xq[i].tolist()]).fetchone()[0]
        assert sql_value == got[i]


def test_one_grouped_aggregate(store, dsn):
    """Every group from one scan: with the global model's statistics stored, a grouped fit reads each
    row of the table once (one scan per group would read it once per group)."""
    kw = dict(table="flights", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=100_000)
    store.fit("linear", **kw, name="plain")  # stores the range's statistics: the global model is reused
    n = store.conn.execute("SELECT count(*) FROM public.flights").fetchone()[0]
    with psycopg.connect(dsn, autocommit=True) as observer:
        before = table_reads(store.conn, observer, "flights")
        m = store.fit("linear", **kw, group_by="carrier", name="grouped")
        after = table_reads(store.conn, observer, "flights")
    assert len(m.models) == len(GROUPS)
    # every row once, plus the planner's few index probes (row estimates at the range's ends)
    assert n <= after - before < n + 20


def test_bad_group_arguments(store):
    kw = dict(table="flights", target="y", features=["x1", "x2"], order_by="id")
    with pytest.raises(UnknownColumnError, match="group_by"):
        store.fit("linear", **kw, group_by="airline")
    with pytest.raises(InputError, match="feature or the target"):
        store.fit("linear", **kw, group_by="x1")
    with pytest.raises(InputError, match="group_l2"):
        store.fit("linear", **kw, group_by="carrier", group_l2=-1)
    with pytest.raises(InputError, match="group_by"):
        store.fit("linear", **kw, group_l2=1.0)
    with pytest.raises(InputError, match="per-group models"):
        store.fit("logistic", table="flights", target="label", features=["x1", "x2"], order_by="id", group_by="carrier")
    assert store.conn.execute("SELECT count(*) FROM modelstore.group_models").fetchone()[0] == 0


def group_stats(conn, name):
    return dict(conn.execute(
        "SELECT g.group_key, g.stats::text FROM modelstore.group_models g JOIN modelstore.fitted_models m "
        "USING (model_id) WHERE m.name = %s", [name]).fetchall())


def assert_groups_exact(store, d, other):
    df = table(store.conn)
    model = d.model
    assert sorted(model.models) == sorted(df.carrier.unique())
    for name, rows in df.groupby("carrier"):
        want = ols(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy())
        got = model.models[name]
        assert rel_err(np.r_[got.intercept_, got.coef_], want) < TOL, name
        sql_value = other.execute("SELECT modelstore.predict(%s, %s, ARRAY[0.5, -1.0])", [d.name, name]).fetchone()[0]
        assert abs(sql_value - (want[0] + 0.5 * want[1] - want[2])) < 1e-9 * max(1.0, abs(sql_value))


def test_grouped_deployment_follows_writes_group_by_group(store, dsn):
    store.conn.execute("CREATE INDEX ON public.flights (carrier)")
    d = store.deploy("by_carrier", "linear", table="flights", target="y", features=["x1", "x2"], order_by="id",
                     group_by="carrier", group_l2=0.0)
    n = store.conn.execute("SELECT count(*) FROM public.flights").fetchone()[0]
    # a deployment's range moves: its groups keep no stored summaries of their own (docs/serving.md)
    assert store.conn.execute("SELECT count(*) FROM modelstore.statistics WHERE extra ? 'group_by'").fetchone()[0] == 0
    with psycopg.connect(dsn, autocommit=True) as other:
        assert_groups_exact(store, d, other)
        before = group_stats(store.conn, "by_carrier")

        # a write to one group: only that group's statistics change, and the refresh reads only its rows
        other.execute("INSERT INTO public.flights SELECT 10000 + g, 'AA', g / 10.0, -g / 7.0, 3 + g / 5.0 + (g % 3), 1 "
                      "FROM generate_series(1, 12) g")
        assert d.pending() > 0
        reads = table_reads(store.conn, other, "flights")
        d.refresh()
        reads = table_reads(store.conn, other, "flights") - reads
        aa = int(other.execute("SELECT count(*) FROM public.flights WHERE carrier = 'AA'").fetchone()[0])
        # the groups' aggregate reads AA's rows only; the global model's plan reads at most every row once (on a
        # table this small the planner may prefer one scan to stored statistics), plus a few index probes —
        # re-aggregating every group would read every row once more
        assert aa <= reads <= (n + 12) + aa + 40
        after = group_stats(store.conn, "by_carrier")
        assert after["AA"] != before["AA"]
        assert {k: v for k, v in after.items() if k != "AA"} == {k: v for k, v in before.items() if k != "AA"}
        assert_groups_exact(store, d, other)

        # updates move rows between groups, deletes empty one, a new group appears
        other.execute("UPDATE public.flights SET carrier = 'DL' WHERE carrier = 'UA' AND id % 5 = 0")
        other.execute("DELETE FROM public.flights WHERE carrier = 'tiny'")
        other.execute("INSERT INTO public.flights SELECT 20000 + g, 'NEW', g, g * g % 7, g % 4 + 0.3 * g * g, 0 "
                      "FROM generate_series(1, 6) g")
        d.refresh()
        assert "tiny" not in d.model.models and "NEW" in d.model.models
        assert_groups_exact(store, d, other)
        X = np.array([[0.5, -1.0], [0.5, -1.0]])
        got = d.predict(X, groups=["NEW", "gone"])
        assert got[1] == d.model.global_model.predict(X[1:])[0]

        # TRUNCATE and new rows: every group read again
        other.execute("TRUNCATE public.flights")
        other.execute("INSERT INTO public.flights SELECT g, CASE WHEN g % 2 = 0 THEN 'AA' ELSE 'B6' END, g, g * g % 11, "
                      "g % 5 + g / 3.0, 0 FROM generate_series(1, 40) g")
        d.refresh()
        assert_groups_exact(store, d, other)
    assert store.deployments().set_index("name").loc["by_carrier", "group_by"] == "carrier"
    store.undeploy("by_carrier")
    assert store.conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'modelstore_groups%'").fetchone()[0] == 0
    assert store.conn.execute("SELECT count(*) FROM modelstore.group_models").fetchone()[0] == 0


def test_model_language_group_by_and_ml_predict_by_group(store):
    store.query("CREATE MODEL lang_g OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], order_by = 'id', "
                "group_by = 'carrier', group_l2 = 3.0) AS SELECT x1, x2, y FROM flights")
    m = store.model("lang_g")
    assert m.group_by == "carrier" and m.group_l2 == 3.0 and sorted(m.models) == sorted(GROUPS)
    got = store.query("SELECT id, carrier, x1, x2, predicted_y FROM ML.PREDICT(MODEL lang_g, "
                      "(SELECT id, carrier, x1, x2 FROM flights UNION ALL SELECT -1, 'unseen', 0.5, 0.5)) ORDER BY id")
    want = m.predict(got[["x1", "x2"]].to_numpy(), groups=got.carrier.to_numpy())
    assert np.max(np.abs(got.predicted_y.to_numpy() - want) / np.maximum(1.0, np.abs(want))) < 1e-12
    assert got.predicted_y.iloc[0] == pytest.approx(m.intercept_ + 0.5 * m.coef_.sum(), rel=1e-12)  # unseen: global
    # without the group column: the global model
    plain = store.query("SELECT predicted_y FROM ML.PREDICT(MODEL lang_g, (SELECT x1, x2 FROM flights ORDER BY id))")
    df = table(store.conn)
    assert np.allclose(plain.predicted_y, m.global_model.predict(df[["x1", "x2"]].to_numpy()), rtol=1e-12, atol=0)

    store.query("CREATE MODEL nb_lang OPTIONS (model_type = 'naive_bayes', input_label_cols = ['label'], "
                "order_by = 'id', group_by = 'carrier') AS SELECT x1, x2, label FROM flights")
    nb = store.model("nb_lang")
    got = store.query("SELECT carrier, x1, x2, predicted_label, predicted_label_probs FROM ML.PREDICT(MODEL nb_lang, "
                      "(SELECT carrier, x1, x2 FROM flights UNION ALL SELECT 'unseen', 0.1, 2.0))")
    X, groups = got[["x1", "x2"]].to_numpy(), got.carrier.to_numpy()
    assert (got.predicted_label.to_numpy() == nb.predict(X, groups=groups)).all()
    probs = np.array([[row[str(c)] for c in nb.classes_] for row in got.predicted_label_probs])
    assert np.max(np.abs(probs - nb.predict_proba(X, groups=groups))) < 1e-12


def test_sql_group_calls_name_their_errors(store):
    store.fit("linear", table="flights", target="y", features=["x1", "x2"], order_by="id", name="flat")
    store.fit("gaussian_nb", table="flights", target="label", features=["x1", "x2"], order_by="id",
              group_by="carrier", name="nb_groups")
    for query, args, message in (
            ("SELECT modelstore.predict('flat', 'AA', ARRAY[1, 2]::float8[])", [], "has no per-group models"),
            ("SELECT modelstore.predict('missing', 'AA', ARRAY[1, 2]::float8[])", [], 'no model named "missing"'),
            ("SELECT modelstore.predict('nb_groups', 'AA', ARRAY[1, 2, 3]::float8[])", [], "takes 2 feature"),
    ):
        with pytest.raises(psycopg.Error, match=message):
            store.conn.execute(query, args)
    m = store.model("nb_groups")
    label = store.conn.execute("SELECT modelstore.predict_class('nb_groups', 'B6', ARRAY[0.3, -0.2]::float8[])"
                               ).fetchone()[0]
    assert label == str(m.predict(np.array([[0.3, -0.2]]), groups=["B6"])[0])
    # NULL features: NULL, as the ungrouped functions answer
    assert store.conn.execute("SELECT modelstore.predict('nb_groups', 'B6', ARRAY[NULL, 1]::float8[])"
                              ).fetchone()[0] is None


def test_explain_a_grouped_model_says_what_the_groups_cost(store):
    plan = store.explain("linear", table="flights", target="y", features=["x1", "x2"], order_by="id",
                         group_by="carrier", group_l2=2.0)
    assert "one aggregate over its rows grouped by 'carrier'" in str(plan) and "group_l2 = 2" in str(plan)
    text = store.query("EXPLAIN CREATE MODEL e OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], "
                       "order_by = 'id', group_by = 'carrier') AS SELECT x1, x2, y FROM flights")
    assert any("grouped by 'carrier'" in line for line in text["QUERY PLAN"])
    with pytest.raises(UnknownColumnError, match="group_by"):
        store.explain("linear", table="flights", target="y", features=["x1", "x2"], order_by="id", group_by="nope")


def test_grouped_deployment_over_a_moving_window(store, dsn):
    """A row window: rows leave every group as it slides, so each refresh re-aggregates every group
    (one statement) — each group's model is its rows inside the window."""
    d = store.deploy("recent_by_carrier", "gaussian_nb", table="flights", target="label", features=["x1", "x2"],
                     order_by="id", window=400, group_by="carrier", group_l2=0.0)

    def check():
        df = table(store.conn).sort_values("id").tail(400)
        model = d.model
        assert sorted(model.models) == sorted(df.carrier.unique())
        for name, rows in df.groupby("carrier"):
            ref = GaussianNB().fit(rows[["x1", "x2"]].to_numpy(), rows.label.to_numpy())
            got = model.models[name]
            assert list(got.classes_) == list(ref.classes_) and rel_err(got.theta_, ref.theta_) < TOL, name
            assert rel_err(got.var_, ref.var_) < TOL

    check()
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("INSERT INTO public.flights SELECT 30000 + g, CASE WHEN g % 3 = 0 THEN 'AA' ELSE 'ZZ' END, "
                      "g / 50.0, (g % 17) / 4.0, g % 5, g % 3 FROM generate_series(1, 150) g")
    d.refresh()
    check()


def test_multinomial_nb_per_group(store):
    store.conn.execute("ALTER TABLE public.flights ADD COLUMN c1 int, ADD COLUMN c2 int, ADD COLUMN c3 int")
    store.conn.execute("UPDATE public.flights SET c1 = (abs(x1) * 4)::int, c2 = (abs(x2) * 3)::int, "
                       "c3 = (id * 7 % 5) + label")
    df = table(store.conn).merge(pd.DataFrame(store.conn.execute(
        "SELECT id, c1, c2, c3 FROM public.flights").fetchall(), columns=["id", "c1", "c2", "c3"]), on="id")
    cols = ["c1", "c2", "c3"]
    own = store.fit("multinomial_nb", table="flights", target="label", features=cols, order_by="id",
                    group_by="carrier", group_l2=0.0, alpha=0.5, name="mnb0")
    for name, rows in df.groupby("carrier"):
        ref = MultinomialNB(alpha=0.5).fit(rows[cols].to_numpy(), rows.label.to_numpy())
        got = own.models[name]
        assert rel_err(got.feature_log_prob_, ref.feature_log_prob_) < TOL and rel_err(
            got.class_log_prior_, ref.class_log_prior_) < TOL, name
    lam = 7.0
    m = store.fit("multinomial_nb", table="flights", target="label", features=cols, order_by="id",
                  group_by="carrier", group_l2=lam, alpha=0.5, name="mnb7")
    X, y = df[cols].to_numpy(dtype=float), df.label.to_numpy()
    classes = np.unique(y)
    for name, rows in df.groupby("carrier"):
        Xg, yg = rows[cols].to_numpy(dtype=float), rows.label.to_numpy()
        counts = np.array([(yg == c).sum() + lam * (y == c).sum() / len(y) for c in classes])
        sums = np.array([Xg[yg == c].sum(axis=0) + lam / len(y) * X[y == c].sum(axis=0) for c in classes])
        want = np.log(sums + 0.5) - np.log((sums + 0.5).sum(axis=1, keepdims=True))
        got = m.models[name]
        assert rel_err(got.feature_log_prob_, want) < TOL, name
        assert rel_err(got.class_log_prior_, np.log(counts / counts.sum())) < TOL
    Xq = np.array([[1.0, 2.0, 0.0]])
    assert store.conn.execute("SELECT modelstore.predict('mnb7', 'UA', ARRAY[1, 2, 0]::float8[])").fetchone()[0] == \
        m.predict(Xq, groups=["UA"])[0]


def test_group_statistics_reused_per_group_and_kept_exact(store, dsn):
    """The planner reuses the per-group statistics (docs/serving.md, "The planner reuses them per group"):
    a request for one group's rows and a second grouped fit of the same range scan 0 rows and equal numpy
    on the group's rows; a write in the range invalidates them (capture), and the next request is exact."""
    kw = dict(table="flights", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=100_000)

    def check_group(name, where, rows):
        m = store.fit("linear", **kw, where=where, name=name, replace=True)
        want = ols(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy())
        assert rel_err(np.r_[m.intercept_, m.coef_], want) < TOL
        return m

    first = store.fit("linear", **kw, group_by="carrier", group_l2=0.0, name="g")
    assert first.group_plan["groups"] == "scan" and first.group_plan["rows_scanned"] == len(table(store.conn))
    df = table(store.conn)
    m = check_group("aa", "carrier = 'AA'", df[df.carrier == "AA"])
    assert m.plan.rows_scanned == 0 and [s.op for s in m.plan.plan.steps] == ["stored"]
    stored = store.conn.execute("SELECT filter_sql, extra ->> 'group_key' FROM modelstore.statistics WHERE stats_id = %s",
                                m.plan.stats_used).fetchone()
    assert stored == ("carrier = 'AA'", "AA")  # the grouped fit's summary of AA's rows
    assert "stored" in str(store.explain("linear", **kw, where="carrier = 'AA'"))

    with psycopg.connect(dsn, autocommit=True) as observer:
        before = table_reads(store.conn, observer, "flights")
        again = store.fit("linear", **kw, group_by="carrier", group_l2=0.0, name="g", replace=True)
        assert table_reads(store.conn, observer, "flights") - before < 20  # the planner's index probes only
    assert again.group_plan["groups"] == "stored" and again.group_plan["rows_scanned"] == 0
    assert m.plan.stats_used[0] in again.group_plan["stats_ids"]
    for g in first.models:
        assert np.allclose(again.models[g].coef_, first.models[g].coef_, rtol=1e-12, atol=0)

    # a filter of its own: the group's request adds the group to it, in any order
    store.fit("linear", **kw, where="x1 > 0", group_by="carrier", name="g_pos", replace=True)
    m = check_group("dl_pos", "x1 > 0 AND carrier = 'DL'", df[(df.carrier == "DL") & (df.x1 > 0)])
    assert m.plan.rows_scanned == 0

    # writes in the range: capture applies them per group (docs/serving.md, "Under writes"), so the next
    # requests still read no row and are exact; the set with a filter of its own (x1 > 0) is deleted
    store.conn.execute("INSERT INTO flights (id, carrier, x1, x2, y, label) VALUES (5000, 'AA', 0.3, -2, 7, 1)")
    store.conn.execute("UPDATE flights SET carrier = 'AA', y = y + 1 WHERE id IN (SELECT id FROM flights "
                       "WHERE carrier = 'DL' ORDER BY id LIMIT 5)")
    store.conn.execute("DELETE FROM flights WHERE id IN (SELECT id FROM flights WHERE carrier = 'AA' ORDER BY id LIMIT 3)")
    df = table(store.conn)
    m = check_group("aa", "carrier = 'AA'", df[df.carrier == "AA"])
    assert m.plan.rows_scanned == 0
    assert store.fit("linear", **kw, where="x1 > 0 AND carrier = 'DL'", name="dl_pos", replace=True).plan.rows_scanned > 0
    third = store.fit("linear", **kw, group_by="carrier", group_l2=0.0, name="g", replace=True)
    assert third.group_plan["groups"] == "stored"
    for g, rows in df.groupby("carrier"):
        if len(rows) > 3:
            want = ols(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy())
            assert rel_err(np.r_[third.models[g].intercept_, third.models[g].coef_], want) < TOL, g
    assert check_group("dl", "carrier = 'DL'", df[df.carrier == "DL"]).plan.rows_scanned == 0

    # an integer group column: the group's request writes a number
    store.conn.execute("ALTER TABLE flights ADD COLUMN gid integer")
    store.conn.execute("UPDATE flights SET gid = id % 3 - 1")
    store.fit("linear", **kw, group_by="gid", name="by_gid")
    df = pd.DataFrame(store.conn.execute("SELECT x1, x2, y FROM flights WHERE gid = -1").fetchall(),
                      columns=["x1", "x2", "y"])
    assert check_group("gid_minus_1", "gid = -1", df).plan.rows_scanned == 0


def _group_sets(conn, group_by: str) -> dict:
    """(group key, n, null_rows, the set's count of groups, family) of the stored per-group summaries."""
    rows = conn.execute("SELECT s.extra ->> 'group_key', s.n, s.null_rows, g.groups::int, s.family "
                        "FROM modelstore.statistics AS s JOIN modelstore.group_sets AS g ON g.source_id = s.source_id "
                        "AND g.family = s.family AND g.columns = s.columns AND g.lo_key = s.lo_key "
                        "AND g.hi_key = s.hi_key AND g.group_by = s.extra ->> 'group_by' AND g.base_filter = '' "
                        "WHERE s.extra ->> 'group_by' = %s AND s.extra ->> 'base_filter' = ''",
                        [group_by]).fetchall()
    return rows


@pytest.mark.parametrize("bulk_rows", [None, "0"])
def test_capture_keeps_per_group_statistics_exact_under_random_writes(store, bulk_rows):
    """Capture applies every write per group (docs/serving.md, "Under writes"): after random INSERTs,
    UPDATEs (in place, and moving rows from one group to another), DELETEs, a write that creates a new
    group value and one that empties a group, every group's stored summary equals numpy on the group's rows
    (a request for the group reads 0 rows), the set stays complete (a grouped refit takes it: 0 rows read),
    and a TRUNCATE drops it. Both capture paths (bulk_rows "0": always the one-statement path)."""
    conn = store.conn
    if bulk_rows is not None:
        conn.execute(f"SET modelstore.capture_bulk_rows = {bulk_rows}")
    kw = dict(table="flights", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=100_000)
    nb = dict(table="flights", target="label", features=["x1", "x2"], order_by="id", lo=1, hi=100_000)
    store.fit("linear", **kw, group_by="carrier", name="lin", group_l2=0.0)
    store.fit("gaussian_nb", **nb, group_by="carrier", name="gnb", group_l2=0.0)
    rng = np.random.default_rng(1818)
    next_id = 10_000

    def check(step: str) -> None:
        df = table(conn)
        sets = _group_sets(conn, "carrier")
        for family in ("linear", "gaussian_nb"):
            members = [r for r in sets if r[4] == family]
            by_key = {r[0]: r for r in members}
            # complete: exactly the groups that have rows, each member knowing how many there are
            assert set(by_key) == set(df.carrier.dropna()), (step, family, sorted(by_key))
            assert {r[3] for r in members} == {len(members)}, step
            for key, (_, n, nulls, _, _) in by_key.items():
                rows = df[df.carrier == key]
                assert n + nulls == len(rows), (step, key)
        for key, rows in df.groupby("carrier"):
            if len(rows) <= 3:  # too few rows for a model of their own: their counts were checked above
                continue
            m = store.fit("linear", **kw, where=f"carrier = '{key}'", name="one", replace=True)
            assert m.plan.rows_scanned == 0, (step, key)
            want = ols(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy())
            assert rel_err(np.r_[m.intercept_, m.coef_], want) < TOL, (step, key)
            if rows.label.nunique() > 1:
                c = store.fit("gaussian_nb", **nb, where=f"carrier = '{key}'", name="one_nb", replace=True)
                assert c.plan.rows_scanned == 0, (step, key)
                ref = GaussianNB().fit(rows[["x1", "x2"]].to_numpy(), rows.label.to_numpy())
                assert rel_err(c.theta_, ref.theta_) < TOL and rel_err(c.var_, ref.var_) < 1e-8, (step, key)

    def insert(n: int, carriers) -> None:
        """``n`` new rows inside the stored range: one statement each below 4 rows (capture's row-by-row
        path), else one statement (the bulk path)."""
        nonlocal next_id
        have = set(table(conn).id)
        ids = [int(i) for i in rng.choice(np.arange(1, next_id + 1000), size=n, replace=False) if int(i) not in have]
        rows = [(i, str(rng.choice(carriers)), float(rng.normal()), float(rng.normal()), float(rng.normal(3, 2)),
                 int(rng.integers(0, 3))) for i in ids]
        statement = "INSERT INTO flights (id, carrier, x1, x2, y, label) VALUES (%s, %s, %s, %s, %s, %s)"
        with conn.cursor() as cur:
            if n < 4:
                for row in rows:
                    cur.execute(statement, row)
            else:
                cur.execute("INSERT INTO flights (id, carrier, x1, x2, y, label) SELECT * FROM unnest("
                            "%s::int[], %s::text[], %s::float8[], %s::float8[], %s::float8[], %s::int[])",
                            [list(c) for c in zip(*rows)])
        next_id += 1000

    check("fitted")
    insert(2, GROUPS[:4])
    check("small inserts")
    insert(40, GROUPS)
    check("bulk insert")
    conn.execute("UPDATE flights SET y = y * 1.5 + x1, x2 = x2 - 0.25 WHERE id % 7 = 3")
    check("update in place")
    conn.execute("UPDATE flights SET carrier = 'UA' WHERE carrier = 'B6' AND id % 3 = 0")
    check("rows moved from B6 to UA")
    conn.execute("UPDATE flights SET carrier = 'AA' WHERE id = (SELECT min(id) FROM flights WHERE carrier = 'DL')")
    check("one row moved from DL to AA")
    insert(6, ["NEW1", "NEW2"])
    check("a write creating new group values")
    conn.execute("INSERT INTO flights (id, carrier, x1, x2, y, label) VALUES (99999, 'SOLO', 0.5, 0.5, 1.0, 1)")
    check("one row of a new group value")
    conn.execute("UPDATE flights SET carrier = 'B6' WHERE carrier = 'tiny'")
    check("a group emptied by moving its rows")
    conn.execute("DELETE FROM flights WHERE carrier = 'NEW1' OR id % 11 = 5")
    check("deletes")
    conn.execute("UPDATE flights SET carrier = NULL WHERE id % 13 = 2")
    check("rows leaving every group (NULL)")
    again = store.fit("linear", **kw, group_by="carrier", name="lin", group_l2=0.0, replace=True)
    assert again.group_plan["groups"] == "stored" and again.group_plan["rows_scanned"] == 0
    df = table(conn)
    for key, rows in df.groupby("carrier"):
        if len(rows) > 3:
            want = ols(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy())
            assert rel_err(np.r_[again.models[key].intercept_, again.models[key].coef_], want) < TOL, key
    conn.execute("INSERT INTO flights (id, carrier, x1, x2, y, label) VALUES (99998, 'BRIEF', 0, 0, 0, 0)")
    conn.execute("DELETE FROM flights WHERE id = 99998")
    check("a committed insert and delete of a new group")
    try:
        with conn.transaction():
            conn.execute("INSERT INTO flights (id, carrier, x1, x2, y, label) VALUES (99997, 'GONE', 0, 0, 0, 0)")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    check("a rolled-back write")
    conn.execute("TRUNCATE flights")
    assert _group_sets(conn, "carrier") == []


def test_two_writers_starting_the_same_new_group_both_count(store, dsn):
    """Two transactions write rows of the same new group value at once: the second one's new summary
    waits for the first's and then absorbs its row into it (none is lost), so the group's summary counts
    both rows and equals numpy."""
    import threading

    kw = dict(table="flights", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=100_000)
    store.fit("linear", **kw, group_by="carrier", name="lin", group_l2=0.0)
    insert = "INSERT INTO flights (id, carrier, x1, x2, y, label) VALUES (%s, 'NEWC', %s, %s, %s, 1)"
    rows = [(20_001 + i, float(i), float(i * i % 7), 1.0 + 2.0 * i + (-1) ** i * 0.3 * (i % 4)) for i in range(6)]
    with psycopg.connect(dsn) as first, psycopg.connect(dsn) as second:
        for row in rows[:3]:
            first.execute(insert, row)  # not committed yet: its new summary is not visible to the second
        done = threading.Event()

        def write_second():
            with second.cursor() as cur:
                cur.executemany(insert, rows[3:])
            second.commit()
            done.set()

        t = threading.Thread(target=write_second)
        t.start()
        assert not done.wait(1.0)  # the second writer waits on the first's new summary
        first.commit()
        t.join(timeout=60)
        assert done.is_set()
    n = store.conn.execute("SELECT n FROM modelstore.statistics WHERE extra ->> 'group_by' = 'carrier' "
                           "AND extra ->> 'group_key' = 'NEWC'").fetchone()[0]
    groups = store.conn.execute("SELECT groups FROM modelstore.group_sets WHERE group_by = 'carrier'").fetchone()[0]
    assert n == 6 and groups == len(GROUPS) + 1
    m = store.fit("linear", **kw, where="carrier = 'NEWC'", name="newc")
    assert m.plan.rows_scanned == 0
    X = np.array([[r[1], r[2]] for r in rows])
    assert rel_err(np.r_[m.intercept_, m.coef_], ols(X, np.array([r[3] for r in rows]))) < TOL


def test_two_writers_starting_different_new_groups_both_count(store, dsn):
    """Two transactions each start a different new group at once: the set's count of groups (one row,
    modelstore.group_sets) is added to, not recounted, so it counts both and a grouped refit still takes
    the stored set (0 rows read) — the limit the count kept in every member had."""
    kw = dict(table="flights", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=100_000)
    store.fit("linear", **kw, group_by="carrier", name="lin", group_l2=0.0)
    insert = "INSERT INTO flights (id, carrier, x1, x2, y, label) VALUES (%s, %s, %s, %s, %s, 1)"
    import threading

    with psycopg.connect(dsn) as first, psycopg.connect(dsn) as second:
        for i in range(5):  # not committed yet when the second writer starts its own new group
            first.execute(insert, (30_001 + i, "NEW_A", float(i), float(i * i % 5), 1.0 + i + 0.3 * (i % 3)))

        def write_second():
            for i in range(5):
                second.execute(insert, (40_001 + i, "NEW_B", float(-i), float(i * 3 % 4), 2.0 - i + 0.2 * (i % 2)))
            second.commit()

        t = threading.Thread(target=write_second)
        t.start()
        t.join(timeout=1.0)
        first.commit()
        t.join(timeout=60)
        assert not t.is_alive()
    groups = store.conn.execute("SELECT groups FROM modelstore.group_sets WHERE group_by = 'carrier'").fetchone()[0]
    assert groups == len(GROUPS) + 2
    again = store.fit("linear", **kw, group_by="carrier", name="lin", group_l2=0.0, replace=True)
    assert again.group_plan["groups"] == "stored" and again.group_plan["rows_scanned"] == 0
    df = table(store.conn)
    for key in ("NEW_A", "NEW_B"):
        rows = df[df.carrier == key]
        want = ols(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy())
        assert rel_err(np.r_[again.models[key].intercept_, again.models[key].coef_], want) < TOL, key


def _group_nodes_exact(conn, index_id: int) -> None:
    """Every per-group node of the index equals numpy on its group's rows in the node's range (n, mean,
    comoment), and a node exists exactly when its group has rows there."""
    nodes = conn.execute("SELECT level, pos, lo_key, lo_side, hi_key, hi_side FROM modelstore.index_nodes "
                         "WHERE index_id = %s", [index_id]).fetchall()
    stored = {(lv, pos, key): (n, np.array(mean), np.array(moments)) for lv, pos, key, n, mean, moments in conn.execute(
        "SELECT level, pos, group_key, n, mean, moments FROM modelstore.index_group_nodes WHERE index_id = %s",
        [index_id]).fetchall()}
    df = table(conn)
    want = set()
    for lv, pos, lo_key, lo_side, hi_key, hi_side in nodes:
        lo_ok = df.id >= float(lo_key) if lo_side == 0 else df.id > float(lo_key)
        hi_ok = df.id < float(hi_key) if hi_side == 0 else df.id <= float(hi_key)
        for key, rows in df[lo_ok & hi_ok].groupby("carrier"):
            want.add((lv, pos, key))
            n, mean, moments = stored[(lv, pos, key)]
            X = rows[["x1", "x2", "y"]].to_numpy()
            assert n == len(rows), (lv, pos, key)
            assert np.allclose(mean, X.mean(axis=0), rtol=1e-10, atol=1e-12), (lv, pos, key)
            C = (X - X.mean(axis=0)).T @ (X - X.mean(axis=0))
            assert np.allclose(moments, C[np.triu_indices(3)], rtol=1e-9, atol=1e-9), (lv, pos, key)
    assert set(stored) == want  # no node of a group without rows there, none missing


@pytest.mark.parametrize("bulk_rows", [None, "0"])
def test_grouped_fit_over_a_range_from_the_index_group_nodes(store, bulk_rows):
    """An index built with group_by (docs/index.md, "Per-group nodes") serves a grouped fit over a range:
    whole chunks from the group nodes, the partial chunks at the ends by one grouped scan; every group equals
    numpy on its rows of the range, before and after writes — a row moved between groups, rows of a new
    group value, deletes, updates in place — which capture applies to the group nodes (both paths)."""
    conn = store.conn
    if bulk_rows is not None:
        conn.execute(f"SET modelstore.capture_bulk_rows = {bulk_rows}")
    info = store.build_index("flights", "id", ["x1", "x2"], "y", chunk_rows=40, group_by="carrier")
    index_id = int(info["index_id"])
    _group_nodes_exact(conn, index_id)

    def check(step: str, lo: int, hi: int) -> None:
        kw = dict(table="flights", target="y", features=["x1", "x2"], order_by="id", lo=lo, hi=hi)
        m = store.fit("linear", **kw, group_by="carrier", group_l2=0.0, name="by_range", replace=True,
                      group_statistics=False)
        assert m.group_plan["groups"] == "index" and m.group_plan["index_id"] == index_id, step
        assert m.group_plan["rows_scanned"] <= 2 * 40 * 2, step  # the partial chunks only (chunks may hold ties)
        df = table(conn)
        df = df[(df.id >= lo) & (df.id <= hi)]
        assert sorted(m.models) == sorted(k for k, r in df.groupby("carrier") if len(r) > 3 or k in m.models), step
        for key, rows in df.groupby("carrier"):
            if len(rows) > 3:
                want = ols(rows[["x1", "x2"]].to_numpy(), rows.y.to_numpy())
                assert rel_err(np.r_[m.models[key].intercept_, m.models[key].coef_], want) < TOL, (step, key)
                assert m.rows[key] == len(rows), (step, key)

    check("built", 37, 811)
    check("built, another range", 95, 402)
    assert "from index #" in " ".join(store.explain("linear", table="flights", target="y", features=["x1", "x2"],
                                                   order_by="id", lo=37, hi=811, group_by="carrier").notes)
    conn.execute("UPDATE flights SET carrier = 'UA' WHERE id = (SELECT min(id) FROM flights WHERE carrier = 'AA' "
                 "AND id > 100)")
    _group_nodes_exact(conn, index_id)
    check("one row moved from AA to UA", 37, 811)
    conn.execute("DELETE FROM flights WHERE id % 9 = 4")
    _group_nodes_exact(conn, index_id)
    check("deletes", 37, 811)
    # rows of a new group value where deleted rows were (ids ≡ 4 mod 9), one statement
    conn.execute("INSERT INTO flights (id, carrier, x1, x2, y, label) SELECT 9 * i + 4, 'NEWG', i * 0.1, "
                 "(i % 5) * 0.3, 1 + 0.05 * i + (i % 4) * 0.7, 0 FROM generate_series(3, 60, 9) AS i")
    conn.execute("INSERT INTO flights (id, carrier, x1, x2, y, label) VALUES (13, 'SOLO', 1, 2, 3, 0)")
    _group_nodes_exact(conn, index_id)
    check("a new group value inside the range", 1, 843)
    conn.execute("UPDATE flights SET y = y * 1.5 + x1 WHERE id % 7 = 3")
    conn.execute("UPDATE flights SET carrier = 'B6' WHERE carrier = 'tiny'")
    _group_nodes_exact(conn, index_id)
    check("updates in place, a group emptied", 37, 811)
