"""The statistics engines (issue #15; docs/statistics.md): the modelstore_stats C aggregate in
double-double, and the SQL aggregates it falls back to. Through a real PostgreSQL:

- the aggregate equals an exact rational computation (hypothesis: huge/tiny magnitudes, cancellation);
- combine(a, b) equals the aggregate over both, and parallel plans equal serial ones;
- both engines agree to 1e-12 on well-conditioned data;
- NIST Longley ≥ 12 digits, Wampler1 ≥ 11, Wampler2 ≥ 10 on the scratch, merge and subtraction paths;
- NULL rows counted, NaN/±Inf refused by column name, EXPLAIN and the model name the engine;
- change capture keeps stored summaries double-double (dd_absorb) on the row and bulk paths.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelstore
from modelstore.errors import NonFiniteValueError
from modelstore.execution.executor import execute
from modelstore.models import LinearRegression
from modelstore.planner.costs import CostModel
from modelstore.planner.plan import Plan, Step
from modelstore.stats import engine as stats_engine
from modelstore.catalog import records
from modelstore.families import family
from modelstore.stats.linear import LinearStats, from_dd_array
from tests.data import longley, nist_strd
from tests.helpers import load_frame

FEATURES = list(longley.FEATURES)


# -- fixtures ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def conn(module_dsn):
    s = modelstore.connect(module_dsn)  # migrates: creates the extension when the server has it
    if stats_engine.installed_schema(s.conn) is None:
        s.close()
        pytest.skip("the modelstore_stats extension is not installed on this server (SQL path only)")
    s.conn.autocommit = True
    yield s.conn
    s.close()


@pytest.fixture(params=["c", "sql"])
def engine_name(request, monkeypatch):
    monkeypatch.setenv(stats_engine.ENV, request.param)
    stats_engine.forget()
    yield request.param
    stats_engine.forget()


def exact_moments(rows: list[list[float]]):
    """n, the means and the comoment matrix as exact rationals."""
    n = len(rows)
    k = len(rows[0])
    fr = [[Fraction(v) for v in r] for r in rows]
    mean = [sum((r[i] for r in fr), Fraction(0)) / n for i in range(k)]
    C = [[sum(((r[i] - mean[i]) * (r[j] - mean[j]) for r in fr), Fraction(0)) for j in range(k)] for i in range(k)]
    return mean, C


def dd_value(hi, lo) -> Fraction:
    return Fraction(float(hi)) + Fraction(float(lo))


def aggregate(conn, rows, *, state=False):
    """dd_moments (or its unfinished state) over ``rows``, in PostgreSQL."""
    k = len(rows[0])
    fn = "dd_moments_state" if state else "dd_moments"
    query = "SELECT modelstore.{}({}) FROM unnest({}) AS u({})".format(
        fn, ", ".join(f"c{i}" for i in range(k)), ", ".join(["%s::float8[]"] * k), ", ".join(f"c{i}" for i in range(k)))
    return conn.execute(query, [[r[i] for r in rows] for i in range(k)]).fetchone()[0]


def check_against_exact(rows, values, tol=1e-24):
    k = len(rows[0])
    stats = from_dd_array([f"c{i}" for i in range(k)], values)
    mean, C = exact_moments(rows)
    # the error bound: n·u²·Σ|terms| (docs/statistics.md); scales: the spread of each column
    scale = [max(abs(float(C[i][i])), 1e-300) for i in range(k)]
    for i in range(k):
        got = dd_value(stats.mean[i], stats.mean_lo[i])
        spread = math.sqrt(scale[i] / len(rows)) + abs(float(mean[i]))
        assert abs(float(got - mean[i])) <= tol * spread + 1e-300, (i, float(got), float(mean[i]))
        for j in range(k):
            got = dd_value(stats.comoment[i, j], stats.comoment_lo[i, j])
            bound = tol * math.sqrt(scale[i]) * math.sqrt(scale[j]) * len(rows) + 1e-300
            assert abs(float(got - C[i][j])) <= bound, (i, j, float(got), float(C[i][j]))
    return stats


# -- the aggregate against exact rationals -----------------------------------------------------------------

# squares must stay normal numbers (|x| in [1e-150, 1e150]): below, double-double loses its low part to underflow
magnitudes = st.sampled_from([1e-100, 1e-30, 1e-8, 1.0, 1e8, 1e30, 1e100])
finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def tables(draw):
    k = draw(st.integers(1, 4))
    n = draw(st.integers(1, 30))
    scales = [draw(magnitudes) for _ in range(k)]
    offsets = [draw(st.sampled_from([0.0, 1.0, 1e6, 1e12, -1e15])) for _ in range(k)]  # cancellation
    rows = [[offsets[i] * scales[i] + draw(finite) * scales[i] for i in range(k)] for _ in range(n)]
    return rows


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=tables())
def test_aggregate_equals_exact_rationals(conn, rows):
    check_against_exact(rows, aggregate(conn, rows))


@settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=tables(), cut=st.floats(0, 1))
def test_combine_equals_aggregate_over_both(conn, rows, cut):
    m = int(cut * len(rows))
    a, b = rows[:m], rows[m:]
    k = len(rows[0])
    if not a or not b:
        return
    sa, sb = aggregate(conn, a, state=True), aggregate(conn, b, state=True)
    combined = conn.execute("SELECT modelstore.dd_final(modelstore.dd_combine(%s::float8[], %s::float8[]))",
                            [sa, sb]).fetchone()[0]
    check_against_exact(rows, combined)
    # and the Python merge of the two finished statistics (Chan in double-double) agrees as well
    cols = [f"c{i}" for i in range(k)]
    merged = from_dd_array(cols, aggregate(conn, a)) + from_dd_array(cols, aggregate(conn, b))
    whole = from_dd_array(cols, aggregate(conn, rows))
    assert merged.n == whole.n
    np.testing.assert_allclose(merged.comoment, whole.comoment, rtol=1e-14, atol=1e-300)
    back = whole - from_dd_array(cols, aggregate(conn, b))
    assert back.n == len(a) and back.precision == "double-double"


def test_nulls_counted_and_shift_exact(conn):
    values = conn.execute(
        "SELECT modelstore.dd_moments(x, y) FROM (VALUES (1::float8, NULL::float8), (1e16, 1), (1e16 + 2, 3)) v(x, y)"
    ).fetchone()[0]
    s = from_dd_array(["x", "y"], values)
    assert (s.n, s.null_rows) == (2, 1)
    assert dd_value(s.mean[0], s.mean_lo[0]) == Fraction(10**16 + 1)
    assert s.comoment.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_refuses_other_types(conn):
    with pytest.raises(psycopg.errors.DatatypeMismatch, match="float8"):
        conn.execute("SELECT modelstore.dd_moments(1::int)")


def test_parallel_equals_serial(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS par AS SELECT g AS id, random() * 1e6 AS a, random() - 0.5 AS b, "
                 "random() * 1e-6 AS c FROM generate_series(1, 200000) g")
    q = "SELECT modelstore.dd_moments(a, b, c) FROM par"
    with conn.transaction():
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        serial = conn.execute(q).fetchone()[0]
    with conn.transaction():
        for setting in ("max_parallel_workers_per_gather = 2", "parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                        "min_parallel_table_scan_size = 0"):
            conn.execute(f"SET LOCAL {setting}")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + q).fetchall())
        parallel = conn.execute(q).fetchone()[0]
    assert "Partial Aggregate" in plan and "Gather" in plan
    cols = ["a", "b", "c"]
    s, p = from_dd_array(cols, serial), from_dd_array(cols, parallel)
    assert (s.n, s.null_rows) == (p.n, p.null_rows) == (200000, 0)
    for i in range(3):
        assert abs(float(dd_value(s.mean[i], s.mean_lo[i]) - dd_value(p.mean[i], p.mean_lo[i]))) <= 1e-26 * abs(s.mean[i])
        for j in range(3):
            d = float(dd_value(s.comoment[i, j], s.comoment_lo[i, j]) - dd_value(p.comoment[i, j], p.comoment_lo[i, j]))
            assert abs(d) <= 1e-24 * math.sqrt(s.comoment[i, i] * s.comoment[j, j])


# -- through the store, both engines --------------------------------------------------------------------------

def wampler(c: list[float]):
    x = np.arange(21, dtype=float)
    y = sum(ck * x**k for k, ck in enumerate(c))
    return x, y


@pytest.fixture(scope="module")
def data_dsn(module_dsn):
    with modelstore.connect(module_dsn) as s:
        rng = np.random.default_rng(7)
        X = rng.normal(size=(3000, 4)) * [1, 10, 100, 0.1] + [5, -3, 1e3, 0]
        y = X @ [1.5, -2.0, 0.01, 7.0] + rng.normal(size=3000)
        frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
        frame["y"] = y
        frame.insert(0, "id", np.arange(1, 3001))
        load_frame(s.conn, "wellcond", frame)
        data = np.array(longley.ROWS, dtype=float)
        extra = data * np.array([1.02, 1.01, 0.97, 1.05, 0.99, 1.03, 1.0]) + np.array([0, 0, 0, 0, 0, 0, 16])
        frame = pd.DataFrame(np.vstack([data, extra]), columns=["y", *FEATURES])
        frame.insert(0, "id", np.arange(1, 33))
        load_frame(s.conn, "longley", frame, types={c: "numeric" for c in ["y", *FEATURES]})
        for name, coef in (("wampler1", [1.0] * 6), ("wampler2", [10.0**-k for k in range(6)])):
            x, y = wampler(coef)
            # rows 22..42 repeat the design with another target, so that [1, 21] = [1, 42] − [22, 42]
            xs = np.r_[x, x]
            ys = np.r_[y, y * 1.5 + 3]
            f = pd.DataFrame({f"x{k}": xs**k for k in range(1, 6)})
            f["y"] = ys
            f.insert(0, "id", np.arange(1, 43))
            load_frame(s.conn, name, f)
        # the NIST files themselves: Filip (degree 10) and Wampler3–5 (degree 5 with noise), each followed by
        # its design again with another target, so that [1, n] = [1, 2n] − [n + 1, 2n]
        filip = np.array(nist_strd.FILIP)
        polys = {"filip": (filip[:, 1], filip[:, 0], 10)}
        for i in (3, 4, 5):
            polys[f"wampler{i}"] = (np.array(nist_strd.WAMPLER_X, dtype=float),
                                    np.array(nist_strd.WAMPLER_Y[i], dtype=float), 5)
        for name, (x, y, degree) in polys.items():
            f = pd.DataFrame({f"x{k}": np.r_[x, x] ** k for k in range(1, degree + 1)})
            f["y"] = np.r_[y, y * 1.5 + 3]
            f.insert(0, "id", np.arange(1, 2 * len(x) + 1))
            load_frame(s.conn, name, f)
    return module_dsn


def digits(estimate, certified) -> float:
    est, cert = np.asarray(estimate, dtype=float), np.asarray(certified, dtype=float)
    err = np.abs(est - cert) / np.maximum(np.abs(cert), 1e-300)
    return float(np.min(-np.log10(np.maximum(err, 1e-17))))


def three_paths(store, table, target, features, certified, lo, hi, mid, top):
    """Digits from scratch, from two merged halves, and as [lo, top] − [hi + 1, top]."""
    def fit(a, b):
        return store.fit("linear", table=table, target=target, features=features, order_by="id", lo=a, hi=b)

    def run(signed):
        descriptor, tbl = store._describe("linear", table, target, features, "id", lo, hi, None, {"l2": 0.0})
        steps = tuple(Step(sign, "stored", descriptor.range, sid) for sign, sid in signed)
        with store.conn.transaction():
            stats, executed = execute(store.conn, Plan(descriptor, steps, "hand-made"), tbl)
        return LinearRegression.from_stats(stats), stats

    scratch = fit(lo, hi)
    a, b = fit(lo, mid), fit(mid + 1, hi)
    merged, merged_stats = run([(+1, a.plan.stored_stats_id), (+1, b.plan.stored_stats_id)])
    whole, rest = fit(lo, top), fit(hi + 1, top)
    sub, sub_stats = run([(+1, whole.plan.stored_stats_id), (-1, rest.plan.stored_stats_id)])
    out = {name: digits(np.r_[m.intercept_, m.coef_], certified)
           for name, m in (("scratch", scratch), ("merge", merged), ("subtraction", sub))}
    return out, scratch, merged_stats, sub_stats


NIST = {
    # table, target, features, certified [intercept, coef…], (lo, hi, mid, top), digits wanted (c, sql)
    "longley": ("longley", "y", FEATURES, longley.CERTIFIED_PARAMS, (1, 16, 8, 32), (12, 10)),
    "wampler1": ("wampler1", "y", [f"x{k}" for k in range(1, 6)], [1.0] * 6, (1, 21, 10, 42), (11, None)),
    "wampler2": ("wampler2", "y", [f"x{k}" for k in range(1, 6)], [10.0**-k for k in range(6)],
                 (1, 21, 10, 42), (10, None)),
}


@pytest.mark.parametrize("dataset", list(NIST))
def test_nist_digits_every_path(data_dsn, engine_name, dataset):
    table, target, features, certified, bounds, wanted = NIST[dataset]
    with modelstore.connect(data_dsn) as store:
        if engine_name == "c" and stats_engine.installed_schema(store.conn) is None:
            pytest.skip("extension not installed")
        with store.conn.transaction():
            store.conn.execute("DELETE FROM modelstore.fitted_models")
            store.conn.execute("DELETE FROM modelstore.statistics")
        got, scratch, merged, sub = three_paths(store, table, target, features, certified, *bounds)
        print(f"\n{dataset} [{engine_name}]: " + ", ".join(f"{k} {v:.2f}" for k, v in got.items()))
        precision = "double-double" if engine_name == "c" else "float64"
        assert merged.precision == sub.precision == precision
        assert ("double-double" in scratch.plan.extra["Statistics"]) == (engine_name == "c")
        need = wanted[0] if engine_name == "c" else wanted[1]
        if need is not None:
            assert min(got.values()) >= need, got


def test_engines_agree_on_well_conditioned_data(data_dsn, monkeypatch):
    fits = {}
    for name in ("c", "sql"):
        monkeypatch.setenv(stats_engine.ENV, name)
        stats_engine.forget()
        with modelstore.connect(data_dsn, materialize=False) as store:
            if name == "c" and stats_engine.installed_schema(store.conn) is None:
                pytest.skip("extension not installed")
            fits[name] = [store.fit("linear", table="wellcond", target="y", features=["a", "b", "c", "d"],
                                    order_by="id", lo=11, hi=2900),
                          store.fit("gaussian_nb", table="longley", target="x6", features=FEATURES[:3],
                                    order_by="id")]
            explain = str(store.explain("linear", table="wellcond", target="y", features=["a", "b"], order_by="id"))
            assert f"Statistics engine: {stats_engine.DESCRIPTIONS[name]}" in explain
    stats_engine.forget()
    lin_c, lin_sql = fits["c"][0], fits["sql"][0]
    np.testing.assert_allclose(np.r_[lin_c.intercept_, lin_c.coef_], np.r_[lin_sql.intercept_, lin_sql.coef_],
                               rtol=1e-12)
    nb_c, nb_sql = fits["c"][1], fits["sql"][1]
    np.testing.assert_allclose(nb_c.theta_, nb_sql.theta_, rtol=1e-12)
    np.testing.assert_allclose(nb_c.var_, nb_sql.var_, rtol=1e-10)


def test_non_finite_refused_by_column(data_dsn, engine_name):
    with modelstore.connect(data_dsn, materialize=False) as store:
        if engine_name == "c" and stats_engine.installed_schema(store.conn) is None:
            pytest.skip("extension not installed")
        with store.conn.transaction():
            store.conn.execute("CREATE TABLE IF NOT EXISTS bad (id int, a float8, b float8, y float8)")
            store.conn.execute("TRUNCATE bad")
            store.conn.execute("INSERT INTO bad SELECT g, g, CASE WHEN g = 5 THEN 'NaN'::float8 ELSE g * 2 END, g * 3 + 1 "
                               "FROM generate_series(1, 20) g")
            store.conn.execute("INSERT INTO bad VALUES (21, NULL, 1, 1)")
        with pytest.raises(NonFiniteValueError, match="'b'"):
            store.fit("linear", table="bad", target="y", features=["a", "b"], order_by="id")
        m = store.fit("linear", table="bad", target="y", features=["a"], order_by="id")
        assert m.plan.results[0].rows == 21  # 20 used + 1 skipped for its NULL


def _fresh(conn, table, columns):
    """The C aggregate's statistics of the whole table, computed now (the reference for capture)."""
    query = psycopg.sql.SQL("SELECT modelstore.dd_moments({}) FROM {}").format(
        psycopg.sql.SQL(", ").join(psycopg.sql.SQL("{}::float8").format(psycopg.sql.Identifier(c)) for c in columns),
        psycopg.sql.Identifier(table))
    return from_dd_array(columns, conn.execute(query).fetchone()[0])


def _assert_dd_close(got, want, rel=1e-24):
    """Equal within double-double rounding: |got − want| ≤ rel · the columns' spread (hi + lo exactly)."""
    assert (got.n, got.null_rows) == (want.n, want.null_rows)
    assert got.precision == want.precision == "double-double"
    k = len(got.columns)
    scale = [math.sqrt(float(dd_value(want.comoment[i, i], want.comoment_lo[i, i]))) for i in range(k)]
    for i in range(k):
        err = abs(float(dd_value(got.mean[i], got.mean_lo[i]) - dd_value(want.mean[i], want.mean_lo[i])))
        assert err <= rel * (abs(want.mean[i]) + scale[i]), (i, err)
        for j in range(k):
            err = abs(float(dd_value(got.comoment[i, j], got.comoment_lo[i, j])
                            - dd_value(want.comoment[i, j], want.comoment_lo[i, j])))
            assert err <= rel * scale[i] * scale[j], (i, j, err)


WAMPLER_COLUMNS = [f"x{k}" for k in range(1, 6)] + ["y"]


def test_capture_keeps_double_double(data_dsn, engine_name):
    """Change capture merges in double-double (the extension's dd_absorb) on the row-by-row and the bulk
    path, for stored statistics and index nodes: after inserts, updates and deletes that leave Wampler1
    as it was, the maintained statistics equal a fresh C-aggregate fit within double-double rounding and
    still give Wampler1's digits. On the SQL engine a summary is float64 and stays float64."""
    with modelstore.connect(data_dsn) as store:
        if engine_name == "c" and stats_engine.installed_schema(store.conn) is None:
            pytest.skip("extension not installed")
        conn = store.conn
        with conn.transaction():
            conn.execute("DROP TABLE IF EXISTS capw")
            conn.execute("CREATE TABLE capw (id int PRIMARY KEY, x1 float8, x2 float8, x3 float8, x4 float8, x5 float8, "
                         "y float8)")
            conn.execute("INSERT INTO capw SELECT g, x, x^2, x^3, x^4, x^5, 1 + x + x^2 + x^3 + x^4 + x^5 "
                         "FROM generate_series(1, 42) g, LATERAL (SELECT ((g - 1) % 21)::float8 AS x) v")
        features = WAMPLER_COLUMNS[:-1]
        first = store.fit("linear", table="capw", target="y", features=features, order_by="id", lo=1, hi=1000)
        sid = first.plan.stored_stats_id
        store.build_index("capw", "id", features, "y", kind="linear", chunk_rows=8)
        changes = [
            "INSERT INTO capw SELECT g, x, x^2, x^3, x^4, x^5, x FROM generate_series(43, 44) g, "
            "LATERAL (SELECT (g % 7 + 3)::float8 AS x) v",                                   # row by row
            "INSERT INTO capw SELECT g, x, x^2, x^3, x^4, x^5, -x FROM generate_series(45, 54) g, "
            "LATERAL (SELECT (g - 45)::float8 * 1.75 AS x) v",                               # bulk
            "UPDATE capw SET y = y * 3 + 1 WHERE id BETWEEN 3 AND 4",
            "UPDATE capw SET y = (y - 1) / 3 WHERE id BETWEEN 3 AND 4",
            "UPDATE capw SET x1 = x1 + 0.5 WHERE id BETWEEN 10 AND 30",
            "UPDATE capw SET x1 = x1 - 0.5 WHERE id BETWEEN 10 AND 30",
            "DELETE FROM capw WHERE id IN (43, 44)",
            "DELETE FROM capw WHERE id BETWEEN 45 AND 54",
        ]
        for change in changes:
            with conn.transaction():
                conn.execute(change)
        row = conn.execute("SELECT stale, n, mean_lo IS NULL FROM modelstore.statistics WHERE stats_id = %s",
                           [sid]).fetchone()
        assert row is not None and not row[0] and row[1] == 42, "capture kept the summary fresh"
        maintained = records.fetch_stats(conn, [sid])[sid]
        nodes = conn.execute("SELECT n.n, n.null_rows, n.mean, n.moments, n.mean_lo, n.moments_lo "
                             "FROM modelstore.index_nodes AS n JOIN modelstore.stat_indexes AS i USING (index_id) "
                             "JOIN modelstore.sources AS s USING (source_id) "
                             "WHERE s.table_name = 'capw' AND n.level = i.levels - 1").fetchall()
        assert len(nodes) == 1
        root = family("linear").unpack(WAMPLER_COLUMNS, nodes[0][0], nodes[0][1], None, None, *nodes[0][2:],
                                       triangle=True)
        # the model of the maintained summary itself (whether a plan would reuse it is the cost model's call)
        stored = LinearRegression.from_stats(maintained)
        got = digits(np.r_[stored.intercept_, stored.coef_], [1.0] * 6)
        print(f"\nWampler1 maintained by capture [{engine_name}]: {got:.2f} digits")
        if engine_name == "c":
            assert row[2] is False and root.precision == "double-double"
            fresh = _fresh(conn, "capw", WAMPLER_COLUMNS)
            _assert_dd_close(maintained, fresh)
            _assert_dd_close(root, fresh)
            assert got >= 11
        else:
            assert row[2] is True and maintained.precision == root.precision == "float64"
            data = np.array(conn.execute("SELECT x1, x2, x3, x4, x5, y FROM capw ORDER BY id").fetchall())
            exact = LinearStats.from_rows(WAMPLER_COLUMNS, data)
            np.testing.assert_allclose(maintained.mean, exact.mean, rtol=1e-12)
            np.testing.assert_allclose(root.mean, exact.mean, rtol=1e-12)


# -- Gaussian Naive Bayes: per-class moments in double-double ---------------------------------------------

def _nb_exact(rows):
    """Per class: n, exact mean and M2 (fractions) of the float8 values."""
    out = {}
    for label in sorted({r[0] for r in rows}):
        xs = [[Fraction(v) for v in r[1:]] for r in rows if r[0] == label]
        n = len(xs)
        mean = [sum((x[j] for x in xs), Fraction(0)) / n for j in range(len(xs[0]))]
        m2 = [sum(((x[j] - mean[j]) ** 2 for x in xs), Fraction(0)) for j in range(len(xs[0]))]
        out[label] = (n, mean, m2)
    return out


def _nb_digits(stats, exact) -> float:
    """Correct digits of the worst per-class mean and M2 (hi + lo when double-double)."""
    worst = 17.0
    for c, label in enumerate(stats.classes):
        n, mean, m2 = exact[label]
        assert int(stats.counts[c]) == n
        for j in range(len(mean)):
            lo = (stats.means_lo[c, j], stats.m2_lo[c, j]) if stats.precision == "double-double" else (0.0, 0.0)
            for got, want in ((dd_value(stats.means[c, j], lo[0]), mean[j]), (dd_value(stats.m2[c, j], lo[1]), m2[j])):
                err = abs(float((got - want) / want)) if want else abs(float(got))
                worst = min(worst, -math.log10(max(err, 1e-17)))
    return worst


def test_gaussian_nb_double_double_every_path(data_dsn, engine_name):
    """Per-class moments of a feature with a large offset (x = 10¹² + a small spread) from scratch, from two
    merged halves and as whole − part: on the C engine exact to ≥ 15 digits on every path (Chan's merge in
    double-double, as linear's), where the float64 merge loses the digits the offset shares with the data."""
    with modelstore.connect(data_dsn) as store:
        if engine_name == "c" and stats_engine.installed_schema(store.conn) is None:
            pytest.skip("extension not installed")
        conn = store.conn
        with conn.transaction():
            conn.execute("DROP TABLE IF EXISTS nbill")
            conn.execute("CREATE TABLE nbill AS SELECT g AS id, g % 3 AS c, (1e12 + ((g * 7919) % 101) * 0.0009765625 "
                         "+ (g % 3) * 0.5)::float8 AS a, ((g * 104729) % 97)::float8 / 7 - 1e4 * (g % 2) AS b "
                         "FROM generate_series(1, 600) g")
            conn.execute("DELETE FROM modelstore.fitted_models")
            conn.execute("DELETE FROM modelstore.statistics")
        rows = conn.execute("SELECT c, a, b FROM nbill WHERE id <= 400 ORDER BY id").fetchall()
        exact = _nb_exact(rows)

        def fit(a, b):
            return store.fit("gaussian_nb", table="nbill", target="c", features=["a", "b"], order_by="id", lo=a, hi=b)

        def run(signed):
            descriptor, tbl = store._describe("gaussian_nb", "nbill", "c", ["a", "b"], "id", 1, 400, None,
                                              {"var_smoothing": 1e-9})
            steps = tuple(Step(sign, "stored", descriptor.range, sid) for sign, sid in signed)
            with conn.transaction():
                return execute(conn, Plan(descriptor, steps, "hand-made"), tbl)[0]

        sid = fit(1, 400).plan.stored_stats_id  # one scan of the rows, stored
        scratch = records.fetch_stats(conn, [sid])[sid]
        merged = run([(+1, fit(1, 170).plan.stored_stats_id), (+1, fit(171, 400).plan.stored_stats_id)])
        sub = run([(+1, fit(1, 600).plan.stored_stats_id), (-1, fit(401, 600).plan.stored_stats_id)])
        got = {name: _nb_digits(s, exact) for name, s in (("scratch", scratch), ("merge", merged), ("subtraction", sub))}
        print(f"\ngaussian_nb offset 1e12 [{engine_name}]: " + ", ".join(f"{k} {v:.2f}" for k, v in got.items()))
        precision = "double-double" if engine_name == "c" else "float64"
        assert scratch.precision == merged.precision == sub.precision == precision
        if engine_name == "c":
            assert min(got.values()) >= 15, got
            # and the model: var_ = M2/n_c + ε to float64 precision
            model = store.fit("gaussian_nb", table="nbill", target="c", features=["a", "b"], order_by="id", lo=1, hi=400)
            eps = model.epsilon_
            for c, label in enumerate(model.classes_):
                n, _, m2 = exact[int(label)]
                np.testing.assert_allclose(model.var_[c], [float(v / n) + eps for v in m2], rtol=1e-13)


# -- NIST Filip and Wampler3–5 from the NIST files --------------------------------------------------------

def _exact_ols(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[b0, w…] of the float8 columns solved in exact rational arithmetic (the centered normal equations)."""
    z = np.column_stack([X, y])
    k = z.shape[1]
    mean, C = exact_moments(z.tolist())
    d = k - 1
    M = [[C[i][j] for j in range(d)] + [C[i][d]] for i in range(d)]
    for col in range(d):
        for r in range(col + 1, d):
            f = M[r][col] / M[col][col]
            M[r] = [a - f * b for a, b in zip(M[r], M[col])]
    w = [Fraction(0)] * d
    for r in range(d - 1, -1, -1):
        w[r] = (M[r][d] - sum((M[r][c] * w[c] for c in range(r + 1, d)), Fraction(0))) / M[r][r]
    b0 = mean[d] - sum((w[i] * mean[i] for i in range(d)), Fraction(0))
    return np.array([float(b0)] + [float(v) for v in w])


POLY = {  # table, degree, rows, certified, digits wanted on the C engine (every path)
    "filip": ("filip", 10, 82, nist_strd.FILIP_CERTIFIED, 7),
    "wampler3": ("wampler3", 5, 21, nist_strd.WAMPLER_CERTIFIED[3], 11),
    "wampler4": ("wampler4", 5, 21, nist_strd.WAMPLER_CERTIFIED[4], 11),
    "wampler5": ("wampler5", 5, 21, nist_strd.WAMPLER_CERTIFIED[5], 11),
}


@pytest.mark.parametrize("dataset", list(POLY))
def test_nist_polynomials_every_path(data_dsn, engine_name, dataset):
    """Filip: the C path's coefficients have ≥ 7 correct digits on every path (the exact rank check lets
    its pivots of 10⁻¹⁵ through) and equal the exact rational solution of the float8 columns; float64
    normal equations and numpy's lstsq on the same columns have none. Wampler3–5: ≥ 11 digits."""
    table, degree, n, certified, wanted = POLY[dataset]
    features = [f"x{k}" for k in range(1, degree + 1)]
    with modelstore.connect(data_dsn) as store:
        if engine_name == "c" and stats_engine.installed_schema(store.conn) is None:
            pytest.skip("extension not installed")
        with store.conn.transaction():
            store.conn.execute("DELETE FROM modelstore.fitted_models")
            store.conn.execute("DELETE FROM modelstore.statistics")
        data = np.array(store.conn.execute(psycopg.sql.SQL("SELECT {}, y FROM {} WHERE id <= %s ORDER BY id").format(
            psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, features)), psycopg.sql.Identifier(table)),
            [n]).fetchall(), dtype=float)
        X, y = data[:, :-1], data[:, -1]
        ones = np.column_stack([np.ones(n), X])
        reference = {"exact sums": digits(_exact_ols(X, y), certified),
                     "numpy lstsq": digits(np.linalg.lstsq(ones, y, rcond=None)[0], certified)}
        try:
            reference["float64 normal equations"] = digits(np.linalg.solve(ones.T @ ones, ones.T @ y), certified)
        except np.linalg.LinAlgError:
            reference["float64 normal equations"] = 0.0
        try:
            got, scratch, merged, sub = three_paths(store, table, "y", features, certified, 1, n, n // 2, 2 * n)
        except modelstore.errors.SingularMatrixError as exc:
            assert engine_name == "sql", exc  # float64 statistics of Filip are numerically singular
            got = {"scratch": "refused (singular)"}
        print(f"\n{dataset} [{engine_name}]: "
              + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in got.items())
              + "; references: " + ", ".join(f"{k} {v:.2f}" for k, v in reference.items()))
        if engine_name == "c":
            assert min(got.values()) >= wanted, got
            assert merged.precision == sub.precision == "double-double"
            # the C path's answer is the exact solution of the exact sums, to what the ~32 digits of the
            # statistics leave after the system's conditioning (Filip: ~10¹⁹; measured 12.8 digits)
            agree = digits(np.r_[scratch.intercept_, scratch.coef_], _exact_ols(X, y))
            print(f"{dataset} [c] scratch vs the exact solve of the exact sums: {agree:.2f} digits")
            assert agree >= 12
        if dataset == "filip":
            assert reference["numpy lstsq"] < 2 and reference["float64 normal equations"] < 2
            assert reference["exact sums"] >= 7


# -- the cost model per engine ----------------------------------------------------------------------------

def test_cost_model_per_engine(data_dsn, monkeypatch):
    """Each statistics engine gets cost figures of its own, calibrated on first use and stored with its
    engine; the store plans with the figures of the engine the executor uses, and on each engine the
    chosen plan costs no more (by that engine's figures) than the from-scratch scan or the stored summary
    plus its gap."""
    from modelstore.planner import costs

    with modelstore.connect(data_dsn) as store:
        if stats_engine.installed_schema(store.conn) is None:
            pytest.skip("extension not installed")
        with store.conn.transaction():
            store.conn.execute("DELETE FROM modelstore.cost_model")
            store.conn.execute("DELETE FROM modelstore.fitted_models")
            store.conn.execute("DELETE FROM modelstore.statistics")
    models = {}
    for name in ("sql", "c"):
        monkeypatch.setenv(stats_engine.ENV, name)
        stats_engine.forget()
        with modelstore.connect(data_dsn) as store:
            model = store.cost_model
            assert model.engine == name and model.method == "calibrated"
            assert costs.load(store.conn, engine=name) == model
            models[name] = model
            print(f"\n{name}: scan_row_ms {model.scan_row_ms}, term_ms {model.term_ms:.2g}, statement_ms {model.statement_ms:.2g}")
            # a stored summary over 90% of the request: reuse + gap, or one scan of everything
            store.fit("linear", table="wellcond", target="y", features=["a", "b", "c", "d"], order_by="id",
                      lo=1, hi=2700)
            plan = store.explain("linear", table="wellcond", target="y", features=["a", "b", "c", "d"], order_by="id",
                                 lo=1, hi=3000)
            scratch = store._plan(None, plan.descriptor)  # no source: no stored candidates, one scan
            assert plan.est_cost_ms is not None and scratch.est_cost_ms is not None
            assert plan.est_cost_ms <= scratch.est_cost_ms + 1e-9
            print(f"{name}: chosen {plan.strategy} {plan.est_cost_ms:.3f} ms, scratch {scratch.est_cost_ms:.3f} ms")
    stats_engine.forget()
    assert models["c"] != models["sql"]
    # the built-in figures (planning without a database to measure) differ the same way
    k = 11
    assert CostModel.default("c").row_ms("linear", k) < CostModel.default("sql").row_ms("linear", k)
    # both stay stored: switching back loads the SQL engine's figures without measuring again
    monkeypatch.setenv(stats_engine.ENV, "sql")
    with modelstore.connect(data_dsn) as store:
        assert store.cost_model == models["sql"]
        assert store.conn.execute("SELECT count(*) FROM modelstore.cost_model").fetchone()[0] == 2
    stats_engine.forget()


# -- the extension installed (or updated) after statistics were stored ------------------------------------

def test_extension_installed_later(dsn, monkeypatch):
    """A catalog filled on the SQL aggregates keeps working when the extension arrives later (here as
    version 1.0, then updated to 1.1 by the migrations): its float64 summaries stay float64 — NULL low
    parts on both arrays, never a double-double label on float64 digits — capture keeps them exact
    (merging in double-double, rounded), plans that combine them with new double-double scans say so,
    and every answer matches numpy."""
    from modelstore.catalog import migrate

    monkeypatch.setenv(stats_engine.ENV, "auto")
    with modelstore.connect(dsn) as store:
        conn = store.conn
        if stats_engine.installed_schema(conn) is None:
            pytest.skip("extension not installed")
        with conn.transaction():
            conn.execute("DROP EXTENSION modelstore_stats")
            conn.execute("CREATE TABLE late AS SELECT g AS id, (g % 17)::float8 + 1e6 AS a, sin(g)::float8 AS b, "
                         "(3 * (g % 17) + 2 * sin(g) + cos(g * 7) / 10)::float8 AS y FROM generate_series(1, 1000) g")
        stats_engine.forget()
        assert stats_engine.engine(conn)[0] == "sql"
        old = store.fit("linear", table="late", target="y", features=["a", "b"], order_by="id", lo=1, hi=800)
        sid = old.plan.stored_stats_id
        store.build_index("late", "id", ["a", "b"], "y", kind="linear", chunk_rows=100)
        with conn.transaction():
            conn.execute("UPDATE late SET y = y + 1 WHERE id BETWEEN 10 AND 12")  # captured in float64 (no extension)

        # the extension arrives, first as 1.0 (no dd_absorb), then the migrations update it
        with conn.transaction():
            conn.execute("CREATE EXTENSION modelstore_stats VERSION '1.0' SCHEMA modelstore")
        migrate.migrate(conn)
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'modelstore_stats'").fetchone()[0] == "1.1"
        stats_engine.forget()
        assert stats_engine.engine(conn)[0] == "c"

        with conn.transaction():  # row-by-row and bulk capture, now through dd_absorb
            conn.execute("UPDATE late SET y = y - 2 WHERE id = 300")
            conn.execute("UPDATE late SET b = b / 2 WHERE id BETWEEN 500 AND 560")
        for table in ("statistics", "index_nodes"):
            mixed, dd = conn.execute(psycopg.sql.SQL(
                "SELECT count(*) FILTER (WHERE (mean_lo IS NULL) <> (moments_lo IS NULL)), "
                "count(*) FILTER (WHERE mean_lo IS NOT NULL) FROM modelstore.{}").format(
                    psycopg.sql.Identifier(table))).fetchone()
            assert (mixed, dd) == (0, 0), table  # every stored summary is (still) float64, consistently

        data = np.array(conn.execute("SELECT a, b, y FROM late ORDER BY id").fetchall(), dtype=float)

        def expected(hi):
            X = np.c_[np.ones(hi), data[:hi, :2]]
            return np.linalg.lstsq(X, data[:hi, 2], rcond=None)[0]

        kept = records.fetch_stats(conn, [sid])[sid]
        assert kept.precision == "float64"
        exact = LinearStats.from_rows(["a", "b", "y"], data[:800])
        np.testing.assert_allclose(kept.mean, exact.mean, rtol=1e-14)
        np.testing.assert_allclose(kept.comoment, exact.comoment, rtol=1e-9, atol=1e-9 * exact.comoment.max())
        # a plan that adds a new double-double scan to the stored float64 summary: float64, and says so
        descriptor, tbl = store._describe("linear", "late", "y", ["a", "b"], "id", 1, 1000, None, {"l2": 0.0})
        gap = descriptor.range.__class__(801, 1000)
        steps = (Step(+1, "stored", descriptor.range.__class__(1, 800), sid), Step(+1, "scan", gap))
        with conn.transaction():
            stats, executed = execute(conn, Plan(descriptor, steps, "hand-made"), tbl)
        assert stats.precision == "float64" and "mixed precisions" in executed.extra["Statistics"]
        model = LinearRegression.from_stats(stats)
        np.testing.assert_allclose(np.r_[model.intercept_, model.coef_], expected(1000), rtol=1e-8)
        fitted = store.fit("linear", table="late", target="y", features=["a", "b"], order_by="id", lo=1, hi=1000)
        np.testing.assert_allclose(np.r_[fitted.intercept_, fitted.coef_], expected(1000), rtol=1e-8)
        # what is computed from rows from now on is double-double (a summary served by float64 ones is not)
        with conn.transaction():
            conn.execute("CREATE TABLE later AS SELECT * FROM late")
        new = store.fit("linear", table="later", target="y", features=["b"], order_by="id", lo=1, hi=1000)
        lo = conn.execute("SELECT mean_lo IS NOT NULL AND moments_lo IS NOT NULL FROM modelstore.statistics "
                          "WHERE stats_id = %s", [new.plan.stored_stats_id]).fetchone()[0]
        assert lo
    stats_engine.forget()


def test_capture_keeps_gaussian_nb_double_double(data_dsn, engine_name):
    """Gaussian Naive Bayes summaries (stored statistics and index nodes) stay double-double under
    change capture on both paths (dd_absorb_diag per class): equal to a fresh dd_diag per class within
    double-double rounding, with classes that appear and disappear on the way."""
    from modelstore.stats.gaussian_nb import from_dd_rows

    with modelstore.connect(data_dsn) as store:
        if engine_name == "c" and stats_engine.installed_schema(store.conn) is None:
            pytest.skip("extension not installed")
        conn = store.conn
        with conn.transaction():
            conn.execute("DROP TABLE IF EXISTS capnb")
            conn.execute("CREATE TABLE capnb AS SELECT g AS id, g % 3 AS c, (1e12 + ((g * 7919) % 101) * 0.0009765625)"
                         "::float8 AS a, ((g * 104729) % 97)::float8 / 7 AS b FROM generate_series(1, 300) g")
        first = store.fit("gaussian_nb", table="capnb", target="c", features=["a", "b"], order_by="id", lo=1, hi=1000)
        sid = first.plan.stored_stats_id
        store.build_index("capnb", "id", ["a", "b"], "c", kind="gaussian_nb", chunk_rows=64)
        for change in (
            "INSERT INTO capnb VALUES (301, 7, 1e12 + 0.5, 3.25)",                                  # row: a new class
            "INSERT INTO capnb SELECT g, g % 4, 1e12 + g * 0.125, g / 8.0 FROM generate_series(302, 320) g",  # bulk
            "UPDATE capnb SET b = b * 3 WHERE id BETWEEN 5 AND 6",
            "UPDATE capnb SET a = a + 0.25 WHERE id BETWEEN 100 AND 140",
            "DELETE FROM capnb WHERE id = 301",                                                       # class 7 goes
            "DELETE FROM capnb WHERE id BETWEEN 150 AND 170",
        ):
            with conn.transaction():
                conn.execute(change)
        maintained = records.fetch_stats(conn, [sid])[sid]
        node = conn.execute("SELECT n.n, n.null_rows, n.classes, n.counts, n.mean, n.moments, n.mean_lo, n.moments_lo "
                            "FROM modelstore.index_nodes AS n JOIN modelstore.stat_indexes AS i USING (index_id) "
                            "JOIN modelstore.sources AS s USING (source_id) "
                            "WHERE s.table_name = 'capnb' AND n.level = i.levels - 1").fetchone()
        root = family("gaussian_nb").unpack(["a", "b"], *node)
        def fresh_of(last):
            return from_dd_rows(["a", "b"], conn.execute(
                "SELECT c, modelstore.dd_diag(a, b) FROM capnb WHERE id <= %s GROUP BY c ORDER BY c", [last]).fetchall())

        # the index ends where it was built (id 300); the stored summary's range reaches 1000
        for name, got, fresh, classes in (("stored", maintained, fresh_of(1000), (0, 1, 2, 3)),
                                          ("index root", root, fresh_of(300), (0, 1, 2))):
            assert got.classes == fresh.classes == classes, (name, got.classes, got.counts)
            assert got.counts.tolist() == fresh.counts.tolist()
            if engine_name == "sql":
                assert got.precision == "float64"
                np.testing.assert_allclose(got.means, fresh.means, rtol=1e-15)
                continue
            assert got.precision == "double-double"
            for c in range(len(fresh.classes)):
                for j in range(2):
                    spread = math.sqrt(float(fresh.m2[c, j]))
                    err_mean = dd_value(got.means[c, j], got.means_lo[c, j]) - dd_value(fresh.means[c, j], fresh.means_lo[c, j])
                    err_m2 = dd_value(got.m2[c, j], got.m2_lo[c, j]) - dd_value(fresh.m2[c, j], fresh.m2_lo[c, j])
                    assert abs(float(err_mean)) <= 1e-24 * (abs(fresh.means[c, j]) + spread), (c, j, float(err_mean))
                    # Chan's merge moves M2 by δ²·n_a·n_b/n with δ a difference of means held to u²·|mean|:
                    # the bound is u²-sized relative to |mean|·spread·n, not to spread² (a fresh scan's shift
                    # avoids that); here M2 keeps 19 digits or more (the SQL engine's scan of such data keeps 3)
                    bound = 1e-30 * (abs(fresh.means[c, j]) + spread) * spread * int(fresh.counts[c])
                    assert abs(float(err_m2)) <= bound, (c, j, float(err_m2))
                    assert abs(float(err_m2)) <= 1e-18 * spread * spread, (c, j, float(err_m2))  # ≥ 18 digits


@pytest.mark.parametrize("l2", [0.0, 0.37])
def test_exact_solve_matches_gaussian_elimination_in_fractions(l2):
    """The double-double system's exact solve (fraction-free integer elimination) gives the very floats
    that Gaussian elimination in fractions.Fraction gives: coefficients, intercept and SSR."""
    from fractions import Fraction

    from modelstore.models.linear import _solve_exact
    from modelstore.stats.linear import LinearStats

    rng = np.random.default_rng(7)
    for d in (1, 3, 10):
        X = rng.normal(size=(300, d)) * rng.uniform(0.1, 1e3, size=d) + rng.normal(size=d) * 100
        y = X @ rng.normal(size=d) + rng.normal(size=300)
        st = LinearStats.from_rows([f"x{i}" for i in range(d)] + ["y"], np.column_stack([X, y]))
        lo = rng.normal(size=st.comoment.shape) * 1e-17 * np.abs(st.comoment)
        st.comoment_lo, st.mean_lo = (lo + lo.T) / 2, rng.normal(size=st.mean.shape) * 1e-17 * np.abs(st.mean)

        def v(hi, lo_):
            return Fraction(float(hi)) + Fraction(float(lo_))
        A = [[v(st.comoment[i, j], st.comoment_lo[i, j]) + (Fraction(l2) if i == j else 0) for j in range(d)]
             for i in range(d)]
        b = [v(st.comoment[i, d], st.comoment_lo[i, d]) for i in range(d)]
        M = [row + [bi] for row, bi in zip(A, b)]
        for c in range(d):
            for r in range(c + 1, d):
                f = M[r][c] / M[c][c]
                M[r] = [x - f * y_ for x, y_ in zip(M[r], M[c])]
        w = [Fraction(0)] * d
        for r in range(d - 1, -1, -1):
            w[r] = (M[r][d] - sum(M[r][c] * w[c] for c in range(r + 1, d))) / M[r][r]
        means = [v(st.mean[i], st.mean_lo[i]) for i in range(d + 1)]
        intercept = means[d] - sum(wi * means[i] for i, wi in enumerate(w))
        C = [[v(st.comoment[i, j], st.comoment_lo[i, j]) for j in range(d)] for i in range(d)]
        ssr = (v(st.comoment[d, d], st.comoment_lo[d, d]) - 2 * sum(wi * bi for wi, bi in zip(w, b))
               + sum(w[i] * C[i][j] * w[j] for i in range(d) for j in range(d)))
        got_w, got_intercept, got_ssr = _solve_exact(st, np.arange(d), l2)
        assert [float(x) for x in w] == list(got_w)
        assert float(intercept) == got_intercept and float(ssr) == got_ssr
