"""Predicting in the database (issue #18, docs/serving.md "Predicting in the database"): a session that
is already open scores with the new version at its next call — after a refresh, a rollback, an unpin,
a per-group refresh — and never with a stale copy; ML.PREDICT's compiled SQL equals the Python models.
Speed is measured by ``modelstore bench --only serving``, not here.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

import modelstore
from tests.helpers import rel_err

FEATURES = [f"x{i}" for i in range(1, 11)]


@pytest.fixture
def store(dsn):
    with modelstore.Store(dsn) as s:
        s.conn.execute("SELECT setseed(0.5)")
        s.conn.execute(
            "CREATE TABLE public.events AS SELECT g AS id, (g % 7)::text AS shop, "
            + ", ".join(f"random() AS x{i}" for i in range(1, 11))
            + ", 0::float8 AS y, 0 AS label FROM generate_series(1, 3000) g")
        s.conn.execute("UPDATE public.events SET y = 1 + " + " + ".join(f"{i / 10} * x{i}" for i in range(1, 11))
                       + " + (id % 7) * x1 + (random() - 0.5), label = (x1 + x2 > 1)::int + (x3 > 0.8)::int")
        s.conn.execute("ALTER TABLE public.events ADD PRIMARY KEY (id)")
        yield s


def one(conn, query, args):
    return conn.execute(query, args).fetchone()[0]


def test_an_open_session_scores_with_each_new_version(store, dsn):
    x = [0.3] * 10
    d = store.deploy("live", "linear", table="events", target="y", features=FEATURES, order_by="id")
    with psycopg.connect(dsn, autocommit=True) as reader, psycopg.connect(dsn, autocommit=True) as writer:
        query = "SELECT modelstore.predict('live', %s::float8[])"
        v1 = one(reader, query, [x])  # the reader's session has scored (and planned) once
        for _ in range(3):  # prepared and cached plans in the reader's session: still the new row each time
            assert one(reader, query, [x]) == v1
        assert v1 == pytest.approx(d.model.predict(np.array([x]))[0], rel=1e-12)

        writer.execute("INSERT INTO public.events SELECT 5000 + g, 'new', " + ", ".join(["0.9"] * 10)
                       + ", 100, 2 FROM generate_series(1, 50) g")
        d.refresh()
        v2 = one(reader, query, [x])
        assert d.version == 2 and v2 != v1
        assert v2 == pytest.approx(d.model.predict(np.array([x]))[0], rel=1e-12)

        # a rollback (from another session, in SQL) is what the reader's next call scores with
        writer.execute("SELECT modelstore.rollback('live', 1)")
        assert one(reader, query, [x]) == v1
        writer.execute("SELECT modelstore.rollback('live', NULL)")  # unpin: the strategy serves again
        d.refresh()
        assert one(reader, query, [x]) == v2
        # the native arrays predict reads always equal the state they are taken from
        w, b, state = reader.execute("SELECT serving_w, serving_b, state FROM modelstore.fitted_models "
                                     "WHERE name = 'live'").fetchone()
        assert w == state["coef"] and b == [state["intercept"]]


def test_an_open_session_scores_with_the_refreshed_group_model(store, dsn):
    d = store.deploy("per_shop", "linear", table="events", target="y", features=FEATURES, order_by="id",
                     group_by="shop", group_l2=0.5)
    x = [0.5] * 10
    with psycopg.connect(dsn, autocommit=True) as reader, psycopg.connect(dsn, autocommit=True) as writer:
        query = "SELECT modelstore.predict('per_shop', %s, %s::float8[])"
        before = {g: one(reader, query, [g, x]) for g in ("3", "5", "nowhere")}
        assert before["nowhere"] == pytest.approx(d.model.global_model.predict(np.array([x]))[0], rel=1e-12)
        writer.execute("INSERT INTO public.events SELECT 9000 + g, '3', " + ", ".join(["0.5"] * 10)
                       + ", 500, 0 FROM generate_series(1, 40) g")
        d.refresh()
        after = {g: one(reader, query, [g, x]) for g in ("3", "5", "nowhere")}
        model = d.model
        assert after["3"] > before["3"] + 10  # 40 rows at y = 500 where this shop predicted ~10
        for g in ("3", "5"):
            assert after[g] == pytest.approx(model.predict(np.array([x]), groups=[g])[0], rel=1e-12)
        assert after["nowhere"] == pytest.approx(model.global_model.predict(np.array([x]))[0], rel=1e-12)
        # an integer group value is its text: modelstore.predict(name, 3, …) is the group '3'
        assert one(reader, "SELECT modelstore.predict('per_shop', 3, %s::float8[])", [x]) == after["3"]


def test_compiled_ml_predict_equals_python(store):
    lin = store.fit("linear", table="events", target="y", features=FEATURES, order_by="id", name="lin10")
    nb = store.fit("gaussian_nb", table="events", target="label", features=FEATURES, order_by="id", name="nb10")
    rows = store.conn.execute("SELECT " + ", ".join(FEATURES) + " FROM public.events ORDER BY id").fetchall()
    X = np.array(rows, dtype=float)
    got = store.query("SELECT predicted_y FROM ML.PREDICT(MODEL lin10, (SELECT * FROM events ORDER BY id))")
    assert rel_err(got.predicted_y.to_numpy(), lin.predict(X)) < 1e-12
    got = store.query("SELECT predicted_label FROM ML.PREDICT(MODEL nb10, (SELECT * FROM events ORDER BY id))")
    assert (got.predicted_label.to_numpy() == nb.predict(X)).all()
    # and the same rows through modelstore.predict, one call per row
    per_row = store.conn.execute("SELECT modelstore.predict('lin10', ARRAY[" + ", ".join(FEATURES)
                                 + "]) FROM public.events ORDER BY id").fetchall()
    assert rel_err(np.array([r[0] for r in per_row]), lin.predict(X)) < 1e-12


def eventually(read, want, seconds: float = 5.0):
    """``read()`` until it returns ``want`` (a notification is delivered asynchronously), at most ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        got = read()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def test_a_stores_model_cache_forgets_a_model_when_it_changes(store, dsn):
    d = store.deploy("cached", "linear", table="events", target="y", features=FEATURES, order_by="id")
    x = np.full((1, 10), 0.3)
    with modelstore.Store(dsn) as server:  # another session: a service scoring from its cache
        v1 = server.predict("cached", x)[0]
        for _ in range(5):
            assert server.predict("cached", x)[0] == v1
        assert server._cache.loads == 1  # read once

        store.conn.execute("INSERT INTO public.events SELECT 7000 + g, 'x', " + ", ".join(["0.9"] * 10)
                           + ", 100, 2 FROM generate_series(1, 50) g")
        d.refresh()  # commits version 2 in the other session
        v2 = d.model.predict(x)[0]
        assert v2 != v1
        assert eventually(lambda: server.predict("cached", x)[0], v2) == v2
        assert server._cache.loads == 2

        store.rollback("cached", 1)
        assert eventually(lambda: server.predict("cached", x)[0], v1) == v1
        store.rollback("cached", None)
        d.refresh()
        assert eventually(lambda: server.predict("cached", x)[0], v2) == v2

        store.undeploy("cached")

        def gone():
            try:
                server.predict("cached", x)
            except modelstore.errors.ModelNotFoundError:
                return "gone"
            return "still cached"
        assert eventually(gone, "gone") == "gone"
