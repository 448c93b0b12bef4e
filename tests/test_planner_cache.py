"""The session's catalog cache and the cut graph kept between requests (docs/planner.md, "The session's
catalog cache", "Per request: two virtual nodes"): plans stay optimal — against brute force over every
compatible model on small catalogs, and against the solver over the whole catalog on a dense one, where
later requests read only the catalog version — and every way of changing the statistics of a source
(INSERT, COPY, UPDATE of n or stale, DELETE, change capture, another session's commit, a rolled-back or
an uncommitted change) makes the
session read them again."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from psycopg import sql
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from modelstore.planner import cache, plan_costs
from modelstore.planner.cache import CatalogEntry
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


# --- the change log (migration 0023): patches instead of whole reads, no lock between writers, compaction ---

def _other(store):  # noqa: F811
    """Another session on the store's database (its own transactions)."""
    return store.conn.__class__.connect(store.conn.info.dsn, password=store.conn.info.password, autocommit=True)


def _truth(conn, source_id):
    """The source's compatible summaries as this session sees them now (every row the tests store here is
    compatible unless stale), in the cache's order."""
    return [tuple(map(int, r)) for r in conn.execute(
        "SELECT stats_id, lo_key::bigint, hi_key::bigint, n + null_rows FROM modelstore.statistics "
        "WHERE source_id = %s AND NOT stale ORDER BY lo_key, hi_key, stats_id", [source_id]).fetchall()]


def _held(entry):
    return list(zip(entry.stats_ids.tolist(), entry.lo_keys.tolist(), entry.hi_keys.tolist(), entry.n_rows.tolist()))


def _copy_summary(conn, template: int, lo: int, hi: int) -> None:
    """A new summary of [lo, hi] (the template's sums: planning reads only ranges and sizes)."""
    conn.execute("INSERT INTO modelstore.statistics (source_id, family, lo, hi, lo_key, hi_key, columns, n, null_rows, "
                 "mean, moments, read_columns) SELECT source_id, family, %s, %s, %s, %s, columns, %s, 0, mean, "
                 "moments, read_columns FROM modelstore.statistics WHERE stats_id = %s",
                 [str(lo), str(hi), lo, hi, hi - lo + 1, template])


def _fresh_plan(store, lo, hi):  # noqa: F811
    """The plan a session holding nothing makes (the session's cache set aside meanwhile)."""
    saved = cache._SESSIONS.pop(store.conn, None)
    try:
        return explain(store, lo, hi)
    finally:
        cache._SESSIONS.pop(store.conn, None)
        if saved is not None:
            cache._SESSIONS[store.conn] = saved


def _same_plan(a, b) -> bool:
    return a.est_cost_ms == pytest.approx(b.est_cost_ms, rel=1e-12) and \
        [(s.sign, s.op, str(s.range), s.stats_id) for s in a.steps] == \
        [(s.sign, s.op, str(s.range), s.stats_id) for s in b.steps]


def test_after_one_new_summary_only_that_row_is_read(store):  # noqa: F811
    reset(store)
    fit(store, 1, 100)
    fit(store, 80, 400)
    source_id, d = _catalog(store)
    first = cache.lookup(store.conn, source_id, d)
    assert cache.lookup(store.conn, source_id, d).hit
    fit(store, 300, 700)  # a fit stores its summary (and plans over the held arrays first)
    look = cache.lookup(store.conn, source_id, d)
    assert look.patched and look.cached and look.fetched == 1 and not look.entry.graphs
    assert _held(look.entry) == _truth(store.conn, source_id) and len(look.entry) == len(first.entry) + 1
    assert cache.lookup(store.conn, source_id, d).hit
    # and a plan over the patched arrays is the plan of a session that read everything
    plan = explain(store, 50, 650)
    assert plan.graph["catalog_hit"] and plan.graph["catalog_fetched"] == 0
    assert _same_plan(plan, _fresh_plan(store, 50, 650))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_sessions_random_changes_leave_the_cache_equal_to_a_fresh_read(store, seed):  # noqa: F811
    """Random inserts, deletes, updates of n and of stale by two sessions, with commits, rollbacks and rolled-back
    savepoints interleaved: after every step the session's arrays equal what it sees, and at every point where it
    has no transaction open its plans equal those of a session that holds nothing."""
    rnd = random.Random(seed)
    reset(store)
    fit(store, 1, 200)
    source_id, d = _catalog(store)
    template = store.conn.execute("SELECT min(stats_id) FROM modelstore.statistics WHERE source_id = %s",
                                  [source_id]).fetchone()[0]
    a = store.conn
    with _other(store) as b:
        for conn in (a, b):
            conn.execute("SET lock_timeout = '5s'")  # a test mistake fails instead of hanging
        sessions = {"a": a, "b": b}
        open_tx = {"a": False, "b": False}
        touched = {"a": set(), "b": set()}  # ids a session's open transaction updated or deleted (row locks)
        patched = 0
        for step in range(45):
            who = rnd.choice("ab")
            conn, other = sessions[who], "b" if who == "a" else "a"
            op = rnd.choice(["insert", "insert", "delete", "n", "stale", "end", "end", "savepoint"])
            if op == "end":
                if open_tx[who]:
                    conn.execute(rnd.choice(["COMMIT", "ROLLBACK"]))
                    open_tx[who], touched[who] = False, set()
                continue
            if not open_tx[who] and rnd.random() < 0.7:
                conn.execute("BEGIN")
                open_tx[who] = True
            ids = [r[0] for r in conn.execute("SELECT stats_id FROM modelstore.statistics WHERE source_id = %s "
                                              "AND stats_id <> %s", [source_id, template])
                   if r[0] not in touched[other]]

            def change():
                if op in ("insert", "savepoint") or not ids:
                    lo = rnd.randint(1, N - 60)
                    _copy_summary(conn, template, lo, min(N, lo + rnd.randint(10, 900)))
                    return
                target = rnd.choice(ids)
                if open_tx[who]:
                    touched[who].add(target)
                if op == "delete":
                    conn.execute("DELETE FROM modelstore.statistics WHERE stats_id = %s", [target])
                elif op == "n":
                    conn.execute("UPDATE modelstore.statistics SET n = n + 1 WHERE stats_id = %s", [target])
                else:
                    conn.execute("UPDATE modelstore.statistics SET stale = NOT stale WHERE stats_id = %s", [target])

            if op == "savepoint" and open_tx[who]:
                conn.execute("SAVEPOINT s")
                change()
                conn.execute("ROLLBACK TO SAVEPOINT s")
            else:
                change()
            look = cache.lookup(a, source_id, d)
            patched += look.patched
            assert _held(look.entry) == _truth(a, source_id), (seed, step, op, who)
            if not open_tx["a"]:
                lo = rnd.randint(1, N // 2)
                hi = rnd.randint(lo + 10, N)
                assert _same_plan(explain(store, lo, hi), _fresh_plan(store, lo, hi)), (seed, step)
        for who in "ab":
            if open_tx[who]:
                sessions[who].execute("COMMIT")
    look = cache.lookup(a, source_id, d)
    assert _held(look.entry) == _truth(a, source_id)
    assert patched > 0  # the log was used, not only whole reads


def test_truncate_and_a_sources_cascade_are_read_whole(store):  # noqa: F811
    reset(store)
    fit(store, 1, 100)
    source_id, d = _catalog(store)
    cache.lookup(store.conn, source_id, d)
    store.conn.execute("DELETE FROM modelstore.sources WHERE source_id = %s", [source_id])  # the cascade
    look = cache.lookup(store.conn, source_id, d)
    assert len(look.entry) == 0 and look.cached
    fit(store, 1, 100)
    source_id, d = _catalog(store)
    assert len(cache.lookup(store.conn, source_id, d).entry) == 1
    with _other(store) as b:
        b.execute("TRUNCATE modelstore.statistics CASCADE")
    look = cache.lookup(store.conn, source_id, d)
    assert not look.hit and not look.patched and len(look.entry) == 0  # the log said "everything"
    assert [r[0] for r in store.conn.execute(
        "SELECT stats_ids FROM modelstore.statistics_changes WHERE source_id IS NULL")] == [None]


def test_two_sessions_changing_one_sources_statistics_do_not_wait_for_each_other(store):  # noqa: F811
    reset(store)
    fit(store, 1, 100)
    fit(store, 200, 300)
    source_id, _ = _catalog(store)
    template = store.conn.execute("SELECT min(stats_id) FROM modelstore.statistics WHERE source_id = %s",
                                  [source_id]).fetchone()[0]
    last = store.conn.execute("SELECT max(change_id) FROM modelstore.statistics_changes").fetchone()[0]
    with _other(store) as one, _other(store) as two:
        two.execute("SET lock_timeout = '2s'")
        # a new summary each, the first transaction left open
        one.execute("BEGIN")
        _copy_summary(one, template, 400, 500)
        two.execute("BEGIN")
        _copy_summary(two, template, 600, 700)  # would wait for `one` to end if the two shared a row
        two.execute("COMMIT")
        # change capture of writes to two ranges with no summary in common, the first transaction still open
        one.execute("UPDATE p SET y = y WHERE id = 50")
        two.execute("BEGIN")
        two.execute("UPDATE p SET y = y WHERE id = 250")
        two.execute("COMMIT")
        one.execute("COMMIT")
    logged = store.conn.execute("SELECT count(*), count(DISTINCT xid) FROM modelstore.statistics_changes "
                                "WHERE source_id = %s AND change_id > %s", [source_id, last]).fetchone()
    assert logged == (4, 3)  # the first transaction's insert and capture update, and one row each of the others


def test_a_snapshot_older_than_the_held_one_reads_everything(store):  # noqa: F811
    """A REPEATABLE READ transaction under an older snapshot must not see the held arrays' newer rows."""
    reset(store)
    fit(store, 1, 100)
    source_id, d = _catalog(store)
    template = store.conn.execute("SELECT min(stats_id) FROM modelstore.statistics WHERE source_id = %s",
                                  [source_id]).fetchone()[0]
    with _other(store) as old:
        old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        exported = old.execute("SELECT pg_export_snapshot()").fetchone()[0]
        _copy_summary(store.conn, template, 300, 400)
        newer = cache.lookup(store.conn, source_id, d).entry
        assert len(newer) == 2
        store.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        store.conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(exported)))
        look = cache.lookup(store.conn, source_id, d)
        assert not look.hit and not look.patched and len(look.entry) == 1 == len(_truth(store.conn, source_id))
        store.conn.execute("COMMIT")
        old.execute("COMMIT")
    look = cache.lookup(store.conn, source_id, d)
    assert len(look.entry) == 2 and _held(look.entry) == _truth(store.conn, source_id)


def test_compaction_a_stale_cache_reads_everything_a_current_one_stays_valid(store):  # noqa: F811
    reset(store)
    fit(store, 1, 100)
    source_id, d = _catalog(store)
    template = store.conn.execute("SELECT min(stats_id) FROM modelstore.statistics WHERE source_id = %s",
                                  [source_id]).fetchone()[0]
    stale = cache.lookup(store.conn, source_id, d).entry
    stale_snapshot = stale.snapshot
    with _other(store) as b:
        _copy_summary(b, template, 200, 300)  # committed after the held snapshot
        assert b.execute("SELECT modelstore.compact_statistics_changes()").fetchone()[0] is not None
        assert b.execute("SELECT modelstore.compact_statistics_changes()").fetchone()[0] is not None
        # the second run deleted every row below the first run's oldest transaction: the insert's among them
        assert b.execute("SELECT count(*) FROM modelstore.statistics_changes WHERE source_id = %s",
                         [source_id]).fetchone()[0] == 0
        look = cache.lookup(store.conn, source_id, d)  # its snapshot is older than the horizon: a whole read
        assert not look.hit and not look.patched and look.fetched == 2
        assert _held(look.entry) == _truth(store.conn, source_id) and look.entry.snapshot != stale_snapshot
        # a cache read since the last run survives the next one
        assert cache.lookup(store.conn, source_id, d).hit
        b.execute("SELECT modelstore.compact_statistics_changes()")
        assert cache.lookup(store.conn, source_id, d).hit
        _copy_summary(b, template, 400, 500)
        look = cache.lookup(store.conn, source_id, d)
        assert look.patched and look.fetched == 1 and _held(look.entry) == _truth(store.conn, source_id)
        # a compaction in progress elsewhere is skipped, not waited for
        b.execute("BEGIN")
        b.execute("SELECT modelstore.compact_statistics_changes()")
        assert store.conn.execute("SELECT modelstore.compact_statistics_changes()").fetchone()[0] is None
        b.execute("ROLLBACK")


def test_the_log_compacts_itself(store):  # noqa: F811
    """Every 1,024th log row compacts the log (from the trigger, as the writing role)."""
    reset(store)
    fit(store, 1, 100)
    source_id, _ = _catalog(store)
    before = store.conn.execute("SELECT compacted_at FROM modelstore.statistics_changes_horizon").fetchone()[0]
    last = store.conn.execute("SELECT max(change_id) FROM modelstore.statistics_changes").fetchone()[0]
    for _ in range(1024 - last % 1024 + 2):  # one logged row per statement (each its own transaction)
        store.conn.execute("UPDATE modelstore.statistics SET n = n WHERE source_id = %s", [source_id])
    after = store.conn.execute("SELECT compacted_at FROM modelstore.statistics_changes_horizon").fetchone()[0]
    assert after is not None and after != before


@settings(max_examples=200, deadline=None)
@given(held=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 6), st.integers(0, 3), st.integers(0, 1)),
                     max_size=30),
       changed=st.lists(st.integers(0, 45), max_size=12),
       added=st.dictionaries(st.integers(0, 45),  # an id held (an update) or not (an insert)
                             st.tuples(st.integers(0, 12), st.integers(0, 6), st.integers(0, 3), st.integers(0, 2)),
                             max_size=10))
def test_a_patch_equals_a_whole_read(held, changed, added):
    """``CatalogEntry.patched`` against ``from_arrays`` over the patched set of rows: same order (ties in lo
    and hi included), components, sizes and column sets."""
    sets = [("a", "b"), ("a", "b", "c"), ("a", "b", "d")]
    rows = {i: (lo, lo + w, 10 + nv, 100 + i, cs) for i, (lo, w, nv, cs) in enumerate(held)}

    def entry_of(rs, snapshot):
        ids = sorted(rs)
        used = sorted({rs[i][4] for i in ids})
        return CatalogEntry.from_arrays(snapshot, "r", ids, [rs[i][0] for i in ids], [rs[i][1] for i in ids],
                                        [rs[i][2] for i in ids], [rs[i][3] for i in ids],
                                        [used.index(rs[i][4]) for i in ids], [sets[c] for c in used])

    before = entry_of(rows, "1:1:")
    gone = set(changed)
    new = {i: (lo, lo + w, 10 + nv, 7, cs) for i, (lo, w, nv, cs) in added.items()}
    gone |= set(new)
    after = {i: r for i, r in rows.items() if i not in gone} | new
    used = sorted({r[4] for r in new.values()}, reverse=True)  # the delta numbers its sets its own way
    ids = list(new)[::-1]
    patched = before.patched("2:2:", sorted(gone), ids, [new[i][0] for i in ids], [new[i][1] for i in ids],
                             [new[i][2] for i in ids], [new[i][3] for i in ids], [used.index(new[i][4]) for i in ids],
                             [list(sets[c]) for c in used])
    whole = entry_of(after, "2:2:")
    for name in ("stats_ids", "lo_keys", "hi_keys", "n_values", "n_rows", "comp_start", "comp_lo", "comp_hi"):
        assert getattr(patched, name).tolist() == getattr(whole, name).tolist(), name
    assert [patched.column_sets[c] for c in patched.column_ix] == [whole.column_sets[c] for c in whole.column_ix]
    assert patched.nv_distinct[patched.nv_inverse].tolist() == whole.n_values.tolist()
    assert patched.snapshot == "2:2:" and not patched.graphs
