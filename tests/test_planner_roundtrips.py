"""Round trips per request, counted on the wire: libpq's protocol trace of the store's connection
(every Sync or simple Query message the client sends is one wait for the server)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
import pytest

import modelstore
from modelstore.planner.costs import CostModel
from tests.helpers import load_frame

N = 4000
FEATURES = ["x1", "x2", "x3"]


@pytest.fixture(scope="module")
def store(module_dsn):
    s = modelstore.connect(module_dsn)
    s._cost_model = CostModel.default()
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(N, 3)), columns=FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["y"] = frame.x1 - 2 * frame.x2 + rng.normal(size=N)
    load_frame(s.conn, "rt", frame)
    s.conn.execute("CREATE INDEX ON rt (id)")
    s.conn.execute("ANALYZE rt")
    yield s
    s.close()


def traced(store, fn):
    """(fn's result, the statements sent, the round trips) while ``fn`` runs."""
    fd, path = tempfile.mkstemp()
    try:
        store.conn.pgconn.trace(fd)
        try:
            out = fn()
        finally:
            store.conn.pgconn.untrace()
        with open(path) as fh:
            lines = [line.split("\t") for line in fh.read().splitlines()]
    finally:
        os.close(fd)
        os.unlink(path)
    sent = [p for p in lines if len(p) > 3 and p[1] == "F"]
    statements = [p[4] if len(p) > 4 else "" for p in sent if p[3] in ("Parse", "Query")]
    return out, statements, sum(1 for p in sent if p[3] in ("Sync", "Query"))


def fit(store, lo, hi, **kw):
    return store.fit("linear", table="rt", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi, **kw)


def test_planning_is_one_round_trip_without_an_index(store):
    fit(store, 100, 2000)
    fit(store, 1500, 3500)
    source_id = store.conn.execute("SELECT source_id FROM modelstore.sources WHERE table_name = 'rt'").fetchone()[0]
    descriptor = store._describe("linear", "rt", "y", FEATURES, "id", 120, 3400, None, {})[0]
    store._plan(source_id, descriptor)  # row estimates cached
    plan, statements, trips = traced(store, lambda: store._plan(source_id, descriptor))
    assert plan.stored and plan.graph["relevant"] == 2 and not plan.graph["truncated"]
    # the index lookup and the relevant set: the planner never asks twice, whatever the catalog's size
    assert trips == 2, statements
    assert any("plan_candidates" in s for s in statements)


def test_an_unnamed_model_is_numbered_inside_its_insert(store):
    fit(store, 10, 500)
    model, statements, trips = traced(store, lambda: fit(store, 10, 500))
    assert model.name.startswith("rt_linear_")
    assert not any("nextval" in s and "INSERT" not in s for s in statements), statements
    # a request answered by one stored summary: BEGIN + modelstore.request_context, then INSERT + COMMIT
    assert trips <= 2, statements
    assert any("request_context" in s for s in statements)


def test_a_stored_answer_with_the_index_built_is_two_round_trips(store):
    store.build_index("rt", "id", FEATURES, "y", chunk_rows=200)
    first = fit(store, 333, 2777)  # index spans and partial-chunk scans: stored for reuse
    model, statements, trips = traced(store, lambda: fit(store, 333, 2777))
    assert [s.op for s in model.plan.plan.steps] == ["stored"]
    assert trips <= 2, statements
    np.testing.assert_allclose(model.coef_, first.coef_, rtol=1e-12)
    # the index plan itself: BEGIN + request_context (the source lock, then the context) + the partial-chunk
    # pieces' aggregate, then the statistics' and the model's INSERT + COMMIT (docs/planner.md)
    model, statements, trips = traced(store, lambda: fit(store, 1333, 3777))
    assert {s.op for s in model.plan.plan.steps} >= {"index", "scan"}, model.plan
    assert trips <= 2, statements
