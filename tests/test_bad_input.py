"""Every bad input gets a clear error that names the problem, and nothing is written to the catalog."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from modelstore import errors
from tests.helpers import catalog_counts, load_frame

N = 50


@pytest.fixture(scope="module")
def store(store):
    """The shared store (tests/fixtures.py) with the tables ``t`` and ``nulls``."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({
        "id": np.arange(1, N + 1),
        "x1": rng.normal(size=N), "x2": rng.normal(size=N), "y": rng.normal(size=N),
        "label": rng.choice(["a", "b"], N), "note": ["t"] * N, "counts": rng.poisson(3, N),
        "neg": rng.integers(-3, 3, N), "many": np.arange(N), "flag": rng.random(N) > 0.5,
    })
    frame["dup"] = frame.x1  # collinear with x1
    frame["combo"] = frame.x1 + 2 * frame.x2  # a linear combination of x1, x2
    frame["const"] = 4.0
    load_frame(store.conn, "t", frame)
    with store.conn.transaction():  # one row with NaN and one with Infinity, past the clean range
        store.conn.execute("INSERT INTO t (id, x1, x2, y, label) VALUES (101, 'NaN', 0, 1, 'a'), (102, 'Infinity', 1, 2, 'b')")
    store.conn.execute("CREATE TABLE nulls (id int, x float8, y float8)")
    store.conn.execute("INSERT INTO nulls SELECT g, NULL, g FROM generate_series(1, 5) g")
    return store


BASE = dict(table="t", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=N)


def fit(store, kind="linear", **changes):
    return store.fit(kind, **{**BASE, **changes})


CASES = [
    ("unknown table", dict(table="no_such_table"), errors.UnknownTableError, "no_such_table"),
    ("unknown schema", dict(table="nope.t"), errors.UnknownTableError, "nope.t"),
    ("unknown feature", dict(features=["x1", "x9"]), errors.UnknownColumnError, "'x9'"),
    ("case near miss", dict(features=["X1"]), errors.UnknownColumnError, "did you mean 'x1'"),
    ("unknown target", dict(target="yy"), errors.UnknownColumnError, "'yy'"),
    ("unknown order_by", dict(order_by="idx"), errors.UnknownColumnError, "'idx'"),
    ("text feature", dict(features=["x1", "note"]), errors.ColumnTypeError, "'note' must be numeric, got text"),
    ("text target", dict(target="label"), errors.ColumnTypeError, "'label' must be numeric"),
    ("text order_by", dict(order_by="note"), errors.ColumnTypeError, "number, date or timestamp"),
    ("empty features", dict(features=[]), errors.InputError, "non-empty list"),
    ("features as a string", dict(features="x1"), errors.InputError, "non-empty list"),
    ("repeated feature", dict(features=["x1", "x1"]), errors.InputError, "must not repeat"),
    ("target among features", dict(features=["x1", "y"]), errors.InputError, "cannot also be a feature"),
    ("lo > hi", dict(lo=40, hi=10), errors.RangeError, "lo must be <= hi"),
    ("empty range", dict(lo=200, hi=300), errors.RangeError, "no rows"),
    ("empty after filter", dict(where="x1 > 1000"), errors.RangeError, "no rows"),
    ("bound of the wrong type", dict(lo="2024-01-01"), errors.RangeError, "must be a number"),
    ("NaN bound", dict(hi=float("nan")), errors.RangeError, "finite"),
    ("NaN in the rows", dict(lo=1, hi=101), errors.NonFiniteValueError, "'x1'"),
    ("Infinity in the rows", dict(lo=102, hi=102), errors.NonFiniteValueError, "['x1']"),
    ("NaN among clean rows names only its column", dict(lo=1, hi=101), errors.NonFiniteValueError, "['x1']"),
    ("filter does not parse", dict(where="x1 >> AND ("), errors.FilterError, "does not parse"),
    ("filter with a statement", dict(where="x1 > 0; DROP TABLE t"), errors.FilterError, "does not parse"),
    ("filter with a subquery", dict(where="x1 > (SELECT max(x1) FROM t)"), errors.FilterError, "not allowed"),
    ("filter with a volatile function", dict(where="random() < 0.5"), errors.FilterError, "not allowed"),
    ("filter with a side effect", dict(where="pg_terminate_backend(1)"), errors.FilterError, "pg_terminate_backend"),
    ("filter on an unknown column", dict(where="zz = 1"), errors.UnknownColumnError, "'zz'"),
    ("filter comparing text with a number", dict(where="note > 5"), errors.FilterError,
     "is not a valid condition on"),
    ("filter with an unknown function", dict(where="no_such_fn(x1) > 0"), errors.FilterError, "not allowed"),
    ("filter failing on a row", dict(where="x1 / (id - id) > 1"), errors.FilterError, "division by zero"),
    ("filter with a bad cast on a row", dict(where="note::int > 1"), errors.FilterError, "failed on a row"),
    ("negative l2", dict(l2=-1.0), errors.InputError, "l2 must be a finite number >= 0"),
    ("infinite l2", dict(l2=float("inf")), errors.InputError, "l2 must be"),
    ("duplicate column", dict(features=["x1", "dup"]), errors.SingularMatrixError, "dup"),
    ("linear combination", dict(features=["x1", "x2", "combo"]), errors.SingularMatrixError, "combo"),
    ("constant column", dict(features=["x1", "const"]), errors.SingularMatrixError, "const"),
    ("all rows NULL", dict(table="nulls", features=["x"], lo=1, hi=5), errors.RangeError, "NULL"),
]


@pytest.mark.parametrize("label,changes,error,message", CASES, ids=[c[0] for c in CASES])
def test_bad_linear_request(store, label, changes, error, message):
    before = catalog_counts(store.conn)
    with pytest.raises(error, match=_escape(message)):
        fit(store, **changes)
    assert catalog_counts(store.conn) == before
    assert store.conn.info.transaction_status.name == "IDLE"  # nothing left half-done


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_unknown_kind(store):
    with pytest.raises(errors.InputError, match="kind must be one of"):
        store.fit("svm", **BASE)


def test_too_many_classes(store):
    before = catalog_counts(store.conn)
    with pytest.raises(errors.TooManyClassesError, match="more than 10 distinct values"):
        fit(store, "multinomial_nb", target="many", features=["counts"], max_classes=10)
    with pytest.raises(errors.TooManyClassesError):
        fit(store, "gaussian_nb", target="many", features=["x1"], max_classes=10)
    with pytest.raises(errors.TooManyClassesError, match="more than 10 distinct values"):
        fit(store, "logistic", target="many", features=["x1"], max_classes=10, chunk_rows=20)
    assert catalog_counts(store.conn) == before


@pytest.mark.parametrize("name", [5, None, "", "a\x00b", ["m"]], ids=["int", "None", "empty", "NUL", "list"])
def test_model_and_drop_refuse_a_name_that_is_no_name(store, name):
    before = catalog_counts(store.conn)
    with pytest.raises(errors.InputError, match="name must be"):
        store.model(name)
    with pytest.raises(errors.InputError, match="name must be"):
        store.drop(name, missing_ok=True)
    assert catalog_counts(store.conn) == before
    assert store.conn.info.transaction_status.name == "IDLE"


def test_negative_counts_for_multinomial(store):
    with pytest.raises(errors.InputError, match="non-negative"):
        fit(store, "multinomial_nb", target="label", features=["neg"])


def test_bad_smoothing(store):
    with pytest.raises(errors.InputError, match="alpha"):
        fit(store, "multinomial_nb", target="label", features=["counts"], alpha=-0.5)
    with pytest.raises(errors.InputError, match="var_smoothing"):
        fit(store, "gaussian_nb", target="label", features=["x1"], var_smoothing=float("nan"))


def test_singular_is_fine_with_ridge(store):
    m = fit(store, features=["x1", "dup"], l2=1.0)
    assert np.isfinite(m.coef_).all()


def test_boolean_feature_is_numeric(store):
    m = fit(store, features=["x1", "flag"])
    assert m.n_features_in_ == 2


def test_hostile_identifiers_are_never_executed(store):
    """Names with quotes and semicolons are identifiers, never SQL: nothing runs, nothing changes."""
    tables_before = store.conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r'").fetchone()[0]
    for hostile in ['t"; DROP TABLE t; --', "t'; DROP TABLE t; --", "t; DROP TABLE t"]:
        with pytest.raises(errors.UnknownTableError):
            fit(store, table=hostile)
        with pytest.raises(errors.UnknownColumnError):
            fit(store, features=[hostile])
        with pytest.raises(errors.UnknownColumnError):
            fit(store, order_by=hostile)
    assert store.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("t"))).fetchone()[0] == N + 2
    assert store.conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r'").fetchone()[0] == tables_before


# -- issue #7: bad input through every door -----------------------------------------------------------------
#
# docs/bad-input.md lists each case below with its error and message; every failing case leaves the catalog
# as it was. The cases that should work (unicode and reserved-word names, huge ranges) are checked against
# numpy's least squares on the same rows.

M = 30  # rows of the extra tables
UNICODE_TABLES = {  # table → (ordering column, feature, feature, target)
    "Umsätze": ("Zeile", "Preis", "Größe", "Umsatz"),
    "价格": ("编号", "价格", "数量", "收入"),
    "📈": ("🔑", "💰", "📦", "🎯"),
    "select": ("order", "from", "user", "where"),
}


@pytest.fixture(scope="module")
def extra(store):
    """Tables for the issue #7 cases, in the same database as ``t``, and two named models over ``t``."""
    conn = store.conn
    rng = np.random.default_rng(7)
    x = rng.normal(size=(M, 2))
    y = 1.0 + x @ [2.0, -1.0] + rng.normal(0, 0.1, M)
    for table, (order, a, b, target) in UNICODE_TABLES.items():
        load_frame(conn, table, pd.DataFrame({order: np.arange(1, M + 1), a: x[:, 0], b: x[:, 1], target: y}))
    frame = pd.DataFrame({"id": np.arange(1, M + 1), "x": x[:, 0], "z": x[:, 1], "y": y,
                          "c": rng.choice(["a", "b"], M), "flag": rng.random(M) > 0.5})
    frame["ts"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(frame.id - 1, unit="h")
    load_frame(conn, "obs", frame)
    conn.execute("ALTER TABLE obs ADD PRIMARY KEY (id)")
    conn.execute('CREATE TABLE dotted (id int PRIMARY KEY, "c.d" float8, y float8)')
    conn.execute("CREATE TABLE nullorder (id int, x float8, y float8)")
    conn.execute("INSERT INTO nullorder SELECT NULL, g, g FROM generate_series(1, 5) g")
    store.fit("linear", table="obs", target="y", features=["x", "z"], order_by="id", name="lin", replace=True)
    store.fit("gaussian_nb", table="obs", target="c", features=["x", "z"], order_by="id", name="nb", replace=True)
    return {"x": x, "y": y}


def lstsq(x, y):
    """Intercept and coefficients of the least-squares fit with an intercept column."""
    solution, *_ = np.linalg.lstsq(np.column_stack([np.ones(len(x)), x]), y, rcond=None)
    return solution


def assert_refused(store, call, error, message):
    """``call()`` raises ``error`` with ``message`` in it, and the catalog is unchanged."""
    before = catalog_counts(store.conn)
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value), str(info.value)
    assert catalog_counts(store.conn) == before
    assert store.conn.info.transaction_status.name == "IDLE"
    return info.value


OBS = dict(table="obs", target="y", features=["x", "z"], order_by="id")

#: (id, store method, arguments, error, part of the message) — the Python door beyond CASES above
PY_CASES = [
    # ranges and bounds
    ("lo > hi, huge", "fit", dict(OBS, lo=10**30, hi=-10**30), errors.RangeError, "lo must be <= hi"),
    ("range far above the data", "fit", dict(OBS, lo=10**12, hi=10**13), errors.RangeError, "no rows of"),
    ("range far below the data", "fit", dict(OBS, lo=-10**13, hi=-10**12), errors.RangeError, "no rows of"),
    ("timestamps far in the future", "fit", dict(OBS, order_by="ts", lo="9999-01-01", hi="9999-12-31"),
     errors.RangeError, "no rows of"),
    ("the last timestamp Python holds", "fit", dict(OBS, order_by="ts", lo="2024-01-01",
                                                    hi="9999-12-31 23:59:59.999999"),
     errors.RangeError, "at the end of the timestamps modelstore can represent"),
    ("timestamp lo > hi", "fit", dict(OBS, order_by="ts", lo="2025-01-01", hi="2024-01-02"), errors.RangeError,
     "lo must be <= hi"),
    ("timestamp bound not ISO", "fit", dict(OBS, order_by="ts", lo="yesterday"), errors.RangeError,
     "must be an ISO date or timestamp"),
    ("number bound on a timestamp column", "fit", dict(OBS, order_by="ts", lo=5), errors.RangeError,
     "must be a timestamp"),
    ("boolean bound", "fit", dict(OBS, lo=True), errors.RangeError, "must be a number"),
    ("infinite bound", "fit", dict(OBS, hi=float("inf")), errors.RangeError, "must be finite"),
    ("fractional range between two integers", "fit", dict(OBS, lo=1.5, hi=1.7), errors.RangeError,
     "lo must be <= hi, got lo=2 > hi=1"),
    ("ordering column all NULL", "fit", dict(OBS, table="nullorder", features=["x"]), errors.RangeError,
     "has no rows with a non-NULL 'id'; give lo and hi"),
    ("explain: lo > hi", "explain", dict(OBS, lo=9, hi=1), errors.RangeError, "lo must be <= hi"),
    # tables and columns
    ("table with a NUL character", "fit", dict(OBS, table="obs\x00"), errors.UnknownTableError,
     "contains a NUL character"),
    ("three-part table name", "fit", dict(OBS, table="a.b.obs"), errors.UnknownTableError,
     "must be 'table' or 'schema.table'"),
    ("table is not a string", "fit", dict(OBS, table=5), errors.UnknownTableError, "table must be a table name"),
    ("order_by is not a string", "fit", dict(OBS, order_by=3), errors.InputError, "order_by must be a column name"),
    ("ordering column of type boolean", "fit", dict(OBS, order_by="flag"), errors.ColumnTypeError,
     "order_by column 'flag' must be a number, date or timestamp, got boolean"),
    ("ordering column of type text", "fit", dict(OBS, order_by="c"), errors.ColumnTypeError,
     "order_by column 'c' must be a number, date or timestamp, got text"),
    ("explain: unknown table", "explain", dict(OBS, table="nope"), errors.UnknownTableError, "'nope' does not exist"),
    # feature lists
    ("a feature that is not a string", "fit", dict(OBS, features=["x", 3]), errors.InputError,
     "every feature must be a column name, got 3"),
    ("features as a set", "fit", dict(OBS, features={"x"}), errors.InputError, "non-empty list of column names"),
    ("target is not a string", "fit", dict(OBS, target=None), errors.InputError, "target must be a column name"),
    # filters
    ("filter is not a string", "fit", dict(OBS, where=5), errors.FilterError, "must be a SQL predicate string"),
    ("filter is arithmetic, not a condition", "fit", dict(OBS, where="x + 1"), errors.FilterError,
     "must be a condition that is true or false"),
    ("filter is a string literal", "fit", dict(OBS, where="'abc'"), errors.FilterError,
     "must be a condition that is true or false"),
    ("filter names another table", "fit", dict(OBS, where="obs.x > 0"), errors.FilterError, "bare column names"),
    ("filter uses unquoted user", "fit", dict(OBS, table='"select"', target="where", features=["from"],
                                              order_by="order", where="user > 0"),
     errors.FilterError, "PostgreSQL's USER function, not a column; write \"user\""),
    ("filter with a NUL character", "fit", dict(OBS, where="x > 0\x00"), errors.FilterError, "NUL character"),
    ("filter FALSE", "fit", dict(OBS, where="FALSE"), errors.RangeError, "no rows of"),
    # model options
    ("l2 as a string", "fit", dict(OBS, l2="1"), errors.InputError, "l2 must be a finite number >= 0"),
    ("kind None", "fit", dict(OBS, kind=None), errors.InputError, "kind must be one of"),
    ("logistic chunk_rows=1", "fit", dict(OBS, kind="logistic", target="flag", chunk_rows=1), errors.InputError,
     "chunk_rows must be an integer >= 2, got 1"),
    ("logistic chunk_rows=2.5", "fit", dict(OBS, kind="logistic", target="flag", chunk_rows=2.5), errors.InputError,
     "chunk_rows must be an integer >= 2"),
    ("logistic l2=0", "fit", dict(OBS, kind="logistic", target="flag", l2=0), errors.InputError,
     "l2 must be > 0 for logistic regression"),
    ("logistic with one class", "fit", dict(OBS, kind="logistic", target="c", where="c = 'a'"), errors.InputError,
     "needs at least two classes"),
    ("max_classes=0", "fit", dict(OBS, kind="gaussian_nb", target="c", max_classes=0), errors.InputError,
     "max_classes must be a positive integer"),
    ("var_smoothing as a string", "fit", dict(OBS, kind="gaussian_nb", target="c", var_smoothing="x"),
     errors.InputError, "var_smoothing must be a finite number >= 0"),
    # names
    ("name too long", "fit", dict(OBS, name="m" * 129), errors.InputError, "name must be 1–128 printable characters"),
    ("name is not a string", "fit", dict(OBS, name=5), errors.InputError, "name must be 1–128 printable characters"),
    ("name with a newline", "fit", dict(OBS, name="a\nb"), errors.InputError, "printable characters"),
    ("name taken", "fit", dict(OBS, name="lin"), errors.InputError, "a model named 'lin' already exists"),
    ("model(): unknown name", "model", dict(name="nope"), errors.ModelNotFoundError, "no model named 'nope'"),
    ("drop(): unknown name", "drop", dict(name="nope"), errors.ModelNotFoundError, "no model named 'nope'"),
    # the statistics index
    ("index of an unknown kind", "build_index", dict(table="obs", order_by="id", columns=["x"], target="y",
                                                     kind="svm"), errors.InputError, "kind must be 'linear'"),
    ("index without a target", "build_index", dict(table="obs", order_by="id", columns=["x"]), errors.InputError,
     "needs a target column"),
    ("index with chunk_rows=0", "build_index", dict(table="obs", order_by="id", columns=["x"], target="y",
                                                    chunk_rows=0), errors.InputError,
     "chunk_rows must be a positive integer"),
    ("index over the storage budget", "build_index", dict(table="obs", order_by="id", columns=["x"], target="y",
                                                          chunk_rows=1, storage_budget=1e-9), errors.InputError,
     "over the storage budget"),
    ("index budget > 1", "build_index", dict(table="obs", order_by="id", columns=["x"], target="y",
                                             storage_budget=2), errors.InputError, "storage_budget must be a fraction"),
    ("index of a text column", "build_index", dict(table="obs", order_by="id", columns=["c"], target="y"),
     errors.ColumnTypeError, "feature column 'c' must be numeric, got text"),
    ("index with NaN in the rows", "build_index", dict(table="t", order_by="id", columns=["x1", "x2"], target="y"),
     errors.NonFiniteValueError, "the index cannot summarise them"),
    ("logistic index with chunk_rows=1", "build_index", dict(table="obs", order_by="id", columns=["x"],
                                                             target="flag", kind="logistic", chunk_rows=1),
     errors.InputError, "chunk_rows must be an integer >= 2"),
]


@pytest.mark.parametrize("label,method,arguments,error,message", PY_CASES, ids=[c[0] for c in PY_CASES])
def test_bad_python_request(store, extra, label, method, arguments, error, message):
    arguments = dict(arguments)
    if method in ("fit", "explain"):
        kind = arguments.pop("kind", "linear")
        call = lambda: getattr(store, method)(kind, **arguments)  # noqa: E731
    else:
        call = lambda: getattr(store, method)(**arguments)  # noqa: E731
    assert_refused(store, call, error, message)


LIN = ("CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']{options}) "
       "AS SELECT x, y FROM obs{where}")


def lin(options="", where=""):
    return LIN.format(options=options, where=where)


#: (id, statement, error, part of the message) — the model language through store.query
LANGUAGE_CASES = [
    # syntax errors, with positions
    ("unclosed ML function", "SELECT * FROM ML.WEIGHTS(MODEL lin", errors.InputError,
     "line 1, column 34: Expecting ) to close ML.WEIGHTS(MODEL …"),
    ("BETWEEN without a low bound", "CREATE MODEL m\nOPTIONS (model_type='linear_reg', input_label_cols=['y'])\n"
     "AS SELECT x, y FROM obs WHERE id BETWEEN AND 5", errors.InputError,
     "line 3, column 46: Required keyword: 'low' missing for BETWEEN"),
    ("reserved word as a column, unquoted", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['where'])"
     " AS SELECT from, where FROM `select`", errors.InputError, "Expected table name but got ','"),
    ("string left open", "SELECT * FROM ML.WEIGHTS(MODEL 'lin)", errors.InputError,
     "cannot read the statement"),
    ("backtick left open", "SELECT * FROM ML.WEIGHTS(MODEL `lin)", errors.InputError, "cannot read the statement"),
    ("NUL character", "SELECT * FROM ML.WEIGHTS(MODEL `li\x00n`)", errors.InputError,
     "line 1, column 35: a statement cannot contain a NUL character"),
    ("only semicolons", ";;;", errors.InputError, "no statement to run"),
    ("not text", 5, errors.InputError, "must be non-empty text"),
    ("a write", "INSERT INTO obs (id) VALUES (1000)", errors.InputError,
     "INSERT is not a model-language statement"),
    ("a bad statement at the end of a script", "SHOW MODELS; DROP TABLE obs", errors.InputError,
     "line 1, column 25: DROP is not a model-language statement"),
    ("DROP MODEL of two models", "DROP MODEL a, b", errors.InputError, "line 1, column 13"),
    # model options
    ("no model_type", "CREATE MODEL m OPTIONS (input_label_cols=['y']) AS SELECT x, y FROM obs", errors.InputError,
     "OPTIONS (model_type = …) is required"),
    ("model_type a number", lin().replace("'linear_reg'", "5"), errors.InputError, "model_type 5 is not one of"),
    ("an option twice", lin(", l2_reg=1, l2_reg=2"), errors.InputError, "option 'l2_reg' is given twice"),
    ("an option as an expression", lin(", l2_reg=1+1"), errors.InputError, "option 'l2_reg' takes a constant"),
    ("negative l2_reg", lin(", l2_reg=-1"), errors.InputError, "l2 must be a finite number >= 0, got -1.0"),
    ("l2_reg a string", lin(", l2_reg='x'"), errors.InputError, "l2 must be a finite number >= 0, got 'x'"),
    ("chunk_rows=1", "CREATE MODEL m OPTIONS (model_type='logistic_reg', input_label_cols=['flag'], chunk_rows=1) "
     "AS SELECT x, flag FROM obs", errors.InputError, "chunk_rows must be an integer >= 2, got 1"),
    ("two labels", lin().replace("['y']", "['y', 'x']"), errors.InputError, "input_label_cols must name one column"),
    ("order_by a number", lin(", order_by=5"), errors.InputError, "order_by must be a column name in quotes"),
    ("order_by of type text", lin(", order_by='c'"), errors.ColumnTypeError,
     "order_by column 'c' must be a number, date or timestamp, got text"),
    ("order_by of type boolean", lin(", order_by='flag'"), errors.ColumnTypeError,
     "order_by column 'flag' must be a number, date or timestamp, got boolean"),
    ("no primary key and no order_by", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT x1, y FROM t", errors.InputError, "has no single-column primary key to order by"),
    # tables and columns
    ("unknown table", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT x, y "
     "FROM nope", errors.UnknownTableError, "does not exist"),
    ("feature twice", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT x, x, y FROM obs", errors.InputError, "column 'x' is selected twice"),
    ("text feature", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT x, c, y FROM obs", errors.ColumnTypeError, "feature column 'c' must be numeric, got text"),
    ("SELECT * with text columns", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT * FROM obs", errors.InputError, "that are not numbers; list the feature columns"),
    ("a column of another table", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT other.x, y FROM obs", errors.InputError, "does not belong to the FROM table"),
    ("an expression", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT x * 2, y FROM obs", errors.InputError, "lists plain columns of the table"),
    ("LIMIT", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT x, y FROM obs LIMIT 5", errors.InputError, "LIMIT is not supported"),
    ("a column name with a dot", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT `c.d`, y FROM dotted", errors.InputError, 'column "c"."d" does not belong to the FROM table'),
    ("NaN and Infinity in the rows", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y'], "
     "order_by='id') AS SELECT x1, y FROM t", errors.NonFiniteValueError, "hold NaN or ±Infinity"),
    ("FROM a subquery", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT x, y FROM (SELECT * FROM obs)", errors.InputError, "needs FROM one table"),
    # ranges
    ("huge range, far outside the data", lin(where=" WHERE id BETWEEN 1000000000000 AND 2000000000000"),
     errors.RangeError, "no rows of"),
    ("a string bound on an integer column", lin(where=" WHERE id BETWEEN '1' AND 5"), errors.RangeError,
     "the ordering column is a number, the bound a string"),
    ("a strict bound past the last timestamp", lin(", order_by='ts'",
                                                   " WHERE ts > TIMESTAMP '9999-12-31 23:59:59.999999'"),
     errors.RangeError, "at the end of the timestamps modelstore can represent"),
    # filters
    ("filter is arithmetic", lin(where=" WHERE x + 1"), errors.FilterError, "must be a condition"),
    ("filter with a volatile function", lin(where=" WHERE RAND() < 0.5"), errors.FilterError, "is not allowed"),
    ("filter on an unknown column", lin(where=" WHERE nope > 1"), errors.UnknownColumnError,
     "where refers to column 'nope'"),
    # ML table functions
    ("ML.PREDICT without rows", "SELECT * FROM ML.PREDICT(MODEL lin)", errors.InputError,
     "Required keyword: 'expression' missing for PREDICT"),
    ("ML.PREDICT of an unknown model", "SELECT * FROM ML.PREDICT(MODEL nope, TABLE obs)", errors.InputError,
     "no model named 'nope'"),
    ("ML.PREDICT of an unknown table", "SELECT * FROM ML.PREDICT(MODEL lin, TABLE nope)", errors.UnknownTableError,
     "line 1, column 32: ML.PREDICT: the input rows of model 'lin' cannot be read: relation \"nope\" does not exist"),
    ("ML.PREDICT input with an unknown column", "SELECT * FROM ML.PREDICT(MODEL lin, (SELECT x, z, nope FROM obs))",
     errors.UnknownColumnError, "cannot be read: column \"nope\" does not exist"),
    ("ML.PREDICT input with a text feature", "SELECT * FROM ML.PREDICT(MODEL lin, (SELECT c AS x, z FROM obs))",
     errors.ColumnTypeError, "ML.PREDICT: feature column(s) ['x'] of the input rows must be numbers, got ['text']"),
    ("ML.PREDICT input lacks a feature", "SELECT * FROM ML.PREDICT(MODEL lin, (SELECT x FROM obs))",
     errors.InputError, "the input rows lack column(s) ['z']"),
    ("ML.PREDICT with STRUCT options", "SELECT * FROM ML.PREDICT(MODEL lin, TABLE obs, STRUCT(0.5 AS threshold))",
     errors.InputError, "takes no STRUCT of options"),
    ("ML.EVALUATE input lacks the label", "SELECT * FROM ML.EVALUATE(MODEL lin, (SELECT x, z FROM obs))",
     errors.InputError, "the input rows lack column(s) ['y']"),
    ("PREDICT without ML.", "SELECT * FROM PREDICT(MODEL lin, TABLE obs)", errors.InputError,
     "PREDICT(MODEL …) is written ML.PREDICT(MODEL …)"),
    ("ML.WEIGHTS with rows", "SELECT * FROM ML.WEIGHTS(MODEL lin, TABLE obs)", errors.InputError,
     "ML.WEIGHTS takes only the model"),
    ("ML.ADVANCED_WEIGHTS of Naive Bayes", "SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL nb)", errors.InputError,
     "available for linear_reg models; 'nb' is gaussian_nb"),
    ("a write hidden in the input rows", "SELECT * FROM ML.PREDICT(MODEL lin, (SELECT x, z, nextval('s') FROM obs))",
     errors.UnknownTableError, "relation \"s\" does not exist"),
    # names
    ("name too long", "CREATE MODEL `" + "m" * 200 + "` OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
     "AS SELECT x, y FROM obs", errors.InputError, "name must be 1–128 printable characters"),
    ("name taken", lin().replace("MODEL m", "MODEL lin"), errors.InputError, "a model named 'lin' already exists"),
    ("DROP MODEL of an unknown name", "DROP MODEL nope", errors.ModelNotFoundError, "no model named 'nope'"),
]


@pytest.mark.parametrize("label,text,error,message", LANGUAGE_CASES, ids=[c[0] for c in LANGUAGE_CASES])
def test_bad_statement(store, extra, label, text, error, message):
    assert_refused(store, lambda: store.query(text), error, message)


def test_language_errors_carry_their_position(store, extra):
    error = assert_refused(store, lambda: store.query("CREATE MODEL m OPTIONS (model_type='linear_reg', "
                                                      "input_label_cols=['y'])\nAS SELECT x,\n  nope, y FROM obs"),
                           errors.InputError, "column 'nope' does not exist")
    assert (error.line, error.column) == (3, 3)


# -- the inputs that should work: unicode and reserved-word names, huge ranges -------------------------------


@pytest.mark.parametrize("table", list(UNICODE_TABLES))
def test_unicode_and_reserved_names_work_from_python(store, extra, table):
    order, a, b, target = UNICODE_TABLES[table]
    quoted = '"' + table.replace('"', '""') + '"'
    for name in (quoted, "public." + quoted):
        m = store.fit("linear", table=name, target=target, features=[a, b], order_by=order, lo=1, hi=20,
                      where=f'"{a}" > -10')
        assert_lstsq(m, extra["x"][:20], extra["y"][:20])
    assert store.model(m.name).descriptor.source.table == table


@pytest.mark.parametrize("table", list(UNICODE_TABLES))
def test_unicode_and_reserved_names_work_from_the_language(store, extra, table):
    order, a, b, target = UNICODE_TABLES[table]
    name = f"{table} model"
    m = store.query(f"CREATE OR REPLACE MODEL `{name}` OPTIONS (model_type='linear_reg', "
                    f"input_label_cols=['{target}'], order_by='{order}') AS SELECT `{a}`, `{b}`, `{target}` "
                    f"FROM `{table}` WHERE `{order}` BETWEEN 1 AND 20 AND `{a}` > -10")
    assert_lstsq(m, extra["x"][:20], extra["y"][:20])
    predicted = store.query(f"SELECT * FROM ML.PREDICT(MODEL `{name}`, (SELECT `{a}`, `{b}` FROM `{table}`))")
    np.testing.assert_allclose(predicted[f"predicted_{target}"], m.predict(extra["x"]), rtol=1e-12)
    assert store.query(f"SELECT * FROM ML.EVALUATE(MODEL `{name}`)")["rows"][0] == 20
    sql_prediction = store.conn.execute("SELECT modelstore.predict(%s, ARRAY[1.5, -2.0])", [name]).fetchone()[0]
    assert sql_prediction == pytest.approx(m.predict([[1.5, -2.0]])[0], rel=1e-12)


def test_a_reserved_word_column_in_a_filter_is_the_column(store, extra):
    """``user`` means CURRENT_USER to PostgreSQL: quoted in Python, in backticks in the language, it is the column."""
    x, y = extra["x"], extra["y"]
    mask = x[:, 1] > 0
    m = store.fit("linear", table='"select"', target="where", features=["from", "user"], order_by="order",
                  where='"user" > 0')
    assert_lstsq(m, x[mask], y[mask])
    assert m.descriptor.filter_sql == '"user" > 0'
    m2 = store.query("CREATE OR REPLACE MODEL reserved OPTIONS (model_type='linear_reg', input_label_cols=['where'], "
                     "order_by='order') AS SELECT `from`, `user`, `where` FROM `select` WHERE `user` > 0")
    assert m2.plan.stored_stats_id == m.plan.stored_stats_id  # the same descriptor: the statistics are shared


def test_equal_filters_quoted_differently_share_statistics(store, extra):
    m1 = store.fit("linear", table='"📈"', target="🎯", features=["💰"], order_by="🔑", where="💰 > 0")
    m2 = store.fit("linear", table='"📈"', target="🎯", features=["💰"], order_by="🔑", where='"💰" > 0')
    assert m1.descriptor.filter_sql == m2.descriptor.filter_sql == '"💰" > 0'
    assert m2.plan.stored_stats_id == m1.plan.stored_stats_id
    # the second request finds the first one's statistics (whether reading them beats scanning this tiny
    # table is the cost model's call: with the C aggregate a 30-row scan is cheaper)
    assert m2.plan.rows_scanned == 0 or m2.plan.plan.graph.get("relevant", 0) >= 1


@pytest.mark.parametrize("lo,hi", [(-10**30, 10**30), (-1e300, 1e300), (None, 10**30), (-10**30, None)])
def test_huge_ranges_that_include_all_rows_work(store, extra, lo, hi):
    m = store.fit("linear", lo=lo, hi=hi, **OBS)
    assert_lstsq(m, extra["x"], extra["y"])
    store.explain("linear", lo=lo, hi=hi, **OBS)


def test_huge_range_from_the_language(store, extra):
    m = store.query("CREATE OR REPLACE MODEL huge OPTIONS (model_type='linear_reg', input_label_cols=['y']) "
                    "AS SELECT x, z, y FROM obs WHERE id BETWEEN -1e30 AND 1000000000000000000000000000000")
    assert_lstsq(m, extra["x"], extra["y"])


def test_timestamps_from_year_one_work(store, extra):
    m = store.fit("linear", lo="0001-01-01", hi="2024-01-01 09:00", **{**OBS, "order_by": "ts"})
    assert_lstsq(m, extra["x"][:10], extra["y"][:10])


def assert_lstsq(model, x, y):
    expected = lstsq(x, y)
    got = np.array([model.intercept_, *model.coef_])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


# -- a dropped table, a column whose type changed ------------------------------------------------------------


def _copy_of_obs(store, name):
    store.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    store.conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM obs").format(sql.Identifier(name)))


def test_a_dropped_table(store, extra):
    _copy_of_obs(store, "gone")
    m = store.fit("linear", table="gone", target="y", features=["x", "z"], order_by="id", name="m_gone",
                  replace=True)
    store.conn.execute("DROP TABLE gone")
    request = dict(table="gone", target="y", features=["x", "z"], order_by="id")
    assert_refused(store, lambda: store.fit("linear", **request), errors.UnknownTableError,
                   "table 'gone' does not exist")
    assert_refused(store, lambda: store.explain("linear", **request), errors.UnknownTableError, "does not exist")
    # a stored model needs no rows: it loads, scores and shows its weights
    loaded = store.model("m_gone")
    np.testing.assert_array_equal(loaded.coef_, m.coef_)
    assert store.conn.execute("SELECT modelstore.predict('m_gone', ARRAY[1.0, 2.0])").fetchone()[0] == \
        pytest.approx(m.predict([[1.0, 2.0]])[0], rel=1e-12)
    assert len(store.query("SELECT * FROM ML.WEIGHTS(MODEL m_gone)")) == 3
    assert len(store.query("SELECT * FROM ML.TRAINING_INFO(MODEL m_gone)")) == 1
    # predicting on (or evaluating over) the dropped table fails clearly
    assert_refused(store, lambda: store.query("SELECT * FROM ML.EVALUATE(MODEL m_gone)"), errors.UnknownTableError,
                   "ML.EVALUATE: the training rows of model 'm_gone' cannot be read: relation")
    assert_refused(store, lambda: store.query("SELECT * FROM ML.PREDICT(MODEL m_gone, TABLE gone)"),
                   errors.UnknownTableError, "relation \"gone\" does not exist")
    before = catalog_counts(store.conn)
    with pytest.raises(psycopg.errors.UndefinedTable, match='relation "gone" does not exist'):
        store.conn.execute("SELECT modelstore.predict('m_gone', ARRAY[x, z]) FROM gone")
    assert catalog_counts(store.conn) == before
    assert store.drop("m_gone")


def test_a_column_whose_type_changed(store, extra):
    _copy_of_obs(store, "morph")
    store.fit("linear", table="morph", target="y", features=["x", "z"], order_by="id", name="m_morph", replace=True)
    store.conn.execute("ALTER TABLE morph ALTER COLUMN x TYPE text")
    for request in (dict(features=["x", "z"], target="y"), dict(features=["z"], target="x")):
        assert_refused(store, lambda: store.fit("linear", table="morph", order_by="id", lo=1, hi=M, **request),
                       errors.ColumnTypeError, "column 'x' must be numeric, got text")
    assert_refused(store, lambda: store.query(
        "CREATE MODEL q OPTIONS (model_type='linear_reg', input_label_cols=['y'], order_by='id') "
        "AS SELECT x, z, y FROM morph"), errors.ColumnTypeError, "feature column 'x' must be numeric, got text")
    assert_refused(store, lambda: store.query("SELECT * FROM ML.EVALUATE(MODEL m_morph)"), errors.ColumnTypeError,
                   "ML.EVALUATE: feature column(s) ['x'] of the training rows must be numbers, got ['text']")
    assert store.model("m_morph").n_features_in_ == 2  # the stored model itself still loads
    store.conn.execute("ALTER TABLE morph ALTER COLUMN id TYPE text")
    assert_refused(store, lambda: store.fit("linear", table="morph", target="y", features=["z"], order_by="id"),
                   errors.ColumnTypeError, "order_by column 'id' must be a number, date or timestamp, got text")
    assert store.drop("m_morph")


def test_boolean_features_score_in_the_language(store, extra):
    m = store.fit("linear", table="obs", target="y", features=["x", "flag"], order_by="id", name="with_flag",
                  replace=True)
    out = store.query("SELECT * FROM ML.PREDICT(MODEL with_flag, (SELECT x, flag FROM obs ORDER BY id))")
    frame = store.conn.execute("SELECT x, flag::int FROM obs ORDER BY id").fetchall()
    np.testing.assert_allclose(out.predicted_y, m.predict(np.array(frame, dtype=float)), rtol=1e-12)
    assert store.query("SELECT * FROM ML.EVALUATE(MODEL with_flag)")["rows"][0] == M


# -- NaN and Infinity in the rows, every kind ------------------------------------------------------------------


@pytest.mark.parametrize("column_type,value", [
    ("timestamp", "9999-12-31 23:59:59.999999"), ("timestamp", "infinity"), ("timestamptz", "-infinity"),
    ("date", "infinity"), ("float8", "NaN"),
], ids=["last timestamp", "infinite timestamp", "-infinite timestamptz", "infinite date", "NaN float"])
def test_an_extreme_ordering_value_with_the_bounds_omitted(store, column_type, value):
    conn = store.conn
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS extreme")
        conn.execute(sql.SQL("CREATE TABLE extreme (k {}, x float8, y float8)").format(sql.SQL(column_type)))
        ordinary = "g::float8" if column_type == "float8" else "date '2024-01-01' + g"
        conn.execute(sql.SQL("INSERT INTO extreme SELECT {}, g, 2 * g FROM generate_series(1, 9) g").format(
            sql.SQL(ordinary)))
        conn.execute("INSERT INTO extreme VALUES (%s, 1, 2)", [value])
    assert_refused(store, lambda: store.fit("linear", table="extreme", target="y", features=["x"], order_by="k"),
                   errors.RangeError, "\"extreme\" cannot bound a range")
    conn.execute("DROP TABLE extreme")


@pytest.mark.parametrize("kind,target,features,lo,hi,columns", [
    ("linear", "y", ["x1", "x2"], 101, 101, "'x1'"),
    ("gaussian_nb", "label", ["x1", "x2"], 101, 102, "['x1']"),
    ("multinomial_nb", "label", ["x2", "x1"], 102, 102, "['x1']"),
    ("logistic", "label", ["x1", "x2"], 1, 102, "'x1'"),
])
def test_nan_and_infinity_in_the_rows(store, kind, target, features, lo, hi, columns):
    extra_args = {"chunk_rows": 10} if kind == "logistic" else {}
    assert_refused(store, lambda: store.fit(kind, table="t", target=target, features=features, order_by="id", lo=lo,
                                            hi=hi, **extra_args), errors.NonFiniteValueError, columns)


# -- the SQL functions (sql/predict.sql) and the command line --------------------------------------------------


SQL_CASES = [
    ("unknown model", "SELECT modelstore.predict('nope', ARRAY[1.0, 2.0])", psycopg.errors.UndefinedObject,
     'modelstore: no model named "nope"'),
    ("array too short", "SELECT modelstore.predict('lin', ARRAY[1.0])", psycopg.errors.InvalidParameterValue,
     'model "lin" takes 2 feature(s) (x, z), got an array of 1 instead'),
    ("two-dimensional array", "SELECT modelstore.predict('lin', ARRAY[[1.0, 2.0]])",
     psycopg.errors.InvalidParameterValue, "takes a one-dimensional features array"),
    ("NaN feature", "SELECT modelstore.predict('lin', ARRAY[1.0, 'NaN'])", psycopg.errors.InvalidParameterValue,
     'feature "z" of model "lin" is NaN'),
    ("Infinity feature", "SELECT modelstore.predict_class('nb', ARRAY['Infinity', 1.0])",
     psycopg.errors.InvalidParameterValue, 'feature "x" of model "nb" is Infinity'),
    ("text labels through predict", "SELECT modelstore.predict('nb', ARRAY[1.0, 2.0])",
     psycopg.errors.DatatypeMismatch, "which predict cannot return as float8"),
    ("probabilities of a regression", "SELECT * FROM modelstore.predict_proba('lin', ARRAY[1.0, 2.0])",
     psycopg.errors.WrongObjectType, "is a linear regression and has no class probabilities"),
    ("weights of an unknown model", "SELECT * FROM modelstore.weights('nope')", psycopg.errors.UndefinedObject,
     'no model named "nope"'),
    ("overflow", "SELECT modelstore.predict('lin', ARRAY[1e308, 1e308])", psycopg.errors.NumericValueOutOfRange,
     "value out of range"),
]


@pytest.mark.parametrize("label,query,error,message", SQL_CASES, ids=[c[0] for c in SQL_CASES])
def test_bad_sql_function_call(store, extra, label, query, error, message):
    assert_refused(store, lambda: store.conn.execute(query), error, message)


@pytest.mark.parametrize("args,message", [
    (["query", "SELECT * FROM ML.WEIGHTS(MODEL lin"], "line 1, column 34: Expecting ) to close"),
    (["query", "SELECT * FROM ML.PREDICT(MODEL lin, TABLE nope)"], 'relation "nope" does not exist'),
    (["query", "CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS SELECT x, y FROM obs "
      "WHERE id BETWEEN 10 AND 5"], "range on 'id' is empty"),
    (["fit", "linear", "--table", "obs", "--target", "y", "--features", "x,y", "--order-by", "id"],
     "cannot also be a feature"),
])
def test_cli_refuses_with_exit_code_2(store, extra, module_dsn, args, message):
    before = catalog_counts(store.conn)
    proc = subprocess.run([sys.executable, "-m", "modelstore", "--dsn", module_dsn, *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error:" in proc.stderr and message in proc.stderr.replace("\n", ""), proc.stdout + proc.stderr
    assert catalog_counts(store.conn) == before
