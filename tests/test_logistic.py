"""Logistic regression by mixture weights through PostgreSQL (paper §4): forward-only plans, stored
chunks reused without training, accuracy against scikit-learn on the same rows within Theorem 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelstore
from modelstore.planner.costs import CostModel
from tests.helpers import catalog_counts, load_frame

N = 24_000
FEATURES = ["a", "b", "c"]


pytestmark = pytest.mark.store(cost_model=CostModel.default())  # tests/fixtures.py


@pytest.fixture(scope="module")
def store(store):
    """The shared store with the table ``lg``; ``store.frame`` holds its rows."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(N, 3))
    X[:, 2] += 0.5 * X[:, 0]
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["y"] = (0.4 + X @ [1.5, -1.0, 0.7] + rng.logistic(size=N) > 0).astype(int)
    score = X @ [[1, 0, 0], [0, 1, 0], [0, 0, 1]] + rng.gumbel(size=(N, 3))
    frame["k"] = np.array(["red", "green", "blue"])[score.argmax(axis=1)]
    load_frame(store.conn, "lg", frame)
    store.conn.execute("CREATE INDEX ON lg (id)")
    store.conn.execute("ANALYZE lg")
    store.frame = frame
    return store


def fit(store, lo, hi, **kw):
    return store.fit("logistic", table="lg", target=kw.pop("target", "y"), features=FEATURES, order_by="id",
                     lo=lo, hi=hi, chunk_rows=kw.pop("chunk_rows", 3000), **kw)


def full_fit(frame, lo, hi, l2, target="y"):
    sel = frame[(frame.id >= lo) & (frame.id <= hi)]
    ref = LogisticRegression(C=1 / (2 * l2 * len(sel)), tol=1e-10, max_iter=10_000)
    return ref.fit(sel[FEATURES].to_numpy(), sel[target].to_numpy()), sel


def test_accuracy_within_the_bound_of_a_full_fit(store):
    m = fit(store, 1, 18_000)
    ref, sel = full_fit(store.frame, 1, 18_000, m.l2)
    distance = np.linalg.norm(np.r_[m.coef_.ravel(), m.intercept_] - np.r_[ref.coef_.ravel(), ref.intercept_])
    bound = m.theorem1_bound(0.05)
    gap = abs(m.score(sel[FEATURES], sel.y) - ref.score(sel[FEATURES].to_numpy(), sel.y.to_numpy()))
    print(f"\nlogistic mixture of {m.n_chunks} chunks: ‖w_μ − w‖ = {distance:.4f} ≤ bound {bound:.4g}; "
          f"accuracy gap {100 * gap:.3f} pt")
    assert distance <= bound
    assert gap <= 0.02
    assert m.n_chunks == 6 and sum(m.chunk_rows) == 18_000
    assert m.training_accuracy_ == pytest.approx(m.score(sel[FEATURES], sel.y), abs=1e-12)
    assert "Theorem 1 bound" in str(m.plan) and "Training accuracy" in str(m.plan)


def reset(store):
    store.conn.execute("DELETE FROM modelstore.sources WHERE table_name = 'lg'")


def test_plans_are_forward_only_and_stored_chunks_train_nothing(store):
    reset(store)
    first = fit(store, 1, 12_000)
    assert [s.op for s in first.plan.plan.steps] == ["train"]
    again = fit(store, 3001, 9000)  # two stored chunks exactly
    assert [s.op for s in again.plan.plan.steps] == ["stored", "stored"]
    assert again.plan.rows_scanned == 0 and "0 trained" in again.plan.extra["Chunks"]
    wider = fit(store, 1, 15_000)  # four stored chunks and one gap to train
    ops = [(s.op, s.sign) for s in wider.plan.plan.steps]
    assert all(sign == 1 for _, sign in ops) and ops.count(("train", 1)) == 1
    assert wider.plan.rows_scanned == 3000


def test_partially_covered_chunks_are_not_used(store):
    """A chunk model that sticks out of the request cannot be subtracted: it is not used at all."""
    reset(store)
    fit(store, 1, 12_000)
    m = fit(store, 1500, 7500)
    stored = [s for s in m.plan.plan.steps if s.op == "stored"]
    assert all(1500 <= s.range.lo and s.range.hi <= 7500 for s in stored)
    assert sum(r.rows for r in m.plan.results) == 6001


def test_a_gap_too_small_to_train_is_trained_with_its_stored_neighbour(store):
    """[1, 3000] stored, [1, 3001] asked: one row cannot make a chunk model, so the stored chunk's rows
    are trained again with it; the model covers exactly the request's rows."""
    reset(store)
    fit(store, 1, 3000)
    m = fit(store, 1, 3001)
    assert "trained with the rows of stored" in m.plan.extra["Merged"]
    assert sum(m.chunk_rows) == 3001 and m.chunk_ranges[0][0] == 1 and m.chunk_ranges[-1][1] == 3001
    ref, sel = full_fit(store.frame, 1, 3001, m.l2)
    assert abs(m.score(sel[FEATURES], sel.y) - ref.score(sel[FEATURES].to_numpy(), sel.y.to_numpy())) <= 0.02
    # a gap of nine rows that holds one class only, between two stored chunks
    store.conn.execute("DROP TABLE IF EXISTS lg_gap")
    store.conn.execute("CREATE TABLE lg_gap AS SELECT id, a, b, c, CASE WHEN id BETWEEN 3002 AND 3010 THEN 0 "
                       "ELSE y END AS y FROM lg WHERE id <= 6000")
    on_gap = dict(table="lg_gap", target="y", features=FEATURES, order_by="id", chunk_rows=3000)
    store.fit("logistic", lo=1, hi=3001, **on_gap)
    store.fit("logistic", lo=3011, hi=6000, **on_gap)
    m2 = store.fit("logistic", lo=1, hi=6000, **on_gap)
    assert "gap [3002, 3010] (9 rows)" in m2.plan.extra["Merged"]
    assert sum(m2.chunk_rows) == 6000 and m2.plan.rows_scanned > 9


def test_multiclass(store):
    m = fit(store, 1, 12_000, target="k")
    ref, sel = full_fit(store.frame, 1, 12_000, m.l2, target="k")
    assert list(m.classes_) == ["blue", "green", "red"] == list(ref.classes_)
    assert m.coef_.shape == (3, 3)
    gap = abs(m.score(sel[FEATURES], sel.k) - ref.score(sel[FEATURES].to_numpy(), sel.k.to_numpy()))
    assert gap <= 0.02


def test_unseen_class_in_a_chunk_is_refused(store):
    store.conn.execute("CREATE TABLE rare AS SELECT id, a, b, c, CASE WHEN id > 5900 THEN 2 ELSE y END AS y FROM lg "
                       "WHERE id <= 6000")
    before = catalog_counts(store.conn)
    with pytest.raises(modelstore.InputError, match="class"):
        store.fit("logistic", table="rare", target="y", features=FEATURES, order_by="id", chunk_rows=2000)
    assert catalog_counts(store.conn) == before


def test_bad_logistic_parameters(store):
    with pytest.raises(modelstore.InputError, match="l2 must be > 0"):
        fit(store, 1, 100, l2=0.0)
    with pytest.raises(modelstore.InputError, match="chunk_rows"):
        fit(store, 1, 100, chunk_rows=1)


def test_stored_logistic_model_round_trip(store):
    m = fit(store, 1, 6000, name="lg_first")
    loaded = store.model("lg_first")
    X = store.frame[FEATURES].to_numpy()[:100]
    assert np.array_equal(loaded.predict_proba(X), m.predict_proba(X))
    assert loaded.plan.plan.steps == m.plan.plan.steps
