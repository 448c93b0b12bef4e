"""The session's catalog cache and the cut graph kept between requests (docs/planner.md, "The session's
catalog cache", "Per request: two virtual nodes"): plans stay optimal — against brute force over every
compatible model on small catalogs, and against the solver over the whole catalog on a dense one, where
later requests read only the catalog version — and every way of changing the statistics of a source
(INSERT, COPY, UPDATE of n or stale, DELETE, change capture, another session's commit, a rolled-back or
an uncommitted change) makes the
session read them again."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from modelstore.planner import cache, plan_costs
from modelstore.planner.costs import CostModel
from modelstore.planner.graph import solve
from modelstore.request.cuts import range_cuts
from tests.test_planner import FEATURES, N, all_stored, fit, optimum, reset
from tests.test_planner import store  # noqa: F401 — the module's table ``p``

pytestmark = pytest.mark.store(cost_model=CostModel.default())

#: figures like a calibrated machine's (cheap statements, a stored row dearer than scanning ~80 rows)
CHEAP_STATEMENTS = dataclasses.replace(CostModel.default(), statement_ms=0.04, term_ms=0.0004, fetch_row_ms=0.05)


@pytest.fixture(params=["default", "cheap statements"])
def figures(store, request):  # noqa: F811
    saved = store._cost_model
    store._cost_model = CostModel.default() if request.param == "default" else CHEAP_STATEMENTS
    yield request.param
    store._cost_model = saved


def explain(store, lo, hi):  # noqa: F811
    return store.explain("linear", table="p", target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)


def near_end(draw_offset, end):
    return max(1, min(N, end + draw_offset))


# small catalogs whose models start or end within a few rows of the request's ends, plus one anywhere;
# each catalog is planned twice: from the catalog, then from the session's cache
@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking or explaining: each example is a catalog
@given(request=st.tuples(st.integers(200, 1200), st.integers(300, 1500)),
       ends=st.lists(st.tuples(st.integers(-8, 8), st.integers(-8, 8), st.integers(0, 3)), min_size=1, max_size=3),
       anywhere=st.tuples(st.integers(1, N - 20), st.integers(10, 1500)))
def test_plans_match_brute_force_from_the_catalog_and_from_the_cache(store, figures, request, ends, anywhere):  # noqa: F811
    reset(store)
    lo, hi = request[0], min(N, request[0] + request[1])
    shapes = []
    for da, db, shape in ends:  # a model near both ends, near one end (two ways), or a pair sharing a far cut
        a, b = near_end(da, lo), near_end(db, hi)
        far = max(1, lo - 400)
        shapes += [[(a, b)], [(a, min(N, b + 300))], [(far, b)], [(far, a), (far, b)]][shape]
    shapes.append((anywhere[0], min(N, anywhere[0] + anywhere[1])))
    for a, b in shapes:
        if b - a >= 9:
            fit(store, a, b)
    estimators = []
    for _ in range(2):
        plan = explain(store, lo, hi)
        estimators.append(store._estimator(plan.descriptor.source))
        assert plan.est_cost_ms == pytest.approx(optimum(store, plan), rel=1e-9)
    assert plan.graph["catalog_hit"]
    # the cut graph is reused unless the row estimates were read again in between (their time to live
    # ran out during a slow brute force): then the rows below every cut are counted anew
    assert plan.graph["graph_hit"] or estimators[0] is not estimators[1]


def synthetic_catalog(store, count: int, seed: int) -> None:  # noqa: F811
    """``count`` distinct linear summaries of ~N(300, 60) rows (zeros: planning never reads the arrays)."""
    reset(store)
    fit(store, 1, 50)  # registers the source
    source_id = store.conn.execute("SELECT source_id FROM modelstore.sources WHERE table_name = 'p'").fetchone()[0]
    rng = np.random.default_rng(seed)
    sizes = np.clip(rng.normal(300, 60, count * 2).round(), 10, N - 1).astype(int)
    los = np.array([rng.integers(1, N - s + 1) for s in sizes])
    pairs = np.unique(np.stack([los, los + sizes - 1], axis=1), axis=0)[:count]
    k = len(FEATURES) + 1
    columns = [*FEATURES, "y"]
    with store.conn.transaction():
        with store.conn.cursor().copy(
                "COPY modelstore.statistics (source_id, family, lo, hi, lo_key, hi_key, columns, n, null_rows, mean, "
                "moments, read_columns) FROM STDIN") as copy:
            for a, b in pairs.tolist():
                copy.write_row([source_id, "linear", str(a), str(b), a, b, columns, b - a + 1, 0, [0.0] * k,
                                [0.0] * (k * k), [*columns, "id"]])
    store.conn.execute("ANALYZE modelstore.statistics")


def test_a_dense_catalog_is_read_once_and_plans_stay_optimal(store, figures):  # noqa: F811
    synthetic_catalog(store, 2000, seed=5)
    rng = np.random.default_rng(6)
    ranges = store.conn.execute("SELECT lo_key::int, hi_key::int FROM modelstore.statistics "
                                "JOIN modelstore.sources USING (source_id) WHERE table_name = 'p' "
                                "ORDER BY lo_key, hi_key").fetchall()
    requests = []
    for i in rng.choice(len(ranges) - 1, 6, replace=False):  # the difference of two models: stored only
        (a, b), (c, e) = ranges[i], ranges[i + 1]
        requests.append((min(b, e) + 1, max(b, e)) if a == c else (a, b))
    for _ in range(6):  # anywhere
        lo = int(rng.integers(1, N - 600))
        requests.append((lo, lo + int(rng.integers(150, 500))))
    hits = 0
    for lo, hi in requests:
        if hi - lo < 2:
            continue
        plan = explain(store, lo, hi)
        d = plan.descriptor
        costs = plan_costs(store.cost_model, store._estimator(d.source), d)
        s, t = range_cuts(d.range, "integer")
        everything = all_stored(store, d)
        whole = solve(s, t, everything, lambda m: range_cuts(m.range, "integer"), costs)
        assert plan.est_cost_ms == pytest.approx(whole.cost_ms, rel=1e-9)
        hits += plan.graph["catalog_hit"] and plan.graph["graph_hit"] and plan.graph["catalog_fetched"] == 0
    assert hits >= len([r for r in requests if r[1] - r[0] >= 2]) - 1  # only the first request reads the catalog


def _catalog(store, lo=50, hi=300):  # noqa: F811
    d = explain(store, lo, hi).descriptor
    source_id = store.conn.execute("SELECT source_id FROM modelstore.sources WHERE table_name = 'p'").fetchone()[0]
    return source_id, d


def _logged(store, source_id):  # noqa: F811
    """The change log's rows of the source: (change id, the ids they name or None for everything)."""
    return store.conn.execute("SELECT change_id, stats_ids FROM modelstore.statistics_changes "
                              "WHERE source_id = %s ORDER BY change_id", [source_id]).fetchall()


def test_every_change_to_a_sources_statistics_is_read_again(store):  # noqa: F811
    reset(store)
    fit(store, 1, 100)
    fit(store, 200, 400)
    source_id, d = _catalog(store)
    cache.lookup(store.conn, source_id, d)
    assert cache.lookup(store.conn, source_id, d).hit  # nothing changed: only the version came back
    first = min(cache.lookup(store.conn, source_id, d).entry.stats_ids)
    changes = [
        ("a fit's INSERT", lambda: fit(store, 500, 700)),
        ("INSERT … SELECT", lambda: store.conn.execute(
            "INSERT INTO modelstore.statistics (source_id, family, lo, hi, lo_key, hi_key, columns, n, null_rows, "
            "mean, moments, read_columns) SELECT source_id, family, '800', '900', 800, 900, columns, 101, 0, mean, "
            "moments, read_columns FROM modelstore.statistics WHERE stats_id = %s", [first])),
        ("UPDATE of n (what capture's SQL does)", lambda: store.conn.execute(
            "UPDATE modelstore.statistics SET n = n + 1 WHERE stats_id = %s", [first])),
        ("UPDATE of stale", lambda: store.conn.execute(
            "UPDATE modelstore.statistics SET stale = true WHERE source_id = %s AND lo_key = 800", [source_id])),
        ("DELETE", lambda: store.conn.execute(
            "DELETE FROM modelstore.statistics WHERE source_id = %s AND lo_key = 800", [source_id])),
        ("change capture of a write to the table", lambda: store.conn.execute(
            "UPDATE p SET y = y + 1 WHERE id = 50")),
    ]
    for what, change in changes:
        before = cache.lookup(store.conn, source_id, d).entry
        logged = _logged(store, source_id)
        change()
        store.conn.commit()
        assert len(_logged(store, source_id)) > len(logged), what
        look = cache.lookup(store.conn, source_id, d)
        assert not look.hit and look.cached, what
        truth = store.conn.execute(
            "SELECT stats_id, lo_key::bigint, hi_key::bigint, n + null_rows FROM modelstore.statistics "
            "WHERE source_id = %s AND NOT stale ORDER BY lo_key, hi_key, stats_id", [source_id]).fetchall()
        entry = look.entry
        assert [tuple(map(int, r)) for r in truth] == list(zip(entry.stats_ids.tolist(), entry.lo_keys.tolist(),
                                                               entry.hi_keys.tolist(), entry.n_rows.tolist())), what
        assert entry is not before
        assert cache.lookup(store.conn, source_id, d).hit, what  # and kept


def test_an_uncommitted_change_is_not_kept_and_a_rollback_is_seen(store):  # noqa: F811
    reset(store)
    fit(store, 1, 100)
    source_id, d = _catalog(store)
    committed = cache.lookup(store.conn, source_id, d).entry
    with store.conn.transaction():
        with store.conn.transaction(force_rollback=True):
            store.conn.execute("UPDATE modelstore.statistics SET n = n + 7 WHERE source_id = %s", [source_id])
            look = cache.lookup(store.conn, source_id, d)  # the held arrays patched with this transaction's change
            assert not look.cached and look.patched and look.fetched == 1
            assert look.entry.n_rows.tolist() == (committed.n_rows + 7).tolist()
            assert cache.lookup(store.conn, source_id, d).entry is not committed  # and again: nothing was kept
        # rolled back to the savepoint: the change, its log row and the setting that marked the source changed
        # are undone together; the session still holds the committed arrays, and they are current
        look = cache.lookup(store.conn, source_id, d)
        assert look.hit and look.cached and look.entry is committed
        assert look.entry.n_rows.tolist() == committed.n_rows.tolist()
        store.conn.execute("UPDATE modelstore.statistics SET n = n + 3 WHERE source_id = %s", [source_id])
        assert not cache.lookup(store.conn, source_id, d).cached
    # committed: the log row of this transaction is one the held snapshot did not see
    look = cache.lookup(store.conn, source_id, d)
    assert look.patched and look.cached and look.fetched == 1
    assert look.entry.n_rows.tolist() == (committed.n_rows + 3).tolist()
    look = cache.lookup(store.conn, source_id, d)
    assert look.hit and look.entry.n_rows.tolist() == (committed.n_rows + 3).tolist()


def test_another_sessions_commit_is_seen(store):  # noqa: F811
    reset(store)
    fit(store, 1, 100)
    source_id, d = _catalog(store)
    cache.lookup(store.conn, source_id, d)
    assert cache.lookup(store.conn, source_id, d).hit
    store.conn.commit()
    with store.conn.__class__.connect(store.conn.info.dsn, password=store.conn.info.password,
                                      autocommit=True) as other:
        other.execute("UPDATE modelstore.statistics SET n = n + 1 WHERE source_id = %s", [source_id])
    look = cache.lookup(store.conn, source_id, d)
    assert not look.hit and look.cached
    plan = explain(store, 1, 100)
    assert plan.steps[0].est_rows == int(look.entry.n_rows[0])
