"""Observe → predict (issue #18, "Observe"; docs/serving.md): ``store.observe`` writes labelled rows to a
deployment's table and absorbs them, so that the next prediction — from this or any other session —
is the exact model of the window that now holds them. Exactness against numpy / scikit-learn on the
window's rows read back from the table; bad input is refused with a named error and nothing written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest
from sklearn.naive_bayes import GaussianNB

import modelstore
from modelstore.errors import (
    NonFiniteValueError, NotDeployedError, ObservationError, UnknownColumnError,
)
from tests.helpers import rel_err
from tests.reference import ols

TOL = 1e-9
WINDOW = 100


@pytest.fixture
def store(dsn):
    with modelstore.Store(dsn) as s:
        s.conn.execute("SELECT setseed(0.5)")
        s.conn.execute("CREATE TABLE public.sales (id bigserial PRIMARY KEY, x1 float8, x2 float8, y float8, "
                       "label int, region text NOT NULL DEFAULT 'EU', qty int)")
        s.conn.execute("""
            INSERT INTO public.sales (x1, x2, y, label, qty)
            SELECT x1, x2, 3.0 + 1.5 * x1 - 0.7 * x2 + (random() - 0.5), (x1 > 0.5)::int + (x2 > 0.5)::int, 1
            FROM (SELECT random() AS x1, random() AS x2 FROM generate_series(1, 300) g) s""")
        yield s


def window(conn, n: int, columns=("x1", "x2", "y")) -> np.ndarray:
    query = "SELECT {} FROM (SELECT * FROM public.sales ORDER BY id DESC LIMIT %s) w ORDER BY id"
    return np.array(conn.execute(query.format(", ".join(columns)), [n]).fetchall(), dtype=float)


def count(conn) -> int:
    return conn.execute("SELECT count(*) FROM public.sales").fetchone()[0]


def test_observe_then_predict_is_the_exact_model_of_the_window(store, dsn):
    d = store.deploy("sales_now", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id",
                     window=WINDOW)
    with psycopg.connect(dsn, autocommit=True) as other:
        before = other.execute("SELECT modelstore.predict('sales_now', ARRAY[0.25, 0.75])").fetchone()[0]
        # one row, far from the line: the model must move
        done = store.observe("sales_now", [[0.9, 0.1]], [40.0])
        assert done.rows == 1 and done.refreshed and done.version == d.version
        rows = window(store.conn, WINDOW)
        assert rows[-1].tolist() == [0.9, 0.1, 40.0]
        want = ols(rows[:, :2], rows[:, 2])
        model = d.model
        assert rel_err(np.r_[model.intercept_, model.coef_], want) < TOL
        assert model.n_obs == WINDOW
        got = other.execute("SELECT modelstore.predict('sales_now', ARRAY[0.25, 0.75])").fetchone()[0]
        assert abs(got - (want[0] + 0.25 * want[1] + 0.75 * want[2])) < TOL * abs(got)
        assert abs(got - before) > 1e-3
        # the batch form, rows as mappings by column name, and a DataFrame; the handle's method
        X = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
        assert store.observe("sales_now", X, np.array([1.0, 2.0, 3.0])).rows == 3
        assert d.observe([{"x2": 0.8, "x1": 0.7, "qty": 4}], [5.5]).refreshed
        assert d.observe(pd.DataFrame({"x1": [0.05, 0.15], "x2": [0.95, 0.85]}), [7.0, 8.0]).rows == 2
        assert store.conn.execute("SELECT x1, x2, y, qty FROM sales WHERE x1 = 0.7").fetchone() == (0.7, 0.8, 5.5, 4)
        rows = window(store.conn, WINDOW)
        want = ols(rows[:, :2], rows[:, 2])
        model = d.model
        assert rel_err(np.r_[model.intercept_, model.coef_], want) < TOL
        assert d.pending() == 0
        assert abs(d.predict([[0.25, 0.75]])[0] - got) > 1e-3  # it moved again
        assert abs(d.predict([[0.25, 0.75]])[0] - (want[0] + 0.25 * want[1] + 0.75 * want[2])) < 1e-9


def test_observe_a_classifier(store):
    d = store.deploy("sales_nb", "gaussian_nb", table="sales", target="label", features=["x1", "x2"],
                     order_by="id", window=WINDOW)
    store.observe("sales_nb", [[0.95, 0.05], [0.02, 0.98]], [2, 0])
    rows = window(store.conn, WINDOW, ("x1", "x2", "label"))
    ref = GaussianNB(var_smoothing=1e-9).fit(rows[:, :2], rows[:, 2].astype(int))
    model = d.model
    assert rel_err(model.theta_, ref.theta_) < TOL and rel_err(model.var_, ref.var_) < TOL
    assert list(model.classes_) == [0, 1, 2]


def test_without_refresh_the_write_is_pending_for_the_worker(store):
    d = store.deploy("sales_now", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id")
    done = store.observe("sales_now", [[0.5, 0.5]], [3.0], refresh=False)
    assert not done.refreshed and d.pending() == 1 and d.model.n_obs == 300
    assert d.refresh().refreshed and d.model.n_obs == 301


def test_the_deployments_filter_and_the_ordering_column(store, dsn):
    store.deploy("eu", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id",
                 where="region = 'EU' AND qty > 0")
    n = count(store.conn)
    with pytest.raises(ObservationError, match=r"row 1 is rejected by the deployment's filter"):
        store.observe("eu", [{"x1": 0.1, "x2": 0.2, "qty": 1}, {"x1": 0.1, "x2": 0.2, "region": "US", "qty": 1}],
                      [1.0, 2.0])
    with pytest.raises(ObservationError, match="rejected by the deployment's filter"):
        store.observe("eu", [[0.1, 0.2]], [1.0])  # qty NULL: the filter is not true
    assert count(store.conn) == n
    assert store.observe("eu", [{"x1": 0.1, "x2": 0.2, "qty": 2}], [1.0]).refreshed
    assert count(store.conn) == n + 1
    # an ordering column without a default must be given
    store.conn.execute("CREATE TABLE public.ticks (ts timestamptz, x float8, y float8)")
    store.conn.execute("INSERT INTO ticks SELECT now() - g * interval '1 min', g, 2 * g + 1 FROM generate_series(1, 20) g")
    d = store.deploy("ticks_now", "linear", table="ticks", target="y", features=["x"], order_by="ts", window="1 day")
    with pytest.raises(ObservationError, match=r"ordering column 'ts' has no default"):
        store.observe("ticks_now", [[3.0]], [7.0])
    with pytest.raises(ObservationError, match=r"row 0 has no value of the ordering column 'ts'"):
        store.observe("ticks_now", [{"x": 3.0, "ts": None}], [7.0])
    assert store.observe("ticks_now", [{"x": 100.0, "ts": pd.Timestamp.now(tz="UTC")}], [201.0]).refreshed
    assert d.model.n_obs == 21


@pytest.mark.parametrize("X, y, error, message", [
    ([[0.1]], [1.0], ObservationError, r"row 0 has 1 value\(s\), the deployment has 2 feature\(s\)"),
    ([[0.1, 0.2, 0.3]], [1.0], ObservationError, r"has 3 value\(s\)"),
    ([[0.1, "abc"]], [1.0], ObservationError, r"row 0's 'x2' must be a number, got 'abc'"),
    ([[0.1, 0.2]], ["abc"], ObservationError, r"'y' must be a number"),
    ([[0.1, True]], [1.0], ObservationError, r"'x2' must be a number"),
    ([[0.1, None]], [1.0], ObservationError, r"no value \(NULL\) for 'x2'"),
    ([[0.1, float("nan")]], [1.0], NonFiniteValueError, r"'x2' is nan"),
    ([[0.1, 0.2]], [float("inf")], NonFiniteValueError, r"'y' is inf"),
    ([[0.1, 0.2], [0.3, 0.4]], [1.0], ObservationError, r"2 instance\(s\) but 1 label\(s\)"),
    ([], [], ObservationError, "no rows given"),
    ("0.1,0.2", [1.0], ObservationError, "X must be a list"),
    ([{"x1": 0.1}], [1.0], ObservationError, r"lacks feature\(s\) \['x2'\]"),
    ([{"x1": 0.1, "x2": 0.2, "nope": 1}], [1.0], UnknownColumnError, "names column 'nope'"),
    ([{"x1": 0.1, "x2": 0.2, "y": 1}], [1.0], ObservationError, "gives the target 'y'"),
    ([{"x1": 0.1, "x2": 0.2, "qty": 10**12}], [1.0], ObservationError, "table .* refused the rows"),
    ([{"x1": 0.1, "x2": 0.2, "id": 1}], [1.0], ObservationError, "refused the rows: duplicate key"),
])
def test_bad_observations_are_refused_and_nothing_is_written(store, X, y, error, message):
    d = store.deploy("sales_now", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id")
    n, version, coef = count(store.conn), d.version, d.model.coef_
    with pytest.raises(error, match=message):
        store.observe("sales_now", X, y)
    assert count(store.conn) == n and d.pending() == 0 and d.version == version
    assert np.array_equal(d.model.coef_, coef)


def test_unknown_deployments_and_groups(store):
    with pytest.raises(NotDeployedError, match="no deployment named 'nothing'"):
        store.observe("nothing", [[0.1, 0.2]], [1.0])
    store.fit("linear", table="sales", target="y", features=["x1", "x2"], order_by="id", name="plain")
    with pytest.raises(NotDeployedError, match="no deployment named 'plain'"):
        store.observe("plain", [[0.1, 0.2]], [1.0])
    store.deploy("sales_now", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id")
    n = count(store.conn)
    with pytest.raises(ObservationError, match=r"groups= needs a per-group deployment"):
        store.observe("sales_now", [[0.1, 0.2]], [1.0], groups=["a"])
    assert count(store.conn) == n
