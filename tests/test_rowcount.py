"""Row estimates for a range of the ordering column: from pg_stats like PostgreSQL's planner, within
a few percent of the truth, exact about open and closed ends, monotone, and counted once when the
table was never analyzed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelstore.request.descriptor import Range
from modelstore.errors import ColumnTypeError, UnknownColumnError, UnknownTableError
from modelstore.planner.rowcount import RowEstimator

UTC = dt.timezone.utc


class CountingConnection:
    """A connection that counts the statements run through its cursors."""

    def __init__(self, conn):
        self._conn = conn
        self.statements = 0

    def cursor(self, *args, **kwargs):
        outer, cur = self, self._conn.cursor(*args, **kwargs)

        class Cursor:
            def execute(self, query, params=None, **kw):
                outer.statements += 1
                cur.execute(query, params, **kw)
                return self

            def fetchone(self):
                return cur.fetchone()

            def fetchall(self):
                return cur.fetchall()

        return Cursor()

    def execute(self, query, params=None, **kw):
        self.statements += 1
        return self._conn.execute(query, params, **kw)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.fixture(scope="module")
def conn(module_dsn):
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE dense (id integer, x float8)")
        conn.execute("INSERT INTO dense SELECT i, random() FROM generate_series(1, 100000) i")
        # half the rows spread over 2024, half in a burst on 1 June
        conn.execute("CREATE TABLE burst (t timestamp, tz timestamptz)")
        conn.execute("""
            INSERT INTO burst
            SELECT t, t AT TIME ZONE 'UTC' FROM (
                SELECT CASE WHEN i % 2 = 0 THEN timestamp '2024-01-01' + i * interval '315 seconds'
                            ELSE timestamp '2024-06-01' + i * interval '0.864 seconds' END AS t
                FROM generate_series(1, 100000) i) s""")
        # 30 % of the values are 0.5, 20 % are 2.0, the rest uniform on [0, 10)
        conn.execute("CREATE TABLE heavy (v float8, n numeric)")
        conn.execute("""
            INSERT INTO heavy SELECT v, v::numeric FROM (
                SELECT CASE WHEN i % 10 < 3 THEN 0.5 WHEN i % 10 < 5 THEN 2.0 ELSE (i * 0.618034) % 10 END AS v
                FROM generate_series(1, 50000) i) s""")
        # one row per hour of 2024, weekends three times over
        conn.execute("CREATE TABLE days (d date)")
        conn.execute("""
            INSERT INTO days SELECT d FROM (
                SELECT (timestamp '2024-01-01' + h * interval '1 hour')::date AS d
                FROM generate_series(0, 366 * 24 - 1) h) s, generate_series(1, 3) copy
            WHERE copy = 1 OR extract(isodow FROM d) >= 6""")
        for table in ("dense", "burst", "heavy", "days"):
            conn.execute(f"ANALYZE {table}")
        yield conn


def count(conn, table, column, r: Range) -> int:
    from psycopg import sql

    from modelstore.request.predicates import range_predicate

    return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
        sql.Identifier(table), range_predicate(column, r))).fetchone()[0]


def postgres_estimate(conn, table, column, r: Range) -> float:
    from psycopg import sql

    from modelstore.request.predicates import range_predicate

    plan = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT * FROM {} WHERE {}").format(
        sql.Identifier(table), range_predicate(column, r))).fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return plan[0]["Plan"]["Plan Rows"]


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# -- accuracy --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi", [(1, 100000), (12345, 67890), (1, 30000), (50001, 100000), (33333, 44444),
                                    (777, 1777)])
def test_dense_integer_column_within_two_percent(conn, lo, hi):
    est = RowEstimator.load(conn, "public", "dense", "id")
    assert est.analyzed and not est.has_index and est.order_kind == "integer"
    assert est.total_rows == pytest.approx(100000, rel=0.01)
    r = Range(lo, hi)
    assert est.rows(r) == pytest.approx(count(conn, "dense", "id", r), rel=0.02)


def test_unique_integers_with_gaps_use_the_histogram(conn):
    """Ids 3, 6, 9 … with a denser run in the middle: unique, but not a dense key."""
    conn.execute("CREATE TABLE gappy AS SELECT i * 3 AS id FROM generate_series(1, 40000) i "
                 "UNION ALL SELECT 120000 + i FROM generate_series(1, 40000) i")
    conn.execute("ANALYZE gappy")
    est = RowEstimator.load(conn, "public", "gappy", "id")
    for lo, hi in [(1, 60000), (90000, 140000), (100000, 160000)]:
        r = Range(lo, hi)
        assert est.rows(r) == pytest.approx(count(conn, "gappy", "id", r), rel=0.05)
        assert est.rows(r) == pytest.approx(postgres_estimate(conn, "gappy", "id", r), rel=0.05)


@pytest.mark.parametrize("lo, hi", [
    ("2024-06-01 06:00", "2024-06-01 12:00"),  # inside the burst
    ("2024-03-01", "2024-04-01"),              # the sparse part
    ("2024-05-25", "2024-06-03"),              # across the burst's start
    ("2024-06-01 20:00", "2024-07-15"),        # across its end
])
def test_skewed_timestamps_within_fifteen_percent(conn, lo, hi):
    est = RowEstimator.load(conn, "public", "burst", "t")
    assert est.order_kind == "timestamp"
    r = Range(ts(lo), ts(hi))
    actual = count(conn, "burst", "t", r)
    assert est.rows(r) == pytest.approx(actual, rel=0.15)
    # and it is PostgreSQL's own estimate, give or take the rounding of its histogram interpolation
    assert est.rows(r) == pytest.approx(postgres_estimate(conn, "burst", "t", r), rel=0.05)


def test_timestamptz_column(conn):
    est = RowEstimator.load(conn, "public", "burst", "tz")
    assert est.order_kind == "timestamptz"
    r = Range(dt.datetime(2024, 5, 25, tzinfo=UTC), dt.datetime(2024, 6, 3, tzinfo=UTC))
    assert est.rows(r) == pytest.approx(count(conn, "burst", "tz", r), rel=0.15)
    # the same instant in another zone is the same key
    plus2 = dt.timezone(dt.timedelta(hours=2))
    r2 = Range(dt.datetime(2024, 5, 25, 2, tzinfo=plus2), dt.datetime(2024, 6, 3, 2, tzinfo=plus2))
    assert est.rows(r2) == pytest.approx(est.rows(r))


def test_date_column_with_most_common_values(conn):
    est = RowEstimator.load(conn, "public", "days", "d")
    assert est.order_kind == "date" and est.discrete
    for lo, hi in [(dt.date(2024, 1, 1), dt.date(2024, 1, 31)), (dt.date(2024, 3, 1), dt.date(2024, 8, 31))]:
        r = Range(lo, hi)
        assert est.rows(r) == pytest.approx(count(conn, "days", "d", r), rel=0.05)
    # one day: 24 rows on a weekday, 72 on a weekend day
    assert est.rows(Range(dt.date(2024, 3, 6), dt.date(2024, 3, 6))) == pytest.approx(24, rel=0.3)
    assert est.rows(Range(dt.date(2024, 3, 9), dt.date(2024, 3, 9))) == pytest.approx(72, rel=0.3)
    # a datetime bound on a date column: rows from the next whole day
    assert est.rows(Range(dt.datetime(2024, 3, 5, 12), dt.date(2024, 3, 6))) == pytest.approx(
        est.rows(Range(dt.date(2024, 3, 6), dt.date(2024, 3, 6))))


# -- open and closed ends ----------------------------------------------------------------------------------

def test_open_and_closed_bounds_on_an_integer_column(conn):
    """Each integer is a unit: an open end drops exactly the row at that value."""
    est = RowEstimator.load(conn, "public", "dense", "id")
    at_1000, at_2000 = est.rows(Range(1000, 1000)), est.rows(Range(2000, 2000))
    assert at_1000 == pytest.approx(1, rel=0.35) and at_2000 == pytest.approx(1, rel=0.35)
    closed = est.rows(Range(1000, 2000))
    assert est.rows(Range(1000, 2000, False, False)) == pytest.approx(closed - at_1000 - at_2000)
    assert est.rows(Range(1000, 2000, False, True)) == pytest.approx(closed - at_1000)
    assert est.rows(Range(1000, 2000, True, False)) == pytest.approx(closed - at_2000)
    assert est.rows(Range(999, 2001, False, False)) == pytest.approx(closed)
    assert est.rows(Range(5000, 5001, False, False)) == 0.0  # no integer strictly between
    assert est.rows(Range(5000, 5000, False, True)) == 0.0
    assert est.rows(Range(Decimal("4999.5"), 5009.5)) == pytest.approx(est.rows(Range(5000, 5009)))  # 5000 … 5009
    assert est.rows(Range(4999.5, 5009.5, False, False)) == pytest.approx(est.rows(Range(5000, 5009)))
    assert est.rows(Range(1, 100000)) == pytest.approx(100000, rel=0.001)  # the outer values count whole


def test_most_common_values_count_at_closed_ends_only(conn):
    for column in ("v", "n"):  # float8 and numeric
        est = RowEstimator.load(conn, "public", "heavy", column)
        assert est.order_kind == "number" and not est.discrete
        closed = est.rows(Range(0.5, 2.0))
        assert closed == pytest.approx(count(conn, "heavy", column, Range(0.5, 2.0)), rel=0.05)
        open_ = est.rows(Range(0.5, 2.0, False, False))
        assert open_ == pytest.approx(count(conn, "heavy", column, Range(0.5, 2.0, False, False)), rel=0.15)
        assert closed - open_ == pytest.approx(25000, rel=0.05)  # 30 % + 20 % of 50,000
        assert est.rows(Range(0.5, 0.5)) == pytest.approx(15000, rel=0.05)
        assert est.rows(Range(Decimal("0.5"), Decimal("0.5"))) == est.rows(Range(0.5, 0.5))
        assert est.rows(Range(0.5, 0.5, True, False)) == 0.0


def test_empty_ranges_estimate_nothing(conn):
    dense = RowEstimator.load(conn, "public", "dense", "id")
    assert dense.rows(Range(5000, 4999)) == 0.0
    assert dense.rows(Range(200000, 300000)) == 0.0
    assert dense.rows(Range(-50, 0)) == 0.0
    burst = RowEstimator.load(conn, "public", "burst", "t")
    assert burst.rows(Range(ts("2024-06-02"), ts("2024-06-01"))) == 0.0
    assert burst.rows(Range(ts("2024-06-01"), ts("2024-06-01"), False, True)) == 0.0
    assert burst.rows(Range(ts("2030-01-01"), ts("2031-01-01"))) == 0.0


# -- monotone ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def estimators(conn):
    conn.execute("CREATE TABLE never (id integer) WITH (autovacuum_enabled = false)")
    conn.execute("INSERT INTO never SELECT i * 3 FROM generate_series(1, 20000) i")
    return {name: RowEstimator.load(conn, "public", table, column) for name, (table, column) in {
        "dense": ("dense", "id"), "burst": ("burst", "t"), "heavy": ("heavy", "v"), "days": ("days", "d"),
        "never": ("never", "id"),
    }.items()}


_VALUES = {
    "dense": st.integers(-1000, 101000),
    "never": st.integers(-1000, 61000),
    "heavy": st.one_of(st.sampled_from([0.5, 2.0, 0.0, 10.0]), st.floats(-1, 11, allow_nan=False)),
    "burst": st.datetimes(dt.datetime(2023, 12, 1), dt.datetime(2025, 2, 1)),
    "days": st.dates(dt.date(2023, 12, 1), dt.date(2025, 2, 1)),
}


@given(data=st.data())
def test_a_range_never_estimates_more_than_one_containing_it(estimators, data):
    name = data.draw(st.sampled_from(sorted(_VALUES)))
    est = estimators[name]
    a, b, c, d = sorted(data.draw(st.lists(_VALUES[name], min_size=4, max_size=4)))
    flags = data.draw(st.lists(st.booleans(), min_size=4, max_size=4))
    inner = Range(b, c, flags[0], flags[1])
    outer = Range(a, d, flags[2] or a == b and flags[0], flags[3] or c == d and flags[1])
    assert 0.0 <= est.rows(inner) <= est.rows(outer)
    assert est.rows(Range(b, c, False, False)) <= est.rows(Range(b, c, True, False)) <= est.rows(Range(b, c))
    assert est.rows(outer) <= est.total_rows * (1 + 1e-9)


# -- loading ------------------------------------------------------------------------------------------------

def test_never_analyzed_table_is_counted_once(conn, estimators):
    est = estimators["never"]  # values 3, 6, … 60000
    assert not est.analyzed and est.total_rows == 20000 and est.null_frac == 0.0
    assert est.rows(Range(3, 60000)) == pytest.approx(20000, rel=0.001)
    assert est.rows(Range(3000, 30000)) == pytest.approx(9001, rel=0.01)
    counting = CountingConnection(conn)
    RowEstimator.load(counting, "public", "never", "id")
    assert counting.statements == 2  # the catalog, then min/max/count — once


@pytest.mark.parametrize("index", [None, "CREATE INDEX ON {t} (id)", "CREATE INDEX ON {t} (id DESC, x)"])
def test_load_takes_at_most_two_queries(conn, index):
    t = "twoq_" + hashlib.md5(str(index).encode()).hexdigest()[:8]
    conn.execute(f"CREATE TABLE {t} AS SELECT i AS id, random() AS x FROM generate_series(1, 5000) i")
    if index:
        conn.execute(index.format(t=t))
    conn.execute(f"ANALYZE {t}")
    counting = CountingConnection(conn)
    est = RowEstimator.load(counting, "public", t, "id")
    assert counting.statements <= 2
    assert est.analyzed and est.has_index == (index is not None)
    assert est.rows(Range(1001, 2000)) == pytest.approx(1000, rel=0.05)


@pytest.mark.parametrize("index, expected", [
    ("CREATE INDEX ON {t} (id)", True),
    ("CREATE UNIQUE INDEX ON {t} (id, x)", True),
    ("CREATE INDEX ON {t} (x, id)", False),           # order_by is not the first key
    ("CREATE INDEX ON {t} (id) WHERE id > 100", False),  # partial: not every range can use it
    ("CREATE INDEX ON {t} USING hash (id)", False),    # not a btree: no ranges
    ("CREATE INDEX ON {t} ((id + 1))", False),         # an expression, not the column
])
def test_has_index(conn, index, expected):
    t = "idx_" + hashlib.md5(index.encode()).hexdigest()[:8]
    conn.execute(f"CREATE TABLE {t} AS SELECT i AS id, random() AS x FROM generate_series(1, 1000) i")
    conn.execute(index.format(t=t))
    conn.execute(f"ANALYZE {t}")
    assert RowEstimator.load(conn, "public", t, "id").has_index is expected


def test_rows_appended_after_analyze_are_placed_where_the_column_grew(conn):
    conn.execute("CREATE TABLE grown (id integer, x float8)")
    conn.execute("INSERT INTO grown SELECT i, random() FROM generate_series(1, 100000) i")
    conn.execute("CREATE INDEX ON grown (id)")
    conn.execute("ANALYZE grown")
    conn.execute("INSERT INTO grown SELECT i, random() FROM generate_series(100001, 120000) i")
    est = RowEstimator.load(conn, "public", "grown", "id")
    assert est.total_rows == pytest.approx(120000, rel=0.03)
    assert est.rows(Range(100001, 120000)) == pytest.approx(20000, rel=0.1)
    assert est.rows(Range(1, 50000)) == pytest.approx(50000, rel=0.03)
    assert est.rows(Range(120001, 130000)) == 0.0
    # rows deleted from the start: the index's first value says so
    conn.execute("DELETE FROM grown WHERE id < 20000")
    assert RowEstimator.load(conn, "public", "grown", "id").rows(Range(1, 19999)) == pytest.approx(0, abs=1)


def test_without_an_index_growth_scales_the_histogram(conn):
    conn.execute("CREATE TABLE grown2 (id integer, x float8)")
    conn.execute("INSERT INTO grown2 SELECT i, random() FROM generate_series(1, 50000) i")
    conn.execute("ANALYZE grown2")
    conn.execute("INSERT INTO grown2 SELECT i, random() FROM generate_series(1, 50000) i")  # a second copy
    est = RowEstimator.load(conn, "public", "grown2", "id")
    assert est.total_rows == pytest.approx(100000, rel=0.03)
    assert est.rows(Range(10001, 20000)) == pytest.approx(20000, rel=0.05)


def test_empty_and_all_null_columns(conn):
    conn.execute("CREATE TABLE nothing (id integer)")
    assert RowEstimator.load(conn, "public", "nothing", "id").rows(Range(1, 10)) == 0.0
    conn.execute("ANALYZE nothing")
    est = RowEstimator.load(conn, "public", "nothing", "id")
    assert est.total_rows == 0 and est.rows(Range(1, 10)) == 0.0
    conn.execute("CREATE TABLE nulls AS SELECT NULL::integer AS id FROM generate_series(1, 1000)")
    conn.execute("CREATE INDEX ON nulls (id)")
    conn.execute("ANALYZE nulls")
    est = RowEstimator.load(conn, "public", "nulls", "id")
    assert est.null_frac == 1.0 and est.rows(Range(-10**9, 10**9)) == 0.0


def test_views_and_partitioned_tables(conn):
    conn.execute("CREATE VIEW first_half AS SELECT * FROM dense WHERE id <= 50000")
    est = RowEstimator.load(conn, "public", "first_half", "id")
    assert not est.analyzed and est.total_rows == 50000
    assert est.rows(Range(1, 25000)) == pytest.approx(25000, rel=0.01)
    conn.execute("CREATE TABLE parts (id integer, x float8) PARTITION BY RANGE (id)")
    conn.execute("CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (1) TO (50001)")
    conn.execute("CREATE TABLE parts_2 PARTITION OF parts FOR VALUES FROM (50001) TO (100001)")
    conn.execute("INSERT INTO parts SELECT i, random() FROM generate_series(1, 100000) i")
    conn.execute("CREATE INDEX ON parts (id)")
    conn.execute("ANALYZE parts")
    est = RowEstimator.load(conn, "public", "parts", "id")
    assert est.analyzed and est.has_index
    assert est.rows(Range(40001, 60000)) == pytest.approx(20000, rel=0.03)


def test_bad_input(conn):
    with pytest.raises(UnknownTableError):
        RowEstimator.load(conn, "public", "no_such_table", "id")
    with pytest.raises(UnknownColumnError):
        RowEstimator.load(conn, "public", "dense", "no_such_column")
    conn.execute("CREATE TABLE texts AS SELECT i::text AS label FROM generate_series(1, 10) i")
    with pytest.raises(ColumnTypeError):
        RowEstimator.load(conn, "public", "texts", "label")
    est = RowEstimator.load(conn, "public", "dense", "id")
    with pytest.raises(TypeError):
        est.rows((1, 10))
    with pytest.raises(TypeError):
        est.rows(Range(dt.date(2024, 1, 1), dt.date(2024, 2, 1)))
    with pytest.raises(TypeError):
        RowEstimator.load(conn, "public", "days", "d").rows(Range(1, 2))
