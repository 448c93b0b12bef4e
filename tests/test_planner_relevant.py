"""The relevant set (Definition 1, Algorithm 3) computed by ``modelstore.plan_candidates`` in one
statement, against an independent reference: the transitive closure under intersection, by a fixed point
over Python sets, on random catalogs of synthetic stored ranges (several components, touching but
disjoint integer ranges, incompatible rows that must be ignored)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelstore.planner.costs import CostModel
from tests.helpers import load_frame

N = 500
FEATURES = ["x1", "x2"]
pytestmark = pytest.mark.store(cost_model=CostModel.default())


@pytest.fixture(scope="module")
def setup(store):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(N, 2)), columns=FEATURES)
    frame.insert(0, "id", np.arange(1, N + 1))
    frame["y"] = frame.x1 + rng.normal(size=N)
    load_frame(store.conn, "rel", frame)
    store.fit("linear", table="rel", target="y", features=FEATURES, order_by="id", lo=1, hi=20)
    descriptor = store._describe("linear", "rel", "y", FEATURES, "id", 1, 20, None, {})[0]
    source_id = store.conn.execute("SELECT source_id FROM modelstore.sources WHERE table_name = 'rel'").fetchone()[0]
    return store, source_id, descriptor


def closure(stored, lo, hi, contained_only):
    """Indices of the stored ranges relevant to [lo, hi]: a fixed point of "intersects the union so far"."""
    if contained_only:
        return {i for i, (a, b) in enumerate(stored) if a >= lo and b <= hi}
    chosen, grew = set(), True
    while grew:
        grew = False
        for i, (a, b) in enumerate(stored):
            if i not in chosen and (a <= hi and b >= lo or any(a <= stored[j][1] and b >= stored[j][0] for j in chosen)):
                chosen.add(i)
                grew = True
    return chosen


ranges = st.tuples(st.integers(1, 200), st.integers(0, 30)).map(lambda p: (p[0], p[0] + p[1]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(ranges, max_size=25, unique=True), other=st.lists(ranges, max_size=5, unique=True),
       request=ranges, contained_only=st.booleans())
def test_plan_candidates_is_the_transitive_closure(setup, stored, other, request, contained_only):
    store, source_id, descriptor = setup
    conn = store.conn
    conn.execute("DELETE FROM modelstore.statistics WHERE source_id = %s", [source_id])
    columns = ["x1", "x2", "y"]
    ids = []
    for lo, hi in stored:
        ids.append(conn.execute(
            "INSERT INTO modelstore.statistics (source_id, family, lo, hi, lo_key, hi_key, filter_sql, target, "
            "params_key, columns, n, null_rows, mean, moments) VALUES (%s, 'linear', %s, %s, %s, %s, '', '', '', "
            "%s, %s, 0, %s, %s) RETURNING stats_id",
            [source_id, str(lo), str(hi), lo, hi, columns, hi - lo + 1, [0.0] * 3, [0.0] * 9]).fetchone()[0])
    for lo, hi in other:  # another filter: never relevant, even where it would bridge two components
        conn.execute(
            "INSERT INTO modelstore.statistics (source_id, family, lo, hi, lo_key, hi_key, filter_sql, target, "
            "params_key, columns, n, null_rows, mean, moments) VALUES (%s, 'linear', %s, %s, %s, %s, 'x1 > 0', '', "
            "'', %s, %s, 0, %s, %s)", [source_id, str(lo), str(hi), lo, hi, columns, hi - lo + 1, [0.0] * 3, [0.0] * 9])
    lo, hi = request
    row = conn.execute(
        "SELECT stats_ids, lo_keys, hi_keys, n_rows FROM modelstore.plan_candidates(%s, 'linear', '', '', '', %s, "
        "false, %s, %s, %s)", [source_id, FEATURES + ["y"], lo, hi, contained_only]).fetchone()
    expected = closure(stored, lo, hi, contained_only)
    assert sorted(row[0]) == sorted(ids[i] for i in expected)
    got = {sid: (a, b, n) for sid, a, b, n in zip(*row)}
    for i in expected:
        assert got[ids[i]] == (stored[i][0], stored[i][1], stored[i][1] - stored[i][0] + 1)
