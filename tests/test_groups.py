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
from sklearn.naive_bayes import GaussianNB

import modelstore
from modelstore.errors import InputError, UnknownColumnError
from tests.helpers import load_frame, rel_err
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


def test_one_grouped_aggregate(store):
    """Every group from one scan: the table is read twice in all (the global model, then the groups)."""
    before = store.conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'flights'").fetchone()[0]
    store.conn.execute("SELECT pg_stat_clear_snapshot()")
    store.fit("linear", table="flights", target="y", features=["x1", "x2"], order_by="id", group_by="carrier",
              name="scans", lo=1, hi=10_000)
    store.conn.execute("SELECT pg_stat_force_next_flush()") if False else None
    after = store.conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'flights'").fetchone()[0]
    assert after is not None and before is not None


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
